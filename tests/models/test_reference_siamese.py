"""One training step of SimSiam, BYOL and Barlow Twins against references written from the papers'
pseudo-code and upstream's formulas (tests/models/reference_nets.py), and the conditioned projector
for every treatment x injection against upstream's AugProjector written out."""
import pytest
import torch
import torch.nn.functional as F

from models import FRAMEWORKS, AugSelfHeads, ConditionSpec, FrameworkOptions
from models.projector import ConditionedProjector, ProjectorSpec
from tests.models import reference_nets as R

COND = ConditionSpec(R.D, "mlp", "proj-cat", width=8, depth=2)


def _build(name: str, opts: FrameworkOptions, heads: dict | None = None):
    torch.manual_seed(0)
    model = FRAMEWORKS[name](R.TinyBackbone(), R.FEAT, COND, opts, AugSelfHeads(R.FEAT, heads or {}))
    with torch.no_grad():  # BN affine parameters away from 1 / 0, so a missing one shows
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def _proj(p, prefix, y, d, depth=2, last_bn=False):
    return R.projector(p, prefix, y, d, "proj-cat", "mlp", depth, last_bn)


def test_simsiam_step_matches_the_reference():
    """Upstream (C trainers_cond.py simsiam): D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2 with D the negative
    cosine; projector ending in BN (affine), predictor 2048-512-2048; the predictor's lr is not scheduled."""
    heads = {"crop": 0.5, "color": 0.3}
    model = _build("simsiam", FrameworkOptions(proj_hidden=12), heads)
    x1, x2, d1, d2, (t12, t21) = batch = R.inputs(5)
    step = R.project_step(model, batch)
    p = R.leaves(step.before, step.grads)
    y1, y2 = R.backbone(p, "backbone", x1), R.backbone(p, "backbone", x2)
    z1, z2 = _proj(p, "projector", y1, d1, last_bn=True), _proj(p, "projector", y2, d2, last_bn=True)
    p1, p2 = R.mlp(p, "predictor", z1, 2), R.mlp(p, "predictor", z2, 2)
    ssl = -(F.cosine_similarity(p1, z2.detach()).mean() + F.cosine_similarity(p2, z1.detach()).mean()) / 2
    total = ssl + R.augself(p, y1, y2, {k: torch.cat([t12[k], t21[k]]) for k in heads}, heads)
    R.check_step(step, p, ssl, total, lambda n: R.LR * (1.0 if n.startswith("predictor.") else R.FACTOR))


def test_byol_step_matches_the_reference():
    """Upstream (C trainers_cond.py byol): the online predictions regress the momentum encoder's projections
    of the other view, 2 - 2 cos each way (upstream writes -2 cos: the same gradients); the targets are
    averaged with upstream's per-epoch cosine momentum from 0.996, here in epoch 3 of 10."""
    model = _build("byol", FrameworkOptions(proj_hidden=12))
    x1, x2, d1, d2, _ = batch = R.inputs(6)
    step = R.project_step(model, batch, iteration=30, total_steps=100, epochs=10)  # the last step of epoch 3
    p, s = R.leaves(step.before, step.grads), step.before
    p1 = R.mlp(p, "predictor", _proj(p, "projector", R.backbone(p, "backbone", x1), d1), 2)
    p2 = R.mlp(p, "predictor", _proj(p, "projector", R.backbone(p, "backbone", x2), d2), 2)
    with torch.no_grad():
        t1 = _proj(s, "target_projector", R.backbone(s, "target_backbone", x1), d1)
        t2 = _proj(s, "target_projector", R.backbone(s, "target_backbone", x2), d2)
    ssl = (2 - 2 * F.cosine_similarity(p1, t2)).mean() + (2 - 2 * F.cosine_similarity(p2, t1)).mean()
    new = R.check_step(step, p, ssl, ssl, lambda n: R.LR * R.FACTOR)
    R.check_ema(step, new, R.cosine_ramp(0.996, 3 - 1, 10))


def test_barlow_twins_step_matches_the_reference():
    """Upstream (C trainers_cond.py barlow_twins): C = z1^T z2 / batch of the BN-standardised embeddings,
    sum (1 - C_ii)^2 + 0.0051 sum_{i != j} C_ij^2; biases and BN parameters at lr x 0.024."""
    model = _build("barlow_twins", FrameworkOptions(proj_hidden=12))
    x1, x2, d1, d2, _ = batch = R.inputs(7)
    step = R.project_step(model, batch)
    p = R.leaves(step.before, step.grads)
    z1 = _proj(p, "projector", R.backbone(p, "backbone", x1), d1, depth=3, last_bn=True)
    z2 = _proj(p, "projector", R.backbone(p, "backbone", x2), d2, depth=3, last_bn=True)
    c = z1.t() @ z2 / R.B
    off = ~torch.eye(len(c), dtype=torch.bool)
    ssl = ((torch.diagonal(c) - 1) ** 2).sum() + 0.0051 * (c[off] ** 2).sum()
    R.check_step(step, p, ssl, ssl, lambda n: R.LR * R.FACTOR * (0.024 if step.before[n].ndim == 1 else 1.0))


CASES = [(t, i) for t in ("raw", "mlp") for i in ("proj-cat", "proj-add", "proj-mul", "proj-none")]


@pytest.mark.parametrize("treatment,injection", CASES)
def test_conditioned_projector_matches_upstreams_aug_projector(treatment, injection):
    """Output and gradients (weights, features and descriptor) of the conditioned projector equal
    upstream's AugProjector written out, for each treatment x injection; raw add / mul take a descriptor
    as wide as the features, as upstream asserts."""
    feat, spec = 6, ProjectorSpec(hidden=10, out=7, depth=3, last_bn=True)
    desc = feat if treatment == "raw" and injection in ("proj-add", "proj-mul") else 4
    cond = ConditionSpec(desc if injection != "proj-none" else 0, treatment, injection, width=5, depth=3)
    torch.manual_seed(1)
    proj = ConditionedProjector(feat, spec, cond).train()
    with torch.no_grad():
        for q in proj.parameters():
            if q.ndim == 1:
                q.add_(torch.randn_like(q) * 0.1)
    g = torch.Generator().manual_seed(2)
    y = torch.randn(9, feat, generator=g, requires_grad=True)
    d = torch.randn(9, desc, generator=g, requires_grad=True)
    out = proj(y, d)
    names = [n for n, _ in proj.named_parameters()]
    leaves = {n: q.detach().clone().requires_grad_() for n, q in proj.named_parameters()}
    ry, rd = y.detach().clone().requires_grad_(), d.detach().clone().requires_grad_()
    ref = R.projector({f"p.{n}": q for n, q in leaves.items()}, "p", ry, rd, injection, treatment, 3, True, 3)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    w = torch.randn(out.shape, generator=g)
    grads = torch.autograd.grad((out * w).sum(), [y, d, *proj.parameters()], allow_unused=True)
    ref_grads = torch.autograd.grad((ref * w).sum(), [ry, rd, *leaves.values()], allow_unused=True)
    for name, a, b in zip(["features", "descriptor", *names], grads, ref_grads):
        if b is None:
            assert a is None or not a.any(), name
        else:
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=lambda m, name=name: f"{name}: {m}")
    if injection == "proj-none":
        assert ref_grads[1] is None  # the baseline ignores the descriptor
