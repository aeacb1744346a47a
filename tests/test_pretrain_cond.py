"""pretrain_cond.py end to end on CPU: the seed command, every framework x method, exact resume,
two-process gloo, and one-line errors for bad input."""
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading

import pytest
import torch
from torchvision import models as tvm

import pretrain_cond
from models import FRAMEWORKS
from tests.helpers import ROOT, expect_one_line_error
from utils.checkpoint import load_checkpoint, save_atomic

SMALL = ["--dataset", "colordigits", "--model", "mini_resnet", "--batch-size", "256", "--max-epochs", "1",
         "--proj-hidden", "64", "--print-freq", "2", "--eval-freq", "1", "--device", "cpu"]
METHODS = {
    "baseline": ["--aug-inj-type", "proj-none"],
    "augself": ["--aug-inj-type", "proj-none", "--ss-crop", "0.5", "--ss-color", "0.5"],
    "cassle": ["--aug-treatment", "mlp", "--aug-nn-depth", "3", "--aug-nn-width", "16", "--aug-inj-type", "proj-cat",
               "--aug-cond", "crop", "color", "color_diff", "flip", "blur", "grayscale"],
}


def run(argv):
    pretrain_cond.main([str(a) for a in argv])


def test_seed_command_runs_on_tiny_imagenet100(seed_pretrain_run):
    logdir = seed_pretrain_run
    ckpt = load_checkpoint(str(logdir / "ckpt-last.pth"))
    assert ckpt["epoch"] == 1 and os.path.exists(logdir / "ckpt-1.pth")  # last epoch always kept
    assert ckpt["model"]["projector.net.0.weight"].shape[1] == 576  # 512 features + 64-d embedding
    res = tvm.resnet18().load_state_dict(ckpt["backbone"], strict=False)
    assert set(res.missing_keys) == {"fc.weight", "fc.bias"} and not res.unexpected_keys
    knn = json.loads((logdir / "knn.json").read_text())
    assert 0.0 <= knn["knn"] <= 1.0 and knn["epoch"] == 1 and knn["k"] == 1  # a tenth of a class: 100 images, 100 classes
    log = (logdir / "log.txt").read_text()
    assert "2 steps/epoch" in log and "weighted-1NN=" in log and "ckpt-last.pth" in log
    assert "k-NN monitor: 100 labelled queries against 100 labelled images" in log


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_each_framework_and_method_trains_an_epoch(tmp_path, monkeypatch, framework, method):
    from tests.data_formats import write_cifar
    data = write_cifar(str(tmp_path / "cifar"), monkeypatch, "cifar10", n_train=64, n_test=32)
    logdir = tmp_path / "run"
    run(["--logdir", logdir, "--framework", framework, "--dataset", "cifar10", "--datadir", data,
         "--model", "mini_resnet", "--batch-size", "32", "--max-epochs", "1", "--proj-hidden", "64",
         "--print-freq", "1", "--eval-freq", "1", "--device", "cpu", *METHODS[method]])
    ckpt = load_checkpoint(str(logdir / "ckpt-last.pth"))
    assert ckpt["epoch"] == 1 and ckpt["engine"]["iteration"] == 2
    heads = [k for k in ckpt["model"] if k.startswith("augself.heads.")]
    assert bool(heads) == (method == "augself")
    assert any(k.startswith("projector.embed.") for k in ckpt["model"]) == (method == "cassle")
    log = (logdir / "log.txt").read_text()
    assert "weighted-1NN=" in log  # 64 labelled images, 10 classes: a tenth of a class rounds to 1
    losses = [float(x) for x in re.findall(r" loss=(\S+)", log)]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)
    assert re.search(r"epoch 1 \[1/2\] .* eta=\w+\n", log) and re.search(r"epoch 1 \[2/2\] .* eta=0s\n", log)
    if method == "augself":
        assert "augself_crop=" in log and "augself_color=" in log


