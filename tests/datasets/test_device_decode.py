"""Device-decode path for JPEG folders, run on CPU tensors: same records as the worker-crop path,
pixels within JPEG-decoder rounding of PIL's, odd files (PNG, CMYK, grayscale, RGB-coded, truncated,
missing a quantisation table, naming a component its frame lacks) decoded by workers, and a file the
device decoder refuses decoded by PIL."""
import functools
import os

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import device_decode, worker_crop_loader
from datasets.batches import TwoViewBatch
from datasets.device_decode import DeviceDecodePrefetcher, bytes_loader, crop_resize
from datasets.jpeg import read_bytes, ycbcr_jpeg
from datasets.folders import image_folder
from tests.data_formats import jpeg_bytes, without_segment, write_jpeg
from utils.training.trainer import decode_report


def _folder(tmp_path, n=6):
    for i in range(n):
        write_jpeg(str(tmp_path / f"c{i % 2}" / f"{i}.jpg"), (60 + 7 * i, 44 + 3 * i), i)
    return image_folder(str(tmp_path))


def _both(ds, size=24, batch=3, epoch=1, workers=0):
    ref = worker_crop_loader(ds, size, batch_size=batch, seed=5, num_workers=0)
    loader = bytes_loader(ds.samples, batch, seed=5, num_workers=workers, size=size)
    dev = DeviceDecodePrefetcher(loader, torch.device("cpu"))
    ref.sampler.set_epoch(epoch)
    dev.set_epoch(epoch)
    return list(ref), list(dev)


def _order(ds, batch, epoch):
    """The dataset indices in the order ``_both`` yields them."""
    sampler = bytes_loader(ds.samples, batch, seed=5, num_workers=0, size=8).sampler
    sampler.set_epoch(epoch)
    return [i for _, i in sampler]


def test_device_decode_gives_the_worker_path_records_and_pixels(tmp_path):
    ref, dev = _both(_folder(tmp_path))
    assert len(ref) == len(dev) == 2
    for r, d in zip(ref, dev):
        assert type(r) is type(d) is TwoViewBatch
        for k in ("box1", "size1", "box2", "size2", "labels"):  # identical
            assert torch.equal(getattr(r, k).to(getattr(d, k).dtype), getattr(d, k)), k
        for rv, dv in ((r.view1, d.view1), (r.view2, d.view2)):
            assert dv.dtype == torch.uint8 and dv.shape == rv.shape
            diff = (dv.int() - rv.int()).abs()
            # decoders and resamplers may round differently by a level or two; never more
            assert diff.float().mean() < 0.5 and diff.max() <= 2, (diff.float().mean(), diff.max())


def test_device_decode_is_deterministic_across_workers_and_changes_with_epoch(tmp_path):
    ds = _folder(tmp_path)
    _, a = _both(ds, workers=0)
    _, b = _both(ds, workers=2)
    _, c = _both(ds, epoch=2)
    assert all(torch.equal(x, y) for p, q in zip(a, b) for x, y in zip(p, q))
    assert not torch.equal(a[0][1], c[0][1])


