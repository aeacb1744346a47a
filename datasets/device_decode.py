"""JPEG folders decoded on the training device: workers only read bytes, nvJPEG decodes in batches.

Why: at 224 px the per-image CPU work (decode + crop) is what caps a GPU fed by 4-6 loader workers.
Here a worker reads a file's bytes, reads its size from the JPEG header (no decoding:
``jpeg.read_header``) and samples the two crop boxes exactly as ``TwoCrops`` does (same seeds,
same draws), so both paths give the same records. The main process decodes the whole batch with
one ``torchvision.io.decode_jpeg`` call on the device and crops/resizes each image there
(antialiased bilinear, as PIL does).

Files nvJPEG may not handle (PNG, CMYK or grayscale JPEGs: a few exist in ImageNet; JPEGs coded
in RGB; truncated JPEGs, JPEGs missing a quantisation table and JPEGs whose first scan names a
component the frame lacks, which PIL refuses by name) are decoded and cropped by PIL in the
worker, exactly as on the worker-crop path (``jpeg.worker_crops``). A file the device decoder still
refuses is decoded by PIL in the main process; only a file PIL refuses too stops the run.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from itertools import islice
from typing import NamedTuple

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import pil_to_tensor

from .batches import DecodeCounts, TwoViewBatch
from .jpeg import decode, read_pil, worker_crops
from .loaders import EpochIndexSampler, check_batch_fits, headers_and_boxes


class JpegBytesTwoBoxes(Dataset):
    """Item = (payload, is_encoded, box1, box2, [h, w], label, index).

    The payload is the file's bytes for the device to decode, or, for files nvJPEG may not take, both
    views already cropped here (``worker_crops``): uint8 [2, 3, size, size].
    The DataLoader asks for whole batches (``__getitems__``), so the crop boxes of a batch come from
    one batched call instead of ~30 small tensor ops per image.
    """

    def __init__(self, samples: list[tuple[str, int]], seed: int, size: int):
        self.samples, self.seed, self.size = samples, seed, size

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]):
        return self.__getitems__([key])[0]

    def __getitems__(self, keys: list[tuple[int, int]]) -> list[tuple]:
        heads, hw, boxes = headers_and_boxes(self.samples, keys, self.seed)
        items = []
        for head, pair, src, (_, index) in zip(heads, boxes, hw.float(), keys):
            path, label = self.samples[index]
            data = head.data if head.plain else worker_crops(path, head, pair, self.size)
            items.append((data, head.plain, *pair, src, label, index))
        return items


class BytesBatch(NamedTuple):
    """A batch as workers ship it: all encoded files in one flat buffer, all worker crops in one
    tensor. Why: a DataLoader moves each tensor of a batch through its own shared-memory segment,
    and the main process spends main-thread time taking each one in (docs/speed.md), time the step
    needs."""
    data: Tensor  # uint8 [total bytes]: the encoded files, one after another
    offsets: Tensor  # int64 [B + 1]: item i's bytes are data[offsets[i]:offsets[i + 1]] (empty if cropped)
    crops: Tensor  # uint8 [k, 2, 3, S, S]: both views of the k items decoded in workers, in batch order
    encoded: Tensor  # bool [B]: whether item i is decoded on the device
    box1: Tensor
    box2: Tensor
    hw: Tensor
    labels: Tensor
    indices: Tensor  # int64 [B]: each item's index in the dataset (to name a file the device cannot decode)

    def encoded_bytes(self, idx: list[int], offsets: list[int]) -> list[Tensor]:
        """Files ``idx`` of the batch's payload, as views into it (``offsets``: ``self.offsets`` as a list)."""
        return [self.data[offsets[i]:offsets[i + 1]] for i in idx]


def _collate(items) -> BytesBatch:
    payload, encoded, b1, b2, hw, labels, indices = zip(*items)
    files = [p for p, e in zip(payload, encoded) if e]
    crops = [p for p, e in zip(payload, encoded) if not e]
    sizes = torch.tensor([len(p) if e else 0 for p, e in zip(payload, encoded)])
    offsets = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
    data = torch.cat(files) if files else torch.empty(0, dtype=torch.uint8)
    crops = torch.stack(crops) if crops else torch.empty(0, 2, 3, 0, 0, dtype=torch.uint8)
    return BytesBatch(data, offsets, crops, torch.tensor(encoded), torch.stack(b1), torch.stack(b2),
                      torch.stack(hw), torch.tensor(labels), torch.tensor(indices))


