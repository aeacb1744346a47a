"""Downstream datasets for linear evaluation, with the published train / val / test partitions.

Seeded splits use ``random_split`` with ``torch.Generator().manual_seed(seed)`` and the published
sizes, so the partitions equal upstream's; fixed index lists ship in ``datasets/splits/``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch
from torch.utils.data import ConcatDataset, Dataset, Subset, random_split
from torchvision import datasets as tvd

from .catalog import DOWNSTREAM_DATASETS, NUM_CLASSES
from .colordigits import make_colordigits
from .downstream_extra import EXTRA_FAMILIES
from .errors import DataError, NamesUnreadable, from_torchvision
from .folders import SPLITS_DIR

# name -> (published train size, val size, seed) for seeded splits of the training set
SEEDED = {"cifar10": (45000, 5000, 43), "cifar100": (45000, 5000, 44), "food101": (68175, 7575, 42),
          "mit67": (4690, 670, 51), "pets": (2940, 740, 49), "cars": (7000, 1144, 51), "stl10": (4500, 500, 50),
          "colordigits": (1294, 144, 0)}  # every colordigits-<label> set: one split of the same images


@dataclass
class Splits:
    """A downstream dataset's train / val / test splits (val picks the weight decay, test is reported)."""

    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    refit: Dataset | None = None  # what the chosen weight decay is refit on; None: train + val


def seeded_split(ds: Dataset, name: str) -> tuple[Subset, Subset]:
    """The published train/val partition; a smaller copy is split in the same proportion."""
    n_train, n_val, seed = SEEDED[name]
    n = len(ds)
    if n != n_train + n_val:
        n_val = max(1, round(n * n_val / (n_train + n_val)))
        n_train = n - n_val
    train, val = random_split(ds, [n_train, n_val], generator=torch.Generator().manual_seed(seed))
    return train, val


def n_shot(ds: Dataset, labels: list[int], n: int, seed: int = 0) -> Subset:
    """``n`` images per class, drawn with a fixed seed (Flowers N-shot training sets)."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).tolist()
    taken: dict[int, int] = {}
    keep = []
    for i in order:
        if taken.get(labels[i], 0) < n:
            taken[labels[i]] = taken.get(labels[i], 0) + 1
            keep.append(i)
    return Subset(ds, sorted(keep))


def fixed_split(ds: Dataset, name: str, root: str) -> tuple[Subset, Subset]:
    """``ds`` cut into the shipped fixed train / val index lists of ``name`` (``datasets/splits/<name>.json``), the
    same on every machine; a dataset too small for them is a DataError naming ``--datadir``."""
    lists = json.loads((SPLITS_DIR / f"{name}.json").read_text())
    top = max(max(lists["train"]), max(lists["val"]))
    if top >= len(ds):
        raise DataError(f"--datadir {root}: {name} has {len(ds)} images but its fixed split indexes image {top}; "
                        "expected the complete dataset")
    return Subset(ds, lists["train"]), Subset(ds, lists["val"])


class SUN397(Dataset):
    """root/SUN397 with ClassName.txt and the Training_01 / Testing_01 partition lists."""

    def __init__(self, root: str, split: str, transform=None):
        from torchvision.datasets.folder import default_loader
        base = os.path.join(root, "SUN397")
        files = [os.path.join(base, f) for f in ("ClassName.txt", f"{split}_01.txt")]
        for f in files:
            if not os.path.isfile(f):
                raise DataError(f"--datadir {root}: missing {f} (expected root/SUN397/ with ClassName.txt, "
                                "Training_01.txt, Testing_01.txt and the class folders)")
        classes = [c.strip() for c in open(files[0]) if c.strip()]
        index = {c: i for i, c in enumerate(classes)}
        lines = [ln.strip() for ln in open(files[1]) if ln.strip()]
        self.samples = [(base + ln, index[os.path.dirname(ln)]) for ln in lines]
        self.transform, self.loader = transform, default_loader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i):
        path, y = self.samples[i]
        img = self.loader(path)
        return (self.transform(img) if self.transform else img), y


class PILTensorDataset(Dataset):
    """uint8 image tensors served as PIL images through a transform (the built-in colordigits)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform=None):
        self.uint8_images, self.targets, self.transform = images, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        from torchvision.transforms.functional import to_pil_image
        img = to_pil_image(self.uint8_images[i])
        return (self.transform(img) if self.transform else img), int(self.targets[i])


