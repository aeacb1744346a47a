"""Stops asked for by a signal, and the exact resume after them (utils.preemption, utils.training.position,
utils.training.trainer.Control): SIGTERM or SIGUSR1 in the middle of an epoch ends the step in flight, writes
ckpt-last.pth there and exits with status 75; --resume last then gives the losses and the final weights
of a run never stopped, bit for bit, through the loader and through inputs made 3 steps at a time. A
SIGKILL halfway through writing a checkpoint leaves the one before it, which resumes as exactly."""
import os
import signal
import subprocess
import sys

import pytest
import torch
from ignite.engine import Engine, Events

import pretrain_cond
import utils.training.step
import utils.training.trainer
from tests.helpers import ROOT
from utils.checkpoint import load_checkpoint
from utils.preemption import EXIT_PREEMPTED

BASE = ["--framework", "simclr", "--dataset", "cifar10", "--model", "mini_resnet", "--batch-size", "16",
        "--max-epochs", "2", "--proj-hidden", "16", "--eval-freq", "0", "--device", "cpu", "--aug-inj-type",
        "proj-none", "--print-freq", "100", "--seed", "3"]
AHEAD = ["--augment-ahead", "3", "--augment-graph", "view", "--compile-augment"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    from tests.data_formats import write_cifar
    mp = pytest.MonkeyPatch()
    root = write_cifar(str(tmp_path_factory.mktemp("cifar") / "c"), mp, "cifar10", n_train=64, n_test=8)
    mp.setattr(utils.training.step, "AUGMENT_COMPILE_BACKEND", "aot_eager")  # traced, no code generated
    yield root  # 4 steps an epoch at batch 16
    mp.undo()


def train(logdir, cifar, *extra, signal_at: tuple[int, str] | None = None) -> tuple[int, dict[int, float]]:
    """pretrain_cond.main in this process: (exit status, each step's loss); ``signal_at`` (step, name)
    sends the signal to this process as that step starts."""
    losses = {}

    class Recording(Engine):
        def __init__(self, fn):
            super().__init__(fn)

            @self.on(Events.ITERATION_STARTED)
            def _signal(e):
                if signal_at and e.state.iteration == signal_at[0]:
                    os.kill(os.getpid(), getattr(signal, signal_at[1]))

            @self.on(Events.ITERATION_COMPLETED)
            def _loss(e):
                losses[e.state.iteration] = float(e.state.output["loss"])

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(utils.training.trainer, "Engine", Recording)
        try:
            pretrain_cond.main([str(a) for a in ["--logdir", logdir, "--datadir", cifar, *BASE, *extra]])
        except SystemExit as e:
            return e.code, losses
    return 0, losses


@pytest.fixture(scope="module")
def reference(cifar, tmp_path_factory):
    """The run never stopped: its losses and its final checkpoint."""
    logdir = tmp_path_factory.mktemp("ref") / "run"
    status, losses = train(logdir, cifar)
    assert status == 0 and sorted(losses) == list(range(1, 9))
    return losses, load_checkpoint(str(logdir / "ckpt-last.pth"))


def assert_same_run(ckpt, reference_ckpt):
    for part in ("model", "backbone"):
        assert ckpt[part].keys() == reference_ckpt[part].keys()
        for k, v in reference_ckpt[part].items():
            assert torch.equal(ckpt[part][k], v), (part, k)
    for i, s in reference_ckpt["optimizer"]["state"].items():
        assert torch.equal(ckpt["optimizer"]["state"][i]["momentum_buffer"], s["momentum_buffer"])
    assert ckpt["engine"]["iteration"] == reference_ckpt["engine"]["iteration"]


@pytest.mark.parametrize("sig,at,extra", [("SIGTERM", 6, []), ("SIGUSR1", 5, AHEAD)],
                         ids=["sigterm-loader", "sigusr1-3-steps-at-once"])
def test_a_signal_mid_epoch_stops_after_the_step_and_resume_is_bit_exact(tmp_path, cifar, reference, sig, at,
                                                                          extra, capsys):
    """Step 5 is the first of a group of 3 made together (steps 5-7): the resume makes the group again."""
    ref_losses, ref_ckpt = reference
    logdir = tmp_path / "run"
    status, first = train(logdir, cifar, *extra, signal_at=(at, sig))
    assert status == EXIT_PREEMPTED
    assert sorted(first) == list(range(1, at + 1))  # the step in flight ended; no step after it began
    ckpt = load_checkpoint(str(logdir / "ckpt-last.pth"))
    assert (ckpt["epoch"], ckpt["step"], ckpt["engine"]["iteration"]) == (1, at - 4, at)
    assert f"stopped by {sig} at epoch 2 step {at - 4}/4: " in (logdir / "log.txt").read_text()
    assert signal.getsignal(getattr(signal, sig)) == signal.SIG_DFL  # the handler is put back
    status, rest = train(logdir, cifar, *extra, "--resume", "last")
    assert status == 0 and sorted(rest) == list(range(at + 1, 9))
    assert {**first, **rest} == ref_losses  # the same floats, step for step
    assert_same_run(load_checkpoint(str(logdir / "ckpt-last.pth")), ref_ckpt)
    assert f"resumed from {logdir / 'ckpt-last.pth'} in epoch 2 after step {at - 4}/4" in capsys.readouterr().out


def test_a_signal_in_an_epoch_s_last_step_stops_at_the_epoch_end_with_its_checkpoints(tmp_path, cifar, reference):
    logdir = tmp_path / "run"
    status, _ = train(logdir, cifar, "--ckpt-freq", "1", signal_at=(4, "SIGTERM"))
    assert status == EXIT_PREEMPTED
    ckpt = load_checkpoint(str(logdir / "ckpt-last.pth"))
    assert (ckpt["epoch"], ckpt["step"]) == (1, 0) and "draws" not in ckpt
    assert load_checkpoint(str(logdir / "ckpt-1.pth"))["epoch"] == 1  # the epoch's kept file too


def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one_which_resumes_exactly(tmp_path, cifar,
                                                                                          reference):
    """--ckpt-every-steps 2 writes ckpt-last.pth after step 2, then at the end of epoch 1 (step 4),
    when the process is killed halfway through the write. Step 2's stays, whole, and resumes exactly."""
    logdir = tmp_path / "run"
    env = {**os.environ, "FAULT": "kill-in-save", "FAULT_AT": "3", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "tests", "inject.py"), "--logdir", str(logdir),
                           "--datadir", cifar, *BASE, "--ckpt-every-steps", "2"], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    ckpt = load_checkpoint(str(logdir / "ckpt-last.pth"))
    assert (ckpt["epoch"], ckpt["step"]) == (0, 2)
    assert [f for f in os.listdir(logdir) if f.startswith(".tmp-")]  # what the killed write left
    status, rest = train(logdir, cifar, "--ckpt-every-steps", "2", "--resume", "last")
    assert status == 0 and sorted(rest) == list(range(3, 9))
    assert rest == {k: v for k, v in reference[0].items() if k > 2}
    assert_same_run(load_checkpoint(str(logdir / "ckpt-last.pth")), reference[1])
