"""Unreadable image files fail with one line that names the file, on both JPEG-folder paths."""
import numpy as np
import pytest
import torch
from PIL import Image

from datasets.device_decode import DeviceDecodePrefetcher, JpegBytesTwoBoxes, bytes_loader
from datasets.errors import DataError, read_rgb
from datasets.folders import image_folder
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


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_device_decode_path_names_the_file_it_cannot_decode(tmp_path, how):
    """Garbage fails in the worker that reads the header; a truncated JPEG passes the header and fails
    in the batched decode, which then decodes the batch's files one by one to find it."""
    root = write_class_folders(str(tmp_path / "data"), ["a", "b"], per_class=3, size=(40, 30))
    bad = corrupt(str(tmp_path / "data" / "a" / "2.jpg"), how)
    ds = image_folder(root)
    loader = bytes_loader(ds.samples, batch_size=6, seed=0, num_workers=0, size=16)
    with pytest.raises(DataError, match=f"^{bad}: cannot read this image"):
        list(DeviceDecodePrefetcher(loader, torch.device("cpu")))
    if how == "truncated":  # the header still reads: the worker ships its bytes for the device
        item = JpegBytesTwoBoxes(ds.samples, 0, 16)[(0, ds.samples.index((bad, 0)))]
        assert item[1] is True
