"""utils.training.input_stream.InputStream: inputs made ahead (several steps' together) change nothing."""
import pytest
import torch
from torch._dynamo.utils import counters

from tests.helpers import StubEngine, tiny_run
from utils.training.input_stream import InputStream
from utils.training.step import engine_and_data, make_inputs

CASSLE = ["--framework", "moco", "--aug-treatment", "mlp", "--aug-inj-type", "proj-cat",
          "--aug-cond", "crop", "color", "color_diff", "flip", "blur", "grayscale", "--ss-crop", "0.5"]


def _flat(inputs) -> list[torch.Tensor]:
    x1, x2, d1, d2, targets = inputs
    return [x1, x2, d1, d2, *(v for t in targets for v in t.values())]


def _epochs(run, data, inputs=None, epochs=2):
    out = []
    for e in range(epochs):
        run.set_epoch(e)
        out += [_flat(inputs([b])[0] if inputs else b) for b in data]
    return out


def _assert_same_inputs(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        for x, y in zip(a, b):
            assert x.shape == y.shape and torch.equal(x, y)


class _Loader(list):
    def __init__(self, items, calls):
        super().__init__(items)
        self.calls = calls

    def set_epoch(self, e):
        self.calls.append(f"epoch {e}")


def _recording_inputs(calls):
    def inputs(group):
        calls.append(list(group))
        return [b * 10 for b in group]
    return inputs


def test_one_batch_at_a_time_is_made_when_its_step_comes():
    calls = []
    stream = InputStream(_Loader([1, 2, 3], calls), _recording_inputs(calls))
    assert len(stream) == 3
    it = iter(stream)
    assert calls == []  # nothing drawn before the first batch is asked for (the epoch's re-seed comes first)
    assert next(it) == 10 and calls == [[1]]
    assert next(it) == 20 and calls == [[1], [2]]
    assert next(it) == 30 and calls == [[1], [2], [3]]
    assert next(it, None) is None
    stream.set_epoch(4)
    assert calls[-1] == "epoch 4"


def test_groups_of_batches_are_made_together_and_yielded_step_by_step():
    """ahead=2: one inputs() call per two batches, the epoch's last group shorter; a group is made only
    when its first step comes."""
    calls = []
    stream = InputStream(_Loader([1, 2, 3, 4, 5], calls), _recording_inputs(calls), ahead=2)
    got, seen = [], []
    for x in stream:
        got.append(x)
        seen.append(len(calls))
    assert got == [10, 20, 30, 40, 50]
    assert calls == [[1, 2], [3, 4], [5]]
    assert seen == [1, 1, 2, 2, 3]
    with pytest.raises(ValueError, match="ahead must be at least 1"):
        InputStream([], _recording_inputs(calls), ahead=0)


AHEAD = ["--compile-augment", "--augment-graph", "view", "--augment-ahead", "3"]


def test_steps_made_ahead_together_are_the_steps_made_one_by_one(tmp_path, monkeypatch):
    """--augment-ahead 3: the views of three steps in one whole-view call are, bit for bit, those of the
    eager run made step by step (same draws in the same order), over two epochs whose last group is
    shorter (and padded: no recompilation); descriptors and AugSelf targets too."""
    import utils.training.step
    monkeypatch.setattr(utils.training.step, "AUGMENT_COMPILE_BACKEND", "aot_eager")  # traced, no code generated
    size = ("--batch-size", "64")
    serial_run = tiny_run(tmp_path / "a", *CASSLE, *size)
    serial = _epochs(serial_run, serial_run.loader, make_inputs(serial_run))
    run = tiny_run(tmp_path / "b", *CASSLE, *size, *AHEAD)
    assert len(run.loader) % 3 != 0  # the short last group is exercised
    step, data = engine_and_data(run, 10)
    assert isinstance(data, InputStream) and data.ahead == 3
    got, graphs = [], []
    for e in range(2):
        run.set_epoch(e)
        for inputs in data:
            got.append(_flat(inputs))
            graphs.append(counters["stats"]["unique_graphs"])
    _assert_same_inputs(got, serial)
    assert not isinstance(engine_and_data(serial_run, 10)[1], InputStream)  # one step at a time: the loader itself
    assert len(set(graphs)) == 1  # compiled for the first group; the short last groups, padded, did not recompile
    assert torch.isfinite(step(StubEngine(), next(iter(data)))["loss"])


def test_steps_made_ahead_on_worker_crops_are_the_steps_made_one_by_one(tmp_path, monkeypatch):
    """The JPEG path: crops and boxes come from the loader and are joined; only the other draws are taken here."""
    import utils.training.step
    from tests.data_formats import write_class_folders
    monkeypatch.setattr(utils.training.step, "AUGMENT_COMPILE_BACKEND", "aot_eager")
    root = write_class_folders(str(tmp_path / "jpegs"), ["a", "b"], per_class=7, size=(40, 36))
    base = (*CASSLE, "--num-workers", "0", "--jpeg-decode", "workers", "--batch-size", "4", "--blur-impl", "conv")
    data = ("--dataset", "folder", "--datadir", root)
    serial_run = tiny_run(tmp_path / "a", *base, data=data)
    serial = _epochs(serial_run, serial_run.loader, make_inputs(serial_run))
    run = tiny_run(tmp_path / "b", *base, *AHEAD[:-1], "2", data=data)
    assert len(run.loader) == 3  # groups of 2 and 1
    _assert_same_inputs(_epochs(run, engine_and_data(run, 10)[1]), serial)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_steps_made_ahead_match_the_steps_made_one_by_one(tmp_path):
    """On the GPU, through Inductor: the eager run's inputs, step by step, to float rounding."""
    size = ("--batch-size", "64")
    serial_run = tiny_run(tmp_path / "a", *CASSLE, *size, "--no-compile-augment", device="cuda")
    serial = _epochs(serial_run, serial_run.loader, make_inputs(serial_run), epochs=1)
    run = tiny_run(tmp_path / "b", *CASSLE, *size, *AHEAD, device="cuda")
    got = _epochs(run, engine_and_data(run, 10)[1], epochs=1)
    assert len(got) == len(serial)
    for a, b in zip(got, serial):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, atol=1e-4, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_steps_made_ahead_have_no_synchronising_call(tmp_path):
    """Neither the groups' inputs, made between steps, nor the model steps wait for the GPU."""
    run = tiny_run(tmp_path, *CASSLE, *AHEAD, device="cuda")
    step, data = engine_and_data(run, 10)
    it = iter(data)
    step(StubEngine(), next(it))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for inputs in it:
            out = step(StubEngine(), inputs)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out["loss"])