def test_files_nvjpeg_cannot_take_are_decoded_in_workers(tmp_path):
    """PNG, CMYK, grayscale, and JPEGs coded in RGB rather than YCbCr (marked either by an Adobe
    segment or by their components' names alone): PIL decodes them in the workers."""
    rng = np.random.default_rng(0)
    (tmp_path / "c").mkdir()
    img = lambda: Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8))
    img().save(tmp_path / "c" / "a.png")
    img().convert("CMYK").save(tmp_path / "c" / "b.jpg")
    Image.fromarray(rng.integers(0, 255, (30, 40), dtype=np.uint8)).save(tmp_path / "c" / "c.jpg")
    write_jpeg(str(tmp_path / "c" / "d.jpg"), (40, 30), 1)
    img().save(tmp_path / "c" / "e.jpg", keep_rgb=True)
    (tmp_path / "c" / "f.jpg").write_bytes(without_segment(jpeg_bytes(np.asarray(img()), keep_rgb=True), 0xEE))
    assert Image.open(tmp_path / "c" / "f.jpg").info.get("adobe") is None  # only the names say RGB
    e = Image.open(tmp_path / "c" / "e.jpg")
    e.layer = [(k + 1, *c[1:]) for k, c in enumerate(e.layer)]  # only the Adobe segment says RGB
    assert not ycbcr_jpeg(e) and ycbcr_jpeg(Image.open(tmp_path / "c" / "d.jpg"))
    ds = image_folder(str(tmp_path))
    loader = bytes_loader(ds.samples, 6, seed=0, num_workers=0, size=16)
    batch = next(iter(loader))
    names = [p.split("/")[-1] for p, _ in ds.samples]
    order = [int(i) for _, i in loader.sampler]
    assert {names[i]: bool(e) for i, e in zip(order, batch.encoded)} == {
        "a.png": False, "b.jpg": False, "c.jpg": False, "d.jpg": True, "e.jpg": False, "f.jpg": False}
    assert batch.crops.shape == (5, 2, 3, 16, 16)  # both views cropped there
    sizes = batch.offsets.diff()  # only the nvJPEG file's bytes travel, and exactly its bytes
    (d,) = [k for k, i in enumerate(order) if names[i] == "d.jpg"]
    assert sizes.tolist() == [os.path.getsize(ds.samples[order[d]][0]) if k == d else 0 for k in range(6)]
    assert torch.equal(batch.data, read_bytes(ds.samples[order[d]][0]))
    prefetcher = DeviceDecodePrefetcher(loader, torch.device("cpu"))
    assert len(list(prefetcher)) == 1 and prefetcher.sent == {"device": 1, "workers": 5}
    ref, dev = _both(ds, size=16, batch=6, epoch=0)
    names = [names[i] for i in _order(ds, 6, 0)]
    for k in (0, 3):  # the worker-decoded files are the worker path's crops exactly
        same = [torch.equal(r, d) for r, d in zip(ref[0][k], dev[0][k])]
        assert [s for s, n in zip(same, names) if n != "d.jpg"] == [True] * 5
        diff = (ref[0][k].int() - dev[0][k].int()).abs()
        assert diff.float().mean() < 0.5 and diff.max() <= 2


@pytest.mark.parametrize("together", [False, True])  # crop_resize's conversion on the CPU, and the GPU's
def test_a_file_the_device_decoder_refuses_but_pil_reads_trains(tmp_path, monkeypatch, together):
    """nvJPEG refuses some files that PIL reads (arithmetic-coded JPEGs). The refusal of one file is
    injected here into the CPU decoder: the batch holding it is decoded file by file, PIL decodes
    that one (libjpeg's pixels, as the CPU decoder's; in HWC memory), and the views are those of an
    undisturbed run."""
    monkeypatch.setattr(device_decode, "crop_resize", functools.partial(crop_resize, convert_together=together))
    ds = _folder(tmp_path)
    prefetcher = lambda: DeviceDecodePrefetcher(bytes_loader(ds.samples, 6, seed=5, num_workers=0, size=24),
                                                torch.device("cpu"), threads=1)
    p = prefetcher()
    expected = list(p)
    assert p.sent == {"device": 6, "workers": 0} and p.refused == []
    refused, real, calls = read_bytes(ds.samples[2][0]), device_decode.decode, []

    def refusing(files, device):
        calls.append(len(files))
        if any(torch.equal(f, refused) for f in files):
            raise RuntimeError("decode_jpeg: this decoder does not take the file")
        return real(files, device)

    monkeypatch.setattr(device_decode, "decode", refusing)  # the device path's decoder only
    p = prefetcher()
    got = list(p)
    assert calls == [6] + [1] * 6  # one batched call, then each file alone
    assert all(torch.equal(x, y) for a, b in zip(expected, got, strict=True) for x, y in zip(a, b, strict=True))
    assert p.refused == [ds.samples[2][0]]
    assert p.decode_counts() == (5, 0, (ds.samples[2][0],), "cpu")
    assert decode_report(p).startswith("decoded 5 images on the CPU and 0 in the loader workers")
    assert decode_report(p).endswith(f"1 by PIL after the device refused them (the first: {ds.samples[2][0]}), "
                                     "in this process")
    p.set_epoch(1)  # the counts are an epoch's
    assert p.sent == {"device": 0, "workers": 0} and p.refused == []


