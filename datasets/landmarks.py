"""Landmark-regression datasets of the transfer evaluation: CelebA (5 facial landmarks), 300-W (68),
Leeds Sports Pose (14 joints); a sample's target is its flattened (x, y) coordinates.

The coordinates follow the image through the evaluation transform (shorter side resized, centre
crop): ``crop_coords`` maps a point of the w x h source into the out_w x out_h crop. The published
protocol's details are kept, each marked where it is applied:
- CelebA: aligned images as they are; the mapped coordinates are truncated to integers; the test
  split is the ``valid`` partition (as val is).
- 300-W: the image is cut to the landmarks' bounding square first; the target is L2-normalised; the
  last image of the sorted list is left out; 30/30/40 % train / val / test from numpy seed 0.
- LSP: the image is cut to its central square first; 60 % train from numpy seed 0, and train, val,
  test and the refit set are all that part.
"""
from __future__ import annotations

import glob
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as FT
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import datasets as tvd

from .errors import DataError, read_rgb

CELEBA_FILES = ("list_eval_partition.txt", "identity_CelebA.txt", "list_bbox_celeba.txt",
                "list_landmarks_align_celeba.txt", "list_attr_celeba.txt")
CELEBA_LAYOUT = f"root/celeba/ with img_align_celeba/ and {', '.join(CELEBA_FILES)}"
FACES_300W_LAYOUT = "root/01_Indoor/ and root/02_Outdoor/ with *.png images and their *.pts landmark files"
LSP_LAYOUT = "root/images/*.jpg and root/joints.mat (joints of shape 3 x 14 x N)"


def crop_coords(points: Tensor, w: int, h: int, out_w: int, out_h: int) -> Tensor:
    """(x, y) rows of points in a w x h image, moved into that image's centre square (side min(w, h))
    scaled to out_w x out_h: where they land after Resize(shorter side) + CenterCrop."""
    m = min(w, h)
    x = (points[:, 0] - (w - m) / 2) / m * out_w
    y = (points[:, 1] - (h - m) / 2) / m * out_h
    return torch.stack([x, y], 1)


def shuffled_indices(n: int, seed: int = 0) -> np.ndarray:
    """``arange(n)`` shuffled by numpy's legacy generator seeded with ``seed`` (the published splits
    call np.random.seed then np.random.shuffle; a private RandomState draws the same order)."""
    idx = np.arange(n)
    np.random.RandomState(seed).shuffle(idx)
    return idx


def split_300w(n: int) -> dict[str, np.ndarray]:
    """The 30 / 30 / 40 % train / valid / test partition of 300-W's ``n`` images."""
    idx, sizes = shuffled_indices(n), [0.3, 0.3, 0.4]
    a, b = int(n * sizes[0]), int(n * sum(sizes[:2]))
    return {"train": idx[:a], "valid": idx[a:b], "test": idx[b:]}


def split_lsp(n: int) -> dict[str, np.ndarray]:
    """The 60 / 40 % train / test partition of LSP's ``n`` images."""
    idx = shuffled_indices(n)
    return {"train": idx[:int(n * 0.6)], "test": idx[int(n * 0.6):]}


class CelebALandmarks(tvd.CelebA):
    """torchvision's CelebA with its ``landmarks`` (aligned) target, mapped into the transformed image."""

    def __init__(self, root: str, split: str, transform=None):
        try:
            super().__init__(root, split=split, target_type="landmarks", transform=transform)
        except DataError:
            raise
        except (ValueError, IndexError, RuntimeError) as e:  # a non-integer field, a short line
            raise DataError(f"--datadir {root}: cannot parse the CelebA lists ({e}); expected {CELEBA_LAYOUT}") \
                from None

    def _check_integrity(self) -> bool:
        """The files' presence (the published loader skips the md5 check); a missing one is named."""
        base = os.path.join(self.root, self.base_folder)
        for f in (*CELEBA_FILES, "img_align_celeba"):
            if not os.path.exists(os.path.join(base, f)):
                raise DataError(f"--datadir {self.root}: missing {os.path.join(base, f)} (expected {CELEBA_LAYOUT})")
        return True

    def __getitem__(self, i: int):
        img = read_rgb(os.path.join(self.root, self.base_folder, "img_align_celeba", self.filename[i]))
        w, h = img.size
        x = self.transform(img) if self.transform else FT.to_tensor(img)
        xy = crop_coords(self.landmarks_align[i].view(-1, 2).float(), w, h, x.shape[-1], x.shape[-2])
        return x, xy.flatten().to(torch.int64).float()  # the published targets are truncated to integers


