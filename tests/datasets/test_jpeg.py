"""JPEG files as both decoders see them: the header checks that say whether a file is a plain JPEG,
and the worker's crops: libjpeg-turbo's pixels for a plain JPEG (PIL's decode exactly, PIL's crops
within one level), PIL's exactly for every other file."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

from augmentations import crop_pil_box
from datasets import jpeg
from datasets.folders import image_folder
from datasets.jpeg import (decode, ends_after_scan, first_scan, read_header, scan_in_frame, tables_defined,
                           worker_crops)
from datasets.loaders import TwoCrops
from tests.data_formats import bad_scan, jpeg_bytes, without_segment, write_jpeg

# Crops smaller and larger than the output (upscaled; downscaled with antialiasing), one touching the edges
BOXES = [torch.tensor(b, dtype=torch.float32) for b in ([3, 5, 17, 12], [0, 0, 90, 120], [10, 30, 64, 80])]


def _smooth(h=90, w=120, seed=0) -> np.ndarray:
    """A photo-like image: smooth regions and soft edges, where resampling differences show."""
    small = np.random.default_rng(seed).integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


def _pil_crops(path: str) -> torch.Tensor:
    rgb = Image.open(path).convert("RGB")
    return torch.stack([crop_pil_box(rgb, box, 32) for box in BOXES])


@pytest.mark.parametrize("save", [{}, {"progressive": True}, {"subsampling": 0}, {"quality": 95}])
def test_a_plain_jpeg_decodes_as_pil_and_crops_within_one_level(tmp_path, monkeypatch, save):
    path = str(tmp_path / "a.jpg")
    open(path, "wb").write(jpeg_bytes(_smooth(), **save))
    head = read_header(path)
    assert head.plain and (head.height, head.width) == (90, 120)
    pixels = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(decode(head.data), pixels)  # the same libjpeg-turbo decode
    pil = _pil_crops(path)
    monkeypatch.setattr(jpeg, "crop_pil_box", None)  # PIL's crop must not be what made them
    ours = worker_crops(path, head, BOXES, 32)
    assert ours.shape == (3, 3, 32, 32) and ours.dtype == torch.uint8
    diff = (ours.int() - pil.int()).abs()
    assert diff.max() <= 1 and diff.float().mean() < 0.05, (diff.max(), diff.float().mean())


def test_other_files_are_decoded_and_cropped_by_pil_exactly(tmp_path):
    arr = _smooth()
    files = {"png": lambda p: Image.fromarray(arr).save(p, "PNG"),
             "cmyk": lambda p: Image.fromarray(arr).convert("CMYK").save(p, "JPEG"),
             "gray": lambda p: Image.fromarray(arr[..., 0]).save(p, "JPEG"),
             "rgb-coded": lambda p: Image.fromarray(arr).save(p, "JPEG", keep_rgb=True)}
    for name, write in files.items():
        path = str(tmp_path / f"{name}.img")
        write(path)
        head = read_header(path)
        assert not head.plain and (head.height, head.width) == (90, 120), name
        assert torch.equal(worker_crops(path, head, BOXES, 32), _pil_crops(path)), name


def test_a_plain_jpeg_libjpeg_turbo_refuses_through_torchvision_goes_to_pil(tmp_path, monkeypatch):
    path = str(tmp_path / "a.jpg")
    open(path, "wb").write(jpeg_bytes(_smooth()))

    def refusing(data, device="cpu"):
        raise RuntimeError("decode_jpeg: refused")
    monkeypatch.setattr(jpeg, "decode", refusing)
    assert torch.equal(worker_crops(path, read_header(path), BOXES, 32), _pil_crops(path))


def test_two_crops_reads_a_folder_through_worker_crops_and_pil_only_as_upstream(tmp_path):
    for i in range(4):
        write_jpeg(str(tmp_path / f"c{i % 2}" / f"{i}.jpg"), (70 + 9 * i, 50 + 5 * i), i)
    ds = image_folder(str(tmp_path))
    fast, pil = TwoCrops(ds, 32, seed=3), TwoCrops(ds, 32, seed=3, pil_only=True)
    assert fast.files and not pil.files
    for index in range(4):
        a, b = fast[(2, index)], pil[(2, index)]
        for k in (1, 2, 4, 5, 6):  # boxes, source sizes, label: the same draws
            assert torch.equal(torch.as_tensor(a[k]), torch.as_tensor(b[k])), k
        rgb = Image.open(ds.samples[index][0]).convert("RGB")
        for k, box in ((0, b[1]), (3, b[4])):
            assert torch.equal(b[k], crop_pil_box(rgb, box, 32))  # pil_only: upstream's crop exactly
            assert (a[k].int() - b[k].int()).abs().max() <= 1
    ds.transform = lambda img: img  # a dataset that transforms its images is read through them
    assert not TwoCrops(ds, 32, seed=3).files


def test_a_jpeg_that_names_an_undefined_quantisation_table_goes_to_pil():
    """nvJPEG decodes such a file without an error (seen on an H200); libjpeg refuses it."""
    arr = np.random.default_rng(1).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    opened = lambda data: Image.open(io.BytesIO(data))  # noqa: E731
    data = jpeg_bytes(arr)
    assert tables_defined(opened(data)) and tables_defined(opened(jpeg_bytes(arr, progressive=True)))
    sof = data.index(b"\xff\xc0")
    chroma_table = bytearray(data)
    chroma_table[sof + 10 + 3 * 2 + 2] = 2  # the third component names table 2, which no DQT defines
    for bad in (without_segment(data, 0xDB), bytes(chroma_table)):
        assert opened(bad).size == (40, 30) and not tables_defined(opened(bad))
        with pytest.raises(OSError):  # what PIL (libjpeg) does with it
            opened(bad).load()


def test_a_jpeg_whose_first_scan_names_a_component_its_frame_lacks_goes_to_pil():
    """Legal files pass, the first scan of a progressive one (DC of all three components) and a
    grayscale one's single component included; a scan naming another id, none, or more than the
    standard's 4 does not, and libjpeg (PIL) refuses each."""
    arr = np.random.default_rng(2).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    sound = lambda data: scan_in_frame(data, first_scan(data), Image.open(io.BytesIO(data)))  # noqa: E731
    thumb = jpeg_bytes(arr[:10, :10])
    legal = (jpeg_bytes(arr), jpeg_bytes(arr, progressive=True), jpeg_bytes(arr[..., 0]),
             jpeg_bytes(arr, exif=b"Exif\x00\x00" + thumb))
    assert all(sound(data) for data in legal)
    data = jpeg_bytes(arr)
    sos = data.index(b"\xff\xda")
    none, five = bytearray(data), bytearray(data)
    none[sos + 4] = 0
    five[sos + 4] = 5
    for bad in (bad_scan(data), bytes(none), bytes(five)):
        assert Image.open(io.BytesIO(bad)).size == (40, 30) and not sound(bad)
        with pytest.raises(OSError):
            Image.open(io.BytesIO(bad)).load()
    cut = data[:sos + 6]  # inside the scan's header
    assert not scan_in_frame(cut, first_scan(cut), Image.open(io.BytesIO(data)))


