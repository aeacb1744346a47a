"""Writers of tiny datasets in the real on-disk formats the loaders read.

torchvision's CIFAR and STL10 classes verify md5 sums of their files; ``register_md5`` points
those checks at the files written here, so the integrity check itself still runs.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle

import numpy as np
from PIL import Image

from datasets.folders import imagenet100_classes


def _md5(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.md5(f.read()).hexdigest()


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def write_cifar(root: str, monkeypatch, kind: str = "cifar10", n_train: int = 50, n_test: int = 20) -> str:
    """CIFAR pickle batches (5 train batches + test batch + meta) under root/<base_folder>."""
    from torchvision.datasets import CIFAR10, CIFAR100
    cls = CIFAR10 if kind == "cifar10" else CIFAR100
    n_cls = 10 if kind == "cifar10" else 100
    label_key = "labels" if kind == "cifar10" else "fine_labels"
    base = os.path.join(root, cls.base_folder)
    os.makedirs(base, exist_ok=True)
    r = _rng(0)
    names = [n for n, _ in cls.train_list]
    per = [n_train // len(names) + (i < n_train % len(names)) for i in range(len(names))]
    files = list(zip(names, per)) + [(cls.test_list[0][0], n_test)]
    for name, n in files:
        batch = {"data": r.integers(0, 256, (n, 3072), dtype=np.uint8), label_key: r.integers(0, n_cls, n).tolist()}
        with open(os.path.join(base, name), "wb") as f:
            pickle.dump(batch, f)
    with open(os.path.join(base, cls.meta["filename"]), "wb") as f:
        pickle.dump({cls.meta["key"]: [f"class{i}" for i in range(n_cls)]}, f)
    monkeypatch.setattr(cls, "train_list", [[n, _md5(os.path.join(base, n))] for n in names])
    monkeypatch.setattr(cls, "test_list", [[cls.test_list[0][0], _md5(os.path.join(base, cls.test_list[0][0]))]])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": _md5(os.path.join(base, cls.meta["filename"]))})
    return root


def write_stl10(root: str, monkeypatch, n_train: int = 30, n_test: int = 20, n_unlabeled: int = 40) -> str:
    """STL10 binaries (column-major 3x96x96 uint8 images, 1-based uint8 labels)."""
    from torchvision.datasets import STL10
    base = os.path.join(root, STL10.base_folder)
    os.makedirs(base, exist_ok=True)
    r = _rng(1)
    for stem, n, labelled in (("train", n_train, True), ("test", n_test, True), ("unlabeled", n_unlabeled, False)):
        r.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(os.path.join(base, f"{stem}_X.bin"))
        if labelled:
            (np.arange(n) % 10 + 1).astype(np.uint8).tofile(os.path.join(base, f"{stem}_y.bin"))
    with open(os.path.join(base, STL10.class_names_file), "w") as f:
        f.write("\n".join(f"class{i}" for i in range(10)))
    md5 = lambda n: [n, _md5(os.path.join(base, n))]  # noqa: E731
    monkeypatch.setattr(STL10, "train_list", [md5("train_X.bin"), md5("train_y.bin"), md5("unlabeled_X.bin")])
    monkeypatch.setattr(STL10, "test_list", [md5("test_X.bin"), md5("test_y.bin")])
    return root


def write_jpeg(path: str, size: tuple[int, int], seed: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    r = _rng(seed)
    arr = r.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, quality=90)


def jpeg_bytes(arr: np.ndarray, **save) -> bytes:
    """The JPEG file PIL writes for the uint8 array ``arr`` ([H, W, 3] or [H, W]), with ``save``'s options."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", **save)
    return buf.getvalue()


