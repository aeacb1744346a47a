"""The training step, as the data path walks it: loader batches -> two views + their parameter records
-> descriptors (and AugSelf targets) -> framework loss -> backward -> optimiser step and hooks.
``make_inputs`` is the input side, ``make_model_step`` the rest; ``engine_and_data`` gives the Engine
either the whole step on loader batches or the model step on inputs made ahead (``InputStream``)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from ignite.engine import Engine
from torch import Tensor
from torch.profiler import record_function
from torch.utils._pytree import tree_map

from augmentations import ViewAugment, ViewDraws, ViewParams, augself_targets, build_descriptor, compiled
from datasets.batches import TwoViewBatch
from models import Progress

from .guard import NonFiniteGuard
from .input_stream import InputStream
from .position import draw_state
from .run import Run

AUGMENT_COMPILE_BACKEND = "inductor"  # for --compile-augment; tests use "aot_eager" (same graphs, no codegen)


class StepInputs(NamedTuple):
    """One batch's input to the model step: both views, their descriptors and the AugSelf targets."""

    x1: Tensor  # view 1, float, normalised, on the device
    x2: Tensor
    d1: Tensor | None  # view 1's descriptor; None where the framework needs none
    d2: Tensor | None
    targets: tuple[dict[str, Tensor], dict[str, Tensor]] | None  # AugSelf targets (1 from 2, 2 from 1); None without heads


def _sources(run: Run, batch: tuple[Tensor, Tensor] | TwoViewBatch) -> tuple[tuple, tuple]:
    """A loader batch's (images, boxes, source sizes) for each view; no boxes where the crop is made here."""
    if run.data.in_memory:
        images, _ = batch
        return (images, None, None), (images, None, None)
    # already on the device (DevicePrefetcher, DeviceDecodePrefetcher)
    return (batch.view1, batch.box1, batch.size1), (batch.view2, batch.box2, batch.size2)


def make_views(run: Run, batches: list, aug: ViewAugment) -> tuple[Tensor, ViewParams, Tensor, ViewParams]:
    """Loader batches -> (x1, record1, x2, record2) for all of them, joined, on the device.

    With ``--augment-ahead`` 1, one batch goes through ``aug`` as it is. Else the batches are joined
    and each view is made in one call (``ViewAugment.view``), with the draws taken batch by batch in
    the order that one call per batch takes them: the views and records are those of the batches
    made one at a time. A short group (an epoch's last) is padded to ``--augment-ahead`` batches with
    copies of its last batch and draws, so the compiled graphs see one shape and never recompile.
    """
    gen, host, ahead = run.generator, run.host_generator, run.args.augment_ahead
    sources = [_sources(run, b) for b in batches]
    if ahead == 1:
        views = [aug(images, gen, boxes, size, host) for images, boxes, size in sources[0]]
    else:
        draws = [[aug.draw_view(len(images), gen, host, run.data.in_memory) for images, _, _ in src] for src in sources]
        pad = ahead - len(batches)
        sources, draws = sources + sources[-1:] * pad, draws + draws[-1:] * pad  # copies: no draw is taken
        if run.data.in_memory:  # both views crop the same images: join them once
            images = torch.cat([src[0][0] for src in sources])
            joined = [(images, None, None)] * 2
        else:
            joined = [tuple(torch.cat(parts) for parts in zip(*(src[v] for src in sources))) for v in range(2)]
        views = [aug.view(x, ViewDraws.cat([d[v] for d in draws]), boxes, size)
                 for v, (x, boxes, size) in enumerate(joined)]
    (x1, p1), (x2, p2) = views
    if run.args.channels_last:
        x1, x2 = (x.contiguous(memory_format=torch.channels_last) for x in (x1, x2))
    return x1, p1, x2, p2


def split_steps(inputs: StepInputs, n: int) -> list[StepInputs]:
    """The joined inputs of n equal batches -> each batch's inputs, as slices of them (no copies)."""
    b = inputs[0].shape[0] // n
    return [tree_map(lambda t: t[i * b:(i + 1) * b] if torch.is_tensor(t) else t, inputs) for i in range(n)]


