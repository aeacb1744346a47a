"""SimCLR: NT-Xent over the 2N views (negatives local by default, as upstream)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from utils.distributed import gather_with_grad, rank

from ..losses import nt_xent
from ..projector import ProjectorSpec
from .base import Framework, fp32
from .options import FrameworkOptions, option


class SimCLR(Framework):
    @dataclass
    class Options(FrameworkOptions):
        temperature: float = option(0.2)
        global_negatives: bool = option(False, "SimCLR negatives from all GPUs (upstream: local only)")

    @staticmethod
    def projector_spec(feat_dim: int, opts: FrameworkOptions) -> ProjectorSpec:
        return ProjectorSpec(hidden=opts.proj_hidden or feat_dim, out=128, depth=2)

    def ssl_forward(self, x1: Tensor, x2: Tensor, d1: Tensor | None, d2: Tensor | None) -> dict[str, Tensor]:
        y1, y2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(y1, d1).float(), self.projector(y2, d2).float()
        with fp32(z1):
            if self.opts.global_negatives:
                loss = nt_xent(z1, z2, self.opts.temperature, gather_with_grad(z1), gather_with_grad(z2),
                               offset=rank() * z1.shape[0])
            else:
                loss = nt_xent(z1, z2, self.opts.temperature)
        return {"loss": loss, "y1": y1, "y2": y2, "z1": z1, "z2": z2}
