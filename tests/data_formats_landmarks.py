"""Writers of tiny landmark datasets (CelebA, 300-W, LSP) and Stanford Dogs in their published layouts."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from tests.data_formats import _rng, _touch_many, write_jpeg

LANDMARK_COLUMNS = [f"{p}_{c}" for p in ("lefteye", "righteye", "nose", "leftmouth", "rightmouth") for c in "xy"]
CELEBA_ATTRS = ["5_o_Clock_Shadow", "Arched_Eyebrows"] + [f"Attr_{i}" for i in range(38)]  # 40 columns


def write_celeba(root: str, partitions=(0, 0, 0, 0, 1, 1, 1, 2), size=(30, 36)) -> str:
    """root/celeba/ with img_align_celeba/<id>.jpg (w x h = ``size``) and the five text lists, as
    distributed: space-aligned columns, a count line and a header line above bbox, landmarks, attr."""
    base = os.path.join(root, "celeba")
    r = _rng(3)
    names = [f"{i + 1:06d}.jpg" for i in range(len(partitions))]
    for i, n in enumerate(names):
        write_jpeg(os.path.join(base, "img_align_celeba", n), size, seed=50 + i)
    marks = r.integers(2, min(size) - 2, (len(names), 10))
    rows = {"list_eval_partition.txt": [f"{n} {p}" for n, p in zip(names, partitions)],
            "identity_CelebA.txt": [f"{n} {100 + i}" for i, n in enumerate(names)],
            "list_bbox_celeba.txt": [str(len(names)), "image_id x_1 y_1 width height"]
            + [f"{n}    95  71 226 313" for n in names],
            "list_landmarks_align_celeba.txt": [str(len(names)), " ".join(LANDMARK_COLUMNS)]
            + [n + "".join(f" {v:4d}" for v in m) for n, m in zip(names, marks)],
            "list_attr_celeba.txt": [str(len(names)), " ".join(CELEBA_ATTRS)]
            + [n + "".join(f" {v:2d}" for v in r.choice([-1, 1], 40)) for n in names]}
    for f, lines in rows.items():
        with open(os.path.join(base, f), "w") as fh:
            fh.write("\n".join(lines) + "\n")
    return root


def pts_text(points: np.ndarray) -> str:
    """A .pts file as 300-W ships it."""
    body = "".join(f"{x:.3f} {y:.3f}\n" for x, y in points)
    return f"version: 1\nn_points:  {len(points)}\n{{\n{body}}}\n"


def write_300w(root: str, per_folder: int = 6, size=(40, 34)) -> str:
    """root/01_Indoor/indoor_NNN.{png,pts} and root/02_Outdoor/outdoor_NNN.{png,pts}, 68 points each."""
    r = _rng(4)
    for folder, stem in (("01_Indoor", "indoor"), ("02_Outdoor", "outdoor")):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        for i in range(per_folder):
            path = os.path.join(root, folder, f"{stem}_{i + 1:03d}")
            arr = r.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(arr).save(path + ".png")
            pts = np.stack([r.uniform(3, size[0] - 9, 68), r.uniform(2, size[1] - 5, 68)], 1)
            with open(path + ".pts", "w") as f:
                f.write(pts_text(pts))
    return root


def write_lsp(root: str, n: int = 10, sizes=((30, 44), (46, 32))) -> str:
    """root/images/imNNNN.jpg (portrait and landscape) and root/joints.mat: 'joints' of 3 x 14 x n
    (x, y, visibility), in pixels of each image."""
    from scipy.io import savemat
    r = _rng(5)
    joints = np.zeros((3, 14, n))
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        write_jpeg(os.path.join(root, "images", f"im{i + 1:04d}.jpg"), (w, h), seed=70 + i)
        joints[0, :, i], joints[1, :, i] = r.uniform(0, w, 14), r.uniform(0, h, 14)
        joints[2, :, i] = r.integers(0, 2, 14)
    savemat(os.path.join(root, "joints.mat"), {"joints": joints})
    return root


def write_dog(root: str) -> str:
    """root/train/<breed>/ with Stanford Dogs' 12,000 training images (100 per breed, placeholders but
    the first two readable) and one test image per breed in root/test/<breed>/."""
    for c in range(120):
        breed = f"n02{c:06d}-breed{c}"
        _touch_many(os.path.join(root, "train", breed), [f"{breed}_{i}.jpg" for i in range(100)],
                    real=2 if c == 0 else 0)
        write_jpeg(os.path.join(root, "test", breed, "t.jpg"), (24, 20), c)
    return root
