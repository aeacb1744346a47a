"""Batch producers: deterministic per (seed, epoch), disjoint rank shards, worker crops with records."""
import torch
from PIL import Image

from datasets import TensorImages, worker_crop_loader
from datasets.batches import TwoViewBatch
from datasets.folders import image_folder
from datasets.loaders import DeviceBatches, TwoCrops, rank_slice
from tests.data_formats import write_jpeg


def _data(n=40):
    return TensorImages(torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 3, 4, 4).clone(),
                        torch.arange(n))


def test_device_batches_deterministic_per_epoch_and_drop_last():
    b = DeviceBatches(_data(), 8, seed=3, device="cpu")
    e0 = [y.tolist() for _, y in b]
    assert len(e0) == 5 == len(b) and all(len(y) == 8 for y in e0)
    assert [y.tolist() for _, y in b] == e0
    b.set_epoch(1)
    assert [y.tolist() for _, y in b] != e0


def test_rank_shards_are_disjoint_and_cover_global_batches():
    perm = torch.randperm(50)
    r0, r1 = rank_slice(perm, 4, 0, 2), rank_slice(perm, 4, 1, 2)
    assert len(r0) == len(r1) == 24 and not set(r0.tolist()) & set(r1.tolist())
    assert torch.equal(torch.cat([r0[:4], r1[:4]]), perm[:8])  # first global batch


def test_worker_crop_loader_returns_crops_boxes_and_is_reproducible(tmp_path):
    for i in range(6):
        write_jpeg(str(tmp_path / "c" / f"{i}.jpg"), (50 + i, 40), i)
    ds = image_folder(str(tmp_path))
    loader = worker_crop_loader(ds, 16, batch_size=3, seed=0, num_workers=0)
    batch = next(iter(loader))
    assert isinstance(batch, TwoViewBatch)  # collation keeps the record
    assert batch.view1.shape == (3, 3, 16, 16) and batch.view1.dtype == torch.uint8 and batch.box1.shape == (3, 4)
    assert (batch.size1[:, 0] == 40).all() and not torch.equal(batch.box1, batch.box2)
    assert batch.labels.tolist() == [0, 0, 0]
    again = next(iter(worker_crop_loader(ds, 16, batch_size=3, seed=0, num_workers=2)))
    assert isinstance(again, TwoViewBatch)  # and so do workers
    assert torch.equal(again.box1, batch.box1) and torch.equal(again.view1, batch.view1)  # same draws whatever the workers


def test_device_prefetcher_keeps_order_length_and_sampler(tmp_path):
    from datasets.loaders import DevicePrefetcher
    for i in range(8):
        write_jpeg(str(tmp_path / "c" / f"{i}.jpg"), (30, 30), i)
    loader = worker_crop_loader(image_folder(str(tmp_path)), 8, batch_size=2, seed=0, num_workers=0)
    pre = DevicePrefetcher(loader, torch.device("cpu"))
    assert len(pre) == 4 and pre.sampler is loader.sampler
    got, ref = list(pre), list(loader)
    assert len(got) == 4
    for a, b in zip(got, ref):
        assert type(a) is TwoViewBatch and all(torch.equal(x, y) for x, y in zip(a, b))


def test_worker_crops_are_uint8_views_with_their_records():
    img = Image.new("RGB", (70, 50), (200, 30, 10))
    item = TwoCrops([(img, 7)], 32, seed=0)[(0, 0)]
    for view, box, src in ((item.view1, item.box1, item.size1), (item.view2, item.box2, item.size2)):
        assert view.dtype == torch.uint8 and view.shape == (3, 32, 32)
        assert src.tolist() == [50.0, 70.0]
        assert box[0] + box[2] <= 50 and box[1] + box[3] <= 70
        assert view[0].float().mean() > 190  # the colour survives the crop
    assert item.labels == 7


def test_resume_at_a_step_skips_that_many_batches_of_the_next_epoch_only():
    """A resume inside an epoch: the in-memory batches and the JPEG path's sampler begin at batch
    ``step`` of the same order, once; the epoch after begins at its start again."""
    from datasets.loaders import EpochIndexSampler
    data = TensorImages(torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 3, 2, 2).contiguous(),
                        torch.arange(40))
    batches = DeviceBatches(data, 4, seed=5, device="cpu", rank=1, world=2)
    batches.set_epoch(3)
    whole = [labels.tolist() for _, labels in batches]
    batches.resume_at(2)
    assert [labels.tolist() for _, labels in batches] == whole[2:]
    assert [labels.tolist() for _, labels in batches] == whole  # once only
    sampler = EpochIndexSampler(40, 4, seed=5, rank=1, world=2)
    sampler.set_epoch(3)
    keys = list(sampler)
    assert [i for _, i in keys] == [i for batch in whole for i in batch]  # the in-memory batches' order
    sampler.resume_at(2)
    assert list(sampler) == keys[8:] and list(sampler) == keys
