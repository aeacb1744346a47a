"""Two processes with the gloo backend on CPU: DDP averages gradients, the MoCo queue is filled
with all-gathered embeddings, and both ranks end a step with identical state; SimCLR's global
negatives train as the whole batch would on one process; sharded features equal one process's;
--num-workers defaults to what the process's CPUs allow."""
import multiprocessing
import os
import subprocess
import sys

import ignite.distributed as idist
import pytest
import torch
from ignite.engine import Engine

import pretrain_cond
from tests.helpers import ROOT
from utils.distributed import default_num_workers, launch, platform_start_method
from utils.training.run import build_run
from utils.training.step import make_step
from utils.training.validate import validate

ARGV = ["--dataset", "colordigits", "--model", "mini_resnet", "--batch-size", "64", "--max-epochs", "1",
        "--framework", "moco", "--proj-hidden", "32", "--device", "cpu", "--distributed", "--nproc-per-node", "2",
        "--aug-treatment", "mlp", "--aug-nn-width", "8", "--aug-inj-type", "proj-cat", "--aug-cond", "crop", "color"]


def _one_step(local_rank, out_dir):
    args = pretrain_cond.build_parser().parse_args(["--logdir", os.path.join(out_dir, "unused"), *ARGV])
    validate(args)
    run = build_run(args, torch.device("cpu"), idist.get_rank(), idist.get_world_size())
    run.set_epoch(0)
    first = next(iter(run.loader))
    engine = Engine(make_step(run, 10))
    engine.run([first], max_epochs=1)
    params = {k: p.detach() for k, p in run.framework.named_parameters()}
    torch.save({"params": params, "queue": run.framework.queue, "ptr": run.framework.queue_ptr, "labels": first[1],
                "start_method": multiprocessing.get_start_method()},
               os.path.join(out_dir, f"rank{idist.get_rank()}.pt"))


def test_two_gloo_processes_end_a_step_with_identical_state(tmp_path, capfd):
    launch(_one_step, str(tmp_path), "gloo", 2)  # the entry points' launcher: it spawns both ranks
    printed = "".join(capfd.readouterr())  # the spawned ranks' output too: they write to our descriptors
    assert "ignite.distributed" not in printed and "Warning" not in printed, printed  # Ignite's INFO, DDP's flags
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert len(r0["labels"]) == len(r1["labels"]) == 32  # global batch split over the ranks
    assert not torch.equal(r0["labels"], r1["labels"])  # ... on different images
    assert len(r0["params"]) > 50
    for k in r0["params"]:  # gradients were averaged: every parameter, online and target, agrees
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    # SyncBatchNorm is CUDA-only in torch, so on CPU only BN running statistics stay rank-local.
    assert torch.equal(r0["queue"], r1["queue"]) and int(r0["ptr"]) == int(r1["ptr"]) == 64  # all-gathered
    # spawned ranks start their loader workers as a plain run does, not by spawning them too
    assert r0["start_method"] == r1["start_method"] == platform_start_method()  # "fork" on Linux


def test_torchrun_launch_takes_its_ranks_from_the_environment(tmp_path):
    """As on a cluster (torchrun / srun): the entry point joins the ranks torchrun made, spawning none."""
    logdir = tmp_path / "run"
    argv = [a for a in ARGV if a not in ("--nproc-per-node", "2")]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                "--local-addr", "127.0.0.1"]  # not the host's name, which a CI machine may not resolve
    done = subprocess.run([*torchrun, "pretrain_cond.py", "--logdir", str(logdir), *argv, "--batch-size", "256",
                           "--eval-freq", "0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (logdir / "log.txt").read_text()
    assert "2 process(es) on cpu, 5 steps/epoch" in log  # 1438 images, global batch 256: not 4 processes
    assert log.count("done: checkpoint") == 1  # rank 0 alone writes
    assert torch.load(logdir / "ckpt-last.pth", weights_only=True)["epoch"] == 1


def _global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Both views' embeddings of a global batch of 8, which two ranks split 4 and 4."""
    g = torch.Generator().manual_seed(3)
    return torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)


def _global_negatives(local_rank, out_dir):
    from models.losses import nt_xent
    from utils.distributed import gather_with_grad
    z1, z2 = _global_batch()
    r, n = idist.get_rank(), 4
    mine = [z[r * n:(r + 1) * n].clone().requires_grad_() for z in (z1, z2)]
    loss = nt_xent(*mine, 0.2, gather_with_grad(mine[0]), gather_with_grad(mine[1]), offset=r * n)
    loss.backward()
    torch.save({"loss": loss.detach(), "grads": [m.grad for m in mine]}, os.path.join(out_dir, f"neg{r}.pt"))


def test_global_negatives_train_as_the_whole_batch_on_one_process(two_ranks):
    """--simclr-global-negatives over two gloo ranks: the ranks' mean loss is the global batch's, and the
    gradient that reaches each rank's embeddings (averaged over ranks, as DDP does) is the global loss's
    gradient for those rows, negatives on the other rank included."""
    from models.losses import nt_xent
    ranks = [torch.load(two_ranks / f"neg{r}.pt", weights_only=True) for r in range(2)]
    z1, z2 = (z.requires_grad_() for z in _global_batch())
    whole = nt_xent(z1, z2, 0.2)
    whole.backward()
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, whole.detach())
    for r, out in enumerate(ranks):
        for grad, z in zip(out["grads"], (z1, z2)):
            torch.testing.assert_close(grad / 2, z.grad[r * 4:(r + 1) * 4])