def make_inputs(run: Run) -> Callable[[list], list[StepInputs]]:
    """The step's input side: loader batches -> one ``StepInputs`` per batch,
    made together (``make_views``) and compiled with ``--compile-augment``; descriptors and targets
    are None where the method has none."""
    backend = AUGMENT_COMPILE_BACKEND if run.args.compile_augment else None
    aug = ViewAugment(run.cfg, backend, whole_view=run.args.augment_graph == "view")
    descriptor_of, targets_of = compiled(build_descriptor, backend), compiled(augself_targets, backend)
    cond_active = run.framework.needs_descriptors
    heads = run.framework.augself
    ranges = run.cfg.jitter_ranges
    quirk = run.args.augself_flip_quirk

    @record_function("inputs")  # the regions scripts/profile_step.py reports
    def inputs(batches: list) -> list[StepInputs]:
        x1, p1, x2, p2 = make_views(run, batches, aug)
        d1 = descriptor_of(p1, run.args.aug_cond, ranges) if cond_active else None
        d2 = descriptor_of(p2, run.args.aug_cond, ranges) if cond_active else None
        targets = None
        if heads is not None:
            targets = (targets_of(p1, p2, heads.keys, ranges, quirk), targets_of(p2, p1, heads.keys, ranges, quirk))
        joined = StepInputs(x1, x2, d1, d2, targets)
        return [joined] if run.args.augment_ahead == 1 else split_steps(joined, run.args.augment_ahead)[:len(batches)]

    return inputs


def make_model_step(run: Run, total_steps: int, guard: NonFiniteGuard | None = None,
                    epochs: int = 1) -> Callable[[Engine, StepInputs], dict[str, Tensor]]:
    """The step after the input side: ``StepInputs`` -> loss, backward, optimiser, hooks;
    ``guard`` records, on the device, whether the loss terms and gradients are finite. ``total_steps``
    are the run's steps over its ``epochs`` (--max-epochs), which the hooks' schedules follow."""

    def model_step(engine: Engine, inputs: StepInputs) -> dict[str, torch.Tensor]:
        with record_function("forward"), torch.autocast(run.device.type, dtype=run.amp_dtype,
                                                        enabled=run.amp_dtype is not None):
            out = run.model(inputs.x1, inputs.x2, inputs.d1, inputs.d2, inputs.targets)
        run.optimizer.zero_grad(set_to_none=True)
        with record_function("backward"):
            run.scaler.scale(out["loss"]).backward()
        terms = {k: v.detach() for k, v in out.items() if torch.is_tensor(v) and v.dim() == 0}
        if guard is not None:
            guard.observe(engine.state.iteration, terms)
        with record_function("optimizer"):
            run.framework.on_before_optimizer_step(engine.state.iteration - 1)
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.framework.on_after_step(Progress(engine.state.iteration, total_steps, epochs))
        return terms

    return model_step


def make_step(run: Run, total_steps: int, guard: NonFiniteGuard | None = None,
              epochs: int = 1) -> Callable[[Engine, object], dict[str, Tensor]]:
    """The whole step on a loader batch: make_inputs, then make_model_step."""
    inputs, model_step = make_inputs(run), make_model_step(run, total_steps, guard, epochs)

    def step(engine: Engine, batch) -> dict[str, torch.Tensor]:
        return model_step(engine, inputs([batch])[0])

    return step


def input_stream(run: Run) -> InputStream:
    """The loader as step inputs, ``--augment-ahead`` batches' at a time."""
    return InputStream(run.loader, make_inputs(run), ahead=run.args.augment_ahead, snapshot=lambda: draw_state(run))


def engine_and_data(run: Run, total_steps: int, guard: NonFiniteGuard | None = None, epochs: int = 1
                    ) -> tuple[Callable[[Engine, object], dict[str, Tensor]], Iterable]:
    """(step function, data) for the Engine: with ``--augment-ahead`` > 1 the data is an InputStream of
    step inputs and the step is the model step; else the loader and the whole step."""
    if run.args.augment_ahead > 1:
        return make_model_step(run, total_steps, guard, epochs), input_stream(run)
    return make_step(run, total_steps, guard, epochs), run.loader
