"""The downstream sets beyond the paper's table: ImageNet-100, Stanford Dogs, and the landmark
regressions (``landmarks.py``). ``EXTRA_FAMILIES`` joins ``downstream.FAMILIES``.
"""
from __future__ import annotations

import os

import torch
from torch.utils.data import Dataset, random_split

from .errors import DataError
from .folders import ImageNet100
from .landmarks import landmark_splits

IMAGENET100_SEED = 42


def imagenet100_split_sizes(n: int) -> list[int]:
    """The published [int(0.9 n), int(0.1 n)] train / val sizes. Where those do not add up to ``n``
    (126,689 images, the usual ImageNet-100 copy) random_split refuses them, so the published code
    stops there; train then takes the remainder, which leaves the split unchanged where it does add up."""
    n_val = int(n * 0.1)
    return [n - n_val, n_val]


def _imagenet100(name, root, tf, ttf, dl):
    """90 / 10 % of ImageNet-100's train split (random_split, seed 42) as train / val; its val split as test."""
    if dl.get("download"):
        raise DataError("--download: torchvision cannot fetch --dataset imagenet100; give root/train and root/val "
                        "in --datadir")
    full = ImageNet100(root, "train", ttf)
    gen = torch.Generator().manual_seed(IMAGENET100_SEED)
    train, val = random_split(full, imagenet100_split_sizes(len(full)), generator=gen)
    return train, val, ImageNet100(root, "val", tf)


def _dog(name, root, tf, ttf, dl):
    """Stanford Dogs: the shipped train / val index lists over ImageFolder(root/train); test root/test."""
    # imported at call time: that module imports this one to register it
    from .downstream import _folder, fixed_split
    if dl.get("download"):
        raise DataError("--download: torchvision cannot fetch --dataset dog; give root/train/<breed>/ and "
                        "root/test/<breed>/ in --datadir")
    layout = "root/train/<breed>/ (the 12,000 training images) and root/test/<breed>/"
    train, _ = fixed_split(_folder(os.path.join(root, "train"), root, ttf, layout), name, root)
    _, val = fixed_split(_folder(os.path.join(root, "train"), root, tf, layout), name, root)
    return train, val, _folder(os.path.join(root, "test"), root, tf, layout)


EXTRA_FAMILIES = {"imagenet100": _imagenet100, "dog": _dog, "celeba": landmark_splits, "300w": landmark_splits,
                  "lspose": landmark_splits}


def features_to_extract(*splits: Dataset | None) -> list[int]:
    """For each split, the index of the first split holding the same dataset object (CelebA's val and
    test, LSP's train, val, test and refit set), so that its features are extracted once."""
    base = [getattr(d, "_wrapped", d) for d in splits]
    return [next(j for j in range(len(base)) if base[j] is b) for b in base]
