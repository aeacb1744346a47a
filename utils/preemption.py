"""How a run ends other than by finishing: a stop asked for by a signal (preemption, a time limit's
warning), which every rank obeys at the same step after one last checkpoint, and the faults that end
it (a dead loader worker, a dead rank), each said in one line. docs/reliability.md lists them all."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

# EX_TEMPFAIL of sysexits.h, "temporary failure; the user is invited to retry": the run stopped on a
# signal after writing ckpt-last.pth, and --resume last continues it. A crash exits with 1.
EXIT_PREEMPTED = 75
EXIT_FAULT = 1
STOP_SIGNALS = ("TERM", "USR1", "USR2", "HUP")  # what --preempt-signals may name
DEFAULT_STOP_SIGNALS = ("TERM", "USR1")  # SLURM's preemption / scancel, and its --signal warning


class StopRequest:
    """Records the first of ``names`` (``TERM``, ``USR1``, ...) that this process receives.

    The handler only records it: a signal may land anywhere in a step, and the training loop acts on
    it between steps. Loader workers forked while it is installed inherit it, so a signal sent to every
    process of a job (as SLURM does to a job step) leaves them working instead of killing them.
    """

    def __init__(self, names: Sequence[str]):
        self.signals = [getattr(signal, f"SIG{n}") for n in names]
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def install(self) -> StopRequest:
        """Handle the signals in this process (only the main thread may; elsewhere this does nothing)."""
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._record)
        return self

    def restore(self) -> None:
        """Put back the handlers that ``install`` replaced."""
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _record(self, signum: int, frame) -> None:
        if self.received is None:
            self.received = signum

    @property
    def name(self) -> str:
        """The received signal's name, e.g. SIGUSR1 (empty when none came)."""
        return signal.Signals(self.received).name if self.received is not None else ""


@contextlib.contextmanager
def forwarded_to_children(names: Sequence[str]) -> Iterator[None]:
    """While a launcher process waits for the ranks it spawned, send each of the signals ``names`` it
    receives on to them: a signal sent to the launcher alone (``kill PID``) reaches the ranks."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame) -> None:
        for child in multiprocessing.active_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signum)

    previous = {s: signal.signal(s, forward) for s in (getattr(signal, f"SIG{n}") for n in names)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def worker_death_line(text: str) -> str | None:
    """A dead DataLoader worker, from torch's error text, as one line; None for anything else."""
    m = re.search(r"DataLoader worker \(pid\(?s?\)? ?([\d, ]+)\) (?:is killed by signal: ([^.]+)|exited "
                  r"unexpectedly(?: with exit code (-?\d+))?)", text)
    if not m:
        return None
    how = f"killed by signal {m.group(2).strip()}" if m.group(2) else (
        f"exit code {m.group(3)}" if m.group(3) else "exited unexpectedly")
    return f"a data loader worker died (pid {m.group(1).strip()}, {how})"


PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "timed out", "Timed out",
             "NCCL communicator was aborted", "DistBackendError")


def peer_lost_line(e: BaseException) -> str | None:
    """A collective that failed because another rank died or stopped answering, as one line."""
    import torch.distributed as dist
    text = str(e)
    lost = isinstance(e, getattr(dist, "DistBackendError", ())) or any(k in text for k in PEER_LOST)
    if not lost or not dist.is_initialized():
        return None
    first = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    first = re.sub(r"^\[[^\]]*\] ", "", first).split(". ")[0]  # without gloo's source location and advice
    return f"lost contact with another rank of the run, which died or hung ({first[:160]})"


def fault_line(e: BaseException) -> str | None:
    """The one line for a fault that ends a run: a dead loader worker, a lost rank; None otherwise."""
    return worker_death_line(str(e)) or peer_lost_line(e)


def kept_line(logdir: str) -> str:
    """What a stopped run leaves to resume from."""
    last = os.path.join(logdir, "ckpt-last.pth")
    if os.path.exists(last):
        return f"{last} holds the last checkpoint; add --resume last to continue from it"
    return "no checkpoint was written yet"


def exit_for_spawned_rank(e: BaseException, logdir: str) -> None:
    """In the launcher that spawned the ranks: exit as the first rank that ended did. A rank that
    stopped on a signal (``EXIT_PREEMPTED``) or printed its own fault line exits with its status; a
    rank killed by a signal is said here, in one line. Returns for anything else."""
    from torch.multiprocessing import ProcessExitedException
    if not isinstance(e, ProcessExitedException):
        return
    if e.exit_code > 0:
        raise SystemExit(e.exit_code)
    print(f"error: rank {e.error_index} (pid {e.error_pid}) died, killed by {e.signal_name}; the run stopped: "
          f"{kept_line(logdir)}", file=sys.stderr)
    raise SystemExit(EXIT_FAULT)
