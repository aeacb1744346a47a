"""Pretraining datasets load from tiny copies in the real on-disk formats; bad roots fail clearly."""
import os

import pytest
import torch

from datasets import DataError, build_pretrain_data, make_colordigits
from datasets.folders import imagenet100_classes
from datasets.pretrain import check_pretrain_data
from tests.data_formats import write_cifar, write_imagenet100, write_jpeg, write_stl10


def test_colordigits_is_deterministic_with_two_label_sets():
    a, b = make_colordigits("train"), make_colordigits("train")
    assert torch.equal(a[0], b[0]) and a[0].shape[1:] == (3, 32, 32) and a[0].dtype == torch.uint8
    te = make_colordigits("test")
    assert len(a[0]) + len(te[0]) == 1797 and len(te[0]) == 359
    assert set(a[1].tolist()) == set(range(10)) and set(a[2].tolist()) == set(range(10))
    # The ink's dominant channel follows the colour label: red (0) pixels are red-heavy.
    red = a[0][a[2] == 0].float()
    assert (red[:, 0].mean() > 2 * red[:, 2].mean())


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


def test_folder_with_and_without_labels(tmp_path):
    for c in ("cat", "dog"):
        write_jpeg(str(tmp_path / "lab" / c / "a.jpg"), (20, 20), 0)
    write_jpeg(str(tmp_path / "flat" / "deep" / "x" / "a.png"), (20, 20), 1)
    write_jpeg(str(tmp_path / "flat" / "b.jpg"), (20, 20), 2)
    lab = build_pretrain_data("folder", str(tmp_path / "lab"))
    assert lab.knn_train is not None and sorted(lab.train.classes) == ["cat", "dog"]
    flat = build_pretrain_data("folder", str(tmp_path / "flat"))
    assert flat.knn_train is None and len(flat.train) == 2 and flat.train[0][1] == -1


@pytest.mark.parametrize("dataset,setup,msg", [
    ("cifar10", None, "no such directory"),
    ("cifar10", "empty", "CIFAR-10 not found.*--download"),
    ("stl10", "empty", "STL-10 not found.*--download"),
    ("imagenet100", "empty", "train: no such directory"),
    ("imagenet100", "partial", "99 of 100 missing"),
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
    with pytest.raises(DataError, match=msg) as e:
        check_pretrain_data(dataset, str(root))
    assert "\n" not in str(e.value) and (dataset == "mnist" or str(root) in str(e.value))


def test_corrupt_cifar_reports_path_and_download(tmp_path, monkeypatch):
    write_cifar(str(tmp_path), monkeypatch)
    with open(os.path.join(tmp_path, "cifar-10-batches-py", "data_batch_1"), "ab") as f:
        f.write(b"junk")
    with pytest.raises(DataError, match="corrupted.*--download"):
        build_pretrain_data("cifar10", str(tmp_path))
