"""colordigits: a built-in, offline dataset where colour matters.

scikit-learn's bundled 8x8 handwritten digits (no download), upscaled to 32x32 and painted in one of
ten hues on a dark background. Two label sets: the digit and the colour. Colour is exactly the trait
that colour-jitter invariance washes out, so a backbone trained with a plain SSL objective tends to
lose it, while CASSLE's conditioned projector lets the backbone keep it.
"""
from __future__ import annotations

import colorsys

import numpy as np
import torch
import torch.nn.functional as F

from .catalog import NUM_COLORS

SIZE = 32
_SPLIT_SEED = 0  # fixed: the train/test split never changes
TEST_FRACTION = 0.2


def palette(k: int = NUM_COLORS) -> torch.Tensor:
    """k fully saturated RGB colours with evenly spaced hues, starting at red."""
    return torch.tensor([colorsys.hsv_to_rgb(i / k, 1.0, 1.0) for i in range(k)], dtype=torch.float32)


def make_colordigits(split: str = "train") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return (images uint8 [N, 3, 32, 32], digit labels [N], colour labels [N]) for ``split``.

    Deterministic: colours, brightness and the 80/20 split come from fixed seeds.
    """
    if split not in ("train", "test"):
        raise ValueError(f"colordigits split must be 'train' or 'test', got {split!r}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8] in [0, 1]
    ink = F.interpolate(ink, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    n = ink.shape[0]
    g = torch.Generator().manual_seed(_SPLIT_SEED)
    colour = torch.randint(0, NUM_COLORS, (n,), generator=g)
    brightness = 0.6 + 0.4 * torch.rand(n, generator=g)
    background = 0.05 + 0.1 * torch.rand(n, 3, 1, 1, generator=g)  # dark, slightly tinted
    rgb = palette()[colour][:, :, None, None] * brightness[:, None, None, None]
    img = background * (1 - ink) + rgb * ink
    order = torch.randperm(n, generator=g)
    n_test = int(round(TEST_FRACTION * n))
    idx = order[n_test:] if split == "train" else order[:n_test]
    images = (img[idx] * 255).round().to(torch.uint8)
    return images, torch.from_numpy(digits.target)[idx].long(), colour[idx]
