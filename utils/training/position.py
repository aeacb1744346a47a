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


def rank_draws(run, data: Any, step: int) -> dict[str, Tensor]:
    """This rank's draw state before step ``step + 1`` of the epoch (before its group's, for an InputStream)."""
    return data.state_before(step) if isinstance(data, InputStream) else draw_state(run)


def all_ranks_draws(run, data: Any, step: int) -> list[dict[str, Tensor]]:
    """``rank_draws`` of every rank, in rank order (each rank draws from its own seed); a collective:
    every rank calls it."""
    mine = rank_draws(run, data, step)
    if run.world == 1:
        return [mine]
    import torch.distributed as dist
    out: list[Any] = [None] * run.world
    dist.all_gather_object(out, mine)
    return out


def position(iteration: int, epoch_length: int, draws: list[dict[str, Tensor]] | None = None) -> dict[str, Any]:
    """The checkpoint's record of where the run is after ``iteration`` steps: epochs finished, steps
    done in the next one and, inside an epoch, every rank's draw state to continue it (``draws``)."""
    epoch, step = divmod(iteration, epoch_length)
    pos: dict[str, Any] = {"epoch": epoch, "step": step}
    if step:
        if draws is None:
            raise ValueError("a position inside an epoch needs the ranks' draw states")
        pos["draws"] = draws
    return pos


def check_resumable(ckpt: dict[str, Any], world: int, flag: str = "--resume") -> None:
    """A checkpoint taken inside an epoch continues exactly only with as many processes as wrote it."""
    if ckpt.get("step") and len(ckpt.get("draws", [])) != world:
        raise ValueError(f"{flag}: written inside an epoch (after step {ckpt['step']}) by {len(ckpt.get('draws', []))} "
                         f"process(es); continue it with as many, not {world}, or resume from an epoch's checkpoint")


def resume_inside_epoch(run, data: Any, ckpt: dict[str, Any]) -> None:
    """After the epoch's re-seeding: set this rank's draws and the loader to continue after the checkpoint's step."""
    set_draw_state(run, ckpt["draws"][run.rank])
    data.resume_at(ckpt["step"])
