"""Pretraining datasets (``--dataset``): images for the two views, plus labelled splits for k-NN.

Small datasets (CIFAR, STL10, colordigits) come back as uint8 tensors, to be held on the training
device and augmented there in batches; JPEG folders (imagenet100, folder) come back as PIL
datasets, cropped in loader workers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset
from torchvision import datasets as tvd
from torchvision import transforms as T

from .colordigits import make_colordigits
from .errors import DataError, from_torchvision
from .folders import ImageNet100, folder_classes, image_folder, with_transform

IN_MEMORY = ("cifar10", "cifar100", "stl10", "stl10_rot", "stl10_sol", "colordigits")
FROM_FILES = ("imagenet100", "folder")
PRETRAIN_DATASETS = IN_MEMORY + FROM_FILES
_TV_LAYOUT = {
    "cifar10": ("CIFAR-10", "cifar-10-batches-py/"),
    "cifar100": ("CIFAR-100", "cifar-100-python/"),
    "stl10": ("STL-10", "stl10_binary/"),
}


@dataclass
class TensorImages:
    """uint8 images [N, 3, H, W] with integer labels [N] (-1 = unlabelled)."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return self.images.shape[0]


@dataclass
class PretrainData:
    """A pretraining dataset: in memory (``TensorImages``) or a folder of files read by a loader."""

    train: TensorImages | Dataset  # images for the two views
    knn_train: TensorImages | Dataset | None  # labelled splits for the k-NN monitor (None: no labels)
    knn_test: TensorImages | Dataset | None

    @property
    def in_memory(self) -> bool:
        """Whether the images are held as one uint8 tensor (and views are made from it on the device)."""
        return isinstance(self.train, TensorImages)


def _hwc(data: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(data)).permute(0, 3, 1, 2).contiguous()


def _cifar(name: str, root: str, download: bool, train: bool) -> TensorImages:
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    ds = from_torchvision(lambda: cls(root, download=download, train=train), root, *_TV_LAYOUT[name])
    return TensorImages(_hwc(ds.data), torch.tensor(ds.targets, dtype=torch.long))


def _stl10(root: str, download: bool, split: str) -> TensorImages:
    ds = from_torchvision(lambda: tvd.STL10(root, download=download, split=split), root, *_TV_LAYOUT["stl10"])
    return TensorImages(torch.from_numpy(ds.data).contiguous(), torch.from_numpy(ds.labels).long())


TEN_CROP_SIZE = 224  # the crops of ``eval_transform(..., ten_crop=True)``: for models pretrained at 224 px


