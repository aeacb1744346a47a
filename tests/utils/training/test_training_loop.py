"""The training loop as it runs (pretrain_cond.main, the Engine and its handlers): the learning rate of
each param group at each step against upstream's torch schedulers stepped once an epoch, the weight
decay, the momentum of the targets' EMA at each step, and each view's descriptor reaching its own
projector calls."""
import itertools
import math
import warnings

import pytest
import torch
from ignite.engine import Engine, Events

import pretrain_cond
import utils.training.step
import utils.training.trainer
from models import FRAMEWORKS

BATCH, BASE_LR, WD = 16, 0.5, 1e-3
CASSLE = ["--aug-treatment", "mlp", "--aug-nn-width", "8", "--aug-inj-type", "proj-cat", "--aug-cond", "crop", "color"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    from tests.data_formats import write_cifar
    mp = pytest.MonkeyPatch()
    root = write_cifar(str(tmp_path_factory.mktemp("cifar") / "c"), mp, "cifar10", n_train=32, n_test=8)
    yield root  # 2 steps an epoch at batch 16
    mp.undo()


def _train(tmp_path, monkeypatch, cifar, framework, epochs, *extra):
    """pretrain_cond.main on 32 images; returns each step's (epoch, [(lr, weight decay) per group]), the
    EMA momentums the framework applied, and the Run."""
    steps, momentums, runs = [], [], []

    class Recording(Engine):
        def __init__(self, fn):
            super().__init__(fn)

            @self.on(Events.ITERATION_COMPLETED)
            def _record(e):
                steps.append((e.state.epoch, [(g["lr"], g["weight_decay"]) for g in runs[0].optimizer.param_groups]))

    def build_run(*a, **k):
        run = original(*a, **k)
        update = run.framework.update_targets
        run.framework.update_targets = lambda m: (momentums.append(m), update(m))
        runs.append(run)
        return run

    original = utils.training.trainer.build_run
    monkeypatch.setattr(utils.training.trainer, "build_run", build_run)
    monkeypatch.setattr(utils.training.trainer, "Engine", Recording)
    pretrain_cond.main([str(a) for a in [
        "--logdir", tmp_path / "run", "--framework", framework, "--dataset", "cifar10", "--datadir", cifar,
        "--model", "mini_resnet", "--batch-size", BATCH, "--max-epochs", epochs, "--proj-hidden", "16",
        "--base-lr", BASE_LR, "--wd", WD, "--eval-freq", "0", "--device", "cpu", *CASSLE, *extra]])
    return steps, momentums, runs[0]


def _upstream_lrs(groups: list[tuple[float, bool]], epochs: int, warmup: int, steps_per_epoch: int) -> list[list]:
    """Each step's lr per group as upstream's schedulers give it: CosineAnnealingLR(max_epochs), or a
    LinearLR(1/W -> 1 over W epochs) then CosineAnnealingLR(max_epochs - W) warm-up, stepped after each
    epoch; a fixed group sits in an optimiser of its own without a scheduler."""
    params = [torch.zeros(1, requires_grad=True) for _ in groups]
    scheduled = torch.optim.SGD([{"params": [p], "lr": lr} for p, (lr, fixed) in zip(params, groups) if not fixed])
    if warmup:
        sched = torch.optim.lr_scheduler.SequentialLR(scheduled, [
            torch.optim.lr_scheduler.LinearLR(scheduled, start_factor=1 / warmup, end_factor=1, total_iters=warmup),
            torch.optim.lr_scheduler.CosineAnnealingLR(scheduled, epochs - warmup)], milestones=[warmup])
    else:
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(scheduled, epochs)
    out = []
    for _ in range(epochs):
        lrs = iter(g["lr"] for g in scheduled.param_groups)
        out += [[lr if fixed else next(lrs) for lr, fixed in groups]] * steps_per_epoch
        with warnings.catch_warnings():  # no optimiser step is taken here: only the values are wanted
            warnings.simplefilter("ignore", UserWarning)
            sched.step()
    return out


@pytest.mark.parametrize("framework,epochs,warmup", [("barlow_twins", 4, 2), ("mocov3", 4, 2), ("simsiam", 3, 0)])
def test_lr_per_group_and_weight_decay_at_each_step(tmp_path, monkeypatch, cifar, framework, epochs, warmup):
    """lr = base_lr x batch / 256 x the group's scale, through warm-up and cosine, the SimSiam predictor
    at its fixed lr; the warm-up shortened to 2 epochs to keep the run small."""
    if warmup:
        monkeypatch.setattr(FRAMEWORKS[framework], "warmup_epochs", warmup)
    steps, _, _ = _train(tmp_path, monkeypatch, cifar, framework, epochs)
    lr = BASE_LR * BATCH / 256
    groups = {"barlow_twins": [(lr, False), (lr * 0.024, False)], "simsiam": [(lr, False), (lr, True)]}.get(
        framework, [(lr, False)])
    expected = _upstream_lrs(groups, epochs, warmup, 2)
    assert [e for e, _ in steps] == [e for e in range(1, epochs + 1) for _ in range(2)]
    for i, ((_, got), want) in enumerate(zip(steps, expected, strict=True)):
        assert [g for g, _ in got] == pytest.approx(want, rel=1e-9, abs=1e-12), f"step {i + 1}"
        assert all(wd == WD for _, wd in got)
    firsts = [got[0][0] for _, got in steps[::2]]
    assert all(a != b for a, b in itertools.pairwise(firsts)), firsts  # the schedule moved every epoch


def test_ema_momentum_per_epoch_and_descriptors_reach_their_own_projector_calls(tmp_path, monkeypatch, cifar):
    """BYOL: the target's momentum follows upstream's cosine from 0.996 over the epochs (A trainers.py:282:
    one value an epoch from Ignite's 1-based epoch, applied after each update); in the first step, the
    online and the target projector each see view 1's features with view 1's descriptor and view 2's
    with view 2's."""
    views, descs, calls = [], [], {"backbone": [], "projector": []}
    make_views, build_descriptor = utils.training.step.make_views, utils.training.step.build_descriptor

    def spy_views(*a, **k):
        out = make_views(*a, **k)
        views.append(out)
        return out

    def spy_descriptor(p, *a, **k):
        d = build_descriptor(p, *a, **k)
        descs.append((p, d))
        return d

    monkeypatch.setattr(utils.training.step, "make_views", spy_views)
    monkeypatch.setattr(utils.training.step, "build_descriptor", spy_descriptor)
    original = utils.training.trainer.build_run

    def build_run(*a, **k):
        run = original(*a, **k)
        fw = run.framework
        for kind, made in calls.items():
            for name in (kind, f"target_{kind}"):
                getattr(fw, name).register_forward_hook(
                    lambda m, args, out, made=made: made.append((args, out.detach().clone()))
                    if len(views) == 1 else None)
        return run

    monkeypatch.setattr(utils.training.trainer, "build_run", build_run)
    steps, momentums, _ = _train(tmp_path, monkeypatch, cifar, "byol", 3)
    assert [e for e, _ in steps] == [1, 1, 2, 2, 3, 3]
    assert momentums == pytest.approx([1 - 0.004 * (math.cos(math.pi * (e - 1) / 3) + 1) / 2 for e, _ in steps],
                                      rel=0, abs=1e-12)
    x1, p1, x2, p2 = views[0]
    desc_of = {id(p): d for p, d in descs[:2]}
    assert set(desc_of) == {id(p1), id(p2)}
    assert len(calls["projector"]) == 4 and len(calls["backbone"]) == 4  # online and target, both views
    seen = []
    for (feat, d), _ in calls["projector"]:
        image = [args[0] for args, out in calls["backbone"] if torch.equal(out, feat)]
        view = 1 if torch.equal(image[0], x1) else 2 if torch.equal(image[0], x2) else None
        assert view is not None and torch.equal(d, desc_of[id(p1 if view == 1 else p2)]), view
        seen.append(view)
    assert sorted(seen) == [1, 1, 2, 2] and not torch.equal(desc_of[id(p1)], desc_of[id(p2)])