def _folder(path: str, root: str, transform, layout: str = "root/train/<class>/ and root/test/<class>/"):
    if not os.path.isdir(path):
        raise DataError(f"--datadir {root}: missing {path} (expected {layout})")
    try:
        return tvd.ImageFolder(path, transform=transform)
    except FileNotFoundError as e:  # empty tree or empty class folder
        raise DataError(f"--datadir {root}: {path}: {str(e).splitlines()[0]}") from None


def _cifar_stl(name, root, tf, ttf, dl):
    cls = {"cifar10": tvd.CIFAR10, "cifar100": tvd.CIFAR100}.get(name)
    make = (lambda tf, train: cls(root, train=train, transform=tf, **dl)) if cls else \
        (lambda tf, train: tvd.STL10(root, split="train" if train else "test", transform=tf, **dl))
    train, val = seeded_split(from_torchvision(lambda: make(ttf, True), root, name), name)
    return train, val, from_torchvision(lambda: make(tf, False), root, name)


def _train_test_split(name, root, tf, ttf, dl):
    """Food-101, Pets, Cars: an official train(val) split, seeded into train / val, and a test split."""
    cls, tr_split = {"food101": (tvd.Food101, "train"), "pets": (tvd.OxfordIIITPet, "trainval"),
                     "cars": (tvd.StanfordCars, "train")}[name]
    train, val = seeded_split(from_torchvision(lambda: cls(root, split=tr_split, transform=ttf, **dl), root, name),
                              name)
    return train, val, from_torchvision(lambda: cls(root, split="test", transform=tf, **dl), root, name)


N_SHOT_SEEDS = (0, 1)  # the draws of the N-shot train set and of the N-shot refit set


def _flowers_n_shot(name, root, tf, ttf, dl):
    """``flowers-Nshot`` as upstream (C datasets.py:668-719): train is N images per class of the train split;
    val and test are the official splits; the refit set is another N per class, drawn from train + val
    (upstream draws both with Python's unseeded ``random``; here each has a fixed seed). Train and refit
    take ``ttf`` (TenCrop for 224 px models), val and test ``tf``."""
    n = int(name.split("-")[1].removesuffix("shot"))
    def split(s: str, t, **kw):
        return from_torchvision(lambda: tvd.Flowers102(root, split=s, transform=t, **kw), root, name)
    full = split("train", ttf, **dl)
    train = n_shot(full, full._labels, n, N_SHOT_SEEDS[0])
    val_ttf = split("val", ttf)
    refit = n_shot(ConcatDataset([full, val_ttf]), full._labels + val_ttf._labels, n, N_SHOT_SEEDS[1])
    return train, split("val", tf), split("test", tf), refit


def _official_splits(name, root, tf, ttf, dl):
    """Flowers, Aircraft (variants), DTD (partition 1): the official train / val / test splits."""
    make = {"flowers": lambda s, tf: tvd.Flowers102(root, split=s, transform=tf, **dl),
            "aircraft": lambda s, tf: tvd.FGVCAircraft(root, split=s, annotation_level="variant", transform=tf,
                                                       **dl),
            "dtd": lambda s, tf: tvd.DTD(root, split=s, partition=1, transform=tf, **dl)}[name]
    return tuple(from_torchvision(lambda s=s, t=t: make(s, t), root, name)
                 for s, t in (("train", ttf), ("val", tf), ("test", tf)))


def _caltech101(name, root, tf, ttf, dl):
    rgb = lambda t: (lambda img: t(img.convert("RGB")))  # noqa: E731 - some images are grayscale
    full_tr = from_torchvision(lambda: tvd.Caltech101(root, target_type="category", transform=rgb(ttf), **dl),
                               root, name)
    full_te = from_torchvision(lambda: tvd.Caltech101(root, target_type="category", transform=rgb(tf)), root, name)
    lists = json.loads((SPLITS_DIR / "caltech101.json").read_text())
    fixed_split(full_tr, name, root)  # checks the copy against the lists
    return Subset(full_tr, lists["train"]), Subset(full_te, lists["val"]), Subset(full_te, lists["test"])


