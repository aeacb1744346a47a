"""Independent references for the reference-step tests: one training step of each framework written
from the papers' pseudo-code and the upstream code's formulas (gmum/CASSLE trainers_cond.py,
hankook/AugSelf trainers.py), on plain tensors. Nothing here imports the project's losses, MLPs,
projector or optimiser code; the weights are read from a built model's state dict by name."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

B, D, IN, FEAT = 8, 5, 3 * 4 * 4, 16  # batch, descriptor width, flattened 3x4x4 image, backbone width
LR, WD, MOMENTUM, FACTOR = 0.4, 1e-3, 0.9, 0.5  # base lr (batch 256 -> scale 1), schedule factor this epoch


def batch_norm(x: Tensor, w: Tensor | None = None, b: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Training-mode batch norm: batch mean, biased batch variance."""
    mean = x.mean(0, keepdim=True)
    var = ((x - mean) ** 2).mean(0, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps)
    return y * w + b if w is not None else y


def mlp(p: dict[str, Tensor], prefix: str, x: Tensor, depth: int, last_bn: bool = False) -> Tensor:
    """(depth-1) x [Linear(no bias), BN, ReLU], Linear(+bias unless last_bn) [, BN] as upstream's load_mlp,
    the layers at Sequential positions 0, 1, (2), 3, 4, ..."""
    for i in range(depth - 1):
        x = x @ p[f"{prefix}.{3 * i}.weight"].t()
        x = torch.relu(batch_norm(x, p[f"{prefix}.{3 * i + 1}.weight"], p[f"{prefix}.{3 * i + 1}.bias"]))
    last = 3 * (depth - 1)
    x = x @ p[f"{prefix}.{last}.weight"].t()
    if not last_bn:
        return x + p[f"{prefix}.{last}.bias"]
    return batch_norm(x, p.get(f"{prefix}.{last + 1}.weight"), p.get(f"{prefix}.{last + 1}.bias"))


def projector(p: dict[str, Tensor], prefix: str, y: Tensor, d: Tensor | None, injection: str, treatment: str,
              depth: int, last_bn: bool, embed_depth: int = 2) -> Tensor:
    """Upstream's AugProjector for raw / mlp x cat / add / mul / none: the descriptor (as is, or
    through an MLP ending in BN) is concatenated to, added to or multiplied with the features."""
    if injection != "proj-none":
        e = d if treatment == "raw" else mlp(p, f"{prefix}.embed", d, embed_depth, last_bn=True)
        y = {"proj-cat": lambda: torch.cat([y, e], 1), "proj-add": lambda: y + e, "proj-mul": lambda: y * e}[injection]()
    return mlp(p, f"{prefix}.net", y, depth, last_bn)


def backbone(p: dict[str, Tensor], prefix: str, x: Tensor) -> Tensor:
    """The tests' backbone: flatten, one linear layer."""
    return x.flatten(1) @ p[f"{prefix}.1.weight"].t() + p[f"{prefix}.1.bias"]


def augself(p: dict[str, Tensor], y1: Tensor, y2: Tensor, targets: dict[str, Tensor], weights: dict[str, float]) -> Tensor:
    """AugSelf's SSObjective: each head once on the 2B rows [cat(y1, y2); cat(y2, y1)] against the targets of
    both directions stacked the same way; MSE on tanh outputs for the regression pieces."""
    z = torch.cat([torch.cat([y1, y2], 1), torch.cat([y2, y1], 1)], 0)
    total = z.new_zeros(())
    for k, w in weights.items():
        total = total + w * F.mse_loss(torch.tanh(mlp(p, f"augself.heads.{k}", z, 3)), targets[k])
    return total


def sinkhorn(scores: Tensor, eps: float, iters: int) -> Tensor:
    """Upstream's distributed_sinkhorn on one process: Q = exp(s/eps)^T, Q /= sum, then rows to 1/K and
    columns to 1/B ``iters`` times, and each column normalised to 1; returned as [B, K]."""
    q = torch.exp(scores / eps).t()
    q = q / q.sum()
    k, b = q.shape
    for _ in range(iters):
        q = q * ((1 / k) / q.sum(1)).unsqueeze(1)
        q = q * ((1 / b) / q.sum(0)).unsqueeze(0)
    return (q / q.sum(0, keepdim=True)).t()


def info_nce(q: Tensor, k: Tensor, queue: Tensor, t: float) -> Tensor:
    """MoCo v2 (Algorithm 1): logits [q.k, q.queue] / T, the positive at index 0."""
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.t()], 1) / t
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long))


def nt_xent(z1: Tensor, z2: Tensor, t: float) -> Tensor:
    """SimCLR as upstream: 2N normalised rows, self-similarity masked, the pair's other view the label."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    s = z @ z.t() / t
    n = len(z1)
    s = s.masked_fill(torch.eye(2 * n, dtype=torch.bool), float("-inf"))
    labels = torch.tensor(list(range(n, 2 * n)) + list(range(n)))
    return F.cross_entropy(s, labels)


def mocov3_ctr(q: Tensor, k: Tensor, t: float) -> Tensor:
    """MoCo v3: normalised q against normalised k, the positive on the diagonal, times 2T."""
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).t() / t
    return F.cross_entropy(logits, torch.arange(len(q))) * (2 * t)


def sgd_step(p: Tensor, g: Tensor | None, lr: float, wd: float) -> Tensor:
    """First SGD step with momentum (buffer = gradient + wd p): p - lr (g + wd p); no gradient, no change."""
    return p if g is None else p - lr * (g + wd * p)


def adamw_step(p: Tensor, g: Tensor | None, lr: float, wd: float, eps: float = 1e-8) -> Tensor:
    """First AdamW step (betas 0.9, 0.999; bias-corrected moments g and g^2): decoupled decay, then lr g / (|g| + eps)."""
    return p if g is None else p * (1 - lr * wd) - lr * g / (g.abs() + eps)


class TinyBackbone(nn.Sequential):
    """flatten -> Linear(48, 16): small enough that a step's every number can be written out."""

    def __init__(self):
        super().__init__(nn.Flatten(), nn.Linear(IN, FEAT))


