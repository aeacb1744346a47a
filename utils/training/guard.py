"""The checks between steps that every rank must answer alike: has a stop been asked for (a signal),
and has a step produced a non-finite loss or gradient. Steps only record, on the device, without
waiting for it; the checks read the record every ``--print-freq`` steps (where the progress line
already waits) and before every checkpoint, so that no checkpoint is written from a bad state."""
from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

from ..preemption import StopRequest


class NonFiniteError(RuntimeError):
    """A step's loss or gradients were not finite; its text is the one line that says where."""


class NonFiniteGuard:
    """Records the first step whose loss terms, or gradients (``grads``), hold a NaN or an Inf.

    Without a grad scaler (fp32, bf16) a non-finite gradient is a fault, and the optimiser step has
    already taken it into the weights. With fp16 the scaler skips such steps and lowers its scale, as
    it should, so only the loss terms are checked. Each ``observe`` is a few small device ops.
    """

    def __init__(self, params: Iterable[torch.nn.Parameter], device: torch.device, grads: bool = True):
        self.params = [p for p in params if p.requires_grad] if grads else []
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.step = torch.zeros((), dtype=torch.long, device=device)
        self.values: Tensor | None = None  # the loss terms of the first bad step
        self.names: list[str] = []

    def observe(self, step: int, terms: dict[str, Tensor]) -> None:
        """Record step ``step``'s loss terms and the gradients it left, before the optimiser step."""
        vals = torch.stack([v.detach().float() for v in terms.values()])
        checked = vals
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads:  # the largest magnitude of each gradient: NaN or Inf where any element is
            checked = torch.cat([vals, torch.stack(torch._foreach_norm(grads, float("inf"))).float()])
        bad_now = ~torch.isfinite(checked).all()
        if self.values is None:
            self.names, self.values = list(terms), torch.zeros_like(vals)
        # until a bad step has been seen, keep this step's; after it, keep the first bad one's
        self.step = torch.where(self.bad, self.step, step)
        self.values = torch.where(self.bad, self.values, vals)
        self.bad = self.bad | bad_now

    def describe(self, steps_per_epoch: int) -> str:
        """Where the first bad step was, and its loss terms (reads the record: waits for the device)."""
        step = int(self.step)
        epoch, at = (step - 1) // steps_per_epoch + 1, (step - 1) % steps_per_epoch + 1
        vals = self.values.tolist() if self.values is not None else []
        terms = " ".join(f"{k}={v:.4g}" for k, v in zip(self.names, vals))
        what = "gradient" if all(math.isfinite(v) for v in vals) else "loss"
        return f"non-finite {what} at epoch {epoch} step {at}/{steps_per_epoch} ({terms})"


class StepChecks:
    """``poll`` answers, alike on every rank, whether any rank was asked to stop and whether any rank
    saw a non-finite value: one all-reduce of two flags, and one wait for the device."""

    def __init__(self, stop: StopRequest, guard: NonFiniteGuard | None, device: torch.device, world: int):
        self.stop, self.guard, self.device, self.world = stop, guard, device, world

    def poll(self) -> tuple[bool, bool]:
        """(stop asked on some rank, non-finite value on some rank)."""
        bad = self.guard.bad if self.guard is not None else torch.zeros((), dtype=torch.bool, device=self.device)
        flags = torch.stack([torch.tensor(self.stop.received is not None, device=self.device), bad]).float()
        if self.world > 1:
            import ignite.distributed as idist
            flags = idist.all_reduce(flags, op="MAX")
        stop, nonfinite = flags.tolist()
        return stop > 0, nonfinite > 0
