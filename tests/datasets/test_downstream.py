"""Every downstream dataset loads from a tiny copy in its real on-disk format, with the
published split logic (seeded random_split or fixed index lists)."""
import json
import os
import re

import pytest
import torch
from torch.utils.data import random_split

from datasets import DataError
from datasets.catalog import METRICS, NUM_CLASSES
from datasets.downstream import FAMILIES, SEEDED, build_downstream, few_shot_pool, seeded_split
from datasets.folders import SPLITS_DIR
from datasets.pretrain import eval_transform
from tests import data_formats as W

TF = eval_transform("cifar10")  # 32 px: cheap


def _check(s, sizes):
    assert (len(s.train), len(s.val), len(s.test)) == sizes
    x, y = s.train[0]
    assert x.shape == (3, 32, 32) and 0 <= y < s.num_classes
    x, y = s.test[0]
    assert x.shape == (3, 32, 32)


@pytest.mark.parametrize("name,n", [("cifar10", 50000), ("food101", 75750), ("pets", 3680), ("cars", 8144),
                                    ("mit67", 5360), ("stl10", 5000), ("cifar100", 50000)])
def test_seeded_split_equals_published_partition(name, n):
    n_train, n_val, seed = SEEDED[name]
    assert n_train + n_val == n
    ds = list(range(n))
    tr, va = seeded_split(ds, name)
    ref_tr, ref_va = random_split(ds, [n_train, n_val], generator=torch.Generator().manual_seed(seed))
    assert tr.indices == ref_tr.indices and va.indices == ref_va.indices


def test_seeded_split_of_a_small_copy_keeps_proportion():
    tr, va = seeded_split(list(range(100)), "cifar10")
    assert (len(tr), len(va)) == (90, 10)


def test_every_dataset_on_disk_has_a_loader():
    assert set(FAMILIES) == {n for n in NUM_CLASSES if not n.startswith("colordigits")}


def test_table_metrics():
    assert {k for k, v in METRICS.items() if v == "class-avg"} == {
        "pets", "flowers", "flowers-5shot", "flowers-10shot", "caltech101", "aircraft"}
    assert NUM_CLASSES["sun397"] == 397 and NUM_CLASSES["colordigits-hue"] == 4


def test_cifar_and_stl10(tmp_path, monkeypatch):
    W.write_cifar(str(tmp_path), monkeypatch, "cifar10", 50, 20)
    _check(build_downstream("cifar10", str(tmp_path), TF), (45, 5, 20))
    W.write_stl10(str(tmp_path), monkeypatch, n_train=30, n_test=20)
    _check(build_downstream("stl10", str(tmp_path), TF), (27, 3, 20))


def test_torchvision_file_layouts(tmp_path, monkeypatch):
    _check(build_downstream("food101", W.write_food101(str(tmp_path / "f")), TF), (5, 1, 6))
    _check(build_downstream("pets", W.write_pets(str(tmp_path / "p")), TF), (5, 1, 6))
    _check(build_downstream("flowers", W.write_flowers102(str(tmp_path / "fl"), monkeypatch), TF), (4, 4, 4))
    _check(build_downstream("aircraft", W.write_aircraft(str(tmp_path / "a")), TF), (4, 4, 4))
    _check(build_downstream("dtd", W.write_dtd(str(tmp_path / "d")), TF), (2, 2, 2))
    _check(build_downstream("cars", W.write_cars(str(tmp_path / "c")), TF), (5, 1, 4))


def test_flowers_n_shot_takes_n_per_class(tmp_path, monkeypatch):
    root = W.write_flowers102(str(tmp_path), monkeypatch, n=60)  # 20 training images: 7 / 7 / 6 per class
    s = build_downstream("flowers-5shot", root, TF)
    labels = [s.train.dataset._labels[i] for i in s.train.indices]
    assert sorted(labels) == [0] * 5 + [1] * 5 + [2] * 5
    assert len(s.val) == 20 and len(s.test) == 20 and METRICS["flowers-5shot"] == "class-avg"
    assert build_downstream("flowers-5shot", root, TF).train.indices == s.train.indices  # fixed draw


def test_mit67_folders(tmp_path):
    root = tmp_path / "mit"
    W.write_class_folders(str(root / "train"), ["bar", "kitchen"], 8)
    W.write_class_folders(str(root / "test"), ["bar", "kitchen"], 2)
    _check(build_downstream("mit67", str(root), TF), (14, 2, 4))


@pytest.fixture(scope="module")
def cub_root(tmp_path_factory) -> str:
    """A CUB-200 tree (6194 files, most of them empty placeholders), written once for the module."""
    return W.write_cub200(str(tmp_path_factory.mktemp("cub")))