@pytest.mark.parametrize("together", [False, True])  # the CPU's default, the GPU's default
def test_crop_resize_matches_torchvision_resized_crop_on_tensors(together):
    import torchvision.transforms.v2.functional as F2
    g = torch.Generator().manual_seed(0)
    imgs = [torch.randint(0, 256, (3, 50 + 9 * i, 70 - 5 * i), dtype=torch.uint8, generator=g) for i in range(3)]
    imgs[1] = imgs[1].permute(1, 2, 0).contiguous().permute(2, 0, 1)  # HWC memory, as pil_to_tensor gives
    boxes = torch.tensor([[3., 5., 40., 30.], [0., 0., 59., 65.], [10., 2., 8., 12.]])
    other = torch.tensor([[0., 0., 50., 65.], [7., 9., 20., 21.], [1., 1., 66., 10.]])
    out, out2 = crop_resize(imgs, (boxes, other), 20, convert_together=together)
    for img, box, box2, got, got2 in zip(imgs, boxes.long().tolist(), other.long().tolist(), out, out2):
        ref = F2.resized_crop(img, *box, size=[20, 20], antialias=True)
        assert (got.int() - ref.int()).abs().max() <= 1
        for b, g in ((box, got), (box2, got2)):  # exactly F.interpolate on each float crop
            top, left, h, w = b
            crop = img[None, :, top:top + h, left:left + w].float()
            same = torch.nn.functional.interpolate(crop, size=(20, 20), mode="bilinear", antialias=True)
            assert torch.equal(g, same[0].round().clamp(0, 255).to(torch.uint8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_nvjpeg_batches_match_the_cpu_path(tmp_path):
    """One PNG among the JPEGs: a batch of device decodes and worker crops, put back in batch order."""
    rng = np.random.default_rng(0)
    for i in range(6):  # smooth photos-like content: pixel noise would exaggerate chroma-upsampling differences
        small = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
        (tmp_path / f"c{i % 2}").mkdir(exist_ok=True)
        name = f"{i}.png" if i == 5 else f"{i}.jpg"
        small.resize((64 + 8 * i, 48 + 4 * i), Image.BILINEAR).save(tmp_path / f"c{i % 2}" / name, quality=90)
    ds = image_folder(str(tmp_path))
    loader = bytes_loader(ds.samples, 3, seed=5, num_workers=0, size=24)
    cpu = list(DeviceDecodePrefetcher(loader, torch.device("cpu")))
    on_gpu = DeviceDecodePrefetcher(loader, torch.device("cuda"))
    gpu = list(on_gpu)
    assert on_gpu.refused == [] and on_gpu.sent == {"device": 5, "workers": 1}
    assert decode_report(on_gpu).startswith(f"decoded {on_gpu.sent['device']} images on the GPU ")
    for c, g in zip(cpu, gpu):
        assert g[0].is_cuda
        for k in (1, 2, 4, 5, 6):
            assert torch.equal(c[k].to(g[k].dtype), g[k].cpu()), k
        for k in (0, 3):
            diff = (g[k].cpu().int() - c[k].int()).abs().float()
            print(f"nvjpeg vs libjpeg crops: mean |diff| {diff.mean():.3f}, max {diff.max():.0f}")
            # nvJPEG's IDCT and chroma upsampling differ from libjpeg-turbo's by a level or two
            assert diff.mean() < 3.0
