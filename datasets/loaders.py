"""Batch producers for pretraining. Both are deterministic given (seed, epoch): a resume replays
exactly the batches a continuous run would have seen, from an epoch's start or (``resume_at``) from
any step inside it.

- ``DeviceBatches``: the whole uint8 dataset lives on the training device; each step indexes a
  batch there (no loader workers, no host-to-device copies). Crops happen on the device.
- ``worker_crop_loader``: JPEG folders; workers decode and crop (the only per-image work, since
  decoded sizes vary; ``jpeg.worker_crops``) and ship fixed-size uint8 crops with their boxes; all
  else runs batched.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from augmentations import crop_pil_box, sample_box_pairs

from .batches import TwoViewBatch
from .jpeg import JpegHeader, read_header, worker_crops
from .pretrain import TensorImages
from .seeds import crop_seed, order_seed


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The epoch's order of the ``n`` images, from (seed, epoch) alone: the same on every rank and after a resume."""
    g = torch.Generator().manual_seed(order_seed(seed, epoch))
    return torch.randperm(n, generator=g)


def check_batch_fits(n: int, batch_size: int, world: int) -> None:
    """Refuse, naming ``--batch-size``, a global batch larger than the dataset (an epoch of 0 steps)."""
    if n < batch_size * world:
        raise ValueError(f"--batch-size {batch_size * world} is larger than the dataset ({n} images)")


def rank_slice(perm: Tensor, batch: int, rank: int, world: int) -> Tensor:
    """Drop the last incomplete global batch; each global batch is split into per-rank slices."""
    steps = len(perm) // (batch * world)
    return perm[: steps * batch * world].view(steps, world, batch)[:, rank].reshape(-1)


class DeviceBatches:
    """Iterate (uint8 images [b, 3, H, W], labels [b]) batches of a tensor dataset on ``device``."""

    def __init__(self, data: TensorImages, batch_size: int, seed: int, device: torch.device | str,
                 rank: int = 0, world: int = 1):
        check_batch_fits(len(data), batch_size, world)
        self.images = data.images.to(device)
        self.labels = data.labels.to(device)
        self.batch_size, self.seed, self.rank, self.world = batch_size, seed, rank, world
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, step: int) -> None:
        """Begin the next iteration (only) at batch ``step`` of the epoch: a resume inside an epoch."""
        self.start = step

    def __len__(self) -> int:
        return len(self.images) // (self.batch_size * self.world)

    def __iter__(self):
        start, self.start = self.start, 0
        idx = rank_slice(epoch_permutation(len(self.images), self.seed, self.epoch), self.batch_size,
                         self.rank, self.world).to(self.images.device)
        for chunk in idx.split(self.batch_size)[start:]:
            yield self.images[chunk], self.labels[chunk]


def view_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator for one image's two crop boxes in one epoch: independent of worker and batch."""
    return torch.Generator().manual_seed(crop_seed(seed, epoch, index))


class EpochIndexSampler(Sampler):
    """Yields (epoch, index) so each worker seeds an image's crops from (seed, epoch, index) alone."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch = self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, step: int) -> None:
        """Begin the next iteration (only) at batch ``step`` of the epoch: a resume inside an epoch."""
        self.start = step

    def __len__(self) -> int:
        return (self.n // (self.batch_size * self.world)) * self.batch_size

    def __iter__(self):
        start, self.start = self.start * self.batch_size, 0
        idx = rank_slice(epoch_permutation(self.n, self.seed, self.epoch), self.batch_size, self.rank, self.world)
        return iter([(self.epoch, int(i)) for i in idx[start:]])


def box_pairs(hw: Tensor, keys: list[tuple[int, int]], seed: int) -> Tensor:
    """Both crop boxes of each batch item ``keys`` ((epoch, index) pairs) of source sizes ``hw``
    [B, 2]: [B, 2, 4], drawn in one batched call from each item's own generator."""
    return sample_box_pairs(hw, [view_generator(seed, epoch, index) for epoch, index in keys])