def test_fixed_index_lists_caltech_sun_cub(tmp_path, cub_root):
    lists = {n: json.loads((SPLITS_DIR / f"{n}.json").read_text()) for n in ("caltech101", "sun397", "cub200")}
    cal = build_downstream("caltech101", W.write_caltech101(str(tmp_path / "cal")), TF)
    assert (len(cal.train), len(cal.val), len(cal.test)) == (2525, 505, 5647)
    assert cal.train.indices == lists["caltech101"]["train"]
    first = lists["caltech101"]["train"].index(0)  # image 0 is a real JPEG of class 0
    assert cal.train[first][1] == 0 and cal.train[first][0].shape == (3, 32, 32)
    sun = build_downstream("sun397", W.write_sun397(str(tmp_path / "sun")), TF)
    assert (len(sun.train), len(sun.val), len(sun.test)) == (15880, 3970, 4)
    assert sun.train.indices == lists["sun397"]["train"] and sun.test[0][1] == 0
    assert sun.refit is None  # its lists cover the training set: train + val is upstream's trainval
    cub = build_downstream("cub200", cub_root, TF)
    assert (len(cub.train), len(cub.val), len(cub.test)) == (4990, 1000, 200)
    assert cub.val.indices == lists["cub200"]["val"] and cub.test[3][1] == 3


def test_unreadable_images_are_named_in_folder_and_sun397_datasets(tmp_path):
    root = tmp_path / "mit"
    W.write_class_folders(str(root / "train"), ["a", "b"], 5)
    W.write_class_folders(str(root / "test"), ["a", "b"], 1)
    bad = W.corrupt(str(root / "test" / "b" / "0.jpg"), "truncated")
    with pytest.raises(DataError, match=f"^{bad}: cannot read this image"):
        build_downstream("mit67", str(root), TF).test[1]
    sun = W.write_sun397(str(tmp_path / "sun"), n_test=1)
    bad = W.corrupt(os.path.join(sun, "SUN397", "a", "classa0", "sun_Testing0.jpg"), "garbage")
    with pytest.raises(DataError, match=f"^{bad}: cannot read this image"):
        build_downstream("sun397", sun, TF).test[0]


def test_download_is_refused_where_torchvision_cannot_fetch_and_creates_a_new_folder_where_it_can(tmp_path,
                                                                                                  no_network):
    with pytest.raises(DataError, match=r"^--download: torchvision cannot fetch --dataset mit67; give its files"):
        build_downstream("mit67", str(tmp_path), TF, download=True)
    new = tmp_path / "new"  # not there yet: the download would create it, so it is no error of its own
    with pytest.raises(DataError, match=rf"^--download: could not fetch cifar10 into --datadir {new} \(no network\)"):
        build_downstream("cifar10", str(new), TF, download=True)
    with pytest.raises(DataError, match=r"no such directory$"):
        build_downstream("cifar10", str(tmp_path / "other"), TF)


def test_ten_crop_train_transform(tmp_path):
    root = tmp_path / "mit"
    W.write_class_folders(str(root / "train"), ["a", "b"], 5, size=(300, 260))
    W.write_class_folders(str(root / "test"), ["a", "b"], 1, size=(300, 260))
    s = build_downstream("mit67", str(root), eval_transform("imagenet100"), eval_transform("imagenet100", True))
    assert s.train[0][0].shape == (10, 3, 224, 224) and s.test[0][0].shape == (3, 224, 224)


def test_colordigits_label_sets_share_images_and_split():
    sets = {k: build_downstream(f"colordigits-{k}", None, TF) for k in ("digit", "hue", "saturation", "flip")}
    d = sets["digit"]
    assert (len(d.train), len(d.val), len(d.test)) == (1294, 144, 359)
    assert [s.num_classes for s in sets.values()] == [10, 4, 3, 2]
    assert all(s.train.indices == d.train.indices for s in sets.values())  # same images, other labels
    assert d.test[0][1] != sets["flip"].test[0][1] or d.test[1][1] != sets["flip"].test[1][1]


def test_few_shot_pools(tmp_path):
    W.write_class_folders(str(tmp_path / "cub" / "train"), ["001.a", "002.b"], 3)
    W.write_class_folders(str(tmp_path / "cub" / "test"), ["001.a", "002.b"], 2)
    assert len(few_shot_pool("cub200", str(tmp_path / "cub"), TF)) == 10
    W.write_class_folders(str(tmp_path / "fc100" / "test"), ["x", "y"], 2)
    assert len(few_shot_pool("fc100", str(tmp_path / "fc100"), TF)) == 4
    W.write_class_folders(str(tmp_path / "plant"), ["leaf_a", "leaf_b", "leaf_c"], 2)
    assert len(few_shot_pool("plant_disease", str(tmp_path / "plant"), TF)) == 6
    for name, layout in (("cub200", "root/train/<class>/ and root/test/<class>/"), ("fc100", "root/test/<class>/"),
                         ("plant_disease", "root/<class>/")):  # each error names its own benchmark's layout
        with pytest.raises(DataError, match=rf"missing .*none.* \(expected {re.escape(layout)}\)$"):
            few_shot_pool(name, str(tmp_path / "none"), TF)
    bad = W.corrupt(str(tmp_path / "cub" / "test" / "002.b" / "1.jpg"), "truncated")
    with pytest.raises(DataError, match=f"^{bad}: cannot read this image"):
        few_shot_pool("cub200", str(tmp_path / "cub"), TF)[9]  # through the ConcatDataset


