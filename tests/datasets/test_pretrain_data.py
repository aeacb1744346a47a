"""Pretraining datasets load from tiny copies in the real on-disk formats; bad roots fail clearly."""
import os
import shutil

import pytest
import torch

from datasets import DataError, build_pretrain_data, make_colordigits
from datasets.folders import imagenet100_classes
from datasets.pretrain import check_pretrain_data, every_nth_per_class
from tests.data_formats import write_cifar, write_imagenet100, write_jpeg, write_stl10


def test_colordigits_pretrain_data_monitors_the_digit():
    d, (images, labels) = build_pretrain_data("colordigits", None), make_colordigits("test")
    assert torch.equal(d.knn_test.images, images) and torch.equal(d.knn_test.labels, labels["digit"])
    assert len(d.train.images) + len(images) == 1797


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_loads_into_uint8_tensors(tmp_path, monkeypatch, kind):
    write_cifar(str(tmp_path), monkeypatch, kind, n_train=50, n_test=20)
    check_pretrain_data(kind, str(tmp_path))
    d = build_pretrain_data(kind, str(tmp_path))
    assert d.in_memory and d.train.images.shape == (50, 3, 32, 32) and len(d.knn_test) == 20


@pytest.mark.parametrize("name", ["stl10", "stl10_rot", "stl10_sol"])
def test_stl10_uses_train_plus_unlabeled(tmp_path, monkeypatch, name):
    write_stl10(str(tmp_path), monkeypatch)
    d = build_pretrain_data(name, str(tmp_path))
    assert d.train.images.shape == (70, 3, 96, 96)
    assert len(d.knn_train) == 30 and d.knn_train.labels.max() == 9 and len(d.knn_test) == 20


def test_imagenet100_keeps_only_listed_classes(tmp_path):
    write_imagenet100(str(tmp_path), per_class=1, extra_classes=2)
    d = build_pretrain_data("imagenet100", str(tmp_path))
    assert len(d.train) == 100 and len(d.knn_test) == 100
    wnids = imagenet100_classes()
    assert d.train.classes == wnids
    for path, label in d.train.samples:  # label = line number of the sample's class in the list
        assert os.path.basename(os.path.dirname(path)) == wnids[label]
    assert not any("n9999999" in p for p, _ in d.train.samples)
    x, _ = d.knn_test[5]
    assert x.shape == (3, 224, 224)
    assert d.knn_train.samples is d.train.samples and d.knn_train[0][0].shape == (3, 224, 224)
    assert d.train.transform is None and d.train[0][0].size == (40, 32)  # PIL, cropped later by the views


def _paths(subset):
    return {subset.dataset.samples[i][0] for i in subset.indices}


def test_folder_with_and_without_labels(tmp_path):
    for c in ("cat", "dog"):
        for i in range(12):
            write_jpeg(str(tmp_path / "lab" / c / f"{i:02d}.jpg"), (20, 20), i)
        write_jpeg(str(tmp_path / "single" / c / "a.jpg"), (20, 20), 0)
    write_jpeg(str(tmp_path / "flat" / "deep" / "x" / "a.png"), (20, 20), 1)
    write_jpeg(str(tmp_path / "flat" / "b.jpg"), (20, 20), 2)
    lab = build_pretrain_data("folder", str(tmp_path / "lab"))
    assert sorted(lab.train.classes) == ["cat", "dog"] and len(lab.train) == 24
    # No k-NN query is in the memory bank (it would find itself): every 10th image of each class is a query.
    queries, bank = _paths(lab.knn_test), _paths(lab.knn_train)
    assert sorted(os.path.relpath(p, tmp_path / "lab") for p in queries) == [
        "cat/00.jpg", "cat/10.jpg", "dog/00.jpg", "dog/10.jpg"]
    assert not queries & bank and len(bank) == 20
    assert lab.knn_train.dataset.samples is lab.train.samples  # one listing of the folder, two transforms
    assert lab.train.transform is None and lab.knn_train[0][0].shape == (3, 224, 224)
    assert lab.knn_test[0][0].shape == (3, 224, 224)
    assert build_pretrain_data("folder", str(tmp_path / "single")).knn_train is None
    flat = build_pretrain_data("folder", str(tmp_path / "flat"))
    assert flat.knn_train is None and len(flat.train) == 2 and flat.train[0][1] == -1
    (tmp_path / "lab" / "empty").mkdir()  # a class folder without images keeps the others' labels
    assert build_pretrain_data("folder", str(tmp_path / "lab")).train.classes == ["cat", "dog", "empty"]


