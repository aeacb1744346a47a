"""Augmentations that return the views *and* the parameters they sampled, and their encodings."""
from .crop import crop_pil_box, resized_crop_batch, sample_box_pairs, sample_crop_boxes
from .descriptor import (AUGSELF_KEYS, AUGSELF_PIECES, DESCRIPTOR_DIMS, augself_targets, build_descriptor, check_keys,
                         descriptor_dim, descriptor_layout)
from .functional import BLUR_IMPLS, SATURATION_IMPLS
from .params import ViewParams
from .pipeline import VIEW_GRAPHS, AugConfig, ViewAugment, ViewDraws, compiled, config_for_dataset

__all__ = [
    "AUGSELF_KEYS", "AUGSELF_PIECES", "BLUR_IMPLS", "DESCRIPTOR_DIMS", "SATURATION_IMPLS", "VIEW_GRAPHS", "AugConfig", "ViewAugment",
    "ViewDraws", "ViewParams", "augself_targets", "build_descriptor", "check_keys", "compiled", "config_for_dataset",
    "crop_pil_box", "descriptor_dim", "descriptor_layout", "resized_crop_batch", "sample_box_pairs",
    "sample_crop_boxes",
]
