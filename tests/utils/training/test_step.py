"""utils.training.step: the training step never makes the host wait for the device, and --compile-augment
traces the same step as eager."""
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from models import FRAMEWORKS
from tests.helpers import StubEngine, tiny_run
from utils.training.step import engine_and_data, make_step

# Ops that, on a CUDA tensor, block the host until the device has caught up: reading a value back
# (item, tolist, bool), data-dependent output shapes, and torch.tensor(python data), which is a
# pageable host-to-device copy followed by a stream synchronisation.
SYNCING = {"_local_scalar_dense", "is_nonzero", "nonzero", "masked_select", "unique", "_unique2",
           "unique_consecutive", "equal", "allclose", "repeat_interleave", "lift_fresh", "lift_fresh_copy"}


class SyncOps(TorchDispatchMode):
    """Records every dispatched op that would synchronise a CUDA stream.

    The optimiser's own host-side scalars (AdamW's step counts live on the CPU) are not counted.
    """

    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in SYNCING and not any("torch/optim/" in f.filename for f in traceback.extract_stack()):
            self.seen.append(name)
        return func(*args, **(kwargs or {}))


def test_the_sync_hook_sees_value_reads_and_tensors_made_from_python_data():
    x = torch.arange(4.0)
    with SyncOps() as mode:
        torch.tensor([1.0, 2.0])
        x.sum().item()
        x.nonzero()
        x.tolist()  # reads memory directly on the CPU (on CUDA it is a copy, which this hook cannot see)
    assert mode.seen == ["lift_fresh", "_local_scalar_dense", "nonzero"]


@pytest.mark.parametrize("method", [
    ["--aug-treatment", "mlp", "--aug-inj-type", "proj-cat",
     "--aug-cond", "crop", "color", "color_diff", "flip", "blur", "grayscale"],
    ["--aug-inj-type", "proj-none", "--ss-crop", "0.5", "--ss-color", "0.5"],
])
@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_training_step_never_waits_for_the_device(tmp_path, framework, method):
    run = tiny_run(tmp_path, "--framework", framework, *method)
    step = make_step(run, total_steps=10)
    batch = next(iter(run.loader))
    step(StubEngine(), batch)  # the first step makes the cached constants
    with SyncOps() as mode:
        out = step(StubEngine(), batch)
    assert mode.seen == [], f"{framework}: syncing ops in the step: {sorted(set(mode.seen))}"
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize("decode", ["workers", "device"])
def test_training_step_on_jpeg_folders_never_waits_for_the_device(tmp_path, decode):
    """The JPEG path: crops come with their boxes from the loader (PIL in workers, or batched decode)."""
    from tests.data_formats import write_class_folders
    root = write_class_folders(str(tmp_path / "jpegs"), ["a", "b"], per_class=4, size=(40, 36))
    run = tiny_run(tmp_path, "--framework", "moco", "--num-workers", "0", "--jpeg-decode", decode, "--batch-size",
                   "8", "--aug-treatment", "mlp", "--aug-inj-type", "proj-cat", "--aug-cond", "crop", "color", "blur",
                   data=("--dataset", "folder", "--datadir", root))
    step = make_step(run, total_steps=10)
    batch = next(iter(run.loader))
    step(StubEngine(), batch)
    with SyncOps() as mode:
        out = step(StubEngine(), batch)
    assert mode.seen == [], f"{decode}: syncing ops in the step: {sorted(set(mode.seen))}"
    assert torch.isfinite(out["loss"])


