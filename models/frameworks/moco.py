"""MoCo v2: InfoNCE against a queue, one direction (q from view 1, k from view 2), EMA keys."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from utils.distributed import gather_no_grad

from ..losses import info_nce
from ..projector import ProjectorSpec
from .base import Framework, Progress, fp32, momentum_copy
from .options import FrameworkOptions, option


class MoCo(Framework):
    @dataclass
    class Options(FrameworkOptions):
        queue: int = option(65536)
        temperature: float = option(0.2)
        momentum: float = option(0.999)
        # upstream enqueues the online queries; "keys" is standard MoCo
        enqueue: str = option("queries", "MoCo v2 queue content: upstream enqueues online queries; standard MoCo "
                              "the keys", choices=("queries", "keys"))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.target_backbone = momentum_copy(self.backbone)
        self.target_projector = momentum_copy(self.projector)
        out = self.projector_spec(self.feat_dim, self.opts).out
        self.register_buffer("queue", F.normalize(torch.randn(self.opts.queue, out), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @staticmethod
    def projector_spec(feat_dim: int, opts: FrameworkOptions) -> ProjectorSpec:
        return ProjectorSpec(hidden=opts.proj_hidden or feat_dim, out=128, depth=2)

    def ssl_forward(self, x1: Tensor, x2: Tensor, d1: Tensor | None, d2: Tensor | None) -> dict[str, Tensor]:
        y1 = self.backbone(x1)
        q = F.normalize(self.projector(y1, d1).float(), dim=1)
        with torch.no_grad():
            # The AugSelf heads see these no-grad momentum features of view 2, as upstream: the online
            # backbone never runs on x2 (no second forward, no x2 in its BN running statistics).
            y2 = self.target_backbone(x2)
            k = F.normalize(self.target_projector(y2, d2).float(), dim=1)
        with fp32(q):
            loss = info_nce(q, k, self.queue.clone().float(), self.opts.temperature)
        if self.training:
            # Upstream enqueues the online queries (a quirk behind --moco-enqueue); MoCo proper, the keys.
            self.enqueue(gather_no_grad((q if self.opts.enqueue == "queries" else k).detach()))
        return {"loss": loss, "y1": y1, "y2": y2, "z1": q, "z2": k}

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write keys at the pointer, wrapping around the end of the queue."""
        size = self.queue.shape[0]  # pointer arithmetic stays on the device: no host sync per step
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % size)

    def on_after_step(self, progress: Progress) -> None:
        self.update_targets(self.opts.momentum)
