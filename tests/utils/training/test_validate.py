"""Defaults that depend on the device: chosen by measurement (README, Speed), resolved before training;
and the checks of flag values, --logdir and --resume that refuse a run before it writes anything."""
import argparse
import os

import pytest
import torch

import pretrain_cond
import utils.training.validate as validate_module
from utils.training.validate import resolve_defaults


def _args(*extra):
    return pretrain_cond.build_parser().parse_args(["--logdir", "x", *extra])


@pytest.fixture
def cuda_with_triton(monkeypatch):
    """A machine whose CUDA GPU Inductor can generate code for, as the CUDA defaults assume."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(validate_module, "triton_usable", lambda: True)


@pytest.mark.parametrize("workers,decode", [(4, "device"), (7, "device"), (8, "workers"), (16, "workers")])
def test_cuda_defaults(cuda_with_triton, workers, decode):
    a = _args("--device", "cuda", "--num-workers", str(workers))
    resolve_defaults(a)
    assert (a.precision, a.channels_last, a.compile, a.compile_mode, a.compile_augment, a.jpeg_decode) == (
        "bf16", True, True, "reduce-overhead", True, decode)


@pytest.mark.parametrize("flags,compile_,mode", [
    ((), True, "reduce-overhead"), (("--distributed",), False, "default"), (("--no-compile",), False, "default"),
    (("--compile-mode", "max-autotune"), True, "max-autotune"),
    (("--distributed", "--compile"), True, "reduce-overhead"), (("--device", "cpu"), False, "default"),
    (("--device", "cpu", "--compile"), True, "default")])
def test_backbone_compile_defaults_to_cuda_graphs_on_one_gpu(cuda_with_triton, flags, compile_, mode):
    """The backbone is compiled into CUDA graphs where that was measured faster (one process on CUDA);
    not under --distributed (untested with DDP) nor on a CPU; an explicit choice of either flag is kept."""
    a = _args("--device", "cuda", *flags)
    resolve_defaults(a)
    assert (a.compile, a.compile_mode) == (compile_, mode)


def test_a_compile_mode_without_compiling_is_refused(cuda_with_triton):
    for flags in (("--no-compile",), ("--distributed",)):
        with pytest.raises(ValueError, match="^--compile-mode reduce-overhead is how --compile compiles the backbone"):
            resolve_defaults(_args("--device", "cuda", "--compile-mode", "reduce-overhead", *flags))


@pytest.mark.parametrize("gpu,compiler", [((6, 1), "/usr/bin/cc"), ((9, 0), None)])  # a P100; no C compiler
def test_compiling_where_triton_cannot_run_is_off_by_default_and_refused_when_asked(monkeypatch, gpu, compiler):
    import importlib.util
    import shutil
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: gpu)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "triton" else None)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: compiler)
    assert not validate_module.triton_usable()
    a = _args("--device", "cuda")
    resolve_defaults(a)
    assert (a.compile_augment, a.compile) == (False, False)
    for flag in ("--compile-augment", "--compile"):
        with pytest.raises(ValueError, match=f"^{flag} on CUDA needs Triton"):
            resolve_defaults(_args("--device", "cuda", flag))


def test_triton_usable_on_a_volta_or_later_gpu_with_a_compiler(monkeypatch):
    import importlib.util
    import shutil
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 0))
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "triton" else None)
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/gcc" if name == "gcc" else None)
    assert validate_module.triton_usable()


def test_cpu_defaults_and_explicit_choices_are_kept():
    a = _args("--device", "cpu")
    resolve_defaults(a)
    assert (a.precision, a.channels_last, a.compile_augment, a.jpeg_decode) == ("fp32", False, False, "workers")
    assert (a.compile, a.compile_mode) == (False, "default")
    assert (a.augment_graph, a.augment_ahead) == ("stages", 1)
    b = _args("--device", "cpu", "--jpeg-decode", "device", "--precision", "bf16", "--channels-last",
              "--compile-augment", "--augment-graph", "view")
    resolve_defaults(b)
    assert (b.precision, b.channels_last, b.compile_augment, b.jpeg_decode) == ("bf16", True, True, "device")
    assert b.augment_graph == "view"


@pytest.mark.parametrize("dataset,flags,graph,ahead", [
    ("colordigits", (), "view", 8), ("cifar10", (), "view", 8), ("cifar100", (), "view", 8),
    ("stl10", (), "view", 8), ("stl10_rot", (), "view", 8), ("imagenet100", (), "stages", 1),
    ("folder", (), "stages", 1),
    ("cifar10", ("--no-compile-augment",), "stages", 1), ("cifar10", ("--augment-graph", "stages"), "stages", 1),
    ("cifar10", ("--augment-ahead", "1"), "stages", 1), ("cifar10", ("--augment-ahead", "4"), "view", 4),
    ("cifar10", ("--augment-graph", "view"), "view", 8), ("folder", ("--augment-ahead", "2"), "view", 2)])
def test_cuda_makes_the_views_of_images_held_on_the_gpu_eight_steps_at_once(cuda_with_triton, dataset, flags,
                                                                           graph, ahead):
    """The whole view, 8 steps at once, where it was measured faster: images held on the GPU (32 and
    96 px), the augmentation compiled; an explicit choice of either flag is kept and the other follows it."""
    a = _args("--device", "cuda", "--dataset", dataset, *flags)
    resolve_defaults(a)
    assert (a.augment_graph, a.augment_ahead) == (graph, ahead)


def test_steps_at_once_need_the_compiled_whole_view():
    a = _args("--device", "cpu", "--augment-ahead", "4")
    with pytest.raises(ValueError, match="^--augment-graph view compiles the whole view: it needs --compile-augment"):
        resolve_defaults(a)
    with pytest.raises(ValueError, match="^--augment-ahead 4 makes each view of 4 steps in one whole-view call"):
        resolve_defaults(_args("--device", "cpu", "--compile-augment", "--augment-ahead", "4", "--augment-graph",
                               "stages"))


def test_blur_impl_follows_compile_augment_unless_chosen():
    """auto: the shifted-sum blur where the augmentation is compiled (Inductor fuses it), the
    grouped convolution where it runs eager; an explicit choice is kept."""
    for flags, impl in [((), "conv"), (("--compile-augment",), "shift"), (("--no-compile-augment",), "conv"),
                        (("--compile-augment", "--blur-impl", "conv"), "conv"), (("--blur-impl", "shift"), "shift")]:
        a = _args("--device", "cpu", *flags)
        resolve_defaults(a)
        assert a.blur_impl == impl, flags


def test_resolve_device_shared_by_every_entry_point(monkeypatch):
    from utils.training.validate import resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="--device must be cuda, cpu or auto, got 'gpu'"):
        resolve_device("gpu")


def test_launch_plan_spawns_only_for_a_world_of_several(monkeypatch):
    """--distributed spawns one process per rank; a world of one runs in this process (its DDP and
    SyncBatchNorm would change nothing); ranks that torchrun or SLURM made are joined, not spawned."""
    from utils.training.validate import launch_plan
    for var in ("WORLD_SIZE", "SLURM_NTASKS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert launch_plan(_args("--device", "cpu")) == (None, None)
    assert launch_plan(_args("--device", "cpu", "--distributed")) == (None, None)
    assert launch_plan(_args("--device", "cuda", "--distributed")) == (None, None)  # one visible GPU
    assert launch_plan(_args("--device", "cpu", "--distributed", "--nproc-per-node", "2")) == ("gloo", 2)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert launch_plan(_args("--device", "cuda", "--distributed")) == ("nccl", 8)
    monkeypatch.setenv("WORLD_SIZE", "16")
    assert launch_plan(_args("--device", "cuda", "--distributed")) == ("nccl", None)
    monkeypatch.setenv("WORLD_SIZE", "1")  # torchrun --nproc_per_node 1: its process group is joined
    assert launch_plan(_args("--device", "cuda", "--distributed")) == ("nccl", None)
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert launch_plan(_args("--device", "cpu", "--distributed")) == ("gloo", None)


def _pretrain_args(logdir, *extra):
    return pretrain_cond.build_parser().parse_args(
        ["--logdir", str(logdir), "--dataset", "colordigits", "--model", "mini_resnet", "--device", "cpu",
         "--aug-inj-type", "proj-none", "--framework", "simclr", "--batch-size", "32", *map(str, extra)])


@pytest.mark.parametrize("flag,value", [("--base-lr", "inf"), ("--base-lr", "nan"), ("--wd", "inf"),
                                        ("--wd", "nan"), ("--momentum", "nan"), ("--knn-t", "inf"),
                                        ("--ss-crop", "nan"), ("--ss-color", "inf"), ("--ss-flip=-inf", None)])
def test_non_finite_flag_values_are_refused_before_anything_is_written(tmp_path, flag, value):
    """float() parses 'inf' and 'nan'; 'inf > 0' passed the range check, and a NaN weight compared false."""
    from utils.training.validate import validate
    argv = [flag, value] if value else [flag]
    flag, value = flag.split("=") if "=" in flag else (flag, value)
    with pytest.raises(ValueError, match=rf"^{flag} must be a finite number, got {value}$"):
        validate(_pretrain_args(tmp_path / "run", *argv))
    assert not (tmp_path / "run").exists()


def _fake_checkpoint(path, args, epoch, **override):
    from utils.checkpoint import save_atomic
    save_atomic({"epoch": epoch, "args": vars(args), "model": {}, "engine": {}, "optimizer": {}, **override},
                str(path))


def test_resuming_an_older_checkpoint_into_its_folder_is_refused_unless_asked(tmp_path):
    """--resume run/ckpt-3.pth into run/, whose ckpt-last.pth is at epoch 6, would write epoch 4 over it."""
    from utils.training.validate import validate
    run = tmp_path / "run"
    run.mkdir()
    base = _pretrain_args(run)
    for epoch in (3, 6):
        _fake_checkpoint(run / f"ckpt-{epoch}.pth", base, epoch)
    _fake_checkpoint(run / "ckpt-last.pth", base, 6)
    with pytest.raises(ValueError, match=rf"^--resume {run}/ckpt-3.pth is at epoch 3, older than {run}/"
                                         r"ckpt-last.pth \(epoch 6\), which this run would overwrite: pass "
                                         r"--allow-rollback to go back, or a new --logdir$"):
        validate(_pretrain_args(run, "--resume", run / "ckpt-3.pth"))
    a = _pretrain_args(run, "--resume", run / "ckpt-3.pth", "--allow-rollback")
    validate(a)
    assert a.resume == str(run / "ckpt-3.pth")
    validate(_pretrain_args(tmp_path / "branch", "--resume", run / "ckpt-3.pth"))  # a new folder
    validate(_pretrain_args(run, "--resume", run / "ckpt-6.pth"))  # the same epoch
    validate(_pretrain_args(run, "--resume", "last"))


def test_resuming_an_epoch_end_checkpoint_over_a_later_step_of_the_next_epoch_is_refused(tmp_path):
    """ckpt-last.pth written mid-epoch (a preemption, --ckpt-every-steps) is at epoch 3 + 5 steps:
    ckpt-3.pth would roll those steps back."""
    from utils.training.validate import validate
    run = tmp_path / "run"
    run.mkdir()
    base = _pretrain_args(run)
    _fake_checkpoint(run / "ckpt-3.pth", base, 3)
    _fake_checkpoint(run / "ckpt-last.pth", base, 3, step=5)
    with pytest.raises(ValueError, match=rf"is at epoch 3, older than {run}/ckpt-last.pth \(epoch 3, step 5\)"):
        validate(_pretrain_args(run, "--resume", run / "ckpt-3.pth"))
    validate(_pretrain_args(run, "--resume", run / "ckpt-3.pth", "--allow-rollback"))


def test_a_run_made_before_a_flag_existed_resumes_with_the_behaviour_it_had(tmp_path):
    """Saturation was torchvision's and MoCo v3's momentum a cosine before their flags existed."""
    from utils.training.validate import validate
    run = tmp_path / "run"
    run.mkdir()
    old = vars(_pretrain_args(run)).copy()
    for k in ("saturation_impl", "mocov3_momentum_schedule"):
        old.pop(k)
    _fake_checkpoint(run / "ckpt-last.pth", argparse.Namespace(**old), 1)
    a = _pretrain_args(run, "--resume", "last")
    validate(a)
    assert (a.saturation_impl, a.mocov3_momentum_schedule) == ("torchvision", "cosine")
    b = _pretrain_args(tmp_path / "new")
    validate(b)
    assert (b.saturation_impl, b.mocov3_momentum_schedule) == ("hsv", "constant")


def test_a_checkpoint_holding_removed_flags_resumes_and_they_are_not_reported_as_changed(tmp_path):
    """A run saved while --overlap-augment and --jpeg-worker-fraction existed: its args hold them; the
    resumed run has neither, ignores them, and reports only what really changed."""
    from utils.training.validate import changed_since, validate
    first = _pretrain_args(tmp_path / "first")
    validate(first)
    old = {**vars(first), "overlap_augment": False, "jpeg_worker_fraction": 0.0}
    run = tmp_path / "run"
    run.mkdir()
    _fake_checkpoint(run / "ckpt-last.pth", argparse.Namespace(**old), 1)
    a = _pretrain_args(run, "--resume", "last")
    validate(a)
    assert not hasattr(a, "overlap_augment") and not hasattr(a, "jpeg_worker_fraction")
    assert changed_since(old, a) == []
    b = _pretrain_args(run, "--resume", "last", "--max-epochs", "7")
    validate(b)
    assert changed_since(old, b) == [f"--max-epochs {old['max_epochs']!r} -> 7"]


def test_a_resume_checkpoint_whose_args_is_not_a_dict_is_one_line(tmp_path):
    from utils.training.validate import validate
    bad = tmp_path / "bad.pth"
    _fake_checkpoint(bad, _pretrain_args(tmp_path), 1)
    from utils.checkpoint import load_checkpoint, save_atomic
    ckpt = load_checkpoint(str(bad))
    for args in (["--model", "resnet18"], "resnet18", None):
        save_atomic({**ckpt, "args": args}, str(bad))
        with pytest.raises(ValueError, match=rf"^--resume {bad}: not a pretraining checkpoint \(its 'args' is a "
                                             rf"{type(args).__name__}, not a dict\)$"):
            validate(_pretrain_args(tmp_path / "run", "--resume", bad))
    assert not (tmp_path / "run").exists()


def test_a_folder_refused_as_logdir_gets_no_lock_file_and_a_new_one_is_locked(tmp_path):
    """The lock file is written once the folder has passed its checks, not into a data folder."""
    from utils.training.validate import validate
    data = tmp_path / "images"
    data.mkdir()
    (data / "a.png").write_bytes(b"")
    with pytest.raises(ValueError, match="exists and is not empty, and holds no run"):
        validate(_pretrain_args(data))
    assert os.listdir(data) == ["a.png"]
    validate(_pretrain_args(tmp_path / "new"))
    assert os.listdir(tmp_path / "new") == [".lock"]


def test_temporary_files_of_killed_writes_are_removed_at_start_up(tmp_path):
    from utils.training.validate import validate
    run = tmp_path / "run"
    run.mkdir()
    base = _pretrain_args(run)
    _fake_checkpoint(run / "ckpt-last.pth", base, 2)
    for stale in (".tmp-k2j4x.pth", "knn.json.tmp"):
        (run / stale).write_bytes(b"half")
    validate(_pretrain_args(run, "--resume", "last"))
    assert sorted(os.listdir(run)) == [".lock", "ckpt-last.pth"]


def test_resume_last_takes_a_kept_checkpoint_written_after_ckpt_last(tmp_path):
    """A process killed between ckpt-3.pth and ckpt-last.pth leaves ckpt-last.pth at epoch 2 (or none):
    'last' is then ckpt-3.pth. A ckpt-last.pth copied back from an older one by hand is kept."""
    from utils.checkpoint import latest_checkpoint
    run = tmp_path / "run"
    run.mkdir()
    assert latest_checkpoint(str(run)) is None and latest_checkpoint(str(tmp_path / "none")) is None
    base = _pretrain_args(run)
    _fake_checkpoint(run / "ckpt-3.pth", base, 3)
    assert latest_checkpoint(str(run)) == str(run / "ckpt-3.pth")
    _fake_checkpoint(run / "ckpt-last.pth", base, 2)
    os.utime(run / "ckpt-last.pth", (1e9, 1e9))  # written before ckpt-3.pth
    assert latest_checkpoint(str(run)) == str(run / "ckpt-3.pth")
    os.utime(run / "ckpt-last.pth", None)  # copied back after it
    assert latest_checkpoint(str(run)) == str(run / "ckpt-last.pth")
    _fake_checkpoint(run / "ckpt-last.pth", base, 3)
    os.utime(run / "ckpt-last.pth", (1e9, 1e9))
    assert latest_checkpoint(str(run)) == str(run / "ckpt-last.pth")  # the same epoch: last
