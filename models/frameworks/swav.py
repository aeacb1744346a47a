"""SwAV: swapped prediction of Sinkhorn codes over learnable prototypes."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from utils.distributed import all_reduce_sum_no_grad, world_size

from ..losses import sinkhorn, swav_loss
from ..projector import ProjectorSpec
from .base import Framework, fp32
from .options import FrameworkOptions, option


class SwAV(Framework):
    @dataclass
    class Options(FrameworkOptions):
        prototypes: int = option(100)
        temperature: float = option(0.1)
        eps: float = option(0.05)  # Sinkhorn's entropy weight
        iters: int = option(3)  # Sinkhorn iterations
        freeze_iters: int = option(410)  # the prototypes stay fixed while Ignite's iteration is below this

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.prototypes = nn.Linear(128, self.opts.prototypes, bias=False)

    @staticmethod
    def projector_spec(feat_dim: int, opts: FrameworkOptions) -> ProjectorSpec:
        return ProjectorSpec(hidden=opts.proj_hidden or 2048, out=128, depth=2)

    def codes(self, scores: torch.Tensor) -> torch.Tensor:
        o = self.opts
        return sinkhorn(scores, o.eps, o.iters, all_reduce_sum_no_grad, scores.shape[0] * world_size())

    def ssl_forward(self, x1: Tensor, x2: Tensor, d1: Tensor | None, d2: Tensor | None) -> dict[str, Tensor]:
        if self.training:
            with torch.no_grad():  # prototypes live on the unit sphere
                self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))
        y1, y2 = self.backbone(x1), self.backbone(x2)
        z1 = F.normalize(self.projector(y1, d1).float(), dim=1)
        z2 = F.normalize(self.projector(y2, d2).float(), dim=1)
        with fp32(z1):
            s1, s2 = self.prototypes(z1), self.prototypes(z2)
            loss = swav_loss(s1, s2, self.codes(s1.detach()), self.codes(s2.detach()), self.opts.temperature)
        return {"loss": loss, "y1": y1, "y2": y2, "z1": z1, "z2": z2}

    def on_before_optimizer_step(self, step: int) -> None:
        # Upstream drops the prototypes' gradient while Ignite's 1-based iteration is below
        # freeze_n_iters (410): the first 409 steps; ``step`` counts from 0.
        if step + 1 < self.opts.freeze_iters:
            self.prototypes.weight.grad = None