class _Resumable(_Loader):
    def __init__(self, items):
        super().__init__(items, [])
        self.start = 0

    def resume_at(self, step):
        self.start = step

    def __iter__(self):
        start, self.start = self.start, 0
        return iter(list.__iter__(self[start:]) if start else super().__iter__())


@pytest.mark.parametrize("ahead", [1, 3])
def test_resume_after_any_step_gives_the_rest_of_the_epoch_with_the_same_draws(ahead):
    """What a resume inside an epoch relies on: with the generator set back to ``state_before(step)``
    (taken while the epoch ran, as a checkpoint would), ``resume_at(step)`` yields the epoch's remaining
    inputs, draws included, even where ``step`` falls inside a group made together."""
    gen = torch.Generator().manual_seed(0)

    def inputs(group):  # one draw per batch, in batch order, as the views' draws are taken
        return [(b, int(torch.randint(1000, (1,), generator=gen))) for b in group]

    stream = InputStream(_Resumable(list(range(7))), inputs, ahead=ahead, snapshot=gen.get_state)
    whole, states = [], {}
    for item in stream:
        whole.append(item)
        states[len(whole)] = stream.state_before(len(whole))
    assert len({d for _, d in whole}) == 7  # seven different draws
    for step in range(1, 7):
        gen.set_state(states[step])
        stream.resume_at(step)
        assert list(stream) == whole[step:], step