def bytes_loader(samples: list[tuple[str, int]], batch_size: int, seed: int, num_workers: int,
                 rank: int = 0, world: int = 1, *, size: int) -> DataLoader:
    """``BytesBatch`` batches of ``JpegBytesTwoBoxes``; ``size`` is the crop size of worker-decoded images."""
    check_batch_fits(len(samples), batch_size, world)
    sampler = EpochIndexSampler(len(samples), batch_size, seed, rank, world)
    return DataLoader(JpegBytesTwoBoxes(samples, seed, size), batch_size=batch_size,
                      sampler=sampler, num_workers=num_workers, collate_fn=_collate, drop_last=True,
                      persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None)


def crop_resize(images: list[Tensor], boxes: Sequence[Tensor], size: int,
                convert_together: bool | None = None) -> tuple[Tensor, ...]:
    """Each decoded image cropped to its box and resized to ``size`` (antialiased bilinear, uint8),
    once per box set in ``boxes`` (e.g. both views' boxes): a [N, 3, size, size] batch per set.

    One small resize per crop: the decoded sizes differ, and antialiasing (which PIL applies and
    ``grid_sample`` cannot) matters when a 300+ px crop is shrunk to 224. This runs in decoder
    threads that share the GIL with the training step, so the launches per image are kept few:
    each image is made float once for all its crops, each resize writes straight into its batch
    (``F.interpolate``'s own kernel, called with ``out=``), and rounding to uint8 is done once
    per batch.

    ``convert_together`` (default: on CUDA) makes all images float at once, in one flat buffer
    that the resizes read views of: one conversion per chunk instead of one per image. On a CPU,
    converting each image just before its resizes keeps it in cache, which is faster there
    (``scripts/bench/bench_decode.py --device cpu``, docs/speed.md). On CUDA each resize still makes one elementwise copy of
    its own: ATen's antialiased kernel copies a strided input to a contiguous one, and a crop is a
    strided view (the 512 small copies of an r50-224 step's profile, docs/speed.md).

    The resize is called through ``torch._C._nn``, the binding ``F.interpolate`` itself uses, into
    batch rows split off in one call, not through ``torch.ops.aten`` into a slice per crop: host
    time that the decoder threads partly hold the GIL for (docs/speed.md).
    """
    n, dev = len(images), images[0].device
    outs = [torch.empty(n, 3, size, size, dtype=torch.float32, device=dev) for _ in boxes]
    slots = [out.split(1) for out in outs]  # slots[k][i]: view k's row i, [1, 3, size, size]
    rows = [b.round().long().tolist() for b in boxes]
    if convert_together if convert_together is not None else dev.type == "cuda":
        flat = torch.cat([img.reshape(-1) for img in images]).float()
        floats = (part.view(1, *img.shape) for part, img in zip(flat.split([img.numel() for img in images]), images))
    else:
        floats = (img[None].float() for img in images)
    resize = torch._C._nn._upsample_bilinear2d_aa  # (input, output_size, align_corners, out=)
    for i, x in enumerate(floats):
        for slot, r in zip(slots, rows):
            top, left, h, w = r[i]
            # = F.interpolate(crop, (size, size), mode="bilinear", antialias=True, align_corners=False)
            resize(x[:, :, top:top + h, left:left + w], [size, size], False, out=slot[i])
    return tuple(o.round_().clamp_(0, 255).to(torch.uint8) for o in outs)