@pytest.mark.parametrize("dataset,key", [("stl10_rot", "rot"), ("stl10_sol", "sol")])
def test_augself_predicts_rotation_and_solarization_on_their_stl10_recipes(tmp_path, monkeypatch, dataset, key):
    from tests.data_formats import write_stl10
    data = write_stl10(str(tmp_path / "stl10"), monkeypatch)
    logdir = tmp_path / "run"
    run(["--logdir", logdir, "--framework", "simclr", "--dataset", dataset, "--datadir", data, "--model", "mini_resnet",
         "--batch-size", "32", "--max-epochs", "1", "--proj-hidden", "32", "--print-freq", "1", "--eval-freq", "0",
         "--device", "cpu", "--aug-inj-type", "proj-none", f"--ss-{key}", "0.5"])
    ckpt = load_checkpoint(str(logdir / "ckpt-last.pth"))
    assert ckpt["engine"]["iteration"] == 2  # 70 images (train + unlabeled), batch 32
    assert {k.split(".")[2] for k in ckpt["model"] if k.startswith("augself.heads.")} == {key}
    assert re.search(rf"augself_{key}=\d+\.\d+", (logdir / "log.txt").read_text())


def _tensorboard_scalars(logdir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    return [(e.step, e.value) for e in EventAccumulator(str(logdir)).Reload().Scalars(tag)]


def test_tensorboard_shows_each_step_once_after_a_resume_from_an_earlier_checkpoint(tmp_path, monkeypatch):
    """A job stopped mid-epoch had logged steps after its last checkpoint; the resumed run logs them again."""
    from tests.data_formats import write_cifar
    data = write_cifar(str(tmp_path / "cifar"), monkeypatch, "cifar10", n_train=48, n_test=16)
    logdir = tmp_path / "run"
    common = ["--logdir", logdir, "--framework", "simclr", "--dataset", "cifar10", "--datadir", data, "--model",
              "mini_resnet", "--batch-size", "16", "--proj-hidden", "32", "--device", "cpu", "--aug-inj-type",
              "proj-none", "--eval-freq", "0", "--print-freq", "1", "--ckpt-freq", "1", "--max-epochs", "2"]
    run(common)
    shutil.copy(logdir / "ckpt-1.pth", logdir / "ckpt-last.pth")  # back to the end of epoch 1 (step 3)
    run([*common, "--resume", "last"])  # steps 4 to 6 again
    assert [step for step, _ in _tensorboard_scalars(logdir, "train/loss")] == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_data_that_changed_size_with_one_line(tmp_path, capsys, monkeypatch):
    """E.g. unreadable images removed: Ignite's own words named neither the flag nor the cause."""
    from tests.data_formats import write_cifar
    common = ["--logdir", tmp_path / "run", "--framework", "simclr", "--dataset", "cifar10", "--datadir",
              tmp_path / "cifar", "--model", "mini_resnet", "--batch-size", "16", "--proj-hidden", "32", "--device",
              "cpu", "--aug-inj-type", "proj-none", "--eval-freq", "0"]
    write_cifar(str(tmp_path / "cifar"), monkeypatch, "cifar10", n_train=48, n_test=16)
    run([*common, "--max-epochs", "1"])
    write_cifar(str(tmp_path / "cifar"), monkeypatch, "cifar10", n_train=40, n_test=16)
    _expect_error([*common, "--max-epochs", "2", "--resume", "last"], capsys,
                  r"^error: --resume \S+ckpt-last.pth: its run took 3 steps per epoch, the data now gives 2 "
                  r"\(40 images at --batch-size 16\): the dataset has changed size since$")


def _state(path):
    c = load_checkpoint(str(path))
    return c["model"], c["optimizer"]["state"]


def test_resume_continues_exactly(tmp_path, capsys, monkeypatch):
    """... and the uninterrupted run, with its inputs made two steps' at a time through the compiled whole
    view (--augment-ahead 2: groups of 2, 2 and 1 per epoch), is the same run, bit for bit."""
    import utils.training.step
    from tests.data_formats import write_cifar
    monkeypatch.setattr(utils.training.step, "AUGMENT_COMPILE_BACKEND", "aot_eager")  # traced, no code generated
    data = write_cifar(str(tmp_path / "cifar"), monkeypatch, "cifar10", n_train=80, n_test=32)  # 5 steps of 16
    common = ["--framework", "moco", "--dataset", "cifar10", "--datadir", data, "--model", "mini_resnet",
              "--batch-size", "16", "--proj-hidden", "64", "--print-freq", "2", "--eval-freq", "1", "--device", "cpu",
              "--max-epochs", "2", *METHODS["cassle"]]
    run(["--logdir", tmp_path / "a", *common, "--compile-augment", "--augment-graph", "view", "--augment-ahead", "2"])
    run(["--logdir", tmp_path / "b", *common, "--stop-after", "1"])
    assert load_checkpoint(str(tmp_path / "b" / "ckpt-last.pth"))["epoch"] == 1
    run(["--logdir", tmp_path / "b", *common, "--resume", "last"])
    assert "changed since the checkpoint" not in (tmp_path / "b" / "log.txt").read_text()  # --stop-after steers only
    (ma, oa), (mb, ob) = _state(tmp_path / "a" / "ckpt-last.pth"), _state(tmp_path / "b" / "ckpt-last.pth")
    assert ma.keys() == mb.keys()
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k  # weights, target network, queue and its pointer
    assert int(ma["queue_ptr"]) == 2 * 5 * 16
    for i in oa:
        assert torch.equal(oa[i]["momentum_buffer"], ob[i]["momentum_buffer"])
    capsys.readouterr()
    run(["--logdir", tmp_path / "b", *common, "--resume", "last"])
    assert "already finished at epoch 2" in capsys.readouterr().out
    run(["--logdir", tmp_path / "b", *common, "--resume", "last", "--max-epochs", "3", "--base-lr", "0.1",
         "--stop-after", "1"])  # the recipe's lr schedule now spans 3 epochs: said, not refused
    assert "changed since the checkpoint: --max-epochs 2 -> 3; --base-lr 0.03 -> 0.1\n" in \
        (tmp_path / "b" / "log.txt").read_text()


def _expect_error(argv, capsys, pattern):
    expect_one_line_error(pretrain_cond.main, argv, capsys, pattern)


@pytest.mark.parametrize("extra,pattern", [
    (["--dataset", "cifar10", "--datadir", "/nonexistent/x"], r"--datadir /nonexistent/x: no such directory"),
    (["--dataset", "stl10"],
     r"--dataset stl10 needs --datadir, the folder that holds it \(or that --download fills\)$"),
    (["--dataset", "cifar10", "--download"], r"--dataset cifar10 needs --datadir, the folder that holds it \(or that"),
    (["--dataset", "imagenet100"], r"--dataset imagenet100 needs --datadir, the folder that holds it$"),
    (["--dataset", "imagenet100", "--download", "--datadir", "/x"],
     r"--download: torchvision cannot fetch --dataset imagenet100; give the images in --datadir$"),
    (["--dataset", "imagenet"], r"--dataset must be one of"),
    (["--model", "resnet99"], r"--model must be one of"),
    (["--framework", "dino"], r"--framework must be one of"),
    (["--aug-treatment", "raw", "--aug-inj-type", "proj-add", "--aug-cond", "crop"],
     r"proj-add with --aug-treatment raw needs a descriptor of the backbone's width 128, got 4"),
    (["--aug-cond", "crop", "hue"], r"--aug-cond: unknown key\(s\) \['hue'\]"),
    (["--aug-inj-type", "proj-cat", "--aug-cond"], r"needs a descriptor: give --aug-cond"),
    (["--distributed", "--nproc-per-node", "3"], r"--batch-size 256 is not divisible by the world size 3"),
    (["--batch-size", "1"], r"--batch-size 1 gives each of 1 process\(es\) one image; batch norm and the"),
    (["--batch-size", "2", "--distributed", "--device", "cpu", "--nproc-per-node", "2"],
     r"--batch-size 2 gives each of 2 process\(es\) one image"),
    (["--augment-graph", "view"], r"--augment-graph view compiles the whole view: it needs --compile-augment"),
    (["--augment-ahead", "0"], r"--augment-ahead must be positive, got 0"),
    (["--compile-mode", "reduce-overhead"],
     r"--compile-mode reduce-overhead is how --compile compiles the backbone: add --compile$"),
    (["--augment-ahead", "4", "--compile-augment", "--augment-graph", "stages"],
     r"--augment-ahead 4 makes each view of 4 steps in one whole-view call: it needs --augment-graph view"),
    (["--knn-k", "0"], r"--knn-k must be positive, got 0$"),
    (["--knn-t", "0"], r"--knn-t must be positive, got 0.0$"),
    (["--base-lr", "-0.03"], r"--base-lr must be positive, got -0.03$"),
    (["--proj-hidden", "0"], r"--proj-hidden must be positive, got 0$"),
    (["--aug-nn-width", "0"], r"--aug-nn-width must be positive, got 0$"),
    (["--distributed", "--nproc-per-node", "0"], r"--nproc-per-node must be positive, got 0$"),
    (["--num-workers", "-1"], r"--num-workers must be >= 0, got -1$"),
    (["--eval-freq", "-1"], r"--eval-freq must be >= 0, got -1$"),
    (["--wd=-1e-4"], r"--wd must be >= 0, got -0.0001$"),
    (["--momentum", "1"], r"--momentum must be in \[0, 1\), got 1.0$"),
    (["--ss-blur", "0.5"], r"--ss-blur: the --dataset colordigits recipe never blurs \(32 px recipes have no blur\)"),
    (["--ss-rot", "0.5"], r"--ss-rot: the --dataset colordigits recipe never rotates \(only stl10_rot does\)"),
    (["--ss-sol", "0.5"], r"--ss-sol: the --dataset colordigits recipe never solarizes \(only stl10_sol does\)"),
])
def test_bad_input_one_line_error_and_nothing_written(tmp_path, capsys, extra, pattern):
    logdir = tmp_path / "run"
    _expect_error(["--logdir", logdir, "--framework", "simclr", *SMALL, "--aug-inj-type", "proj-none", *extra],
                  capsys, pattern)
    assert not logdir.exists()


def test_a_read_only_logdir_fails_before_any_work(tmp_path, capsys, monkeypatch):
    import utils.training.validate
    logdir = tmp_path / "run"
    logdir.mkdir()
    access = os.access  # root may write anywhere: the read-only folder is simulated
    monkeypatch.setattr(utils.training.validate.os, "access", lambda p, mode: str(p) != str(logdir) and access(p, mode))
    _expect_error(["--logdir", logdir, "--framework", "simclr", *SMALL, "--aug-inj-type", "proj-none"], capsys,
                  rf"--logdir {logdir}: this folder is not writable$")
    assert list(logdir.iterdir()) == []  # the lock file is written only once the folder has passed its checks


def test_existing_logdir_corrupt_and_mismatched_checkpoints(tmp_path, capsys):
    logdir = tmp_path / "run"
    base = ["--logdir", logdir, "--framework", "simclr", *SMALL, "--aug-inj-type", "proj-none"]
    run(base)
    before = sorted(os.listdir(logdir))
    _expect_error(base, capsys, r"--logdir .* holds a run's checkpoints; pass --resume last")
    _expect_error([*base, "--framework", "byol", "--model", "cifar_resnet18", "--resume", "last"], capsys,
                  r"incompatible arguments: --model 'mini_resnet' -> 'cifar_resnet18'; --framework 'simclr' -> 'byol'")
    _expect_error([*base, "--batch-size", "128", "--resume", "last"], capsys,
                  r"incompatible arguments: --batch-size 256 -> 128$")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x00garbage")
    _expect_error([*base, "--resume", bad], capsys, r"--resume .*bad.pth: unreadable or corrupt")
    _expect_error([*base, "--resume", tmp_path / "none.pth"], capsys, r"--resume .*none.pth: no such file$")
    _expect_error([*base[2:], "--logdir", tmp_path / "new", "--resume", "last"], capsys,
                  r"--resume last: --logdir .*new holds no ckpt-last.pth \(no epoch of a run there has ended\)")
    save_atomic({"backbone": {}}, str(tmp_path / "eval-only.pth"))
    _expect_error([*base, "--resume", tmp_path / "eval-only.pth"], capsys, r"not a pretraining checkpoint")
    assert sorted(os.listdir(logdir)) == before and not (tmp_path / "new").exists()


def test_a_second_run_on_a_folder_in_use_is_refused_and_the_folder_is_free_once_it_ends(tmp_path, capsys,
                                                                                         monkeypatch):
    """A sweep launched twice: both runs would write the same checkpoints."""
    from utils.checkpoint import hold_run_lock
    from utils.training.validate import validate
    logdir = tmp_path / "run"
    logdir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
                               "from utils.checkpoint import hold_run_lock; hold_run_lock(sys.argv[2]); "
                               "print('held', flush=True); time.sleep(120)", ROOT, str(logdir)],
                              stdout=subprocess.PIPE, text=True)
    argv = ["--logdir", logdir, "--framework", "simclr", *SMALL, "--aug-inj-type", "proj-none"]
    try:
        assert holder.stdout.readline().strip() == "held"
        _expect_error(argv, capsys, rf"^error: --logdir {re.escape(str(logdir))}: another run \(host:pid "
                                    rf"\S+:{holder.pid}\) is writing there; wait for it to end")
        monkeypatch.setenv("RANK", "1")
        hold_run_lock(str(logdir))  # torchrun's other ranks leave the lock to rank 0
        monkeypatch.delenv("RANK")
        # Held from another host (as seen from here): wait, since it may be a crashed node's lock
        # that the file server has not dropped yet; here the holder ends 1 s into the wait.
        monkeypatch.setattr(socket, "gethostname", lambda: "another-host")
        threading.Timer(1.0, holder.kill).start()
        validate(pretrain_cond.build_parser().parse_args([str(a) for a in argv]))
        assert holder.poll() is not None and open(logdir / ".lock").read() == f"another-host:{os.getpid()}\n"
    finally:
        holder.kill()
        holder.wait()
    assert os.listdir(logdir) == [".lock"]


