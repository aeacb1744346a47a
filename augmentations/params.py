"""The per-view parameter record: every random draw that produced a view, batched."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import Tensor


@dataclass
class ViewParams:
    """Parameters sampled for a batch of B views; every field has leading dimension B.

    Attributes:
        box: [B, 4] crop box (top, left, height, width) in source pixels.
        src_size: [B, 2] source image size (height, width) in pixels.
        flip: [B] bool, horizontally flipped (after the crop).
        jitter: [B] bool, colour jitter applied.
        jitter_factors: [B, 4] sampled (brightness, contrast, saturation, hue) factors,
            recorded even where jitter was not applied.
        jitter_order: [B, 4] order in which the four ops ran (0=b, 1=c, 2=s, 3=h).
        color_diff: [B, 3] mean RGB before jitter minus after jitter (0 if not jittered).
        gray: [B] bool, converted to grayscale.
        blur_sigma: [B] Gaussian blur sigma in pixels, 0 if not blurred.
        solarized: [B] bool; sol_threshold: [B] threshold used (1.0 where not solarized).
        rot_k: [B] number of counter-clockwise 90-degree rotations (0 where not rotated).
    """

    box: Tensor
    src_size: Tensor
    flip: Tensor
    jitter: Tensor
    jitter_factors: Tensor
    jitter_order: Tensor
    color_diff: Tensor
    gray: Tensor
    blur_sigma: Tensor
    solarized: Tensor
    sol_threshold: Tensor
    rot_k: Tensor

    @classmethod
    def identity(cls, box: Tensor, src_size: Tensor) -> "ViewParams":
        """A record with no augmentation besides the given crops."""
        b, dev = box.shape[0], box.device
        zeros = torch.zeros(b, device=dev)
        false = torch.zeros(b, dtype=torch.bool, device=dev)
        return cls(
            box=box.float(), src_size=src_size.float(), flip=false.clone(), jitter=false.clone(),
            jitter_factors=torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev).repeat(b, 1),
            jitter_order=torch.arange(4, device=dev).repeat(b, 1), color_diff=torch.zeros(b, 3, device=dev),
            gray=false.clone(), blur_sigma=zeros.clone(), solarized=false.clone(),
            sol_threshold=torch.ones(b, device=dev), rot_k=torch.zeros(b, dtype=torch.long, device=dev),
        )

    def drawn(self) -> dict[str, Tensor]:
        """The post-crop draws, as ``ViewAugment.apply`` takes them to replay a view (cloned, so the
        replay may edit them and fill ``color_diff`` without touching this record)."""
        return {f.name: getattr(self, f.name).clone() for f in fields(self)
                if f.name not in ("box", "src_size", "color_diff")}

    def to(self, device: torch.device | str) -> "ViewParams":
        """Every field moved to ``device``."""
        return ViewParams(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __getitem__(self, idx) -> "ViewParams":
        return ViewParams(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def __len__(self) -> int:
        return self.box.shape[0]

    @staticmethod
    def cat(records: list["ViewParams"]) -> "ViewParams":
        """The records of consecutive batches as one record, field by field, in their order."""
        return ViewParams(**{f.name: torch.cat([getattr(r, f.name) for r in records]) for f in fields(ViewParams)})
