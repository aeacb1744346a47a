"""utils.input_stream.InputStream: the next batch's inputs made one step ahead change nothing."""
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


def test_made_one_batch_ahead_in_the_order_they_are_used():
    calls = []

    def inputs(batch):
        calls.append(batch)
        return batch * 10

    class Loader(list):
        def set_epoch(self, e):
            calls.append(f"epoch {e}")

    stream = InputStream(Loader([1, 2, 3]), inputs, torch.device("cpu"))
    assert len(stream) == 3
    it = iter(stream)
    assert calls == []  # nothing drawn before the first batch is asked for (the epoch's re-seed comes first)
    assert next(it) == 10 and calls == [1, 2]  # batch 2 made before batch 1's step
    assert next(it) == 20 and calls == [1, 2, 3]
    assert next(it) == 30 and calls == [1, 2, 3]  # nothing beyond the epoch's end
    assert next(it, None) is None
    stream.set_epoch(4)
    assert calls[-1] == "epoch 4"


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
