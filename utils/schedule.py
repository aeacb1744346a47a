"""Learning-rate schedule: per-epoch linear warm-up then cosine, applied to scaled param groups."""
from __future__ import annotations

import math

from torch.optim import Optimizer


def lr_factor(epoch: int, max_epochs: int, warmup_epochs: int = 0) -> float:
    """Multiplier for 0-based ``epoch``: (epoch+1)/warmup during warm-up, then half-cosine to 0."""
    if epoch < warmup_epochs:
        return (epoch + 1) / warmup_epochs
    span = max(1, max_epochs - warmup_epochs)
    return 0.5 * (1 + math.cos(math.pi * (epoch - warmup_epochs) / span))


def set_lr(optimizer: Optimizer, base_lr: float, factor: float) -> None:
    """lr = base_lr x group's lr_scale x factor; groups flagged ``fixed_lr`` skip the schedule."""
    for g in optimizer.param_groups:
        g["lr"] = base_lr * g.get("lr_scale", 1.0) * (1.0 if g.get("fixed_lr") else factor)
