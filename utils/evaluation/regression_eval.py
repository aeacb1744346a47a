"""The published linear probe of the landmark regressions (celeba, 300w, lspose) on frozen features.

As the classification probe (``linear_eval``): a linear layer with bias fitted by full-batch L-BFGS
over the same weight-decay grid, warm-started from one w to the next, w picked on validation, refit
from that state, the test score reported; but the objective is the *sum* of absolute errors plus
w x (||W||^2 + ||b||^2), and the score ``r2_flat``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .linear_eval import WD_GRID, SweepResult, fit_logistic


def l1_sum(pred: Tensor, y: Tensor) -> Tensor:
    """The regression objective: summed absolute error over samples and coordinates."""
    return F.l1_loss(pred, y, reduction="sum")


def r2_flat(pred: Tensor, y: Tensor) -> float:
    """The published R^2: every coordinate of every sample flattened into one sequence, the targets
    fitted by a least-squares line a * pred + b, and that line's coefficient of determination (the
    squared correlation of the two sequences; not 1 - SSE/SST of the predictions themselves). NaN
    when the targets are constant; 0 when the predictions are."""
    x, t = pred.detach().flatten().double(), y.detach().flatten().double()
    xc, tc = x - x.mean(), t - t.mean()
    sst = tc.pow(2).sum()
    if sst == 0:
        return math.nan
    var = xc.pow(2).sum()
    slope = (xc * tc).sum() / var if var > 0 else torch.zeros((), dtype=torch.float64)
    fit = t.mean() + slope * xc
    return float(1 - (t - fit).pow(2).sum() / sst)


def regression_eval(train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
                    out_dim: int, grid: list[float] | None = None, max_iter: int = 5000, log=print,
                    refit: tuple[Tensor, Tensor] | None = None) -> SweepResult:
    """Sweep w on the summed-L1 objective, pick it on validation ``r2_flat`` (first max), refit on
    ``refit`` (default train + val) and return the test ``r2_flat``."""
    grid = WD_GRID if grid is None else grid
    (xtr, ytr), (xva, yva), (xte, yte) = ((x.float(), y.float().view(len(y), -1)) for x, y in (train, val, test))
    if ytr.shape[1] != out_dim:
        raise ValueError(f"targets have {ytr.shape[1]} coordinates, the regression head {out_dim}")
    torch.manual_seed(0)  # the head's initialisation, so a sweep is reproducible
    clf = nn.Linear(xtr.shape[1], out_dim).to(xtr.device)
    scores, best = [], (-math.inf, None, None)
    for wd in grid:
        fit_logistic(clf, xtr, ytr, wd, max_iter, loss_fn=l1_sum)
        with torch.no_grad():
            s = r2_flat(clf(xva), yva)
        scores.append(s)
        log(f"wd={wd:.3e} val r2={s:.4f}")
        if s > best[0]:
            best = (s, wd, {k: v.clone() for k, v in clf.state_dict().items()})
    best_val, best_wd, state = best
    if state is None:
        raise ValueError("R^2 is undefined on the validation split: its targets are all equal")
    log(f"best wd={best_wd:.3e} (val r2={best_val:.4f})")
    clf.load_state_dict(state)
    xr, yr = (torch.cat([xtr, xva]), torch.cat([ytr, yva])) if refit is None else \
        (refit[0].float(), refit[1].float().view(len(refit[1]), -1))
    fit_logistic(clf, xr, yr, best_wd, max_iter, loss_fn=l1_sum)
    with torch.no_grad():
        test_score = r2_flat(clf(xte), yte)
    return SweepResult(list(grid), scores, best_wd, best_val, test_score, clf.state_dict())
