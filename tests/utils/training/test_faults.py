"""Faults injected on purpose (utils.training.guard, utils.preemption): a non-finite loss or gradient stops
the run with one line naming the step, and no checkpoint is written from it, not even one due
before the check saw it; fp16 keeps the grad scaler's skipped steps; a loader worker or a rank killed
mid-epoch ends the whole run within seconds, with one line saying what died, and the checkpoint on
disk still loads. docs/reliability.md lists each fault with the test that shows it."""
import os
import subprocess
import sys
import time

import pytest
import torch
from ignite.engine import Engine, Events

import pretrain_cond
import utils.training.trainer
from tests.helpers import ROOT
from utils.checkpoint import load_checkpoint

# The bound docs/reliability.md gives for a run to end once a part of it died: a spawning launcher
# gives the other ranks 30 s after SIGTERM before it kills them; the rest is the processes' teardown.
WITHIN_S = 60

BASE = ["--framework", "simclr", "--dataset", "cifar10", "--model", "mini_resnet", "--batch-size", "16",
        "--max-epochs", "2", "--proj-hidden", "16", "--eval-freq", "0", "--device", "cpu", "--aug-inj-type",
        "proj-none", "--print-freq", "100", "--ckpt-freq", "1"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    from tests.data_formats import write_cifar
    mp = pytest.MonkeyPatch()
    yield write_cifar(str(tmp_path_factory.mktemp("cifar") / "c"), mp, "cifar10", n_train=64, n_test=8)
    mp.undo()  # 4 steps an epoch at batch 16


class BadGradient(torch.autograd.Function):
    """The identity, whose gradient is ``value`` (NaN, Inf): a finite loss with non-finite gradients."""

    @staticmethod
    def forward(ctx, x, value: float):
        ctx.value = value
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * ctx.value, None


def train_with(logdir, cifar, fault: str, at: int, *extra) -> int:
    """pretrain_cond.main in this process, the loss of step ``at`` made NaN (``fault`` "loss") or its
    gradient (``fault`` "gradient", or "inf-gradient"); the exit status."""
    now = {}

    class Stepping(Engine):
        def __init__(self, fn):
            super().__init__(fn)
            self.add_event_handler(Events.ITERATION_STARTED, lambda e: now.update(step=e.state.iteration))

    def build_run(*a, **k):
        run = real_build_run(*a, **k)
        forward = run.model.forward

        def faulty(*args, **kwargs):
            out = forward(*args, **kwargs)
            if now.get("step") == at:
                out["loss"] = (out["loss"] * float("nan") if fault == "loss" else
                               BadGradient.apply(out["loss"], float("nan" if fault == "gradient" else "inf")))
            return out
        run.model.forward = faulty
        return run

    real_build_run = utils.training.trainer.build_run
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(utils.training.trainer, "Engine", Stepping)
        mp.setattr(utils.training.trainer, "build_run", build_run)
        try:
            pretrain_cond.main([str(a) for a in ["--logdir", logdir, "--datadir", cifar, *BASE, *extra]])
        except SystemExit as e:
            return e.code
    return 0


@pytest.mark.parametrize("fault,at,extra,checked", [
    ("loss", 6, [], "at the epoch's end, before its checkpoint"),
    ("loss", 5, ["--print-freq", "3"], "every --print-freq steps: after step 6"),
    ("gradient", 2, ["--ckpt-every-steps", "3"], "before the checkpoint due after step 3"),
])
def test_a_non_finite_step_stops_the_run_in_one_line_and_no_checkpoint_is_written_from_it(
        tmp_path, cifar, capsys, fault, at, extra, checked):
    logdir = tmp_path / "run"
    assert train_with(logdir, cifar, fault, at, *extra) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    epoch, step = (at - 1) // 4 + 1, (at - 1) % 4 + 1
    assert err.startswith(f"error: non-finite {fault} at epoch {epoch} step {step}/4 (loss="), err
    assert "the run stopped without writing a checkpoint from it" in err
    if epoch == 1:  # nothing was written: no checkpoint at all
        assert not (logdir / "ckpt-last.pth").exists() and "no checkpoint was written yet" in err
        return
    ckpt = load_checkpoint(str(logdir / "ckpt-last.pth"))  # the last good one: epoch 1's
    assert (ckpt["epoch"], ckpt["step"]) == (1, 0) and not (logdir / "ckpt-2.pth").exists()
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())
    assert "loss=nan" in err and f"{logdir / 'ckpt-last.pth'} holds the last checkpoint" in err


