"""Every framework on two gloo processes trains as the whole batch would on one: one training step
(the project's step, DDP as the entry point wraps it) on each rank's half of a batch gives the weights,
targets, queue and prototypes of the same step on the whole batch in one process. This covers Barlow
Twins' all-reduced cross-correlation, SwAV's Sinkhorn over the global batch, MoCo v3's rank offset
into the gathered keys, MoCo v2's all-gathered queue and SimCLR's global negatives. Batch norm runs
on its running statistics here (SyncBatchNorm is CUDA-only), so every row's embedding is its own."""
import os

import ignite.distributed as idist
import torch
from torch import nn

from models import FRAMEWORKS, AugSelfHeads, ConditionSpec, FrameworkOptions
from tests.models import reference_nets as R
from utils.distributed import ddp_no_buffer_sync

COND = ConditionSpec(R.D, "mlp", "proj-cat", width=8, depth=2)
# AdamW's first step is lr g / (|g| + eps), a step of lr x sign(g) where |g| >> eps: where a gradient
# is near eps, float rounding in the sums over ranks moves an element by a few thousandths (the lr is
# 0.2); the loss, compared tightly, is what a wrong rank offset or gather would change.
ATOL = {"mocov3": 5e-3}
OWN_OPTS = {"moco": {"queue": 24}, "swav": {"prototypes": 6}, "simclr": {"global_negatives": True}}


def _opts(name: str) -> FrameworkOptions:
    return FRAMEWORKS[name].Options(proj_hidden=12, **OWN_OPTS.get(name, {}))


def _steps(rank: int, world: int) -> dict[str, dict]:
    """Each framework's state after one step on this rank's rows of the global batch of 8."""
    out = {}
    x1, x2, d1, d2, _ = R.inputs(11)
    rows = slice(rank * R.B // world, (rank + 1) * R.B // world)
    for name in sorted(FRAMEWORKS):
        torch.manual_seed(0)
        fw = FRAMEWORKS[name](R.TinyBackbone(), R.FEAT, COND, _opts(name), AugSelfHeads(R.FEAT, {}))
        with torch.no_grad():
            for p in fw.parameters():
                if p.ndim == 1:
                    p.add_(torch.randn_like(p) * 0.1)
        model = idist.auto_model(fw, sync_bn=False, **ddp_no_buffer_sync()) if world > 1 else fw
        model.train()
        for m in fw.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.eval()
        step = _project_step(model, fw, (x1[rows], x2[rows], d1[rows], d2[rows], None))
        out[name] = {"loss": step["ssl_loss"], **{k: v.detach().clone() for k, v in fw.state_dict().items()}}
    return out


def _project_step(model, fw, batch) -> dict:
    from types import SimpleNamespace

    from utils.training.run import build_optimizer
    from utils.schedule import set_lr
    from utils.training.step import StepInputs, make_model_step
    opt = build_optimizer(fw, SimpleNamespace(base_lr=R.LR, batch_size=256, wd=R.WD, momentum=R.MOMENTUM))
    set_lr(opt, R.LR, R.FACTOR)
    run = SimpleNamespace(model=model, framework=fw, optimizer=opt, device=torch.device("cpu"), amp_dtype=None,
                          scaler=torch.amp.GradScaler("cpu", enabled=False))
    engine = SimpleNamespace(state=SimpleNamespace(iteration=500))  # past SwAV's prototype freeze
    return make_model_step(run, 1000)(engine, StepInputs(*batch))


def _ranks(local_rank, out_dir):
    torch.save(_steps(idist.get_rank(), idist.get_world_size()), os.path.join(out_dir, f"rank{idist.get_rank()}.pt"))


def test_every_framework_on_two_gloo_processes_trains_as_the_whole_batch(tmp_path):
    with idist.Parallel(backend="gloo", nproc_per_node=2) as parallel:
        parallel.run(_ranks, str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    torch.manual_seed(0)
    one = _steps(0, 1)
    before = {}
    for name in sorted(FRAMEWORKS):
        torch.manual_seed(0)
        before[name] = FRAMEWORKS[name](R.TinyBackbone(), R.FEAT, COND, _opts(name), AugSelfHeads(R.FEAT, {})).state_dict()
    for name, whole in one.items():
        torch.testing.assert_close((r0[name]["loss"] + r1[name]["loss"]) / 2, whole["loss"], atol=1e-5, rtol=1e-5,
                                   msg=lambda m, name=name: f"{name} loss: {m}")
        moved = max((whole[k] - before[name][k]).abs().max().item() for k in before[name]
                    if k.startswith("backbone.") and whole[k].ndim > 1)
        assert moved > 20 * ATOL.get(name, 2e-6), name  # the step moved the weights far past the tolerance below
        for k, v in whole.items():
            if k == "loss" or "running_" in k or "num_batches" in k:
                continue
            assert torch.equal(r0[name][k], r1[name][k]), f"{name} {k}: the ranks disagree"
            torch.testing.assert_close(r0[name][k], v, atol=ATOL.get(name, 2e-6), rtol=1e-5,
                                       msg=lambda m, name=name, k=k: f"{name} {k}: {m}")
