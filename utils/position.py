"""Where a run stands inside an epoch, so that a resume continues with the same remaining batches,
views and draws as a run that was never stopped.

Every epoch re-seeds the augmentation generators from (seed, epoch, rank) and orders its batches
from (seed, epoch) (``Run.set_epoch``, ``datasets.loaders``), so an epoch's start needs nothing
saved. Inside an epoch the position is the number of steps done, and the generators' state before
the draws of the next step (of its group, with ``--augment-ahead``): the loader starts again at
that batch, the generators are set back, and the step inputs come out as they would have.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor

from .input_stream import InputStream


def draw_state(run) -> dict[str, Tensor]:
    """The state of the generators every augmentation draw comes from (host copies; no device wait)."""
    return {"device": run.generator.get_state(), "host": run.host_generator.get_state()}


def set_draw_state(run, state: dict[str, Tensor]) -> None:
    """Put ``draw_state``'s record back into the run's generators."""
    run.generator.set_state(state["device"])
    run.host_generator.set_state(state["host"])


def position(run, data: Any, iteration: int, epoch_length: int) -> dict[str, Any]:
    """The checkpoint's record of where the run is after ``iteration`` steps: epochs finished, steps
    done in the next one and, inside an epoch, the draw state to continue it."""
    epoch, step = divmod(iteration, epoch_length)
    pos: dict[str, Any] = {"epoch": epoch, "step": step}
    if step:
        pos["draws"] = data.state_before(step) if isinstance(data, InputStream) else draw_state(run)
    return pos


def resume_inside_epoch(run, data: Any, ckpt: dict[str, Any]) -> None:
    """After the epoch's re-seeding: set the draws and the loader to continue after the checkpoint's step."""
    set_draw_state(run, ckpt["draws"])
    data.resume_at(ckpt["step"])