def inputs(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor, tuple[dict, dict]]:
    """Two views, their descriptors and AugSelf targets (crop, color) in both directions."""
    g = torch.Generator().manual_seed(seed)
    x1, x2 = torch.randn(B, 3, 4, 4, generator=g), torch.randn(B, 3, 4, 4, generator=g)
    d1, d2 = torch.randn(B, D, generator=g), torch.randn(B, D, generator=g)
    t12 = {k: torch.rand(B, 4, generator=g) * 2 - 1 for k in ("crop", "color")}
    t21 = {k: torch.rand(B, 4, generator=g) * 2 - 1 for k in ("crop", "color")}
    return x1, x2, d1, d2, (t12, t21)


@dataclass
class Step:
    """What one step of the project did: loss before the step, gradients, the state before and after."""

    out: dict[str, Tensor]
    before: dict[str, Tensor]
    after: dict[str, Tensor]
    grads: dict[str, Tensor | None] = field(default_factory=dict)


def project_step(model: nn.Module, batch, iteration: int = 1, total_steps: int = 100, epochs: int = 1) -> Step:
    """One step of the project's own training step (utils.training.step.make_model_step) on ``batch``, with the
    optimiser the entry point builds and the lr the schedule sets (factor FACTOR); ``total_steps`` span
    ``epochs`` epochs."""
    from utils.training.run import build_optimizer
    from utils.schedule import set_lr
    from utils.training.step import StepInputs, make_model_step
    args = SimpleNamespace(base_lr=LR, batch_size=256, wd=WD, momentum=MOMENTUM)
    opt = build_optimizer(model, args)
    set_lr(opt, LR, FACTOR)
    run = SimpleNamespace(model=model, framework=model, optimizer=opt, device=torch.device("cpu"), amp_dtype=None,
                          scaler=torch.amp.GradScaler("cpu", enabled=False))
    engine = SimpleNamespace(state=SimpleNamespace(iteration=iteration))
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    out = make_model_step(run, total_steps, epochs=epochs)(engine, StepInputs(*batch))
    grads = {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters() if p.requires_grad}
    return Step(out, before, {k: v.detach().clone() for k, v in model.state_dict().items()}, grads)


def leaves(state: dict[str, Tensor], names) -> dict[str, Tensor]:
    """Fresh leaf copies (requiring grad) of the named tensors, for the reference's autograd."""
    return {n: state[n].clone().requires_grad_() for n in names}


def cosine_ramp(base: float, step: int, total: int) -> float:
    """BYOL's momentum: 1 - (1 - base)(cos(pi step / total) + 1) / 2."""
    return 1 - (1 - base) * (math.cos(math.pi * step / total) + 1) / 2


def check_step(step: Step, p: dict[str, Tensor], ssl: Tensor, total: Tensor, lr_of, update=sgd_step,
               atol: float = 1e-5) -> dict[str, Tensor]:
    """The project's loss, gradients and updated online weights equal the reference's; returns the
    reference's updated weights. ``p`` holds the reference's leaves (every trainable parameter),
    ``lr_of(name)`` the learning rate of a parameter."""
    assert set(p) == set(step.grads), set(p) ^ set(step.grads)
    torch.testing.assert_close(step.out["ssl_loss"], ssl.detach(), atol=atol, rtol=1e-5)
    torch.testing.assert_close(step.out["loss"], total.detach(), atol=atol, rtol=1e-5)
    names = list(p)
    ref_grads = dict(zip(names, torch.autograd.grad(total, [p[n] for n in names], allow_unused=True)))
    new = {}
    for n in names:
        g = step.grads[n]
        if ref_grads[n] is None or g is None:
            assert g is None or not g.any(), f"{n}: the project has a gradient the reference has not"
        else:
            torch.testing.assert_close(g, ref_grads[n], atol=atol, rtol=1e-4, msg=lambda m, n=n: f"grad {n}: {m}")
        new[n] = update(p[n].detach(), g if g is not None else None, lr_of(n), WD)
        torch.testing.assert_close(step.after[n], new[n], atol=atol, rtol=1e-4, msg=lambda m, n=n: f"{n}: {m}")
    return new


def check_ema(step: Step, new: dict[str, Tensor], m: float, atol: float = 1e-6) -> None:
    """Every target_* parameter is m x its old value + (1 - m) x its online parameter's new value."""
    targets = [n for n in step.after if n.startswith(("target_backbone.", "target_projector."))
               and n.removeprefix("target_") in new]
    assert targets
    for n in targets:
        expected = m * step.before[n] + (1 - m) * new[n.removeprefix("target_")]
        torch.testing.assert_close(step.after[n], expected, atol=atol, rtol=0, msg=lambda msg, n=n: f"{n}: {msg}")
