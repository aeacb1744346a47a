"""Unreadable image files fail with one line that names the file: both JPEG-folder paths of
pretraining, and every downstream dataset."""
import os

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.device_decode import DeviceDecodePrefetcher, JpegBytesTwoBoxes, bytes_loader
from datasets.errors import DataError, NamesUnreadable, read_rgb
from datasets.folders import image_folder
from datasets.jpeg import read_bytes
from datasets.loaders import TwoCrops
from tests.data_formats import corrupt, write_class_folders, write_jpeg


def test_read_rgb_decodes_like_pil_and_names_a_bad_file(tmp_path):
    good = str(tmp_path / "good.jpg")
    write_jpeg(good, (30, 20), 0)
    img = read_rgb(good)
    assert img.mode == "RGB" and np.array_equal(np.asarray(img), np.asarray(Image.open(good).convert("RGB")))
    for how, reason in (("truncated", "truncated"), ("garbage", "not an image format PIL recognises")):
        bad = str(tmp_path / f"{how}.jpg")
        write_jpeg(bad, (30, 20), 1)
        corrupt(bad, how)
        with pytest.raises(DataError, match=rf"^{bad}: cannot read this image \(.*{reason}.*\); replace the file"):
            read_rgb(bad)

def test_folder_dataset_names_its_unreadable_file(tmp_path):
    root = write_class_folders(str(tmp_path / "data"), ["a", "b"], per_class=2)
    bad = corrupt(str(tmp_path / "data" / "b" / "1.jpg"), "truncated")
    ds = image_folder(root)
    assert ds[0][0].size == (24, 20)  # the others still read
    with pytest.raises(DataError, match=f"^{bad}: cannot read"):
        ds[3]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
@pytest.mark.parametrize("how", ["truncated", "garbage", "tables", "scan"])
def test_device_decode_path_names_the_file_it_cannot_decode(tmp_path, how, device):
    """Each fails in the worker, which reads the header: garbage there; a truncated JPEG (no end
    marker), one missing its quantisation tables (which nvJPEG decodes without a word) and one whose
    scan names a component the frame lacks are sent to the worker's PIL decode, which refuses them
    by name. A JPEG whose header passes these checks yet that no decoder reads is the next test's."""
    root = write_class_folders(str(tmp_path / "data"), ["a", "b"], per_class=3, size=(40, 30))
    bad = corrupt(str(tmp_path / "data" / "a" / "2.jpg"), how)
    ds = image_folder(root)
    loader = bytes_loader(ds.samples, batch_size=6, seed=0, num_workers=0, size=16)
    with pytest.raises(DataError, match=f"^{bad}: cannot read this image"):
        list(DeviceDecodePrefetcher(loader, torch.device(device)))
    item = JpegBytesTwoBoxes(ds.samples, 0, 16)
    key = (0, ds.samples.index((bad, 0)))
    with pytest.raises(DataError, match=f"^{bad}: cannot read this image \\(.*(truncated|recognises|broken data)"):
        item[key]


@pytest.mark.parametrize("how", ["truncated", "garbage", "tables", "scan", "sampling"])
def test_worker_path_names_the_file_it_cannot_decode(tmp_path, how):
    """Garbage fails at the header; the header checks send the truncated, table-less and bad-scan
    files to PIL; a sampling-factor file passes them, libjpeg-turbo refuses it through torchvision,
    and PIL, given it next, refuses it too. Each error names the file."""
    root = write_class_folders(str(tmp_path / "data"), ["a", "b"], per_class=3, size=(40, 30))
    bad = corrupt(str(tmp_path / "data" / "a" / "2.jpg"), how)
    ds = image_folder(root)
    crops = TwoCrops(ds, 16, seed=0)
    assert crops.files and crops[(0, 0)][0].shape == (3, 16, 16)  # the others still read
    with pytest.raises(DataError, match=f"^{bad}: cannot read this image \\(.*(truncated|recognises|broken data)"):
        crops[(0, ds.samples.index((bad, 0)))]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_a_whole_jpeg_no_decoder_reads_is_named_after_the_device_refuses_it(tmp_path, device):
    """Its header reads and its scan is sound, so the worker ships its bytes; the batched decode
    (libjpeg on the CPU, nvJPEG on CUDA) refuses its sampling factors, each file is then decoded
    alone, and PIL, given the file the device refused, refuses it too and names it. The batch's
    other files still decode alone."""
    root = write_class_folders(str(tmp_path / "data"), ["a", "b"], per_class=3, size=(40, 30))
    bad = corrupt(str(tmp_path / "data" / "a" / "2.jpg"), "sampling")
    ds = image_folder(root)
    assert JpegBytesTwoBoxes(ds.samples, 0, 16)[(0, ds.samples.index((bad, 0)))][1] is True  # shipped as bytes
    loader = bytes_loader(ds.samples, batch_size=6, seed=0, num_workers=0, size=16)
    prefetcher = DeviceDecodePrefetcher(loader, torch.device(device))
    with pytest.raises(DataError, match=f"^{bad}: cannot read this image \\(broken data stream"):
        list(prefetcher)
    good = [read_bytes(p) for p, _ in ds.samples if p != bad]
    assert [tuple(prefetcher._decode_one(d, 0).shape) for d in good] == [(3, 30, 40)] * 5


def test_torchvision_downstream_classes_name_their_unreadable_file(tmp_path, monkeypatch):
    """Food-101 and Caltech-101 open their files themselves; the splits name the file through
    Subset and ConcatDataset all the same, and read through to the split's attributes."""
    from datasets.downstream import build_downstream
    from datasets.pretrain import eval_transform
    from tests import data_formats as W
    tf = eval_transform("cifar10")
    food = W.write_food101(str(tmp_path / "food"), per_class=2)
    bad = W.corrupt(os.path.join(food, "food-101", "images", "dish1", "test0.jpg"), "truncated")
    s = build_downstream("food101", food, tf)
    assert s.test[0][0].shape == (3, 32, 32)
    with pytest.raises(DataError, match=f"^{bad}: cannot read this image \\(.+\\); replace the file"):
        s.test[2]  # dish0/test0, dish0/test1, dish1/test0
    cal = build_downstream("caltech101", W.write_caltech101(str(tmp_path / "cal")), tf)
    assert len(cal.train.indices) == 2525  # the Subset's own attribute, read through the wrapper
    empty = next(i for i, j in enumerate(cal.train.indices) if j >= 2)  # images 0 and 1 are real JPEGs
    with pytest.raises(DataError, match=r"^\S+/101_ObjectCategories/class\d{3}/image_\d{4}\.jpg: cannot read"):
        cal.train[empty]


def test_a_dataset_without_files_is_named_by_index():
    class Broken(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            raise OSError("broken data stream when reading image file")
    with pytest.raises(DataError, match=r"^--dataset toy: image 3: cannot read this image \(broken data stream"):
        NamesUnreadable(Broken(), "toy")[3]
