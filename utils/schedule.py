"""Learning-rate schedule: per-epoch linear warm-up then cosine, applied to scaled param groups."""
from __future__ import annotations

import math

from torch.optim import Optimizer


def lr_factor(epoch: int, max_epochs: int, warmup_epochs: int = 0) -> float:
    """Multiplier for 0-based ``epoch``, set once an epoch as upstream stepped its schedulers.

    Warm-up as upstream's ``LinearLR(start_factor=1/W, end_factor=1, total_iters=W)``: 1/W at
    epoch 0, rising linearly to reach 1 at epoch W; then ``CosineAnnealingLR(max_epochs - W)``:
    a half-cosine from 1 towards 0.
    """
    if epoch < warmup_epochs:
        start = 1 / warmup_epochs
        return start + (1 - start) * epoch / warmup_epochs
    span = max(1, max_epochs - warmup_epochs)
    return 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / span))


def set_lr(optimizer: Optimizer, base_lr: float, factor: float) -> None:
    """lr = base_lr x group's lr_scale x factor; groups flagged ``fixed_lr`` skip the schedule."""
    for g in optimizer.param_groups:
        g["lr"] = base_lr * g.get("lr_scale", 1.0) * (1.0 if g.get("fixed_lr") else factor)
