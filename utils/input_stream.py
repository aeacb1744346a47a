"""Make the next batch's views while this step's model runs: the input side on a side CUDA stream."""
from __future__ import annotations

from typing import Any, Callable, Iterator

import torch
from torch.utils._pytree import tree_leaves


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tree_leaves(tree) if torch.is_tensor(t) and t.device.type == "cuda"]


class InputStream:
    """Iterate ``loader`` as step inputs ``inputs(batch)``, batch i+1's made one step ahead.

    On CUDA, batch i+1's augmentation (views, records, descriptors) is queued on a side stream
    while step i's model kernels are queued on the main stream, so the two can run at once where the
    model leaves the GPU room. The random draws happen in the same order as without it (batch i's
    before batch i+1's, on the same generators), so a run is the same run, view for view.
    Elsewhere this is ``map(inputs, loader)``. Forwards ``set_epoch`` and ``__len__``.
    """

    def __init__(self, loader, inputs: Callable[[Any], Any], device: torch.device):
        self.loader, self.inputs, self.device = loader, inputs, torch.device(device)

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def _launch(self, batch, stream):
        if stream is None:
            return self.inputs(batch), None
        # the batch was made on the main stream, behind the previous step: start after both
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            out = self.inputs(batch)
            done = torch.cuda.Event()
            done.record(stream)
        for t in _tensors(batch):  # freed on the host now; their memory waits for the side stream
            t.record_stream(stream)
        return out, done

    def _ready(self, pending):
        out, done = pending
        if done is not None:
            main = torch.cuda.current_stream(self.device)
            main.wait_event(done)  # an event, not wait_stream: the batch queued after this one stays concurrent
            for t in _tensors(out):
                t.record_stream(main)
        return out

    def __iter__(self) -> Iterator[Any]:
        stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        pending = None
        for batch in self.loader:
            nxt = self._launch(batch, stream)
            if pending is not None:
                yield self._ready(pending)
            pending = nxt
        if pending is not None:
            yield self._ready(pending)
