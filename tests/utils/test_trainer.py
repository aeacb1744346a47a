"""The training step of utils.trainer: nothing in it makes the host wait for the device."""
import dataclasses
import traceback

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import pretrain_cond
from models import FRAMEWORKS
from tests.helpers import StubEngine, tiny_run
from utils.trainer import make_step

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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("compile_augment", ["--compile-augment", "--no-compile-augment"])
@pytest.mark.parametrize("framework", ["moco", "simclr"])
def test_cuda_training_step_has_no_synchronising_call(tmp_path, framework, compile_augment):
    args = ["--framework", framework, "--aug-treatment", "mlp", "--aug-inj-type", "proj-cat",
            "--aug-cond", "crop", "color", "color_diff", "flip", "blur", "grayscale", "--ss-crop", "0.5",
            compile_augment]
    run = tiny_run(tmp_path, *args, device="cuda")
    step = make_step(run, total_steps=10)
    batch = next(iter(run.loader))
    step(StubEngine(), batch)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        step(StubEngine(), batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()


def _compile_spy(monkeypatch) -> list:
    """Record how ``nn.Module.compile`` is called, then compile as asked."""
    calls, real = [], torch.nn.Module.compile

    def spy(self, *args, **kwargs):
        calls.append((type(self).__name__, kwargs))
        return real(self, *args, **kwargs)
    monkeypatch.setattr(torch.nn.Module, "compile", spy)
    return calls


def test_compile_compiles_the_online_backbone_in_its_mode_and_trains_the_same(tmp_path, monkeypatch):
    """--compile / --compile-mode: only the online backbone goes through torch.compile, in the mode
    asked for, and the run is the eager run (aot_eager traces the same graphs without codegen). The
    k-NN monitor runs it eager: no graph is compiled for eval mode or its batch shapes."""
    import types

    from torch._dynamo.backends.registry import lookup_backend

    import utils.trainer as trainer
    calls, graphs = _compile_spy(monkeypatch), []

    def counting_aot_eager(gm, example_inputs, **options):  # options: the mode, as Inductor would get it
        graphs.append(options)
        return lookup_backend("aot_eager")(gm, example_inputs)
    monkeypatch.setattr(trainer, "BACKBONE_COMPILE_BACKEND", counting_aot_eager)  # inductor is slow on CPU
    losses = {}
    for name, flags in {"eager": [], "compiled": ["--compile", "--compile-mode", "reduce-overhead"]}.items():
        run = tiny_run(tmp_path / name, "--framework", "moco", "--aug-treatment", "mlp", "--aug-inj-type",
                       "proj-cat", "--aug-cond", "crop", "color", *flags)
        step, batch = make_step(run, total_steps=10), next(iter(run.loader))
        losses[name] = [float(step(StubEngine(), batch)["loss"]) for _ in range(2)]
        compiled_call = run.framework.backbone._compiled_call_impl
        assert (compiled_call is not None) == (name == "compiled")
        assert run.framework.target_backbone._compiled_call_impl is None  # MoCo's key encoder stays eager
    assert calls == [("MiniResNet", {"backend": counting_aot_eager, "mode": "reduce-overhead"})]
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-5)
    trained = len(graphs)
    assert trained >= 1 and all(options == {"mode": "reduce-overhead"} for options in graphs)
    small = lambda d, n: types.SimpleNamespace(images=d.images[:n], labels=d.labels[:n])  # noqa: E731
    run.data = dataclasses.replace(run.data, knn_train=small(run.data.knn_train, 300),
                                   knn_test=small(run.data.knn_test, 70))  # batches of 256 and 44
    assert 0 <= trainer.knn_monitor(run)["nn1"] <= 1
    assert len(graphs) == trained
    step(StubEngine(), batch)  # and training goes on with the graphs it has
    assert len(graphs) == trained


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_backbone_compiled_with_cuda_graphs_trains_like_eager(tmp_path):
    """--compile --compile-mode reduce-overhead: Inductor's CUDA graphs replay the online backbone,
    called on two views a step beside MoCo's eager key encoder, across steps and around the k-NN
    monitor, with the eager run's losses."""
    import utils.trainer as trainer
    losses, knn = {}, {}
    for name, flags in {"eager": [], "graphs": ["--compile", "--compile-mode", "reduce-overhead"]}.items():
        run = tiny_run(tmp_path / name, "--framework", "moco", "--aug-treatment", "mlp", "--aug-inj-type",
                       "proj-cat", "--aug-cond", "crop", "color", "--precision", "fp32", device="cuda")
        step, batches = make_step(run, total_steps=10), iter(run.loader)
        losses[name] = [float(step(StubEngine(), next(batches))["loss"]) for _ in range(4)]
        knn[name] = trainer.knn_monitor(run)["nn1"]  # between epochs; then training goes on
        losses[name].append(float(step(StubEngine(), next(batches))["loss"]))
    assert losses["graphs"] == pytest.approx(losses["eager"], rel=2e-3)
    assert knn["graphs"] == pytest.approx(knn["eager"], abs=3 / 359)  # a neighbour or two may swap


