"""Backbones, the conditioned projector, the SSL frameworks, their losses and AugSelf heads."""
from __future__ import annotations

from .augself import AugSelfHeads
from .backbones import BACKBONES, COMPILE_MODES, build_backbone
from .frameworks import FRAMEWORKS, Framework, FrameworkOptions, Progress, option
from .frameworks.options import flag_name
from .projector import ConditionSpec


def build_framework(framework: str, model: str, cond: ConditionSpec, opts: FrameworkOptions | None = None,
                    augself_weights: dict[str, float] | None = None, image_size: int = 224,
                    torchvision_init: bool = False) -> Framework:
    """Assemble backbone + conditioned projector + framework (+ AugSelf heads)."""
    if framework not in FRAMEWORKS:
        raise ValueError(f"--framework must be one of {sorted(FRAMEWORKS)}, got {framework!r}")
    cls = FRAMEWORKS[framework]
    opts = cls.own_options(opts, lambda name: flag_name(framework, name))  # a bad value named by its flag
    backbone, feat_dim = build_backbone(model, image_size, torchvision_init)
    heads = AugSelfHeads(feat_dim, augself_weights or {})
    return cls(backbone, feat_dim, cond, opts, heads)


__all__ = ["BACKBONES", "COMPILE_MODES", "FRAMEWORKS", "AugSelfHeads", "ConditionSpec", "Framework",
           "FrameworkOptions", "Progress", "build_backbone", "build_framework", "option"]