def test_fp16_keeps_the_grad_scaler_skipping_a_step_whose_gradients_overflow(tmp_path, monkeypatch):
    from tests.data_formats import write_cifar
    eight = write_cifar(str(tmp_path / "c8"), monkeypatch, "cifar10", n_train=8, n_test=8)  # fp16 is slow on a CPU
    logdir = tmp_path / "run"
    assert train_with(logdir, eight, "inf-gradient", 1, "--precision", "fp16", "--max-epochs", "1",
                      "--batch-size", "8") == 0  # one step
    ckpt = load_checkpoint(str(logdir / "ckpt-last.pth"))
    assert ckpt["scaler"]["scale"] < 65536.0  # the scaler saw the overflow, skipped the step, lowered its scale
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def run_injected(logdir, argv, fault: str, at: int, rank: int = 0, timeout: float = 120):
    """tests/inject.py in a process of its own; (completed process, seconds from the fault to its end)."""
    stamp = os.path.join(os.path.dirname(logdir), "fault-time")
    env = {**os.environ, "FAULT": fault, "FAULT_AT": str(at), "FAULT_RANK": str(rank), "OMP_NUM_THREADS": "1",
           "FAULT_STAMP": stamp}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "inject.py"), "--logdir", str(logdir), *argv],
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return done, time.time() - float(open(stamp).read())


def test_a_killed_loader_worker_ends_the_run_in_one_line(tmp_path):
    from tests.data_formats import write_class_folders
    root = write_class_folders(str(tmp_path / "jpegs"), ["a", "b"], per_class=4, size=(40, 36))
    logdir = tmp_path / "run"
    done, took = run_injected(logdir, ["--dataset", "folder", "--datadir", root, "--model", "mini_resnet", "--batch-size",
                                    "4", "--max-epochs", "2", "--num-workers", "2", "--proj-hidden", "16",
                                    "--eval-freq", "0", "--device", "cpu", "--aug-inj-type", "proj-none"],
                           "kill-worker", at=3)  # epoch 2, step 1 of 2
    assert done.returncode == 1, done.stderr[-3000:]
    err = done.stderr.strip()
    assert err.count("\n") == 0, err
    assert err.startswith("error: a data loader worker died (pid ") and "killed by signal Killed" in err, err
    assert err.endswith(f"the run stopped: {logdir / 'ckpt-last.pth'} holds the last checkpoint; add --resume "
                        "last to continue from it")
    assert load_checkpoint(str(logdir / "ckpt-last.pth"))["epoch"] == 1
    assert took < WITHIN_S, took


def test_a_killed_rank_ends_the_two_process_run_within_seconds(tmp_path, cifar):
    logdir = tmp_path / "run"
    done, took = run_injected(logdir, ["--datadir", cifar, *BASE, "--distributed", "--nproc-per-node", "2"],
                              "kill-rank", at=6, rank=1)
    assert done.returncode == 1, done.stderr[-3000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("error: ")]
    died = [ln for ln in lines if ln.startswith("error: rank 1 (pid ")]
    assert died and died[0].split("; ")[0].endswith("died, killed by SIGKILL"), done.stderr[-3000:]
    assert all("lost contact with another rank" in ln for ln in lines if ln not in died), lines
    assert load_checkpoint(str(logdir / "ckpt-last.pth"))["epoch"] == 1  # epoch 1's, whole
    assert took < WITHIN_S, took