@pytest.mark.parametrize("name,setup,msg", [
    ("cifar10", "missing", "no such directory"),
    ("cifar10", "empty", "not found or corrupted.*--download"),
    ("flowers", "empty", "not found or corrupted"),
    ("mit67", "empty", "missing .*train"),
    ("mit67", "empty-class", "Found no valid file for the classes kitchen"),
    ("sun397", "empty", "missing .*ClassName.txt"),
    ("imagenet", "empty", "--dataset must be one of"),
])
def test_bad_roots_one_line_errors(tmp_path, name, setup, msg):
    root = tmp_path / "d"
    if setup.startswith("empty"):
        root.mkdir()
    if setup == "empty-class":
        W.write_class_folders(str(root / "train"), ["bar"], 1)
        (root / "train" / "kitchen").mkdir()
    with pytest.raises(DataError, match=msg) as e:
        build_downstream(name, str(root), TF)
    assert "\n" not in str(e.value)


def test_partial_dataset_against_fixed_list_is_refused(tmp_path):
    W.write_cub200(str(tmp_path), partial=True)  # 4000 images: fewer than the list indexes
    with pytest.raises(DataError, match="fixed split indexes image .* expected the complete dataset"):
        build_downstream("cub200", str(tmp_path), TF)


def _upstream_224(path: str, ten_crop: bool):
    """Upstream's 224 px transforms for cub200 / flowers N-shot, written here with torchvision alone."""
    from PIL import Image
    from torchvision import transforms as T
    norm = T.Compose([T.ToTensor(), T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    img = T.Resize(256, interpolation=T.InterpolationMode.BICUBIC)(Image.open(path).convert("RGB"))
    return torch.stack([norm(c) for c in T.TenCrop(224)(img)]) if ten_crop else norm(T.CenterCrop(224)(img))


def test_flowers_n_shot_refits_on_n_per_class_of_train_plus_val_at_upstream_s_224_px_transforms(tmp_path,
                                                                                                monkeypatch):
    from datasets.downstream import ten_crop_transforms
    from datasets.errors import image_path
    root = W.write_flowers102(str(tmp_path), monkeypatch, n=60)  # train / val / test: 20 images each, 7 / 7 / 6
    s = build_downstream("flowers-5shot", root, *ten_crop_transforms("imagenet100"))
    assert (len(s.train), len(s.val), len(s.test), len(s.refit)) == (15, 20, 20, 15)  # not train + val (35)
    both = s.refit.dataset  # the train and val splits, read with the training transform
    labels = both.datasets[0]._labels + both.datasets[1]._labels
    assert sorted(labels[i] for i in s.refit.indices) == [0] * 5 + [1] * 5 + [2] * 5
    assert max(s.refit.indices) >= 20  # drawn from train + val: some come from the val split
    for split, ten_crop in ((s.train, True), (s.refit, True), (s.val, False), (s.test, False)):
        x, _ = split[0]
        torch.testing.assert_close(x, _upstream_224(image_path(split._wrapped, 0), ten_crop), atol=1e-6, rtol=0)
    plain = build_downstream("flowers-5shot", root, TF)  # models below 224 px: one transform for every set
    assert len(plain.refit) == 15 and plain.refit[0][0].shape == (3, 32, 32)


def test_cub200_224_px_val_is_ten_crops_of_the_train_folder_and_refit_is_the_whole_folder(cub_root):
    from datasets.downstream import ten_crop_transforms
    from datasets.errors import image_path
    root = cub_root  # 5994 training images: index 0 and 30 are real JPEGs
    s = build_downstream("cub200", root, *ten_crop_transforms("imagenet100"))
    assert (len(s.train), len(s.val), len(s.test), len(s.refit)) == (4990, 1000, 200, 5994)
    val0 = s.val.indices.index(0)
    for split, i, ten_crop in ((s.val, val0, True), (s.refit, 30, True), (s.test, 0, False)):
        x, _ = split[i]
        torch.testing.assert_close(x, _upstream_224(image_path(split._wrapped, i), ten_crop), atol=1e-6, rtol=0)
    plain = build_downstream("cub200", root, TF)  # below 224 px: still refit on the whole folder, as upstream
    assert len(plain.refit) == 5994 and plain.val[val0][0].shape == (3, 32, 32)


@pytest.mark.parametrize("pretrain,size,mean,std", [
    ("imagenet100", 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ("stl10", 96, (0.43, 0.42, 0.39), (0.27, 0.26, 0.27))])
def test_evaluation_transform_is_upstream_s(pretrain, size, mean, std):
    """C datasets.py:584-598: Resize(size, bicubic) + CenterCrop(size) + the pretraining normalisation."""
    from PIL import Image
    from torchvision import transforms as T
    img = Image.fromarray((torch.rand(70, 50, 3, generator=torch.Generator().manual_seed(0)) * 255).byte().numpy())
    ref = T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(size), T.ToTensor(),
                     T.Normalize(mean, std)])(img)
    torch.testing.assert_close(eval_transform(pretrain)(img), ref, atol=0, rtol=0)
