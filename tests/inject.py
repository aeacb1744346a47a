"""pretrain_cond.py with one fault injected at a chosen step, as a process of its own (the fault
tests need real processes: signals, SIGKILLs, dead ranks). Run as ``python tests/inject.py ARGV``;
spawned ranks import it again as their main module, so the patches below hold in them too.

Environment:
  FAULT        what to do at the start of step FAULT_AT (global iteration):
               signal:SIG        send SIG to this process
               parent:SIG        send SIG to this process's parent (the launcher that spawned it)
               launcher:SIG      send SIG to this process's parent's parent (a script running torchrun)
               kill-rank         SIGKILL this process (give FAULT_RANK to pick one rank)
               kill-worker       SIGKILL one of this process's loader workers
               kill-in-save      SIGKILL this process halfway through the first checkpoint it writes
                                 once step FAULT_AT is done
  FAULT_AT     the step (default 1)
  FAULT_RANK   the rank that acts (default 0)
  FAULT_SLEEP  seconds the acting rank sleeps after acting (lets a forwarded signal arrive)
  FAULT_STAMP  file the acting rank writes the time of the fault into (time.time())
  LOSSES       file that rank 0 appends "iteration loss" to after each step
CIFAR's checksums are not checked: the tests write their own tiny CIFAR files (tests.data_formats).
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ignite.distributed as idist
import torchvision.datasets.cifar as tv_cifar
from ignite.engine import Engine, Events

import utils.checkpoint
import utils.training.step
import utils.training.trainer

tv_cifar.check_integrity = lambda *a, **k: True
tv_cifar.CIFAR10._check_integrity = lambda self: True
utils.training.step.AUGMENT_COMPILE_BACKEND = "aot_eager"  # traced, no code generated

FAULT = os.environ.get("FAULT", "")
AT = int(os.environ.get("FAULT_AT", "1"))
RANK = int(os.environ.get("FAULT_RANK", "0"))
SLEEP = float(os.environ.get("FAULT_SLEEP", "0"))
LOSSES = os.environ.get("LOSSES")
_armed = {"save": False}


def _act(engine: Engine) -> None:
    kind, _, sig = FAULT.partition(":")
    if os.environ.get("FAULT_STAMP"):  # when the fault happened, for the time the run takes to end
        with open(os.environ["FAULT_STAMP"], "w") as f:
            f.write(repr(time.time()))
    if kind == "signal":
        os.kill(os.getpid(), getattr(signal, sig))
    elif kind == "parent":  # the launcher that spawned this rank
        os.kill(os.getppid(), getattr(signal, sig))
    elif kind == "launcher":  # the process that started this one's parent (torchrun's launcher script)
        with open(f"/proc/{os.getppid()}/stat") as f:
            grandparent = int(f.read().rsplit(")", 1)[1].split()[1])
        os.kill(grandparent, getattr(signal, sig))
    elif kind == "kill-rank":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "kill-worker":
        import multiprocessing
        os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)
    elif kind == "kill-in-save":
        _armed["save"] = True
    if SLEEP:
        time.sleep(SLEEP)


class FaultyEngine(Engine):
    def __init__(self, fn):
        super().__init__(fn)

        @self.on(Events.ITERATION_STARTED)
        def _fault(e):
            if e.state.iteration == AT and idist.get_rank() == RANK:
                _act(e)

        @self.on(Events.ITERATION_COMPLETED)
        def _loss(e):
            if LOSSES and idist.get_rank() == 0:
                with open(LOSSES, "a") as f:
                    f.write(f"{e.state.iteration} {float(e.state.output['loss'])!r}\n")


def _killed_halfway(save):
    def save_atomic(obj, path):
        if not _armed["save"]:
            return save(obj, path)
        import torch

        class Halfway:  # the file object torch.save writes to: SIGKILL once half the bytes are out
            def __init__(self, f, total):
                self.f, self.left = f, total // 2

            def write(self, b):
                if self.left <= 0:
                    self.f.flush()
                    os.kill(os.getpid(), signal.SIGKILL)
                self.left -= len(b)
                return self.f.write(b)

            def __getattr__(self, name):
                return getattr(self.f, name)

        import io
        size = io.BytesIO()
        torch.save(obj, size)
        real = torch.save
        torch.save = lambda o, f, **k: real(o, Halfway(f, size.tell()), **k)
        return save(obj, path)
    return save_atomic


utils.training.trainer.Engine = FaultyEngine
utils.training.trainer.save_atomic = _killed_halfway(utils.training.trainer.save_atomic)
utils.checkpoint.save_atomic = _killed_halfway(utils.checkpoint.save_atomic)

if __name__ == "__main__":
    import pretrain_cond
    pretrain_cond.main(sys.argv[1:])