def test_ctrl_c_says_what_is_kept_in_one_line(tmp_path):
    """Ctrl-C sends SIGINT to the terminal's whole process group; Python printed the main thread's stack."""
    logdir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "pretrain_cond.py", "--logdir", str(logdir), "--framework", "simclr",
                             *SMALL, "--max-epochs", "50", "--print-freq", "1", "--eval-freq", "0", "--aug-inj-type",
                             "proj-none"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # SIGINT as from a terminal, even if ours is ignored (nohup, &)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in proc.stdout:
            if line.startswith("epoch 2 [1/"):
                os.killpg(proc.pid, signal.SIGINT)
                break
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130
    assert err == f"interrupted: {logdir / 'ckpt-last.pth'} holds the last checkpoint; add --resume last to " \
                  "continue from it\n"


@pytest.mark.parametrize("where,reason", [("", "File exists"), ("sub", "Not a directory")])
def test_logdir_that_cannot_be_a_folder_fails_before_training(tmp_path, capsys, where, reason):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    logdir = blocker / where if where else blocker
    _expect_error(["--logdir", logdir, "--framework", "simclr", *SMALL, "--aug-inj-type", "proj-none"], capsys,
                  rf"--logdir .*a-file{'/sub' if where else ''}: cannot create this folder \({reason}\)$")
    assert blocker.read_text() == "not a folder"


