"""SimSiam: symmetric negative cosine with stop-gradient; predictor at a fixed learning rate."""
from __future__ import annotations

from torch import Tensor

from ..losses import negative_cosine
from ..mlp import mlp_block
from ..projector import ProjectorSpec
from .base import Framework, fp32
from .options import FrameworkOptions


class SimSiam(Framework):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.predictor = mlp_block(2048, 512, 2048, 2)

    @staticmethod
    def projector_spec(feat_dim: int, opts: FrameworkOptions) -> ProjectorSpec:
        return ProjectorSpec(hidden=opts.proj_hidden or 2048, out=2048, depth=3 if opts.imagenet else 2, last_bn=True)

    def ssl_forward(self, x1: Tensor, x2: Tensor, d1: Tensor | None, d2: Tensor | None) -> dict[str, Tensor]:
        y1, y2 = self.backbone(x1), self.backbone(x2)
        z1, z2 = self.projector(y1, d1), self.projector(y2, d2)
        p1, p2 = self.predictor(z1), self.predictor(z2)
        with fp32(p1):
            loss = (negative_cosine(p1.float(), z2.float()) + negative_cosine(p2.float(), z1.float())) / 2
        return {"loss": loss, "y1": y1, "y2": y2, "z1": z1, "z2": z2}

    def param_groups(self) -> list[dict]:
        pred = {id(p) for p in self.predictor.parameters()}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in pred]
        return [{"params": rest, "lr_scale": 1.0},
                {"params": list(self.predictor.parameters()), "lr_scale": 1.0, "fixed_lr": True}]