def _features(local_rank, out_dir):
    from datasets.downstream import build_downstream
    from datasets.pretrain import eval_transform
    from models import build_backbone
    from utils.evaluation.features import sharded_features
    torch.manual_seed(0)
    net, _ = build_backbone("mini_resnet")
    data = torch.utils.data.Subset(build_downstream("colordigits-digit", None, eval_transform("colordigits")).test,
                                   range(37))  # not divisible by 2: exercises the padding
    f, y = sharded_features(net, data, torch.device("cpu"), 8, 0)
    # multi-crop items, as --ten-crop's training split gives: three crops per image, a row per crop
    crops = [(torch.stack([x, x.flip(-1), x.roll(3, -1)]), label) for x, label in data]
    multi = torch.utils.data.TensorDataset(torch.stack([c for c, _ in crops]), torch.tensor([y for _, y in crops]))
    fm, ym = sharded_features(net, multi, torch.device("cpu"), 8, 0)
    if idist.get_rank() == 0:
        torch.save({"f": f, "y": y, "fm": fm, "ym": ym}, os.path.join(out_dir, "feats.pt"))


def _negatives_and_features(local_rank, out_dir):
    _global_negatives(local_rank, out_dir)
    _features(local_rank, out_dir)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """What two spawned gloo ranks wrote for the global-negative and the sharded-feature tests: one
    spawn for both, each spawn costing two fresh interpreters' imports."""
    out = tmp_path_factory.mktemp("ranks")
    with idist.Parallel(backend="gloo", nproc_per_node=2) as parallel:
        parallel.run(_negatives_and_features, str(out))
    return out


def test_sharded_feature_extraction_equals_single_process(two_ranks, tmp_path):
    two = torch.load(two_ranks / "feats.pt", weights_only=True)
    _features(0, str(tmp_path))  # single process
    one = torch.load(tmp_path / "feats.pt", weights_only=True)
    assert two["f"].shape == (37, 128)
    torch.testing.assert_close(two["f"], one["f"], atol=1e-5, rtol=1e-5)
    assert torch.equal(two["y"], one["y"])
    assert two["fm"].shape == (3 * 37, 128) and torch.equal(two["ym"], one["y"].repeat_interleave(3))
    torch.testing.assert_close(two["fm"], one["fm"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(two["fm"][::3], one["f"], atol=1e-5, rtol=1e-5)  # each image's first crop: itself


@pytest.mark.parametrize("cpus,expected", [(2, 2), (4, 4), (64, 4)])
def test_num_workers_defaults_to_four_or_the_cpus_this_process_may_use(monkeypatch, cpus, expected):
    import transfer_few_shot
    import transfer_linear_eval
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)))
    assert default_num_workers() == expected
    for parser, required in ((pretrain_cond.build_parser(), ["--logdir", "x"]),
                             (transfer_linear_eval.build_parser(), ["--ckpt", "c"]),
                             (transfer_few_shot.build_parser(), ["--ckpt", "c", "--datadir", "d"])):
        assert parser.parse_args(required).num_workers == expected