def test_a_run_stopped_before_its_first_checkpoint_starts_again_in_its_folder(tmp_path, capsys):
    """A job preempted in epoch 1 leaves args.json and logs but no checkpoint; its requeued job (which
    adds --resume only when ckpt-last.pth exists) must be able to start it again."""
    from torch.utils.tensorboard import SummaryWriter
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "args.json").write_text("{}")
    (logdir / "log.txt").write_text("epoch 1 [2/5] loss=8.3\n")
    with SummaryWriter(str(logdir / "old")) as tb:  # what the stopped attempt showed in TensorBoard
        for step in (1, 2, 3):
            tb.add_scalar("train/loss", 100.0, step)
    (event,) = (logdir / "old").iterdir()
    event.rename(logdir / "events.out.tfevents.1000000000.stopped")  # an older file than the new run's
    run(["--logdir", logdir, "--framework", "simclr", *SMALL, "--aug-inj-type", "proj-none", "--eval-freq", "0"])
    assert load_checkpoint(str(logdir / "ckpt-last.pth"))["epoch"] == 1
    log = (logdir / "log.txt").read_text()
    assert log.startswith("epoch 1 [2/5] loss=8.3\n") and "held a run stopped before its first checkpoint" in log
    losses = _tensorboard_scalars(logdir, "train/loss")
    assert [step for step, _ in losses] == [2, 4] and 100.0 not in [v for _, v in losses]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("")
    _expect_error(["--logdir", other, "--framework", "simclr", *SMALL, "--aug-inj-type", "proj-none"], capsys,
                  r"--logdir .*other exists and is not empty, and holds no run; choose a new folder$")


