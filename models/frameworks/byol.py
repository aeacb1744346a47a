"""BYOL: online predictor regresses the EMA target's projection, both directions."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..losses import byol_loss
from ..mlp import mlp_block
from ..projector import ProjectorSpec
from .base import Framework, Progress, cosine_momentum, fp32, momentum_copy
from .options import FrameworkOptions, option


class BYOL(Framework):
    @dataclass
    class Options(FrameworkOptions):
        momentum: float = option(0.996)  # the first epoch's; a cosine takes it towards 1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.predictor = mlp_block(256, 4096, 256, 2)
        self.target_backbone = momentum_copy(self.backbone)
        self.target_projector = momentum_copy(self.projector)  # conditioned on the same descriptor

    @staticmethod
    def projector_spec(feat_dim: int, opts: FrameworkOptions) -> ProjectorSpec:
        return ProjectorSpec(hidden=opts.proj_hidden or feat_dim, out=256, depth=2)

    def ssl_forward(self, x1: Tensor, x2: Tensor, d1: Tensor | None, d2: Tensor | None) -> dict[str, Tensor]:
        y1, y2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(y1, d1), self.projector(y2, d2)
        p1, p2 = self.predictor(z1).float(), self.predictor(z2).float()
        with torch.no_grad():
            t1 = self.target_projector(self.target_backbone(x1), d1).float()
            t2 = self.target_projector(self.target_backbone(x2), d2).float()
        with fp32(p1):
            loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        return {"loss": loss, "y1": y1, "y2": y2, "z1": z1, "z2": z2}

    def on_after_step(self, progress: Progress) -> None:
        # Upstream sets the momentum once an epoch: base in the first epoch, rising on a cosine towards 1
        # (never reaching it: the last epoch is (E-1)/E of the way), where BYOL's paper moves it every step.
        self.update_targets(cosine_momentum(self.opts.momentum, progress.epoch - 1, progress.epochs))