def test_a_jpeg_is_whole_when_an_end_marker_follows_its_first_scan():
    """What a truncated file lacks, checked so that an Exif thumbnail's own end marker (which the
    main image's scan follows) or a trailer after the end cannot mislead it."""
    arr = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    whole = lambda data: ends_after_scan(data, first_scan(data))  # noqa: E731
    thumb = jpeg_bytes(arr[:20, :30])
    for data in (jpeg_bytes(arr), jpeg_bytes(arr, progressive=True), jpeg_bytes(arr, exif=b"Exif\x00\x00" + thumb)):
        assert Image.open(io.BytesIO(data)).size == (120, 90)
        assert whole(data) and whole(data + b"trailer bytes")
        for cut in (data[:-2], data[: len(data) // 2], data[: len(data) - 40]):
            assert not whole(cut)
            with pytest.raises(OSError, match="truncated"):  # what PIL says of each of them
                Image.open(io.BytesIO(cut)).load()
    data = jpeg_bytes(arr)
    app0 = 4 + (data[4] << 8 | data[5])  # SOI + the first segment
    junk = data[:app0] + b"\x00stray bytes" + data[app0:]  # skipped by PIL and libjpeg alike
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(junk))), np.asarray(Image.open(io.BytesIO(data))))
    assert whole(junk) and not whole(junk[: len(junk) // 2])
    cut = jpeg_bytes(arr, exif=b"Exif\x00\x00" + thumb)
    cut = cut[: len(cut) // 2]
    assert cut.rfind(b"\xff\xd9") > cut.find(b"\xff\xda")  # a plain search is misled by the thumbnail
    assert not whole(cut)