def test_wandb_offline_run_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_PROJECT", "cassle-test")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    logdir = tmp_path / "run"
    run(["--logdir", logdir, "--framework", "simclr", *SMALL, "--aug-inj-type", "proj-none", "--print-freq", "1"])
    runs = list((logdir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_jpeg_decode_on_the_device_trains_like_worker_decoding(tmp_path):
    """The two decoders' pixels differ by rounding, so their runs differ by a small fraction of how far
    training moved each tensor (at an lr that moves most tensors by far more than the floor)."""
    from tests.data_formats import write_jpeg
    from utils.training.run import build_model
    for i in range(16):
        write_jpeg(str(tmp_path / "data" / f"c{i % 2}" / f"{i}.jpg"), (44 + i, 40), i)
    common = ["--dataset", "folder", "--datadir", tmp_path / "data", "--model", "mini_resnet", "--batch-size", "8",
              "--max-epochs", "1", "--proj-hidden", "32", "--eval-freq", "0", "--device", "cpu", "--framework",
              "simclr", "--num-workers", "0", "--base-lr", "1.0", *METHODS["cassle"]]
    modes = {"device": ["--jpeg-decode", "device"], "workers": ["--jpeg-decode", "workers"]}
    for name, flags in modes.items():
        run(["--logdir", tmp_path / name, *common, *flags])
    logs = {name: (tmp_path / name / "log.txt").read_text() for name in modes}
    assert "epoch 1: decoded 16 images on the CPU and 0 in the loader workers" in logs["device"]
    assert "decoded" not in logs["workers"]  # that path decodes everything in the workers, as it says up front
    dev, wrk = (load_checkpoint(str(tmp_path / m / "ckpt-last.pth"))["model"] for m in modes)
    torch.manual_seed(0)  # --seed 0: the weights both runs started from
    init = build_model(pretrain_cond.build_parser().parse_args([str(a) for a in ["--logdir", "x", *common]]),
                       224).state_dict()
    floats = [k for k in dev if dev[k].is_floating_point()]
    moved = {k: (wrk[k] - init[k]).abs().max().item() for k in floats}
    assert sum(m > 1e-3 for m in moved.values()) >= 2 * len(floats) / 3  # 100x the floor below
    assert any(not torch.equal(dev[k], wrk[k]) for k in floats)  # pixels differ by rounding: close, not equal
    for k in dev:
        if k in moved:
            assert (dev[k] - wrk[k]).abs().max().item() <= 1e-5 + 0.25 * moved[k], k


@pytest.mark.parametrize("decode,how", [("workers", "truncated"), ("device", "truncated"), ("device", "garbage"),
                                        ("device", "scan"), ("device", "sampling")])
def test_an_unreadable_image_stops_the_run_with_one_line_naming_it(tmp_path, capsys, decode, how):
    """Found mid-epoch, not before training: in a loader worker, which also sends the device path's
    files with an unsound header to PIL ('scan'), or (a whole file whose header reads but that no
    decoder reads, 'sampling') in the device's decoder threads."""
    from tests.data_formats import corrupt, write_class_folders
    write_class_folders(str(tmp_path / "data"), ["a", "b"], per_class=4, size=(40, 30))
    bad = corrupt(str(tmp_path / "data" / "b" / "2.jpg"), how)
    _expect_error(["--logdir", tmp_path / "run", "--dataset", "folder", "--datadir", tmp_path / "data", "--model",
                   "mini_resnet", "--batch-size", "4", "--max-epochs", "1", "--proj-hidden", "32", "--eval-freq",
                   "0", "--device", "cpu", "--framework", "simclr", "--aug-inj-type", "proj-none",
                   "--num-workers", "1", "--jpeg-decode", decode], capsys,
                  rf"^error: {re.escape(bad)}: cannot read this image \(.+\); replace the file or remove it$")


def test_help_groups_every_flag_with_a_help_string():
    """--help shows every flag in a named group with a help string (docs/flags.md is made from it)."""
    parser = pretrain_cond.build_parser()
    groups = {g.title: list(g._group_actions) for g in parser._action_groups[2:]}  # after argparse's own two
    assert list(groups) == [title for title, _ in pretrain_cond.GROUPS]
    flags = {a.option_strings[0] for acts in groups.values() for a in acts}
    assert flags == {a.option_strings[0] for a in parser._actions} - {"-h"}  # none left in "options"
    assert all(a.help and len(a.help) > 15 for a in parser._actions)