def corrupt(path: str, how: str) -> str:
    """Damage an image file as downloads and disks do: 'truncated' keeps its first half (the header
    reads, the pixels do not), 'garbage' replaces it with bytes no decoder recognises, 'tables'
    drops a JPEG's quantisation tables (the header reads, the file ends as it should, decoding fails),
    'scan' makes its first scan name a component the frame lacks (the header up to that scan is sound),
    'sampling' gives its first component sampling factors no decoder takes (the header reads)."""
    data = open(path, "rb").read()
    damaged = {"truncated": lambda: data[: len(data) // 2], "tables": lambda: without_segment(data, 0xDB),
               "scan": lambda: bad_scan(data), "sampling": lambda: bad_sampling(data),
               "garbage": lambda: b"<html>403 Forbidden</html>"}[how]()
    with open(path, "wb") as f:
        f.write(damaged)
    return path


def bad_scan(jpeg: bytes) -> bytes:
    """``jpeg`` with its first scan's first component selector set to 9, an id no frame here has."""
    out, sos = bytearray(jpeg), jpeg.index(b"\xff\xda")
    out[sos + 5] = 9  # after the marker, the length (2) and the component count (1)
    return bytes(out)


def bad_sampling(jpeg: bytes) -> bytes:
    """``jpeg`` (baseline) with its first component's sampling factors set to 5 x 5, above the
    standard's limit of 4."""
    out, sof = bytearray(jpeg), jpeg.index(b"\xff\xc0")
    out[sof + 11] = 0x55  # after the marker, length (2), precision (1), size (4), count (1) and the id (1)
    return bytes(out)


def without_segment(jpeg: bytes, marker: int) -> bytes:
    """``jpeg`` without its header segments of type ``marker`` (those before the first scan)."""
    out, i = bytearray(jpeg[:2]), 2
    while jpeg[i + 1] != 0xDA:
        end = i + 2 + (jpeg[i + 2] << 8 | jpeg[i + 3])
        if jpeg[i + 1] != marker:
            out += jpeg[i:end]
        i = end
    return bytes(out + jpeg[i:])


def write_imagenet100(root: str, per_class: int = 1, val_per_class: int = 1, size=(40, 32),
                      extra_classes: int = 1) -> str:
    """root/{train,val}/<wnid>/*.JPEG for the 100 classes, plus folders of other classes to ignore."""
    wnids = imagenet100_classes() + [f"n9999999{i}" for i in range(extra_classes)]
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c, w in enumerate(wnids):
            for i in range(n):
                write_jpeg(os.path.join(root, split, w, f"{w}_{i}.JPEG"), size, seed=c * 100 + i)
    return root


def _touch_many(folder: str, names: list[str], real: int = 2, seed: int = 0) -> None:
    """Empty placeholder files (loaders only list them) with the first ``real`` as readable JPEGs."""
    os.makedirs(folder, exist_ok=True)
    for i, n in enumerate(names):
        if i < real:
            write_jpeg(os.path.join(folder, n), (24, 20), seed + i)
        else:
            open(os.path.join(folder, n), "wb").close()


def write_class_folders(root: str, classes: list[str], per_class: int, size=(24, 20), seed: int = 0) -> str:
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_jpeg(os.path.join(root, name, f"{i}.jpg"), size, seed + 1000 * c + i)
    return root


def write_food101(root: str, per_class: int = 2) -> str:
    base = os.path.join(root, "food-101")
    classes = [f"dish{i}" for i in range(3)]
    meta = {}
    for split in ("train", "test"):
        meta[split] = {c: [f"{c}/{split}{i}" for i in range(per_class)] for c in classes}
        for c in classes:
            for i in range(per_class):
                write_jpeg(os.path.join(base, "images", c, f"{split}{i}.jpg"), (24, 20), i)
    os.makedirs(os.path.join(base, "meta"), exist_ok=True)
    for split, m in meta.items():
        with open(os.path.join(base, "meta", f"{split}.json"), "w") as f:
            import json
            json.dump(m, f)
    return root


def write_pets(root: str, per_class: int = 3) -> str:
    base = os.path.join(root, "oxford-iiit-pet")
    os.makedirs(os.path.join(base, "annotations"), exist_ok=True)
    for split in ("trainval", "test"):
        lines = []
        for c, breed in enumerate(("Abyssinian", "beagle")):
            for i in range(per_class):
                name = f"{breed}_{split}{i}"
                write_jpeg(os.path.join(base, "images", f"{name}.jpg"), (24, 20), c * 10 + i)
                lines.append(f"{name} {c + 1} {c + 1} 1")
        with open(os.path.join(base, "annotations", f"{split}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return root


def write_flowers102(root: str, monkeypatch, n: int = 12) -> str:
    from scipy.io import savemat
    from torchvision.datasets import Flowers102
    base = os.path.join(root, "flowers-102")
    for i in range(1, n + 1):
        write_jpeg(os.path.join(base, "jpg", f"image_{i:05d}.jpg"), (24, 20), i)
    # Labels cycle 0, 1, 2 along every third image, so each split holds all three classes.
    savemat(os.path.join(base, "imagelabels.mat"), {"labels": np.array([(i // 3) % 3 + 1 for i in range(n)])})
    ids = np.arange(1, n + 1)
    savemat(os.path.join(base, "setid.mat"), {"trnid": ids[0::3], "valid": ids[1::3], "tstid": ids[2::3]})
    fd = {k: (v[0], _md5(os.path.join(base, v[0])) if k != "image" else v[1])
          for k, v in Flowers102._file_dict.items()}
    monkeypatch.setattr(Flowers102, "_file_dict", fd)
    return root


def write_aircraft(root: str, per_split: int = 4) -> str:
    data = os.path.join(root, "fgvc-aircraft-2013b", "data")
    variants = ["707-320", "A320", "Cessna 172"]
    os.makedirs(data, exist_ok=True)
    with open(os.path.join(data, "variants.txt"), "w") as f:
        f.write("\n".join(variants) + "\n")
    for s, split in enumerate(("train", "val", "test")):
        lines = []
        for i in range(per_split):
            name = f"{s}{i:06d}"
            write_jpeg(os.path.join(data, "images", f"{name}.jpg"), (24, 20), 10 * s + i)
            lines.append(f"{name} {variants[i % 3]}")
        with open(os.path.join(data, f"images_variant_{split}.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return root


def write_dtd(root: str) -> str:
    data = os.path.join(root, "dtd", "dtd")
    os.makedirs(os.path.join(data, "labels"), exist_ok=True)
    for s, split in enumerate(("train", "val", "test")):
        lines = []
        for c in ("banded", "dotted"):
            name = f"{c}_{split}.jpg"
            write_jpeg(os.path.join(data, "images", c, name), (24, 20), s)
            lines.append(f"{c}/{name}")
        with open(os.path.join(data, "labels", f"{split}1.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    return root


def write_cars(root: str, n_train: int = 6, n_test: int = 4) -> str:
    from scipy.io import savemat
    base = os.path.join(root, "stanford_cars")
    os.makedirs(os.path.join(base, "devkit"), exist_ok=True)
    savemat(os.path.join(base, "devkit", "cars_meta.mat"),
            {"class_names": np.array(["AM General Hummer", "Acura RL"], dtype=object)})
    for split, n, mat in (("train", n_train, os.path.join(base, "devkit", "cars_train_annos.mat")),
                          ("test", n_test, os.path.join(base, "cars_test_annos_withlabels.mat"))):
        rec = np.zeros(n, dtype=[("fname", object), ("class", np.uint8)])
        for i in range(n):
            rec[i] = (f"{i:05d}.jpg", i % 2 + 1)
            write_jpeg(os.path.join(base, f"cars_{split}", f"{i:05d}.jpg"), (24, 20), i)
        savemat(mat, {"annotations": rec})
    return root


def write_caltech101(root: str) -> str:
    """8677 images over 101 classes (+ BACKGROUND_Google), as the fixed split lists index them."""
    base = os.path.join(root, "caltech101", "101_ObjectCategories")
    counts = [86] * 100 + [77]  # 8677 in all
    for c in range(101):
        _touch_many(os.path.join(base, f"class{c:03d}"), [f"image_{i + 1:04d}.jpg" for i in range(counts[c])],
                    real=2 if c == 0 else 0)
    os.makedirs(os.path.join(base, "BACKGROUND_Google"), exist_ok=True)
    return root


def write_sun397(root: str, n_train: int = 19850, n_test: int = 4) -> str:
    base = os.path.join(root, "SUN397")
    classes = [f"/{c}/class{c}{i}" for c in "ab" for i in range(2)]
    os.makedirs(base, exist_ok=True)
    with open(os.path.join(base, "ClassName.txt"), "w") as f:
        f.write("\n".join(classes) + "\n")
    for split, n in (("Training", n_train), ("Testing", n_test)):
        lines = [f"{classes[i % 4]}/sun_{split}{i}.jpg" for i in range(n)]
        with open(os.path.join(base, f"{split}_01.txt"), "w") as f:
            f.write("\n".join(lines) + "\n")
    write_jpeg(base + f"{classes[0]}/sun_Testing0.jpg", (24, 20), 0)
    return root


def write_cub200(root: str, partial: bool = False) -> str:
    """5994 training images (or 4000 with ``partial``) in 200 class folders, one test image per class."""
    per = [20] * 200 if partial else [30] * 199 + [5994 - 30 * 199]
    for c in range(200):
        _touch_many(os.path.join(root, "train", f"{c + 1:03d}.bird"), [f"{i}.jpg" for i in range(per[c])],
                    real=1 if c < 2 else 0)
        write_jpeg(os.path.join(root, "test", f"{c + 1:03d}.bird", "t.jpg"), (24, 20), c)
    return root
