"""Run logging: console + log.txt, TensorBoard scalars, and wandb when WANDB_PROJECT is set."""
from __future__ import annotations

import json
import os
import re
import sys
import warnings
from typing import Any


class RunLogger:
    """Writes on rank 0 only; other ranks get a silent logger."""

    def __init__(self, logdir: str, args: dict[str, Any] | None = None, enabled: bool = True,
                 purge_step: int | None = None):
        """``purge_step``: TensorBoard hides the scalars this folder holds from that step on (those a
        stopped attempt logged after the state this run starts from)."""
        self.enabled = enabled
        self.tb = self.wandb = None
        if not enabled:
            return
        os.makedirs(logdir, exist_ok=True)
        self.file = open(os.path.join(logdir, "log.txt"), "a", buffering=1)
        from torch.utils.tensorboard import SummaryWriter
        self.tb = SummaryWriter(logdir, purge_step=purge_step)
        if os.environ.get("WANDB_PROJECT"):
            self.wandb = init_wandb(logdir, args)

    def info(self, msg: str) -> None:
        """Print ``msg`` and append it to the run's log file (nothing when disabled)."""
        if self.enabled:
            print(msg, flush=True)
            self.file.write(msg + "\n")

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log ``values`` at ``step`` to TensorBoard, and to wandb when it is on (nothing when disabled)."""
        if not self.enabled:
            return
        for k, v in values.items():
            self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(values, step=step)

    def close(self) -> None:
        """Flush and close the writers."""
        if self.enabled:
            self.tb.close()
            self.file.close()
            if self.wandb is not None:
                self.wandb.finish()


def init_wandb(logdir: str, args: dict[str, Any] | None):
    """wandb run honouring WANDB_MODE; any failure (no package, no network) is a warning, not a stop."""
    try:
        import wandb
        settings = wandb.Settings(init_timeout=30)
        return wandb.init(project=os.environ["WANDB_PROJECT"], dir=logdir, config=args,
                          mode=os.environ.get("WANDB_MODE", "online"), settings=settings)
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"wandb disabled: {type(e).__name__}: {e}", stacklevel=2)
        return None


def duration(seconds: float) -> str:
    """A time to go, to the two largest units: 45s, 12m05s, 3h12m, 2d04h."""
    s = int(round(seconds))
    for unit, size, sub, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if s >= size:
            return f"{s // size}{unit}{s % size // sub_size:02d}{sub}"
    return f"{s}s"


class Pace:
    """Seconds per step in the last window and time left for a run, for the progress lines. The time
    left uses the pace since the end of the first window, which holds the start-up (loader workers,
    cuDNN autotuning, compilation: minutes with --compile), so that it is not counted in every step;
    k-NN evaluations and checkpoints are."""

    def start(self, now: float, step: int) -> None:
        """Begin timing at ``step`` (also after a resume, so the first window is not the restart's)."""
        self.t, self.step, self.t0, self.step0 = now, step, None, step

    def update(self, now: float, step: int, total_steps: int) -> tuple[float, float]:
        """(s/step since the last update, s left until ``total_steps``)."""
        window = (now - self.t) / max(1, step - self.step)
        if self.t0 is None:
            self.t0, self.step0 = now, step
            per_step = window
        else:
            per_step = (now - self.t0) / max(1, step - self.step0)
        self.t, self.step = now, step
        return window, (total_steps - step) * per_step


def write_json(path: str, obj: Any) -> None:
    """Write ``obj`` atomically (temp file + rename); a full or read-only disk is a one-line ValueError."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise ValueError(f"cannot write {path} ({e.strerror or e})") from None


def die(msg: str) -> "NoReturn":  # noqa: F821
    """One-line error for the command line, no traceback."""
    print(f"error: {msg}", file=sys.stderr)
    raise SystemExit(2)


RESULTS_KEPT = "the results printed above are in their JSON files; the checkpoints after them were not evaluated"


def interrupted(kept: str) -> "NoReturn":  # noqa: F821
    """Ctrl-C: one line saying what is kept, not where the main thread happened to be; exit 130 as a shell does."""
    print(f"interrupted: {kept}", file=sys.stderr)
    raise SystemExit(130)


def error_line(e: BaseException) -> str | None:
    """The one-line message of a bad-input error: a ValueError raised in this process (flags, data,
    checkpoints), or a DataError raised in a DataLoader worker or a spawned process (its text then
    ends with the child's traceback); None for anything else, a bug whose traceback should show."""
    text = str(e).rstrip()
    child = re.fullmatch(r"(?:[\w.]+\.)?DataError: (.+)", text.splitlines()[-1] if text else "")
    if child:
        return child.group(1)
    return text if isinstance(e, ValueError) else None


def die_or_raise(e: Exception) -> "NoReturn":  # noqa: F821
    """``die`` with ``error_line(e)``, or raise ``e`` again when it is not a bad-input error."""
    msg = error_line(e)
    if msg is None:
        raise e
    die(msg)
