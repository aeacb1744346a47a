"""Numerics of the augmentation-sensitivity analysis (scripts/analyze.py is the command line).

- ``ridge_r2``: how linearly decodable a target is from features (closed-form ridge, penalty chosen
  on a validation split, R^2 on a held-out split).
- ``stage_features``: pooled features at every ResNet stage plus the backbone output.
- ``power_law``: eigen-spectrum of the feature covariance and its power-law exponent.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

RIDGE_GRID = torch.logspace(-4, 4, 17).tolist()
STAGES = ("layer1", "layer2", "layer3", "layer4")


def _fit_ridge(x: Tensor, y: Tensor, lam: float) -> tuple[Tensor, Tensor, Tensor]:
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    a = xc.t() @ xc + lam * x.shape[0] * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    w = torch.linalg.solve(a, xc.t() @ (y - my))
    return w, mx, my


def r2_score(pred: Tensor, y: Tensor) -> float:
    """Coefficient of determination averaged over target dimensions (constant dims skipped)."""
    sse = (pred - y).pow(2).sum(0)
    sst = (y - y.mean(0)).pow(2).sum(0)
    keep = sst > 1e-12
    if not keep.any():
        return float("nan")
    return float((1 - sse[keep] / sst[keep]).mean())


def ridge_r2(x: Tensor, y: Tensor, seed: int = 0, grid: list[float] | None = None) -> dict[str, float]:
    """Split 60/20/20 (seeded), pick the penalty on validation R^2, report held-out test R^2."""
    x, y = x.double(), y.double().view(len(y), -1)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_tr, n_va = int(0.6 * len(x)), int(0.2 * len(x))
    tr, va, te = perm[:n_tr], perm[n_tr:n_tr + n_va], perm[n_tr + n_va:]
    best = (-math.inf, None)
    for lam in grid or RIDGE_GRID:
        w, mx, my = _fit_ridge(x[tr], y[tr], lam)
        s = r2_score((x[va] - mx) @ w + my, y[va])
        if s > best[0]:
            best = (s, lam)
    w, mx, my = _fit_ridge(torch.cat([x[tr], x[va]]), torch.cat([y[tr], y[va]]), best[1])
    return {"r2": r2_score((x[te] - mx) @ w + my, y[te]), "val_r2": best[0], "lambda": best[1]}


@torch.no_grad()
def stage_features(backbone: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """Global-average-pooled output of each ResNet stage present, and the backbone's output ('pool')."""
    out: dict[str, Tensor] = {}
    hooks = [getattr(backbone, s).register_forward_hook(lambda m, i, o, s=s: out.__setitem__(s, o.mean((2, 3))))
             for s in STAGES if hasattr(backbone, s)]
    try:
        out["pool"] = backbone(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def mean_cosine(a: Tensor, b: Tensor) -> float:
    """Mean cosine similarity of the rows of ``a`` and ``b``, pair by pair, in fp32."""
    return float(F.cosine_similarity(a.float(), b.float(), dim=1).mean())


def power_law(features: Tensor) -> dict[str, object]:
    """Eigenvalues of the feature covariance (descending) and the exponent a of lambda_i ~ i^-a,
    fitted by least squares in log-log space over the eigenvalues above 1e-8 of the largest."""
    f = features.double() - features.double().mean(0)
    eig = torch.linalg.svdvals(f).pow(2) / max(1, f.shape[0] - 1)
    keep = eig > eig[0] * 1e-8
    i = torch.arange(1, len(eig) + 1, dtype=torch.float64)[keep]
    lx, ly = i.log(), eig[keep].log()
    slope = ((lx - lx.mean()) * (ly - ly.mean())).sum() / (lx - lx.mean()).pow(2).sum()
    return {"alpha": float(-slope), "eigenvalues": eig.tolist(),
            "explained": (eig.cumsum(0) / eig.sum()).tolist()}


def nearest_neighbours(features: Tensor, queries: list[int], k: int) -> list[list[int]]:
    """Indices of the k most cosine-similar other images for each query."""
    f = F.normalize(features.float(), dim=1)
    sim = f[queries] @ f.t()
    sim[torch.arange(len(queries)), torch.tensor(queries)] = -math.inf
    return sim.topk(k, dim=1).indices.tolist()


# The published invariance losses between features ``a`` of images and ``b`` of their augmented
# copies, row by row: the InfoNCE temperature and the CCA (Barlow Twins) off-diagonal weight.
INFONCE_TEMPERATURE = 0.2
CCA_OFF_DIAGONAL = 0.0051


def infonce_loss(a: Tensor, b: Tensor, temperature: float = INFONCE_TEMPERATURE) -> float:
    """Cross-entropy of picking row i of ``b`` for row i of ``a`` among all rows of ``b`` by cosine
    similarity / temperature (mean over rows), times 2 x temperature (the published scale)."""
    logits = F.normalize(a.double(), dim=1) @ F.normalize(b.double(), dim=1).t() / temperature
    return float(F.cross_entropy(logits, torch.arange(len(a), device=a.device)) * 2 * temperature)


def self_distillation_loss(a: Tensor, b: Tensor) -> float:
    """The published self-distillation loss: minus the mean cosine similarity of paired rows (-1: invariant)."""
    return float(-F.cosine_similarity(a.double(), b.double(), dim=1).mean())


def cca_loss(a: Tensor, b: Tensor, off_diagonal: float = CCA_OFF_DIAGONAL) -> float:
    """Barlow Twins' loss on the features as they are (not standardised, as published): with
    C = a^T b / n, sum_i (C_ii - 1)^2 + off_diagonal x sum_{i != j} C_ij^2 (0 for a copy whose
    columns are orthonormal up to sqrt(n))."""
    c = a.double().t() @ b.double() / len(a)
    diag = torch.diagonal(c)
    return float((diag - 1).pow(2).sum() + off_diagonal * (c.pow(2).sum() - diag.pow(2).sum()))


INVARIANCE_LOSSES = {"infonce": infonce_loss, "self_distill": self_distillation_loss, "cca": cca_loss}


def batched_losses(a: Tensor, b: Tensor, batch_size: int) -> dict[str, dict[str, float]]:
    """Each of ``INVARIANCE_LOSSES`` on consecutive batches of ``batch_size`` row pairs, as the
    published analysis computes them on each loader batch: the mean and the (population) std over
    batches, every batch counting once."""
    out = {}
    for name, fn in INVARIANCE_LOSSES.items():
        vals = torch.tensor([fn(a[i:i + batch_size], b[i:i + batch_size]) for i in range(0, len(a), batch_size)],
                            dtype=torch.float64)
        out[name] = {"mean": float(vals.mean()), "std": float(vals.std(unbiased=False))}
    return out