def _fixed_lists(name, root, tf, ttf, dl):
    """SUN397, CUB-200: train / val are the shipped index lists over the training set; the test set as is.

    CUB-200 as upstream (C datasets.py:739-765): train and val both index the training folder read with
    ``ttf`` (TenCrop for 224 px models, so val holds 10 crops per image too), and the refit set is that
    whole folder (5994 images; the lists hold 5990). SUN397's lists cover its training set, so train + val
    is the refit set there."""
    make = {"sun397": lambda split, t: SUN397(root, {"train": "Training", "test": "Testing"}[split], t),
            "cub200": lambda split, t: _folder(os.path.join(root, split), root, t)}[name]
    full = make("train", ttf)
    train, val = fixed_split(full, name, root)
    if name == "cub200":
        return train, val, make("test", tf), full
    return train, fixed_split(make("train", tf), name, root)[1], make("test", tf)


def _mit67(name, root, tf, ttf, dl):
    train, val = seeded_split(_folder(os.path.join(root, "train"), root, ttf), name)
    return train, val, _folder(os.path.join(root, "test"), root, tf)


NOT_FETCHABLE = ("sun397", "cub200", "mit67")  # read from the published files or lists; no torchvision download
# dataset -> (name, root, transform, train transform, {"download": ...}) -> (train, val, test[, refit set])
FAMILIES = {"cifar10": _cifar_stl, "cifar100": _cifar_stl, "stl10": _cifar_stl, "food101": _train_test_split,
            "pets": _train_test_split, "cars": _train_test_split, "flowers-5shot": _flowers_n_shot,
            "flowers-10shot": _flowers_n_shot, "flowers": _official_splits, "aircraft": _official_splits,
            "dtd": _official_splits, "caltech101": _caltech101, "sun397": _fixed_lists, "cub200": _fixed_lists,
            "mit67": _mit67, **EXTRA_FAMILIES}


def build_downstream(name: str, root: str | None, transform, train_transform=None, download: bool = False) -> Splits:
    """Train / val / test of ``--dataset`` (train set with ``train_transform`` when given)."""
    if name not in NUM_CLASSES:
        raise DataError(f"--dataset must be one of {DOWNSTREAM_DATASETS}, got {name!r}")
    ttf = train_transform or transform
    if name.startswith("colordigits-"):  # one label set of the built-in images: colordigits-<label>
        label = name.removeprefix("colordigits-")
        (tr, tr_y), (te, te_y) = make_colordigits("train"), make_colordigits("test")
        train, val = seeded_split(PILTensorDataset(tr, tr_y[label], ttf), "colordigits")
        return Splits(train, val, PILTensorDataset(te, te_y[label], transform), NUM_CLASSES[name])
    if not root:
        raise DataError(f"--dataset {name} needs --datadir, the folder that holds it")
    if download and name in NOT_FETCHABLE:
        raise DataError(f"--download: torchvision cannot fetch --dataset {name}; give its files in --datadir")
    if not os.path.isdir(root) and not download:  # a download creates it
        raise DataError(f"--datadir {root}: no such directory")
    train, val, test, refit = (*FAMILIES[name](name, root, transform, ttf, {"download": download}), None)[:4]
    return Splits(*(NamesUnreadable(d, name) for d in (train, val, test)), NUM_CLASSES[name],
                  refit=None if refit is None else NamesUnreadable(refit, name))


def ten_crop_transforms(pretrain_data: str) -> tuple:
    """(evaluation, training) transforms of upstream's 224 px protocol for cub200 and flowers N-shot
    (C datasets.py:674-690, 740-756): Resize(256) + CenterCrop(224), and Resize(256) + TenCrop(224)
    stacked [10, 3, 224, 224]; bicubic, with ``pretrain_data``'s normalisation."""
    from torchvision import transforms as T

    from augmentations import config_for_dataset

    from .pretrain import TEN_CROP_SIZE, eval_transform
    cfg = config_for_dataset(pretrain_data)
    centre = T.Compose([T.Resize(256, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(TEN_CROP_SIZE),
                        T.ToTensor(), T.Normalize(cfg.mean, cfg.std)])
    return centre, eval_transform(pretrain_data, ten_crop=True)


def few_shot_pool(name: str, root: str, transform) -> Dataset:
    """All images of a few-shot benchmark: cub200 (train + test), fc100 (test classes), plant_disease."""
    if name == "cub200":
        pool = ConcatDataset([_folder(os.path.join(root, s), root, transform) for s in ("train", "test")])
    elif name == "fc100":
        pool = _folder(os.path.join(root, "test"), root, transform, "root/test/<class>/")
    elif name == "plant_disease":
        pool = _folder(root, root, transform, "root/<class>/")
    else:
        raise DataError(f"--dataset must be one of cub200, fc100, plant_disease, got {name!r}")
    return NamesUnreadable(pool, name)