def eval_transform(pretrain_data: str, ten_crop: bool = False) -> T.Compose:
    """Frozen-feature transform for a model pretrained on ``pretrain_data``.

    Shorter side resized to the pretraining resolution (bicubic), centre crop, the pretraining
    normalisation; 32 px data is not resized in effect (32 px images stay as they are).
    ``ten_crop``: Resize(256) + TenCrop(224), stacked [10, 3, 224, 224] (cub200 / flowers N-shot).
    """
    from augmentations import config_for_dataset
    cfg = config_for_dataset(pretrain_data)
    norm = T.Compose([T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
    if ten_crop:
        return T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.TenCrop(TEN_CROP_SIZE),
                          T.Lambda(lambda crops: torch.stack([norm(c) for c in crops]))])
    return T.Compose([T.Resize(cfg.size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(cfg.size), norm])


_TV_FILES = {
    "cifar10": ["cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch"],
    "cifar100": ["cifar-100-python/train", "cifar-100-python/test"],
    "stl10": [f"stl10_binary/{f}" for f in ("train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin",
                                            "unlabeled_X.bin")],
}


def check_pretrain_data(dataset: str, datadir: str | None, download: bool = False) -> None:
    """Cheap presence check of ``--datadir`` (files, folders), without reading the images."""
    if dataset not in PRETRAIN_DATASETS:
        raise DataError(f"--dataset must be one of {PRETRAIN_DATASETS}, got {dataset!r}")
    if dataset == "colordigits":
        return
    kind = "stl10" if dataset.startswith("stl10") else dataset
    if not datadir:
        fetch = " (or that --download fills)" if kind in _TV_FILES else ""
        raise DataError(f"--dataset {dataset} needs --datadir, the folder that holds it{fetch}")
    if download:
        if kind in _TV_FILES:
            return  # torchvision fetches the files into --datadir (and checks them)
        raise DataError(f"--download: torchvision cannot fetch --dataset {dataset}; give the images in --datadir")
    if not os.path.isdir(datadir):
        raise DataError(f"--datadir {datadir}: no such directory")
    if kind in _TV_FILES:
        missing = [f for f in _TV_FILES[kind] if not os.path.isfile(os.path.join(datadir, f))]
        if missing:
            name, layout = _TV_LAYOUT[kind]
            raise DataError(f"--datadir {datadir}: {name} not found (missing {missing[0]}; expected {layout} in "
                            "torchvision's format); --download fetches it where a network exists")
    elif dataset == "imagenet100":
        for split in ("train", "val"):
            ImageNet100.check(os.path.join(datadir, split))
    else:
        classes = [folder_classes(root) for root in split_layout(datadir) or (datadir,)]
        if len(classes) == 2 and classes[0] != classes[1]:
            raise DataError(f"--datadir {datadir}: train/ and val/ must hold the same class folders (or give "
                            f"--datadir {os.path.join(datadir, 'train')} to train without the val/ k-NN queries)")


def build_pretrain_data(dataset: str, datadir: str | None, download: bool = False) -> PretrainData:
    """Load ``--dataset`` from ``--datadir``; raises DataError with a one-line message if absent."""
    check_pretrain_data(dataset, datadir, download)
    if dataset == "colordigits":
        (tr, tr_y), (te, te_y) = make_colordigits("train"), make_colordigits("test")  # k-NN on the content
        return PretrainData(TensorImages(tr, tr_y["digit"]), TensorImages(tr, tr_y["digit"]), TensorImages(te, te_y["digit"]))
    if dataset in ("cifar10", "cifar100"):
        tr = _cifar(dataset, datadir, download, True)
        return PretrainData(tr, tr, _cifar(dataset, datadir, download, False))
    if dataset.startswith("stl10"):
        unl = _stl10(datadir, download, "train+unlabeled")
        return PretrainData(unl, _stl10(datadir, download, "train"), _stl10(datadir, download, "test"))
    if dataset == "imagenet100":
        tf = eval_transform("imagenet100")
        train = ImageNet100(datadir, "train")
        return PretrainData(train, with_transform(train, tf), ImageNet100(datadir, "val", tf))
    return _folder(datadir)


def split_layout(datadir: str) -> tuple[str, str] | None:
    """(root/train, root/val) when ``--dataset folder`` points at an ImageNet-style split layout."""
    train, val = os.path.join(datadir, "train"), os.path.join(datadir, "val")
    return (train, val) if os.path.isdir(train) and os.path.isdir(val) else None


def every_nth_per_class(labels: list[int], n: int = 10) -> tuple[list[int], list[int]]:
    """(bank, queries): every n-th image of each class (in file order, starting with the first) is a
    k-NN query, the rest its memory bank."""
    seen: dict[int, int] = {}
    bank, queries = [], []
    for i, y in enumerate(labels):
        (queries if seen.get(y, 0) % n == 0 else bank).append(i)
        seen[y] = seen.get(y, 0) + 1
    return bank, queries


def _folder(datadir: str) -> PretrainData:
    """``--dataset folder``. root/{train,val}/: views from train, k-NN queries from val. One tree with
    class folders: every 10th image of each class is a k-NN query against the others, so that no
    query finds itself. No class folders, or one image per class: no k-NN monitor."""
    tf = eval_transform("imagenet100")
    split = split_layout(datadir)
    if split:
        train = image_folder(split[0])
        if train.classes == [""]:  # val/ has the same classes (check_pretrain_data)
            return PretrainData(train, None, None)
        return PretrainData(train, with_transform(train, tf), image_folder(split[1], tf))
    folder = image_folder(datadir)
    if folder.classes == [""]:
        return PretrainData(folder, None, None)
    knn = with_transform(folder, tf)
    bank, queries = every_nth_per_class(knn.targets)
    if not bank:  # one image per class: nothing to compare the queries with
        return PretrainData(folder, None, None)
    return PretrainData(folder, Subset(knn, bank), Subset(knn, queries))