def test_steps_made_ahead_never_wait_for_the_device(tmp_path, monkeypatch):
    """--augment-ahead: joining the draws of several batches, the whole-view call,
    splitting its inputs per step and padding the epoch's short last group add no syncing op to the
    input side (the model step is checked above). The view functions run eagerly here (no backend)
    so that the hook sees every op they dispatch."""
    import utils.training.step
    monkeypatch.setattr(utils.training.step, "AUGMENT_COMPILE_BACKEND", None)
    run = tiny_run(tmp_path, "--framework", "moco", "--aug-treatment", "mlp", "--aug-inj-type", "proj-cat",
                   "--aug-cond", "crop", "color", "color_diff", "flip", "blur", "grayscale", "--ss-crop", "0.5",
                   "--batch-size", "128", "--compile-augment", "--augment-graph", "view", "--augment-ahead", "3")
    assert len(run.loader) == 11  # groups of 3, 3, 3 and 2 (padded)
    step, data = engine_and_data(run, total_steps=10)
    it = iter(data)
    next(it)  # makes group 1 and the cached constants
    with SyncOps() as mode:
        rest = list(it)  # makes groups 2, 3 and 4
    assert mode.seen == [], f"syncing ops in the input side: {sorted(set(mode.seen))}"
    assert len(rest) == 10 and torch.isfinite(step(StubEngine(), rest[-1])["loss"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("compile_flags", [("--compile-augment",), ("--no-compile-augment",),
                                           ("--compile-augment", "--compile")])  # the last: the default on one GPU
@pytest.mark.parametrize("framework", ["moco", "simclr"])
def test_cuda_training_step_has_no_synchronising_call(tmp_path, framework, compile_flags):
    """After warm-up (with the backbone's CUDA graphs: a step run eager, then one recorded), a step
    queues its work without waiting for the GPU."""
    args = ["--framework", framework, "--aug-treatment", "mlp", "--aug-inj-type", "proj-cat",
            "--aug-cond", "crop", "color", "color_diff", "flip", "blur", "grayscale", "--ss-crop", "0.5",
            *compile_flags]
    run = tiny_run(tmp_path, *args, device="cuda")
    step = make_step(run, total_steps=10)
    batch = next(iter(run.loader))
    for _ in range(3):
        step(StubEngine(), batch)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step(StubEngine(), batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


def test_compile_augment_compiles_the_augmentation_and_trains_the_same(tmp_path, monkeypatch):
    """--compile-augment: views, descriptors and AugSelf targets go through torch.compile, stage by stage
    or (--augment-graph view) as one graph per view, and the run is the eager run (the aot_eager
    backend traces the same graphs without generating code)."""
    import augmentations.pipeline
    import utils.training.step
    seen, used, real = [], [], augmentations.pipeline.compiled

    def spy(fn, backend):
        seen.append((fn.__name__, backend))
        wrapped = real(fn, backend)

        def call(*args, **kwargs):
            used.append(fn.__name__)
            return wrapped(*args, **kwargs)
        return call

    monkeypatch.setattr(augmentations.pipeline, "compiled", spy)
    monkeypatch.setattr(utils.training.step, "compiled", spy)
    monkeypatch.setattr(utils.training.step, "AUGMENT_COMPILE_BACKEND", "aot_eager")  # inductor's codegen is slow on CPU
    losses, calls = {}, {}
    for name, flags in {"eager": [], "stages": ["--compile-augment"],
                        "view": ["--compile-augment", "--augment-graph", "view"]}.items():
        seen.clear()
        used.clear()
        run = tiny_run(tmp_path / name, "--framework", "simclr", "--aug-treatment", "mlp",
                       "--aug-inj-type", "proj-cat", "--aug-cond", "crop", "color", "color_diff", "flip",
                       "--ss-crop", "0.5", "--ss-color", "0.5", *flags)
        step, batch = make_step(run, total_steps=10), next(iter(run.loader))
        losses[name] = [float(step(StubEngine(), batch)["loss"]) for _ in range(2)]
        calls[name] = sorted(set(seen))
        if name == "view":  # one graph per view; the stage graphs exist but are not called
            assert set(used) == {"view_from_draws", "build_descriptor", "augself_targets"}
    stages = ["crop_stage", "params_from_uniforms", "pre_jitter", "post_jitter", "adjust_brightness",
              "adjust_contrast", "adjust_saturation", "adjust_hue", "build_descriptor", "augself_targets"]
    assert calls["eager"] == sorted((f, None) for f in stages)
    assert calls["stages"] == sorted((f, "aot_eager") for f in stages)
    assert calls["view"] == sorted((f, "aot_eager") for f in [*stages, "view_from_draws"])
    assert losses["stages"] == losses["eager"] == losses["view"]
