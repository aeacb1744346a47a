"""Make the next batches' inputs while this step's model runs: the input side in its own thread, on
its own CUDA stream."""
from __future__ import annotations

import queue
import threading
from contextlib import nullcontext
from typing import Any, Callable, Iterator

import torch
from torch.profiler import record_function
from torch.utils._pytree import tree_leaves

_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


class InputStream:
    """Iterate ``loader`` as step inputs ``inputs(batch)``, made up to ``depth`` batches ahead.

    A pretraining step at 32 px is host-bound: the GPU finishes the kernels sooner than Python can
    issue them. So the input side (batches, views, records, descriptors) is issued from a second
    thread, which PyTorch lets run while the training thread is inside an op (ops release the
    GIL), and on a side CUDA stream, so its kernels can run beside the model's. Only that thread
    draws from the augmentation generators, batch after batch, so a run is the same run, view for
    view. Forwards ``set_epoch`` and ``__len__``; the thread starts at the first batch asked for,
    after the epoch's re-seed.
    """

    def __init__(self, loader, inputs: Callable[[Any], Any], device: torch.device, depth: int = 2):
        self.loader, self.inputs, self.device, self.depth = loader, inputs, torch.device(device), depth

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def _produce(self, out: queue.Queue, stop: threading.Event, main, stream) -> None:
        try:
            if stream is not None:
                torch.cuda.set_device(self.device)
                stream.wait_stream(main)  # what the training thread queued before (the epoch's data order)
            with torch.cuda.stream(stream) if stream is not None else nullcontext():
                for batch in self.loader:  # the batch, too, is made on the side stream
                    with record_function("inputs"):
                        made = self.inputs(batch)
                    done = None
                    if stream is not None:
                        done = torch.cuda.Event()
                        done.record(stream)
                    if not _put(out, (made, done), stop):
                        return
        except BaseException as e:  # raised again in the training thread
            _put(out, _Failed(e), stop)
            return
        _put(out, _END, stop)

    def __iter__(self) -> Iterator[Any]:
        cuda = self.device.type == "cuda"
        main = torch.cuda.current_stream(self.device) if cuda else None
        stream = torch.cuda.Stream(self.device) if cuda else None
        made, stop = queue.Queue(maxsize=self.depth), threading.Event()
        worker = threading.Thread(target=self._produce, args=(made, stop, main, stream), daemon=True,
                                  name="cassle-inputs")
        worker.start()
        try:
            while (item := made.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.error
                inputs, done = item
                if done is not None:
                    main.wait_event(done)
                    for t in tree_leaves(inputs):  # made on the side stream, freed after this one's use
                        if torch.is_tensor(t) and t.is_cuda:
                            t.record_stream(main)
                yield inputs
        finally:
            stop.set()
            while worker.is_alive():  # unblock a put on a full queue
                try:
                    made.get(timeout=0.05)
                except queue.Empty:
                    pass
            worker.join()


def _put(out: queue.Queue, item, stop: threading.Event) -> bool:
    """Put unless the consumer has stopped; False when it has."""
    while not stop.is_set():
        try:
            out.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False
