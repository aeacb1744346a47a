"""Barlow Twins: cross-correlation of the two views' BN-standardised embeddings over the global batch."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from utils.distributed import all_reduce_sum, world_size

from ..losses import barlow_twins_loss
from ..projector import ProjectorSpec
from .base import Framework, fp32
from .options import FrameworkOptions, option

BIAS_LR_SCALE = 0.024  # biases and BN parameters train at lr x 0.024, as the official recipe


class BarlowTwins(Framework):
    @dataclass
    class Options(FrameworkOptions):
        lambd: float = option(0.0051)  # weight of the off-diagonal terms (the official code's name)

    warmup_epochs = 10

    @staticmethod
    def projector_spec(feat_dim: int, opts: FrameworkOptions) -> ProjectorSpec:
        w = opts.proj_hidden or 8192
        return ProjectorSpec(hidden=w, out=8192 if opts.proj_hidden is None else w, depth=3,
                             last_bn=True, last_bn_affine=False)

    def ssl_forward(self, x1: Tensor, x2: Tensor, d1: Tensor | None, d2: Tensor | None) -> dict[str, Tensor]:
        y1, y2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(y1, d1).float(), self.projector(y2, d2).float()
        with fp32(z1):
            c = all_reduce_sum(z1.t() @ z2 / (z1.shape[0] * world_size()))
            loss = barlow_twins_loss(c, self.opts.lambd)
        return {"loss": loss, "y1": y1, "y2": y2, "z1": z1, "z2": z2}

    def param_groups(self) -> list[dict]:
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": [p for p in params if p.ndim != 1], "lr_scale": 1.0},
                {"params": [p for p in params if p.ndim == 1], "lr_scale": BIAS_LR_SCALE}]
