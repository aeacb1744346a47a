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

    To resume inside an epoch, ``snapshot`` (when given) is called before each group's draws, and
    ``state_before(step)`` gives what it returned for the group that holds step ``step + 1``: with it
    restored, ``resume_at(step)`` makes that group again and yields from step ``step + 1`` on.
    """

    def __init__(self, loader, inputs: Callable[[list], list], device: torch.device, ahead: int = 1,
                 overlap: bool = True, snapshot: Callable[[], Any] | None = None):
        if ahead < 1:
            raise ValueError(f"ahead must be at least 1 batch, got {ahead}")
        self.loader, self.inputs, self.device = loader, inputs, torch.device(device)
        self.ahead, self.overlap, self.snapshot = ahead, overlap, snapshot
        self._marks: dict[int, Any] = {}  # first step (of the epoch) of a group made -> snapshot before it
        self._start = 0

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def _group_start(self, step: int) -> int:
        return step - step % self.ahead

    def resume_at(self, step: int) -> None:
        """Begin the next iteration (only) after ``step`` steps of the epoch, from the start of the group
        that holds the next step (the generators must hold ``state_before(step)``)."""
        self.loader.resume_at(self._group_start(step))
        self._start = step

    def state_before(self, step: int) -> Any:
        """The snapshot taken before the draws of the group that holds step ``step + 1``; the current
        state where that group is not made yet (every draw so far then belongs to earlier groups)."""
        first = self._group_start(step)
        return self._marks[first] if first in self._marks else self.snapshot()

    def _groups(self, batches: Iterator, first: int) -> Iterator[list]:
        step = first
        while group := list(itertools.islice(batches, self.ahead)):  # the epoch's last may be shorter
            if self.snapshot is not None:
                self._marks = {k: v for k, v in self._marks.items() if k >= step - self.ahead}
                self._marks[step] = self.snapshot()
            step += len(group)
            yield group

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
        start, self._start = self._start, 0
        first = self._group_start(start)
        self._marks = {}
        steps = self._steps(iter(self.loader), first)
        for _ in range(start - first):  # made again for the group's later steps; taken before
            next(steps)
        yield from steps

    def _steps(self, batches: Iterator, first: int) -> Iterator[Any]:
        groups = self._groups(batches, first)
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
