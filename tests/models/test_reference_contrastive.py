"""One training step of MoCo v2, MoCo v3, SimCLR and SwAV against references written from the papers'
pseudo-code and upstream's formulas (tests/models/reference_nets.py): loss, every gradient, the
updated weights, and the queue, momentum targets and prototypes after the step."""
import pytest
import torch
import torch.nn.functional as F

from models import FRAMEWORKS, AugSelfHeads, ConditionSpec, FrameworkOptions
from tests.models import reference_nets as R

COND = ConditionSpec(R.D, "mlp", "proj-cat", width=8, depth=2)
HEADS = {"crop": 0.5, "color": 0.3}


def _build(name: str, opts: FrameworkOptions, heads: dict | None = None):
    torch.manual_seed(0)
    model = FRAMEWORKS[name](R.TinyBackbone(), R.FEAT, COND, opts, AugSelfHeads(R.FEAT, heads or {}))
    with torch.no_grad():  # BN affine parameters away from 1 / 0, so a missing one shows
        for n, p in model.named_parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def _online(step: R.Step) -> dict:
    return R.leaves(step.before, step.grads)


def _proj(p, prefix, y, d, depth=2, last_bn=False):
    return R.projector(p, prefix, y, d, "proj-cat", "mlp", depth, last_bn)


def test_moco_v2_step_matches_the_reference():
    """Upstream (C trainers_cond.py moco, A trainers.py moco): q from view 1, the key from the momentum
    encoder on view 2, InfoNCE against the queue at T 0.2; AugSelf on the online features of view 1 and
    the momentum encoder's of view 2; SGD; EMA at 0.999; the queries enqueued at the pointer."""
    opts = FRAMEWORKS["moco"].Options(proj_hidden=12, queue=40)
    model = _build("moco", opts, HEADS)
    x1, x2, d1, d2, (t12, t21) = batch = R.inputs()
    step = R.project_step(model, batch)
    p, s = _online(step), step.before
    y1 = R.backbone(p, "backbone", x1)
    q = F.normalize(_proj(p, "projector", y1, d1), dim=1)
    with torch.no_grad():
        y2 = R.backbone(s, "target_backbone", x2)
        k = F.normalize(_proj(s, "target_projector", y2, d2), dim=1)
    ssl = R.info_nce(q, k, s["queue"], 0.2)
    targets = {key: torch.cat([t12[key], t21[key]]) for key in HEADS}
    total = ssl + R.augself(p, y1, y2, targets, HEADS)
    new = R.check_step(step, p, ssl, total, lambda n: R.LR * R.FACTOR)
    R.check_ema(step, new, 0.999)
    queue = s["queue"].clone()
    queue[:R.B] = q.detach()
    torch.testing.assert_close(step.after["queue"], queue)
    assert int(step.after["queue_ptr"]) == R.B


def test_moco_v3_step_matches_the_reference():
    """Upstream (C trainers_cond.py mocov3): both views through projector and predictor, keys of both
    views from the momentum encoder, ctr(q1, k2) + ctr(q2, k1) each scaled by 2T (T 0.2); AdamW; the
    momentum encoder averaged at the constant 0.999."""
    model = _build("mocov3", FrameworkOptions(proj_hidden=12))
    x1, x2, d1, d2, _ = batch = R.inputs(1)
    step = R.project_step(model, batch, iteration=3, total_steps=10)
    p, s = _online(step), step.before

    def head(y, d):
        z = _proj(p, "projector", y, d, depth=3, last_bn=True)
        return R.mlp(p, "predictor", z, 2, last_bn=True)

    q1, q2 = head(R.backbone(p, "backbone", x1), d1), head(R.backbone(p, "backbone", x2), d2)
    with torch.no_grad():
        k1 = _proj(s, "target_projector", R.backbone(s, "target_backbone", x1), d1, depth=3, last_bn=True)
        k2 = _proj(s, "target_projector", R.backbone(s, "target_backbone", x2), d2, depth=3, last_bn=True)
    ssl = R.mocov3_ctr(q1, k2, 0.2) + R.mocov3_ctr(q2, k1, 0.2)
    new = R.check_step(step, p, ssl, ssl, lambda n: R.LR * R.FACTOR, update=R.adamw_step, atol=2e-5)
    R.check_ema(step, new, 0.999)