def test_compile_augment_compiles_the_augmentation_and_trains_the_same(tmp_path, monkeypatch):
    """--compile-augment: views, descriptors and AugSelf targets go through torch.compile, stage by stage
    or (--augment-graph view) as one graph per view, and the run is the eager run (the aot_eager
    backend traces the same graphs without generating code)."""
    import augmentations.pipeline
    import utils.trainer as trainer
    seen, used, real = [], [], augmentations.pipeline.compiled

    def spy(fn, backend):
        seen.append((fn.__name__, backend))
        wrapped = real(fn, backend)

        def call(*args, **kwargs):
            used.append(fn.__name__)
            return wrapped(*args, **kwargs)
        return call

    monkeypatch.setattr(augmentations.pipeline, "compiled", spy)
    monkeypatch.setattr(trainer, "compiled", spy)
    monkeypatch.setattr(trainer, "AUGMENT_COMPILE_BACKEND", "aot_eager")  # inductor's codegen is slow on CPU
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


def test_blur_impl_reaches_the_augmentation_recipe(tmp_path):
    base = ("--aug-inj-type", "proj-none")
    assert tiny_run(tmp_path / "a", *base, "--blur-impl", "shift").cfg.blur_impl == "shift"
    assert tiny_run(tmp_path / "b", *base).cfg.blur_impl == "conv"  # CPU: eager augmentation, so the convolution


def test_every_step_trains_in_training_mode_even_after_an_evaluation_left_eval_mode(tmp_path, monkeypatch):
    """Training mode is set once an epoch (``Run.set_epoch``), not in every step: the epoch-end k-NN
    runs the backbone in eval mode, and the next epoch must train in training mode again."""
    import utils.trainer as trainer
    from tests.data_formats import write_class_folders
    modes, real_knn, real_model_step = [], trainer.knn_monitor, trainer.make_model_step

    def knn_then_eval(run):
        out = real_knn(run)
        run.model.eval()  # an evaluation that forgets to restore training mode
        return out

    def recording_model_step(run, total_steps):
        model_step = real_model_step(run, total_steps)

        def step(engine, inputs):
            modes.append(all(m.training for m in run.model.modules()))
            return model_step(engine, inputs)
        return step

    monkeypatch.setattr(trainer, "knn_monitor", knn_then_eval)
    monkeypatch.setattr(trainer, "make_model_step", recording_model_step)
    root = write_class_folders(str(tmp_path / "jpegs"), ["a", "b"], per_class=4, size=(40, 36))
    pretrain_cond.main(["--logdir", str(tmp_path / "run"), "--dataset", "folder", "--datadir", root,
                        "--model", "mini_resnet", "--batch-size", "4", "--max-epochs", "2", "--eval-freq", "1",
                        "--num-workers", "0", "--proj-hidden", "32", "--aug-cond", "crop", "color", "--device", "cpu"])
    assert modes == [True] * 4


def test_opening_lines_say_what_trains_and_what_the_knn_monitor_compares(tmp_path):
    import dataclasses
    from utils.trainer import describe
    run = tiny_run(tmp_path, "--aug-inj-type", "proj-none")
    head, method, knn = describe(run, 44)
    assert head.startswith("simsiam on colordigits (1438 images), mini_resnet, ") and "44 steps/epoch" in head
    assert method == "projector without conditioning (--aug-inj-type proj-none)"
    assert knn == "k-NN monitor: 359 labelled queries against 1438 labelled images"
    run.data = dataclasses.replace(run.data, knn_train=None, knn_test=None)
    assert describe(run, 44)[2] == "k-NN monitor off: the data has no labelled split"
    run.args.eval_freq = 0
    assert len(describe(run, 44)) == 2


def test_method_line_names_the_conditioning_and_flags_that_change_nothing(tmp_path):
    from augmentations import config_for_dataset
    from utils.trainer import method_line
    run = tiny_run(tmp_path, "--aug-inj-type", "proj-none")
    a, small = run.args, config_for_dataset("colordigits")
    a.aug_cond, a.ss_crop, a.ss_color = ["color", "crop"], 0.5, 0.25
    assert method_line(a, small) == ("projector without conditioning (--aug-inj-type proj-none); --aug-cond color "
                                     "crop is not used; AugSelf heads: crop 0.5, color 0.25")
    a.ss_crop = a.ss_color = -1.0
    a.aug_inj_type, a.aug_treatment, a.aug_nn_depth, a.aug_nn_width = "proj-cat", "mlp", 6, 64
    a.aug_cond = ["blur", "color", "color_diff", "crop", "grayscale"]
    line = method_line(a, config_for_dataset("imagenet100"))
    assert line == ("CASSLE: the 13-d descriptor (blur color color_diff crop grayscale) through an MLP "
                    "(depth 6, width 64), proj-cat")
    never = "; its blur piece is always 0, as the --dataset colordigits recipe never blurs"
    assert method_line(a, small) == line + never
    a.aug_treatment, a.aug_cond = "hn", ["flip"]
    assert method_line(a, small) == ("CASSLE: the 1-d descriptor (flip) into a hypernetwork (depth 6, width 64) "
                                     "that makes the projector (mlp)")