class DeviceDecodePrefetcher:
    """Iterate ``bytes_loader`` batches as ``TwoViewBatch`` records on ``device``.

    Each batch is split over ``threads`` decoder threads, each with its own CUDA stream, and up to
    ``depth`` batches are in flight while the training step runs. Why threads: torchvision's CUDA
    decode returns only when its images are done (it synchronises its own stream; on GPUs without
    JPEG engines it also runs the Huffman stage on the host), and that wait would stall every step
    of the training thread. Its one decoder per process serves the threads in turn, behind a lock,
    so what the threads run side by side is one thread's decode and the others' crops. The layout
    is the worker-crop path's, so training code is shared; the result does not depend on
    ``threads`` or ``depth``.
    """

    def __init__(self, loader: DataLoader, device: torch.device, threads: int = 4, depth: int = 2):
        self.loader, self.device = loader, torch.device(device)
        self.size = loader.dataset.size  # the workers' crop size is the device crops' size
        self.sampler = loader.sampler
        self.threads, self.depth = max(1, threads), max(1, depth)
        cuda = self.device.type == "cuda"
        self.streams = [torch.cuda.Stream(self.device) if cuda else None for _ in range(self.threads)]
        self.sent = {"device": 0, "workers": 0}  # this epoch's images, by where they were sent to be decoded
        self.refused: list[str] = []  # this epoch's files that the device refused and PIL decoded

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.sent, self.refused = {"device": 0, "workers": 0}, []

    def resume_at(self, step: int) -> None:
        """Begin the next iteration (only) at batch ``step`` of the epoch."""
        self.sampler.resume_at(step)

    def decode_counts(self) -> DecodeCounts:
        """Where this epoch's images were decoded so far (the optional part of ``BatchSource``)."""
        refused = tuple(self.refused)
        return DecodeCounts(self.sent["device"] - len(refused), self.sent["workers"], refused, self.device.type)

    def _chunk(self, batch: BytesBatch, idx: list[int], plan: tuple[list, list, list], stream):
        """Both views of the batch items ``idx``, in that order: bytes decoded and cropped here,
        worker crops moved here."""
        encoded, offsets, rows = plan
        on_device = [i for i in idx if encoded[i]]
        in_worker = [i for i in idx if not encoded[i]]
        parts = []
        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            if on_device:
                images = self._decode(batch, on_device, offsets)
                parts.append(crop_resize(images, (batch.box1[on_device], batch.box2[on_device]), self.size))
            if in_worker:
                crops = batch.crops[[rows[i] for i in in_worker]].to(self.device, non_blocking=True)
                parts.append((crops[:, 0], crops[:, 1]))
            v1, v2 = parts[0] if len(parts) == 1 else (torch.cat([p[k] for p in parts]) for k in (0, 1))
            if on_device and in_worker:  # back to batch order
                back = torch.tensor(on_device + in_worker).argsort().to(self.device, non_blocking=True)
                v1, v2 = v1[back], v2[back]
            done = None
            if stream is not None:
                done = torch.cuda.Event()
                done.record(stream)
        return v1, v2, done

    def _decode(self, batch: BytesBatch, idx: list[int], offsets: list[int]) -> list[Tensor]:
        """The batch items ``idx`` decoded in one call; if that fails, each alone (``_decode_one``)."""
        files = batch.encoded_bytes(idx, offsets)
        try:
            return decode(files, self.device)
        except RuntimeError:
            return [self._decode_one(data, int(batch.indices[i])) for i, data in zip(idx, files)]

    def _decode_one(self, data: Tensor, index: int) -> Tensor:
        """Image ``index`` decoded on the device, or by PIL where the device decoder refuses it (e.g. an
        arithmetic-coded JPEG, which nvJPEG does not take): a file that PIL reads, as the worker path
        does, must not stop a run. A file PIL refuses too raises ``unreadable``, naming it."""
        try:
            return decode([data], self.device)[0]
        except RuntimeError:
            path = self.loader.dataset.samples[index][0]
            rgb = read_pil(path, data, lambda im: pil_to_tensor(im.convert("RGB")))
            self.refused.append(path)  # atomic: the decoder threads share it
            return rgb.to(self.device)

    def _submit(self, pool: ThreadPoolExecutor, batch: BytesBatch):
        # which items the device decodes, where their bytes are, and each worker crop's row
        plan = (batch.encoded.tolist(), batch.offsets.tolist(), ((~batch.encoded).cumsum(0) - 1).tolist())
        parts = [c.tolist() for c in torch.arange(len(batch.encoded)).tensor_split(self.threads) if len(c)]
        return batch, [pool.submit(self._chunk, batch, idx, plan, self.streams[i]) for i, idx in enumerate(parts)]

    def _collect(self, batch: BytesBatch, futures) -> TwoViewBatch:
        chunks = [f.result() for f in futures]
        on_device = int(batch.encoded.sum())
        self.sent["device"] += on_device
        self.sent["workers"] += len(batch.encoded) - on_device
        main = torch.cuda.current_stream(self.device) if self.device.type == "cuda" else None
        for v1, v2, done in chunks:
            if main is not None:
                main.wait_event(done)
                v1.record_stream(main)
                v2.record_stream(main)
        v1 = torch.cat([c[0] for c in chunks])
        v2 = torch.cat([c[1] for c in chunks])
        b1, b2, hw, labels = (t.to(self.device, non_blocking=True) for t in (batch.box1, batch.box2, batch.hw,
                                                                              batch.labels))
        return TwoViewBatch(v1, b1, hw, v2, b2, hw, labels)

    def __iter__(self):
        it = iter(self.loader)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="jpeg-decode") as pool:
            pending = deque(self._submit(pool, b) for b in islice(it, self.depth))
            while pending:
                batch, futures = pending.popleft()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(self._submit(pool, nxt))
                yield self._collect(batch, futures)