class Faces300W(Dataset):
    """300-W (indoor + outdoor): the face cut to its landmarks' bounding square, 68 normalised points."""

    def __init__(self, root: str, split: str, transform=None):
        for d in ("01_Indoor", "02_Outdoor"):
            if not os.path.isdir(os.path.join(root, d)):
                raise DataError(f"--datadir {root}: missing {os.path.join(root, d)} (expected {FACES_300W_LAYOUT})")
        images = sorted(f for d in ("01_Indoor", "02_Outdoor") for f in glob.glob(os.path.join(root, d, "*.png")))
        points = sorted(f for d in ("01_Indoor", "02_Outdoor") for f in glob.glob(os.path.join(root, d, "*.pts")))
        if len(images) < 2 or len(points) != len(images):
            raise DataError(f"--datadir {root}: {len(images)} .png images and {len(points)} .pts files; expected "
                            f"one .pts per image (layout {FACES_300W_LAYOUT})")
        images = images[:-1]  # the published loader leaves the last image out
        self.samples = [(images[i], points[i]) for i in split_300w(len(images))[split]]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, pts = self.samples[i]
        xy = read_pts(pts)
        x1, y1 = xy[:, 0].min().item(), xy[:, 1].min().item()
        side = max(math.ceil(xy[:, 0].max().item() - x1), math.ceil(xy[:, 1].max().item() - y1))
        img = FT.crop(read_rgb(path), top=y1, left=x1, height=side, width=side)
        x = self.transform(img) if self.transform else FT.to_tensor(img)
        xy = crop_coords(xy - torch.tensor([x1, y1]), side, side, x.shape[-1], x.shape[-2])
        return x, F.normalize(xy.flatten(), dim=0)


def read_pts(path: str) -> Tensor:
    """The (x, y) points of a .pts file (3 header lines, the points, a closing brace), float32."""
    with open(path) as f:
        lines = f.readlines()[3:-1]
    try:
        return torch.tensor([tuple(float(v) for v in ln.split()) for ln in lines]).view(-1, 2)
    except (ValueError, RuntimeError):
        raise DataError(f"{path}: cannot parse the landmarks (expected 'version', 'n_points' and '{{' lines, "
                        "then one 'x y' line per point, then '}')") from None


class LeedsSportsPose(Dataset):
    """LSP: the image cut to its central square, the 14 joints' (x, y) (visibility flags dropped)."""

    def __init__(self, root: str, split: str, transform=None):
        from scipy.io import loadmat
        from scipy.io.matlab import MatReadError
        mat, folder = os.path.join(root, "joints.mat"), os.path.join(root, "images")
        for p in (folder, mat):
            if not os.path.exists(p):
                raise DataError(f"--datadir {root}: missing {p} (expected {LSP_LAYOUT})")
        images = sorted(glob.glob(os.path.join(folder, "*.jpg")))
        try:
            joints = np.asarray(loadmat(mat)["joints"], dtype=np.float64)
        except (ValueError, KeyError, OSError, MatReadError) as e:
            raise DataError(f"{mat}: cannot read its 'joints' array ({e}); expected {LSP_LAYOUT}") from None
        if joints.ndim != 3 or joints.shape[:2] != (3, 14) or joints.shape[2] != len(images) or not images:
            raise DataError(f"{mat}: joints of shape {joints.shape} for {len(images)} images in {folder}; "
                            f"expected {LSP_LAYOUT}")
        joints = joints.transpose(2, 1, 0)  # N x 14 x (x, y, visible)
        self.samples = [(images[i], joints[i]) for i in split_lsp(len(images))[split]]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, joints = self.samples[i]
        img = read_rgb(path)
        w, h = img.size
        m = min(w, h)
        left, top = int((w - m) / 2), int((h - m) / 2)
        img = FT.crop(img, top=top, left=left, height=m, width=m)
        x = self.transform(img) if self.transform else FT.to_tensor(img)
        xy = torch.from_numpy(joints[:, :2] - np.array([left, top]))
        return x, crop_coords(xy, m, m, x.shape[-1], x.shape[-2]).flatten().float()


def landmark_splits(name: str, root: str, tf, ttf, dl) -> tuple[Dataset, ...]:
    """celeba, 300w, lspose: (train, val, test), and for lspose its refit set, as published."""
    if dl.get("download"):
        raise DataError(f"--download: torchvision cannot fetch --dataset {name}; give its files in --datadir")
    if name == "celeba":
        valid = CelebALandmarks(root, "valid", tf)
        return CelebALandmarks(root, "train", ttf), valid, valid  # the published test split is the valid partition
    if name == "300w":
        return Faces300W(root, "train", ttf), Faces300W(root, "valid", tf), Faces300W(root, "test", tf)
    if name == "lspose":  # as published: every split is the 60 % training part
        train = LeedsSportsPose(root, "train", ttf)
        same = train if ttf is tf else LeedsSportsPose(root, "train", tf)
        return train, same, same, train  # refit on the training part alone (upstream's trainval)
    raise DataError(f"--dataset {name}: not a landmark dataset (celeba, 300w, lspose)")
