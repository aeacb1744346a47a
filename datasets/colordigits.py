"""colordigits: a built-in, offline benchmark where augmentation invariance has a cost.

scikit-learn's bundled 8x8 handwritten digits (no download), upscaled to 32x32, each painted with an
ink of random hue, saturation and value on a dark grey background, and mirrored left-right half of
the time. Every image carries five labels (``LABELS``):

- ``digit``: the content, which self-supervised pretraining should learn;
- ``hue``: the ink's hue in ``NUM_HUES`` bins of 1/NUM_HUES turn, narrower than the recipe's hue
  jitter (+-0.1 turn), so two views of one image routinely straddle several bins;
- ``saturation`` and ``brightness``: the ink's HSV saturation and value in three levels whose ratios
  (about 1.3-1.4) lie inside the jitter's factor range (0.6-1.4);
- ``flip``: whether the digit is mirrored, which the recipe's random horizontal flip also does.

An augmentation-invariant backbone is pushed to forget the last four; the images hold them (a probe
on raw pixels reads each well above chance), so a linear probe per label measures what was kept.
"""
from __future__ import annotations

import colorsys

import numpy as np
import torch
import torch.nn.functional as F

from .catalog import COLORDIGITS_LEVELS, NUM_HUES

SIZE = 32
_SEED = 0  # fixed: the images, their labels and the train/test split never change
TEST_FRACTION = 0.2
LABELS = ("digit", "hue", "saturation", "brightness", "flip")
HUE_RANGE = (0.5, 0.7)  # cyan to blue, in turns: the width of the hue jitter's span (2 x 0.1)
LEVEL_RANGE = (0.4, 1.0)  # saturation and value are drawn uniformly here, then cut into equal levels
BACKGROUND = (0.0, 0.1)  # neutral grey level of the background, a nuisance


def _levels(x: torch.Tensor, lo: float, hi: float, n: int) -> torch.Tensor:
    return ((x - lo) / (hi - lo) * n).long().clamp_(0, n - 1)


def make_colordigits(split: str = "train") -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Return (images uint8 [N, 3, 32, 32], {label name: [N] long}) for ``split`` ('train' or 'test').

    Deterministic: every attribute and the 80/20 split come from one fixed seed.
    """
    if split not in ("train", "test"):
        raise ValueError(f"colordigits split must be 'train' or 'test', got {split!r}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    ink = torch.from_numpy(digits.images.astype(np.float32) / 16.0)[:, None]  # [N, 1, 8, 8] in [0, 1]
    ink = F.interpolate(ink, size=(SIZE, SIZE), mode="bilinear", align_corners=False).clamp(0, 1)
    n = ink.shape[0]
    g = torch.Generator().manual_seed(_SEED)
    hue = HUE_RANGE[0] + (HUE_RANGE[1] - HUE_RANGE[0]) * torch.rand(n, generator=g, dtype=torch.float64)
    sat = LEVEL_RANGE[0] + (LEVEL_RANGE[1] - LEVEL_RANGE[0]) * torch.rand(n, generator=g, dtype=torch.float64)
    val = LEVEL_RANGE[0] + (LEVEL_RANGE[1] - LEVEL_RANGE[0]) * torch.rand(n, generator=g, dtype=torch.float64)
    flip = torch.rand(n, generator=g) < 0.5
    grey = BACKGROUND[0] + (BACKGROUND[1] - BACKGROUND[0]) * torch.rand(n, 1, 1, 1, generator=g)
    order = torch.randperm(n, generator=g)
    ink = torch.where(flip.view(-1, 1, 1, 1), ink.flip(-1), ink)
    rgb = torch.tensor([colorsys.hsv_to_rgb(h, s, v) for h, s, v in zip(hue.tolist(), sat.tolist(), val.tolist())],
                       dtype=torch.float32)[:, :, None, None]
    img = grey * (1 - ink) + rgb * ink
    labels = {"digit": torch.from_numpy(digits.target).long(), "hue": _levels(hue, *HUE_RANGE, NUM_HUES),
              "saturation": _levels(sat, *LEVEL_RANGE, COLORDIGITS_LEVELS),
              "brightness": _levels(val, *LEVEL_RANGE, COLORDIGITS_LEVELS), "flip": flip.long()}
    n_test = round(TEST_FRACTION * n)
    idx = order[n_test:] if split == "train" else order[:n_test]
    images = (img[idx] * 255).round().to(torch.uint8)
    return images, {k: v[idx] for k, v in labels.items()}
