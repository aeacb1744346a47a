"""Image-folder datasets: ImageNet-100 (fixed class list) and any image tree."""
from __future__ import annotations

import copy
import os
from pathlib import Path

from torchvision.datasets import DatasetFolder, ImageFolder
from torchvision.datasets.vision import StandardTransform
from torchvision.datasets.folder import IMG_EXTENSIONS

from .errors import DataError, read_rgb

SPLITS_DIR = Path(__file__).resolve().parent / "splits"


def imagenet100_classes() -> list[str]:
    """The 100 WordNet ids of ImageNet-100; label = line number."""
    return (SPLITS_DIR / "imagenet100.txt").read_text().split()


class ImageNet100(ImageFolder):
    """``root/<split>/<wnid>/*.JPEG`` keeping only the ImageNet-100 classes (a full ImageNet works too)."""

    def __init__(self, root: str, split: str = "train", transform=None):
        self.split_dir = os.path.join(root, split)
        super().__init__(self.split_dir, transform=transform, loader=read_rgb)

    @staticmethod
    def check(directory: str) -> list[str]:
        """The class list, after checking that ``directory`` has a folder for each class."""
        if not os.path.isdir(directory):
            raise DataError(f"{directory}: no such directory (expected the ImageNet layout <split>/<wnid>/*.JPEG)")
        wnids = imagenet100_classes()
        missing = [w for w in wnids if not os.path.isdir(os.path.join(directory, w))]
        if missing:
            raise DataError(f"{directory}: expected a folder per ImageNet-100 class (<wnid>/*.JPEG); "
                            f"{len(missing)} of 100 missing, e.g. {missing[0]}")
        empty = [w for w in wnids if not _has_image(os.path.join(directory, w))]
        if empty:
            raise DataError(f"{directory}: class folder {empty[0]} holds no images ({len(empty)} of the 100 "
                            "are empty; an incomplete copy?)")
        return wnids

    def find_classes(self, directory: str) -> tuple[list[str], dict[str, int]]:
        wnids = self.check(directory)
        return wnids, {w: i for i, w in enumerate(wnids)}


def _has_image(folder: str) -> bool:
    """Whether ``folder`` or a folder below it holds an image file. Reads entries lazily and stops at
    the first image: on an ImageNet class folder that is its first entry, not a listing of 1300."""
    stack = [folder]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS):
                    return True
                if e.is_dir():
                    stack.append(e.path)
    return False


class UnlabeledFolder(DatasetFolder):
    """Every image below ``root`` (any depth); label -1. Used by ``--dataset folder`` without classes."""

    def __init__(self, root: str, transform=None):
        self.root_dir = root
        super().__init__(root, loader=read_rgb, extensions=IMG_EXTENSIONS, transform=transform)

    def find_classes(self, directory):
        return [""], {"": -1}

    @staticmethod
    def make_dataset(directory, class_to_idx=None, extensions=None, is_valid_file=None, allow_empty=False):
        files = sorted(str(p) for p in Path(directory).rglob("*") if p.suffix.lower() in IMG_EXTENSIONS)
        if not files:
            raise DataError(f"{directory}: no images found (expected files ending in {', '.join(IMG_EXTENSIONS)})")
        return [(f, -1) for f in files]


def folder_classes(root: str) -> list[str]:
    """The classes ``image_folder`` reads ``root`` with, found without listing every file (the presence
    check runs it before the run lists the tree): the sub-folders' names, sorted as ImageFolder has
    them, when the images lie below sub-folders only; else [""], unlabelled. No image: DataError."""
    if not os.path.isdir(root):
        raise DataError(f"--datadir {root}: not a directory (expected an image tree)")
    with os.scandir(root) as it:
        entries = list(it)
    subdirs = sorted(e.name for e in entries if e.is_dir())
    top_images = any(e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS) for e in entries)
    if subdirs and not top_images and any(_has_image(os.path.join(root, d)) for d in subdirs):
        return subdirs
    if not top_images:  # and none below
        raise DataError(f"{root}: no images found (expected files ending in {', '.join(IMG_EXTENSIONS)})")
    return [""]


def image_folder(root: str, transform=None):
    """``--dataset folder``: class sub-folders give labels (an empty one is a class without images); a
    tree with images beside its sub-folders, or none in any of them, is read unlabelled."""
    if folder_classes(root) != [""]:
        return ImageFolder(root, transform=transform, loader=read_rgb, allow_empty=True)
    return UnlabeledFolder(root, transform=transform)


def with_transform(ds: DatasetFolder, transform) -> DatasetFolder:
    """``ds``'s file list with another transform, without scanning its folders again (a full
    ImageNet tree takes seconds to list)."""
    out = copy.copy(ds)
    out.transform, out.transforms = transform, StandardTransform(transform, ds.target_transform)
    return out
