"""The published linear-evaluation protocol on frozen features.

Logistic regression = linear layer with bias, full-batch L-BFGS (lr 1, at most 5000 iterations,
strong Wolfe, tolerance_grad 1e-10, tolerance_change 0) on the *sum* of cross-entropies plus
w x (||W||^2 + ||b||^2). w sweeps logspace(-6, 5, 45) ascending, each fit warm-started from the
previous; the best validation metric (first max) picks w; the model is refit from that state on
train + val (or on the dataset's own refit set: upstream's ``trainval``, which for flowers N-shot and
CUB-200 is not the union of train and val), and the test metric reported. Runs wherever the features
are (GPU when there is one).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WD_GRID = torch.logspace(-6, 5, 45).tolist()
METRIC_NAMES = ("top1", "class-avg")


def accuracy(logits: Tensor, y: Tensor, metric: str, num_classes: int) -> float:
    """top1: fraction correct; class-avg: mean over classes present of per-class accuracy."""
    pred = logits.argmax(1)
    if metric == "top1":
        return (pred == y).float().mean().item()
    if metric != "class-avg":
        raise ValueError(f"--metric must be one of {METRIC_NAMES}, got {metric!r}")
    correct = torch.zeros(num_classes, device=y.device).scatter_add_(0, y, (pred == y).float())
    count = torch.zeros(num_classes, device=y.device).scatter_add_(0, y, torch.ones_like(y, dtype=torch.float))
    present = count > 0
    return (correct[present] / count[present]).mean().item()


def fit_logistic(clf: nn.Linear, x: Tensor, y: Tensor, wd: float, max_iter: int = 5000,
                 loss_fn=None) -> nn.Linear:
    """Minimise sum CE + wd * (||W||^2 + ||b||^2) with L-BFGS, starting from ``clf``'s weights;
    ``loss_fn(outputs, y)`` replaces the summed cross-entropy (the regressions' summed L1)."""
    opt = torch.optim.LBFGS(clf.parameters(), lr=1, max_iter=max_iter, tolerance_grad=1e-10,
                            tolerance_change=0, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_fn(clf(x), y) if loss_fn else F.cross_entropy(clf(x), y, reduction="sum")
        loss = loss + wd * sum(p.pow(2).sum() for p in clf.parameters())
        loss.backward()
        return loss

    opt.step(closure)
    return clf


@dataclass
class SweepResult:
    """One weight-decay sweep: the grid and its val accuracies, the pick, and its test accuracy."""

    grid: list[float]
    val: list[float]
    best_wd: float
    best_val: float
    test: float
    state: dict = field(repr=False, default_factory=dict)


def linear_eval(train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
                num_classes: int, metric: str = "top1", grid: list[float] | None = None, max_iter: int = 5000,
                log=print, refit: tuple[Tensor, Tensor] | None = None) -> SweepResult:
    """Run the sweep, pick w on validation, refit on ``refit`` (None: train + val), return the test metric."""
    grid = WD_GRID if grid is None else grid
    (xtr, ytr), (xva, yva), (xte, yte) = ((x.float(), y.long()) for x, y in (train, val, test))
    xre, yre = (torch.cat([xtr, xva]), torch.cat([ytr, yva])) if refit is None else (refit[0].float(), refit[1].long())
    for split, x in (("train", xtr), ("val", xva), ("test", xte), ("refit", xre)):
        if not torch.isfinite(x).all():  # L-BFGS would fail on them deep in its line search
            raise ValueError(f"the {split} features hold NaN or Inf values: the backbone overflows on these images")
    torch.manual_seed(0)  # the classifier's initialisation, so a sweep is reproducible
    clf = nn.Linear(xtr.shape[1], num_classes).to(xtr.device)
    scores, best = [], (-1.0, None, None)
    for wd in grid:
        fit_logistic(clf, xtr, ytr, wd, max_iter)
        with torch.no_grad():
            s = accuracy(clf(xva), yva, metric, num_classes)
        scores.append(s)
        log(f"wd={wd:.3e} val {metric}={s:.4f}")
        if s > best[0]:
            best = (s, wd, {k: v.clone() for k, v in clf.state_dict().items()})
    best_val, best_wd, state = best
    log(f"best wd={best_wd:.3e} (val {metric}={best_val:.4f})")
    clf.load_state_dict(state)
    fit_logistic(clf, xre, yre, best_wd, max_iter)
    with torch.no_grad():
        test_score = accuracy(clf(xte), yte, metric, num_classes)
    return SweepResult(list(grid), scores, best_wd, best_val, test_score, clf.state_dict())
