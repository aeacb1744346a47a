"""Step inputs made ahead of their steps: several batches' in one call."""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any


class InputStream:
    """Iterate ``loader`` as step inputs: ``inputs(group)`` turns a group of ``ahead`` batches into one
    step input per batch.

    ``ahead`` > 1 pays the input side's fixed host cost (launches, compiled-call overhead) once per
    group instead of once per step, which is what bounds steps on small images. The random draws
    happen in the same order as one batch at a time (batch i's before batch i+1's, on the same
    generators), so a run is the same run, view for view. Forwards ``set_epoch`` and ``__len__``.

    To resume inside an epoch, ``snapshot`` (when given) is called before each group's draws, and
    ``state_before(step)`` gives what it returned for the group that holds step ``step + 1``: with it
    restored, ``resume_at(step)`` makes that group again and yields from step ``step + 1`` on.
    """

    def __init__(self, loader, inputs: Callable[[list], list], ahead: int = 1,
                 snapshot: Callable[[], Any] | None = None):
        if ahead < 1:
            raise ValueError(f"ahead must be at least 1 batch, got {ahead}")
        self.loader, self.inputs = loader, inputs
        self.ahead, self.snapshot = ahead, snapshot
        self._mark: tuple[int, Any] | None = None  # (first step of the epoch's latest group made, snapshot before it)
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
        return self._mark[1] if self._mark is not None and self._mark[0] == first else self.snapshot()

    def _groups(self, batches: Iterator, first: int) -> Iterator[list]:
        step = first
        while group := list(itertools.islice(batches, self.ahead)):  # the epoch's last may be shorter
            if self.snapshot is not None:
                self._mark = (step, self.snapshot())
            step += len(group)
            yield group

    def __iter__(self) -> Iterator[Any]:
        start, self._start = self._start, 0
        first = self._group_start(start)
        self._mark = None
        steps = self._steps(iter(self.loader), first)
        for _ in range(start - first):  # made again for the group's later steps; taken before
            next(steps)
        yield from steps

    def _steps(self, batches: Iterator, first: int) -> Iterator[Any]:
        for group in self._groups(batches, first):
            yield from self.inputs(group)