def test_folder_with_train_and_val_splits(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for c in ("cat", "dog"):
            for i in range(n):
                write_jpeg(str(tmp_path / "data" / split / c / f"{i}.jpg"), (20, 20), i)
    d = build_pretrain_data("folder", str(tmp_path / "data"))
    assert d.train.classes == ["cat", "dog"] and len(d.train) == 6  # the views come from train/ only
    assert all("/train/" in p for p, _ in d.train.samples)
    assert len(d.knn_train) == 6 and len(d.knn_test) == 4 and all("/val/" in p for p, _ in d.knn_test.samples)
    assert d.knn_train.samples is d.train.samples and d.train.transform is None
    write_jpeg(str(tmp_path / "data" / "val" / "owl" / "0.jpg"), (20, 20), 0)
    with pytest.raises(DataError, match=r"train/ and val/ must hold the same class folders \(or give --datadir "
                                        r".*data/train to train without the val/ k-NN queries\)"):
        check_pretrain_data("folder", str(tmp_path / "data"))  # before anything is built


def test_every_nth_image_of_each_class_is_a_query():
    bank, queries = every_nth_per_class([0, 1, 0, 0, 1, 1, 0], n=2)
    assert queries == [0, 1, 3, 5] and bank == [2, 4, 6]  # class 0 at 0, 2, 3, 6; class 1 at 1, 4, 5


@pytest.mark.parametrize("dataset,setup,msg", [
    ("cifar10", None, "no such directory"),
    ("cifar10", "empty", "CIFAR-10 not found.*--download"),
    ("stl10", "empty", "STL-10 not found.*--download"),
    ("imagenet100", "empty", "train: no such directory"),
    ("imagenet100", "partial", "99 of 100 missing"),
    ("imagenet100", "one-empty", r"train: class folder n\w+ holds no images \(1 of the 100 are empty"),
    ("folder", "empty", "no images found"),
    ("mnist", "empty", "--dataset must be one of"),
])
def test_missing_or_malformed_data_gets_one_line_error(tmp_path, dataset, setup, msg):
    root = tmp_path / "data"
    if setup:
        root.mkdir()
    if setup == "partial":
        (root / "train" / imagenet100_classes()[0]).mkdir(parents=True)
        (root / "val").mkdir()
    if setup == "one-empty":  # torchvision's ImageFolder would fail later, in the training process
        write_imagenet100(str(root), extra_classes=0)
        shutil.rmtree(root / "train" / imagenet100_classes()[7])
        (root / "train" / imagenet100_classes()[7] / "sub").mkdir(parents=True)
    with pytest.raises(DataError, match=msg) as e:
        check_pretrain_data(dataset, str(root))
    assert "\n" not in str(e.value) and (dataset == "mnist" or str(root) in str(e.value))


def test_corrupt_cifar_reports_path_and_download(tmp_path, monkeypatch):
    write_cifar(str(tmp_path), monkeypatch)
    with open(os.path.join(tmp_path, "cifar-10-batches-py", "data_batch_1"), "ab") as f:
        f.write(b"junk")
    with pytest.raises(DataError, match="corrupted.*--download"):
        build_pretrain_data("cifar10", str(tmp_path))


def test_a_download_without_network_is_one_line_naming_the_flag(tmp_path, no_network):
    with pytest.raises(DataError, match=r"^--download: could not fetch CIFAR-10 into --datadir .*dl "
                                        r"\(no network\); fetch it where") as e:
        build_pretrain_data("cifar10", str(tmp_path / "dl"), download=True)
    assert "\n" not in str(e.value)