def test_simclr_step_matches_the_reference():
    """Upstream (C trainers_cond.py simclr): NT-Xent over the 2N normalised projections at T 0.2, each
    view projected with its own descriptor; AugSelf on both views' online features."""
    model = _build("simclr", FrameworkOptions(proj_hidden=12), HEADS)
    x1, x2, d1, d2, (t12, t21) = batch = R.inputs(2)
    step = R.project_step(model, batch)
    p = _online(step)
    y1, y2 = R.backbone(p, "backbone", x1), R.backbone(p, "backbone", x2)
    ssl = R.nt_xent(_proj(p, "projector", y1, d1), _proj(p, "projector", y2, d2), 0.2)
    targets = {key: torch.cat([t12[key], t21[key]]) for key in HEADS}
    total = ssl + R.augself(p, y1, y2, targets, HEADS)
    R.check_step(step, p, ssl, total, lambda n: R.LR * R.FACTOR)


def _swav_reference(step: R.Step, batch):
    x1, x2, d1, d2, _ = batch
    s = dict(step.before)
    s["prototypes.weight"] = F.normalize(s["prototypes.weight"], dim=1)  # the step starts by normalising them
    p = R.leaves(s, step.grads)
    z1 = F.normalize(_proj(p, "projector", R.backbone(p, "backbone", x1), d1), dim=1)
    z2 = F.normalize(_proj(p, "projector", R.backbone(p, "backbone", x2), d2), dim=1)
    s1, s2 = z1 @ p["prototypes.weight"].t(), z2 @ p["prototypes.weight"].t()
    with torch.no_grad():
        c1, c2 = R.sinkhorn(s1, 0.05, 3), R.sinkhorn(s2, 0.05, 3)
    loss = -(c1 * F.log_softmax(s2 / 0.1, 1)).sum(1).mean() - (c2 * F.log_softmax(s1 / 0.1, 1)).sum(1).mean()
    return p, loss  # upstream (A trainers.py swav) sums the two swapped predictions


def test_swav_step_matches_the_reference_with_prototypes_frozen():
    """Upstream (A trainers.py swav): prototypes renormalised, Sinkhorn codes (eps 0.05, 3 iterations),
    swapped prediction at T 0.1; the prototypes get no update during the first iterations."""
    model = _build("swav", FRAMEWORKS["swav"].Options(proj_hidden=12, prototypes=6))
    batch = R.inputs(3)
    step = R.project_step(model, batch, iteration=1)
    p, loss = _swav_reference(step, batch)
    R.check_step(step, p, loss, loss, lambda n: R.LR * R.FACTOR)
    assert step.grads["prototypes.weight"] is None
    torch.testing.assert_close(step.after["prototypes.weight"], F.normalize(step.before["prototypes.weight"], dim=1))


def test_swav_step_matches_the_reference_with_prototypes_trained():
    model = _build("swav", FRAMEWORKS["swav"].Options(proj_hidden=12, prototypes=6, freeze_iters=0))
    batch = R.inputs(4)
    step = R.project_step(model, batch, iteration=1)
    p, loss = _swav_reference(step, batch)
    new = R.check_step(step, p, loss, loss, lambda n: R.LR * R.FACTOR)
    assert not torch.equal(new["prototypes.weight"], p["prototypes.weight"].detach())


def test_reference_sinkhorn_gives_equal_partitions():
    """The reference itself: each sample's code sums to 1 and each prototype gets an equal share."""
    scores = torch.randn(12, 4)
    q = R.sinkhorn(scores, 0.5, 50)
    torch.testing.assert_close(q.sum(1), torch.ones(12))
    torch.testing.assert_close(q.sum(0), torch.full((4,), 3.0), atol=1e-3, rtol=0)


@pytest.mark.parametrize("iteration,frozen", [(409, True), (410, False)])
def test_swav_prototypes_train_from_upstreams_iteration_410(iteration, frozen):
    """A trainers.py swav: the prototypes' gradient is dropped while Ignite's 1-based iteration < 410."""
    model = _build("swav", FRAMEWORKS["swav"].Options(proj_hidden=12, prototypes=6))
    step = R.project_step(model, R.inputs(3), iteration=iteration)
    assert (step.grads["prototypes.weight"] is None) == frozen
    assert torch.equal(step.after["prototypes.weight"], F.normalize(step.before["prototypes.weight"], dim=1)) == frozen
