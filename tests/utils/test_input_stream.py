"""utils.input_stream.InputStream: inputs made ahead, in their own thread, change nothing."""
import threading
import time

import pytest
import torch

from tests.utils.test_trainer import _Engine, _run
from utils.input_stream import InputStream
from utils.trainer import engine_and_data, make_inputs

CASSLE = ["--framework", "moco", "--aug-treatment", "mlp", "--aug-inj-type", "proj-cat",
          "--aug-cond", "crop", "color", "color_diff", "flip", "blur", "grayscale", "--ss-crop", "0.5"]


def _flat(inputs) -> list[torch.Tensor]:
    x1, x2, d1, d2, targets = inputs
    return [x1, x2, d1, d2, *(v for t in targets for v in t.values())]


def _epochs(run, data, inputs=None, epochs=2):
    out = []
    for e in range(epochs):
        run.set_epoch(e)
        out += [_flat(inputs(b) if inputs else b) for b in data]
    return out


class _Loader(list):
    def set_epoch(self, e):
        self.epoch = e


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "cassle-inputs"]


def test_made_ahead_in_a_thread_in_batch_order():
    calls = []

    def inputs(batch):
        calls.append(batch)
        return batch * 10

    stream = InputStream(_Loader([1, 2, 3, 4]), inputs, torch.device("cpu"), depth=1)
    assert len(stream) == 4
    stream.set_epoch(4)
    assert stream.loader.epoch == 4
    it = iter(stream)
    assert calls == [] and _threads() == []  # nothing drawn before the first batch is asked for (after the re-seed)
    assert next(it) == 10
    deadline = time.monotonic() + 10
    while len(calls) < 3 and time.monotonic() < deadline:  # batch 2 queued, batch 3 made, while batch 1 is used
        time.sleep(0.01)
    assert calls == [1, 2, 3]
    assert list(it) == [20, 30, 40] and calls == [1, 2, 3, 4]
    assert _threads() == []


def test_an_error_in_the_input_thread_is_raised_in_the_training_thread_and_closing_stops_it():
    def inputs(batch):
        if batch == 3:
            raise ValueError("bad batch 3")
        return batch

    it = iter(InputStream(_Loader([1, 2, 3]), inputs, torch.device("cpu")))
    assert [next(it), next(it)] == [1, 2]
    with pytest.raises(ValueError, match="bad batch 3"):
        next(it)
    assert _threads() == []
    it = iter(InputStream(_Loader(range(100)), lambda b: b, torch.device("cpu")))
    assert next(it) == 0
    it.close()  # the consumer stops early (Engine.terminate): the thread ends
    assert _threads() == []


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_overlap_gives_the_serial_inputs_over_epochs(tmp_path, device):
    serial_run = _run(tmp_path / "a", *CASSLE, device=device)
    serial = _epochs(serial_run, serial_run.loader, make_inputs(serial_run))
    run = _run(tmp_path / "b", *CASSLE, "--overlap-augment", device=device)
    step, data = engine_and_data(run, 10)
    assert isinstance(data, InputStream)
    ahead = _epochs(run, data)
    assert len(ahead) == len(serial) == 2 * len(run.loader) > 2
    for a, b in zip(ahead, serial):
        for x, y in zip(a, b):
            assert torch.equal(x, y)
    assert not isinstance(engine_and_data(serial_run, 10)[1], InputStream)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_overlapped_steps_have_no_synchronising_call(tmp_path):
    run = _run(tmp_path, *CASSLE, "--overlap-augment", "--no-compile-augment", device="cuda")
    step, data = engine_and_data(run, 10)
    it = iter(data)
    step(_Engine(), next(it))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for inputs in it:
            out = step(_Engine(), inputs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out["loss"])