def headers_and_boxes(samples: list[tuple[str, int]], keys: list[tuple[int, int]],
                      seed: int) -> tuple[list[JpegHeader], Tensor, Tensor]:
    """How both JPEG paths open a batch: the files of ``keys`` read up to their headers (no decoding),
    their sizes [B, 2] and both crop boxes of each (``box_pairs``)."""
    heads = [read_header(samples[index][0]) for _, index in keys]
    hw = torch.tensor([[head.height, head.width] for head in heads])
    return heads, hw, box_pairs(hw, keys, seed)


class TwoCrops(Dataset):
    """Decodes one image and returns two independent crops with their boxes and the source size.

    An image folder's files (``base.samples``, no transform) are read by ``jpeg.worker_crops``:
    plain JPEGs through libjpeg-turbo and torch's resize, other files through PIL. ``pil_only``, or
    any other dataset of PIL images, crops with PIL alone, as upstream does. The DataLoader asks for
    whole batches (``__getitems__``): the crop boxes of a batch come from one batched call instead
    of ~30 small tensor ops per image.
    """

    def __init__(self, base: Dataset, size: int, seed: int, pil_only: bool = False):
        self.base, self.size, self.seed = base, size, seed
        self.files = not pil_only and hasattr(base, "samples") and getattr(base, "transform", None) is None \
            and getattr(base, "target_transform", None) is None

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[TwoViewBatch]:
        if self.files:
            samples = self.base.samples
            heads, hw, boxes = headers_and_boxes(samples, keys, self.seed)
            labels = [samples[index][1] for _, index in keys]
            views = [worker_crops(samples[index][0], head, pair, self.size)
                     for head, pair, (_, index) in zip(heads, boxes, keys)]
        else:
            images, labels = zip(*(self.base[index] for _, index in keys))
            rgbs = [img.convert("RGB") for img in images]
            hw = torch.tensor([[rgb.height, rgb.width] for rgb in rgbs])
            boxes = box_pairs(hw, keys, self.seed)
            views = [[crop_pil_box(rgb, box, self.size) for box in pair] for rgb, pair in zip(rgbs, boxes)]
        return [TwoViewBatch(v1, b1, src, v2, b2, src, label)
                for (v1, v2), (b1, b2), src, label in zip(views, boxes, hw.float(), labels)]


def worker_crop_loader(base: Dataset, size: int, batch_size: int, seed: int, num_workers: int,
                       rank: int = 0, world: int = 1, pin_memory: bool = False, pil_only: bool = False) -> DataLoader:
    """The upstream-style CPU path: workers decode and crop both views (``TwoCrops``; with
    ``pil_only`` by PIL, as upstream); batches are ``TwoViewBatch`` records of uint8 crops, boxes and
    source sizes, and everything after the crop is done on the device."""
    check_batch_fits(len(base), batch_size, world)
    sampler = EpochIndexSampler(len(base), batch_size, seed, rank, world)
    return DataLoader(TwoCrops(base, size, seed, pil_only), batch_size=batch_size, sampler=sampler,
                      num_workers=num_workers, pin_memory=pin_memory, drop_last=True,
                      persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None)


class DevicePrefetcher:
    """Iterate ``loader`` with batch i+1 already being copied to ``device`` while step i runs.

    On CUDA the copies go through a side stream from pinned memory; elsewhere this is a plain
    ``.to(device)``. Forwards ``sampler``, ``set_epoch``, ``resume_at`` and ``__len__``, like ``DeviceBatches``.
    """

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device = loader, torch.device(device)
        self.sampler = getattr(loader, "sampler", None)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def resume_at(self, step: int) -> None:
        self.sampler.resume_at(step)

    def _to_device(self, batch):
        if self.stream is None:
            moved = [t.to(self.device) if torch.is_tensor(t) else t for t in batch]
        else:
            with torch.cuda.stream(self.stream):
                moved = [t.to(self.device, non_blocking=True) if torch.is_tensor(t) else t for t in batch]
        return TwoViewBatch(*moved) if isinstance(batch, TwoViewBatch) else moved

    def __iter__(self):
        it = iter(self.loader)
        try:
            nxt = self._to_device(next(it))
        except StopIteration:
            return
        for batch in it:
            cur, nxt = nxt, self._to_device(batch)
            yield self._ready(cur)
        yield self._ready(nxt)

    def _ready(self, batch):
        if self.stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(self.stream)
            for t in batch:
                if torch.is_tensor(t):
                    t.record_stream(torch.cuda.current_stream(self.device))
        return batch
