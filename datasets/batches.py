"""What the pretraining batch sources yield, and what every one of them answers to.

A batch source is one of ``loaders.DeviceBatches`` (a dataset held on the device),
``loaders.DevicePrefetcher`` over ``loaders.worker_crop_loader`` (JPEG folders cropped in loader
workers) or ``device_decode.DeviceDecodePrefetcher`` (JPEG folders decoded on the device). Each is a
``BatchSource``: it iterates one epoch's batches, already on the training device, in an order fixed by
(seed, epoch) (``seeds.py``), and can begin the next epoch at any step, so a resume replays exactly
what a continuous run would have seen.

``DeviceBatches`` yields (uint8 images [B, 3, H, W], labels [B]): both views are cropped from the
same images on the device. The JPEG sources yield ``TwoViewBatch`` records: each view already
cropped, with the box it was cut from and the source image's size.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple, Protocol, runtime_checkable

from torch import Tensor


class TwoViewBatch(NamedTuple):
    """Both views of a batch of images cropped before the step, with what the step needs to describe
    them. One item of a dataset is the same record with one image's values; the DataLoader's default
    collation and ``pin_memory`` keep the record type, field by field."""

    view1: Tensor  # uint8 [B, 3, S, S]: view 1's crops, resized to the crop size
    box1: Tensor  # float [B, 4]: (top, left, height, width) of view 1's crop in the source image
    size1: Tensor  # float [B, 2]: the source image's (height, width)
    view2: Tensor
    box2: Tensor
    size2: Tensor
    labels: Tensor  # int64 [B]: the class labels (the step does not read them)


class DecodeCounts(NamedTuple):
    """Where an epoch's images have been decoded so far, for a source that decodes on the device."""

    device: int  # images the device decoded
    workers: int  # images decoded and cropped in loader workers (files the device decoder may not handle)
    refused: tuple[str, ...]  # files the device decoder refused and PIL decoded in this process
    device_type: str  # the training device's type ("cuda", "cpu")


@runtime_checkable
class BatchSource(Protocol):
    """What the training loop asks of a batch source.

    Optionally, a source that decodes images on the device also has ``decode_counts() -> DecodeCounts``
    (``device_decode.DeviceDecodePrefetcher``); the trainer logs it after the first epoch when the
    source has one, and needs nothing else to tell the sources apart.
    """

    def __len__(self) -> int:
        """The steps of one epoch (on this rank)."""

    def __iter__(self) -> Iterator[Any]:
        """One epoch's batches, on the training device."""

    def set_epoch(self, epoch: int) -> None:
        """Order the next iteration's batches as epoch ``epoch`` orders them."""

    def resume_at(self, step: int) -> None:
        """Begin the next iteration (only) at batch ``step`` of the epoch."""
