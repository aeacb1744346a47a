"""ImageNet-100, Stanford Dogs and the landmark regressions as downstream sets: the published splits,
computed here the published way, the targets, and the one-line errors for bad trees."""
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import random_split
from torchvision import transforms as T

import tests.data_formats_landmarks as WL
from datasets.catalog import METRICS, NUM_CLASSES
from datasets.downstream import build_downstream
from datasets.downstream_extra import features_to_extract, imagenet100_split_sizes
from datasets.errors import DataError
from datasets.folders import SPLITS_DIR, imagenet100_classes
from tests.data_formats import write_imagenet100

OUT = 10  # the evaluation transform's side here
TF = T.Compose([T.Resize(OUT, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(OUT), T.ToTensor()])


def published_shuffle(n: int) -> np.ndarray:
    """The published splits' draw: the global numpy generator seeded with 0, then shuffled in place."""
    state = np.random.get_state()
    np.random.seed(0)
    idx = np.arange(n)
    np.random.shuffle(idx)
    np.random.set_state(state)
    return idx


def test_catalog_entries():
    assert {k: (NUM_CLASSES[k], METRICS[k]) for k in ("imagenet100", "dog", "celeba", "300w", "lspose")} == {
        "imagenet100": (100, "top1"), "dog": (120, "top1"), "celeba": (10, "r2"), "300w": (136, "r2"),
        "lspose": (28, "r2")}


def test_imagenet100_split_is_random_split_seed_42_of_train(tmp_path):
    root = write_imagenet100(str(tmp_path), per_class=1, val_per_class=1, size=(12, 10))
    s = build_downstream("imagenet100", root, TF)
    ref_train, ref_val = random_split(range(100), [int(100 * 0.9), int(100 * 0.1)],
                                      generator=torch.Generator().manual_seed(42))
    assert s.train.indices == list(ref_train) and s.val.indices == list(ref_val)
    assert len(s.test) == 100 and s.num_classes == 100
    wnids = imagenet100_classes()  # label = line of the class list; the extra folder is left out
    assert [wnids[y] for _, y in s.test.samples] == sorted(wnids)
    assert s.train[0][0].shape == (3, OUT, OUT)


def test_imagenet100_sizes_where_the_published_ones_do_not_add_up():
    assert imagenet100_split_sizes(1000) == [int(1000 * 0.9), int(1000 * 0.1)]
    assert imagenet100_split_sizes(126689) == [114021, 12668]  # int(0.9 n) + int(0.1 n) = n - 1 there


def test_dog_uses_the_shipped_lists(tmp_path):
    s = build_downstream("dog", WL.write_dog(str(tmp_path)), TF)
    lists = json.loads((SPLITS_DIR / "dog.json").read_text())
    assert s.train.indices == lists["train"] and s.val.indices == lists["val"]
    assert (len(s.train), len(s.val), len(s.test)) == (10800, 1200, 120)
    assert s.test[5][1] == 5 and s.train.dataset[1][1] == 0


def upstream_celeba_target(marks, w, h, new_w, new_h):
    """The published loop: int landmarks, float arithmetic assigned back into an int tensor."""
    target = torch.tensor(marks)
    new = torch.zeros_like(target)
    m = min(w, h)
    for i in range(len(target) // 2):
        new[i * 2] = ((target[i * 2] - ((w - m) / 2)) / m) * new_w
        new[i * 2 + 1] = ((target[i * 2 + 1] - ((h - m) / 2)) / m) * new_h
    return new.float()


def test_celeba_landmarks_in_the_crop_and_valid_as_test(tmp_path):
    root = WL.write_celeba(str(tmp_path))
    s = build_downstream("celeba", root, TF)
    assert (len(s.train), len(s.val), len(s.test)) == (4, 3, 3)
    assert features_to_extract(s.train, s.val, s.test, s.refit) == [0, 1, 1, 3] and s.refit is None
    lines = Path(root, "celeba", "list_landmarks_align_celeba.txt").read_text().split("\n")[2:]
    marks = [int(v) for v in lines[5].split()[1:]]  # image 6 is the second of the valid partition
    x, y = s.test[1]
    assert x.shape == (3, OUT, OUT) and y.dtype == torch.float32
    assert torch.equal(y, upstream_celeba_target(marks, 30, 36, OUT, OUT))


def test_300w_split_crop_and_normalised_points(tmp_path):
    root = WL.write_300w(str(tmp_path), per_folder=6)
    s = build_downstream("300w", root, TF)
    n = 11  # 12 images, the last left out
    idx = published_shuffle(n)
    a, b = int(n * 0.3), int(n * (0.3 + 0.3))
    images = sorted(f"{root}/{d}/{p}_{i:03d}.png" for d, p in (("01_Indoor", "indoor"), ("02_Outdoor", "outdoor"))
                    for i in range(1, 7))[:-1]
    for split, part in ((s.train, idx[:a]), (s.val, idx[a:b]), (s.test, idx[b:])):
        assert [p for p, _ in split.samples] == [images[i] for i in part]
    path, pts_file = s.test.samples[0]
    lines = Path(pts_file).read_text().splitlines()[3:-1]
    kp = torch.tensor([(float(u), float(v)) for u, v in (ln.split() for ln in lines)])
    x1, y1 = kp[:, 0].min().item(), kp[:, 1].min().item()
    side = max(math.ceil(kp[:, 0].max().item() - x1), math.ceil(kp[:, 1].max().item() - y1))
    crop = Image.open(path).convert("RGB").crop((round(x1), round(y1), round(x1) + side, round(y1) + side))
    ref = torch.tensor([((u - x1) / side * OUT, (v - y1) / side * OUT) for u, v in kp.tolist()]).flatten()
    x, target = s.test[0]
    assert torch.allclose(x, TF(crop)) and target.shape == (136,)
    assert torch.allclose(target, ref / ref.norm(), atol=1e-6) and target.norm().item() == pytest.approx(1, abs=1e-6)


def test_lsp_every_split_is_the_training_part(tmp_path):
    from scipy.io import loadmat
    root = WL.write_lsp(str(tmp_path), n=10)
    s = build_downstream("lspose", root, TF)
    assert features_to_extract(s.train, s.val, s.test, s.refit) == [0, 0, 0, 0]  # refit: the training part too
    part = published_shuffle(10)[:6]
    assert [p for p, _ in s.train.samples] == [f"{root}/images/im{i + 1:04d}.jpg" for i in part]
    joints = loadmat(os.path.join(root, "joints.mat"))["joints"]
    for k in (0, 1):  # a portrait and a landscape image
        i = part[k]
        w, h = Image.open(s.train.samples[k][0]).size
        m = min(w, h)
        left, top = (w - m) // 2, (h - m) // 2
        ref = [((joints[0, j, i] - left) / m * OUT, (joints[1, j, i] - top) / m * OUT) for j in range(14)]
        x, y = s.test[k]
        assert x.shape == (3, OUT, OUT) and torch.allclose(y, torch.tensor(ref, dtype=torch.float32).flatten())


def test_upstream_300w_normalisation_equals_the_reference():
    from datasets.landmarks import crop_coords
    pts = torch.tensor([[1.0, 2.0], [5.5, 3.25]])
    got = F.normalize(crop_coords(pts, 8, 8, 4, 4).flatten(), dim=0)
    ref = np.array([0.5, 1.0, 2.75, 1.625])
    assert np.allclose(got.numpy(), ref / np.linalg.norm(ref))


def _break(tmp_path, what):
    if what.startswith("celeba"):
        root = WL.write_celeba(str(tmp_path))
        f = os.path.join(root, "celeba", "list_landmarks_align_celeba.txt")
        if what == "celeba-missing":
            os.remove(f)
        else:
            Path(f).write_text(Path(f).read_text() + "000009.jpg 1 2 x\n")
        return "celeba", root
    if what.startswith("300w"):
        root = WL.write_300w(str(tmp_path), per_folder=2)
        if what == "300w-folder":
            os.rename(os.path.join(root, "02_Outdoor"), os.path.join(root, "outdoor"))
        elif what == "300w-pts":
            os.remove(os.path.join(root, "01_Indoor", "indoor_001.pts"))
        return "300w", root
    root = WL.write_lsp(str(tmp_path), n=4)
    if what == "lsp-mat":
        os.remove(os.path.join(root, "joints.mat"))
    elif what == "lsp-garbage":
        Path(root, "joints.mat").write_bytes(b"<html>404</html>")
    else:
        from scipy.io import savemat
        savemat(os.path.join(root, "joints.mat"), {"joints": np.zeros((14, 3, 4))})  # LSP-extended's layout
    return "lspose", root


@pytest.mark.parametrize("what,msg", [
    ("celeba-missing", r"--datadir .*: missing .*celeba/list_landmarks_align_celeba.txt \(expected root/celeba/"),
    ("celeba-bad", r"--datadir .*: cannot parse the CelebA lists"),
    ("300w-folder", r"--datadir .*: missing .*02_Outdoor \(expected root/01_Indoor/ and root/02_Outdoor/"),
    ("300w-pts", r"--datadir .*: 4 .png images and 3 .pts files; expected one .pts per image"),
    ("lsp-mat", r"--datadir .*: missing .*joints.mat \(expected root/images/\*.jpg and root/joints.mat"),
    ("lsp-garbage", r"joints.mat: cannot read its 'joints' array \(.*\); expected root/images/"),
    ("lsp-shape", r"joints.mat: joints of shape \(14, 3, 4\) for 4 images in .*; expected .*3 x 14 x N"),
])
def test_bad_landmark_trees_one_line_errors(tmp_path, what, msg):
    name, root = _break(tmp_path, what)
    with pytest.raises(DataError, match=msg) as e:
        build_downstream(name, root, TF)
    assert "\n" not in str(e.value)


def test_malformed_pts_file_is_named_when_read(tmp_path):
    root = WL.write_300w(str(tmp_path), per_folder=2)
    s = build_downstream("300w", root, TF)
    Path(s.test.samples[0][1]).write_text("version: 1\nn_points: 68\n{\n1.0 oops\n}\n")
    with pytest.raises(DataError, match=r"\.pts: cannot parse the landmarks"):
        s.test[0]


@pytest.mark.parametrize("name,msg", [
    ("imagenet100", r"no such directory \(expected the ImageNet layout"),
    ("dog", r"--datadir .*: missing .*train \(expected root/train/<breed>/"),
])
def test_missing_folders_one_line_errors(tmp_path, name, msg):
    with pytest.raises(DataError, match=msg):
        build_downstream(name, str(tmp_path), TF)


@pytest.mark.parametrize("name", ["imagenet100", "dog", "celeba", "300w", "lspose"])
def test_download_is_refused(tmp_path, name):
    with pytest.raises(DataError, match=rf"--download: torchvision cannot fetch --dataset {name}"):
        build_downstream(name, str(tmp_path), TF, download=True)


@pytest.mark.parametrize("size,point", [((30, 36), (16.5, 22.5)), ((36, 30), (22.5, 16.5))])
def test_crop_coords_land_on_the_point_in_the_transformed_image(size, point):
    """A bright 3 x 3 block centred on ``point`` (pixel-edge coordinates) in a portrait or landscape
    image: after Resize + CenterCrop its brightness centroid is where crop_coords maps the point."""
    from datasets.landmarks import crop_coords
    arr = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    x0, y0 = int(point[0] - 1.5), int(point[1] - 1.5)
    arr[y0:y0 + 3, x0:x0 + 3] = 255
    out = TF(Image.fromarray(arr)).mean(0).clamp(min=0)
    centre = torch.arange(OUT) + 0.5
    seen = ((out.sum(0) * centre).sum() / out.sum(), (out.sum(1) * centre).sum() / out.sum())
    mapped = crop_coords(torch.tensor([point]), *size, OUT, OUT)[0]
    assert torch.allclose(torch.stack(seen), mapped, atol=0.1), (seen, mapped)
