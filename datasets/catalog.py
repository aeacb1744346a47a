"""The downstream datasets' names, class counts and metrics: plain data, no torch.

Kept apart from ``downstream.py`` so that light tools (``scripts/collect_results.py``) can order
their columns without loading torch and torchvision, which takes seconds.
"""
from __future__ import annotations

# colordigits' hue bins, 0.05 turn wide: the recipe's hue jitter (+-0.1 turn) carries a colour across
# several of them, so a jitter-invariant backbone is pushed to merge neighbouring bins. Saturation and
# brightness come in COLORDIGITS_LEVELS levels each.
NUM_HUES = 4
COLORDIGITS_LEVELS = 3

# in the paper's column order, then the extra sets
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "food101": 101, "mit67": 67, "pets": 37, "flowers": 102,
               "flowers-5shot": 102, "flowers-10shot": 102,
               "caltech101": 101, "cars": 196, "aircraft": 100, "dtd": 47, "sun397": 397, "stl10": 10,
               "cub200": 200, "colordigits-digit": 10, "colordigits-hue": NUM_HUES,
               "colordigits-saturation": COLORDIGITS_LEVELS, "colordigits-brightness": COLORDIGITS_LEVELS,
               "colordigits-flip": 2, "imagenet100": 100, "dog": 120, "celeba": 10, "300w": 136, "lspose": 28}
# landmark regressions: NUM_CLASSES holds their target's size (2 x the points), the metric is R^2
REGRESSION = ("celeba", "300w", "lspose")
METRICS = {name: "r2" if name in REGRESSION else "class-avg"
           if name.split("-")[0] in ("pets", "flowers", "caltech101", "aircraft") else "top1" for name in NUM_CLASSES}
DOWNSTREAM_DATASETS = tuple(NUM_CLASSES)
