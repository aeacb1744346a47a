"""Step inputs made ahead of their steps: several batches' in one call, and/or on a side CUDA stream."""
from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

import torch
from torch.utils._pytree import tree_leaves


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tree_leaves(tree) if torch.is_tensor(t) and t.device.type == "cuda"]


class InputStream:
    """Iterate ``loader`` as step inputs: ``inputs(group)`` turns a group of ``ahead`` batches into one
    step input per batch.

    ``ahead`` > 1 pays the input side's fixed host cost (launches, compiled-call overhead) once per
    group instead of once per step, which is what bounds steps on small images. With ``overlap``,
    group g+1's inputs are made before group g's steps, on a side stream on CUDA, so that they can
    run while the model's kernels do where the model leaves the GPU room. Either way the random
    draws happen in the same order as one batch at a time (batch i's before batch i+1's, on the same
    generators), so a run is the same run, view for view. Forwards ``set_epoch`` and ``__len__``.
    """

    def __init__(self, loader, inputs: Callable[[list], list], device: torch.device, ahead: int = 1,
                 overlap: bool = True):
        if ahead < 1:
            raise ValueError(f"ahead must be at least 1 batch, got {ahead}")
        self.loader, self.inputs, self.device = loader, inputs, torch.device(device)
        self.ahead, self.overlap = ahead, overlap

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def _launch(self, group: list, stream):
        if stream is None:
            return self.inputs(group), None
        # the batches were made on the main stream, behind the previous step: start after both
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            out = self.inputs(group)
            done = torch.cuda.Event()
            done.record(stream)
        for t in _tensors(group):  # freed on the host now; their memory waits for the side stream
            t.record_stream(stream)
        return out, done

    def _ready(self, pending) -> list:
        out, done = pending
        if done is not None:
            main = torch.cuda.current_stream(self.device)
            main.wait_event(done)  # an event, not wait_stream: the group queued after this one stays concurrent
            for t in _tensors(out):
                t.record_stream(main)
        return out

    def __iter__(self) -> Iterator[Any]:
        batches = iter(self.loader)
        groups = iter(lambda: list(itertools.islice(batches, self.ahead)), [])  # the epoch's last may be shorter
        if not self.overlap:
            for group in groups:
                yield from self.inputs(group)
            return
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        pending = None
        for group in groups:
            nxt = self._launch(group, stream)
            if pending is not None:
                yield from self._ready(pending)
            pending = nxt
        if pending is not None:
            yield from self._ready(pending)
