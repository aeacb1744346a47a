"""Two processes with the gloo backend on CPU: DDP averages gradients, the MoCo queue is filled
with all-gathered embeddings, and both ranks end a step with identical state."""
import os

import ignite.distributed as idist
import torch
from ignite.engine import Engine

import pretrain_cond
from utils.trainer import build_run, make_step
from utils.validate import validate

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
    torch.save({"params": params, "queue": run.framework.queue, "ptr": run.framework.queue_ptr, "labels": first[1]},
               os.path.join(out_dir, f"rank{idist.get_rank()}.pt"))


def test_two_gloo_processes_end_a_step_with_identical_state(tmp_path):
    with idist.Parallel(backend="gloo", nproc_per_node=2) as parallel:
        parallel.run(_one_step, str(tmp_path))
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert len(r0["labels"]) == len(r1["labels"]) == 32  # global batch split over the ranks
    assert not torch.equal(r0["labels"], r1["labels"])  # ... on different images
    assert len(r0["params"]) > 50
    for k in r0["params"]:  # gradients were averaged: every parameter, online and target, agrees
        assert torch.equal(r0["params"][k], r1["params"][k]), k
    # SyncBatchNorm is CUDA-only in torch, so on CPU only BN running statistics stay rank-local.
    assert torch.equal(r0["queue"], r1["queue"]) and int(r0["ptr"]) == int(r1["ptr"]) == 64  # all-gathered
