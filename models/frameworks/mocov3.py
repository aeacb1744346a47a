"""MoCo v3: symmetric contrastive loss of predictions against all-gathered momentum keys; AdamW."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from utils.distributed import gather_no_grad, rank

from ..losses import mocov3_contrastive
from ..mlp import mlp_block
from ..projector import ProjectorSpec
from .base import Framework, Progress, cosine_momentum, fp32, momentum_copy
from .options import FrameworkOptions, option

MOMENTUM_SCHEDULES = ("constant", "cosine")
COSINE_MOMENTUM_START = 0.99  # the official MoCo v3 recipe: 0.99 rising to 1 over training


class MoCoV3(Framework):
    optimizer = "adamw"
    warmup_epochs = 40

    @dataclass
    class Options(FrameworkOptions):
        temperature: float = option(0.2)
        momentum: float = option(0.999)  # upstream CASSLE's constant; the cosine schedule starts at 0.99
        momentum_schedule: str = option(
            "constant", "MoCo v3 target momentum: 'constant' 0.999, as upstream CASSLE (paper); 'cosine' rises "
            "from 0.99 to 1 over training, the official MoCo v3 recipe", choices=MOMENTUM_SCHEDULES)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.predictor = mlp_block(256, 4096, 256, 2, last_bn=True, last_bn_affine=False)
        self.target_backbone = momentum_copy(self.backbone)
        self.target_projector = momentum_copy(self.projector)

    @staticmethod
    def projector_spec(feat_dim: int, opts: FrameworkOptions) -> ProjectorSpec:
        return ProjectorSpec(hidden=opts.proj_hidden or 4096, out=256, depth=3, last_bn=True, last_bn_affine=False)

    def ssl_forward(self, x1: Tensor, x2: Tensor, d1: Tensor | None, d2: Tensor | None) -> dict[str, Tensor]:
        y1, y2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(y1, d1), self.projector(y2, d2)
        q1, q2 = self.predictor(z1).float(), self.predictor(z2).float()
        with torch.no_grad():
            k1 = self.target_projector(self.target_backbone(x1), d1).float()
            k2 = self.target_projector(self.target_backbone(x2), d2).float()
        t, off = self.opts.temperature, rank() * q1.shape[0]
        with fp32(q1):
            loss = mocov3_contrastive(q1, gather_no_grad(k2), t, off) + mocov3_contrastive(q2, gather_no_grad(k1), t, off)
        return {"loss": loss, "y1": y1, "y2": y2, "z1": q1, "z2": k2}

    def on_after_step(self, progress: Progress) -> None:
        # Upstream CASSLE keeps the momentum constant (0.999); the cosine schedule is MoCo v3's own.
        if self.opts.momentum_schedule == "cosine":
            self.update_targets(cosine_momentum(COSINE_MOMENTUM_START, progress.step, progress.total_steps))
        else:
            self.update_targets(self.opts.momentum)
