"""The pretraining run around an Ignite Engine: the step (``utils.training.step``) on the run's parts
(``utils.training.run``), with the schedule, the k-NN monitor, logs and atomic checkpoints as handlers, and resume."""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events

from augmentations import AugConfig, descriptor_dim
from datasets.batches import DecodeCounts

from ..checkpoint import (
    CheckpointError,
    load_checkpoint,
    optimizer_mismatch,
    save_atomic,
    save_epoch,
    state_mismatch,
)
from .guard import NonFiniteError, NonFiniteGuard, StepChecks
from ..evaluation.knn import extract_features, knn_accuracy
from ..logging import Pace, RunLogger, duration, write_json
from .position import all_ranks_draws, check_resumable, position, resume_inside_epoch
from ..preemption import EXIT_FAULT, EXIT_PREEMPTED, StopRequest, fault_line, kept_line
from .run import Run, augself_weights, build_run
from .step import engine_and_data
from .validate import changed_since


def checkpoint_state(run: Run, engine: Engine, draws: list | None = None) -> dict[str, Any]:
    """Everything a resume needs to continue exactly: weights, optimiser, scaler, engine, RNG, arguments
    and the position (``epoch``s finished, ``step``s done in the next one and there every rank's
    ``draws``: ``utils.training.position``); the backbone alone too, for evaluation without the framework."""
    rng = {"torch": torch.get_rng_state()}
    if run.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(run.device)
    return {**position(engine.state.iteration, engine.state.epoch_length, draws), "args": vars(run.args),
            "backbone": run.framework.backbone.state_dict(), "model": run.framework.state_dict(),
            "optimizer": run.optimizer.state_dict(), "scaler": run.scaler.state_dict(),
            "engine": engine.state_dict(), "rng": rng}


def restore(run: Run, engine: Engine, ckpt: dict[str, Any]) -> None:
    """Load ``checkpoint_state`` back into ``run`` and ``engine``."""
    run.framework.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scaler.load_state_dict(ckpt["scaler"])
    engine.load_state_dict(ckpt["engine"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if "cuda" in ckpt["rng"] and run.device.type == "cuda":
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"], run.device)


def knn_monitor(run: Run) -> dict[str, float]:
    """1-NN and weighted k-NN accuracy of the backbone's features on the dataset's labelled splits."""
    a, bb = run.args, run.framework.backbone
    kw = dict(batch_size=256, mean=run.cfg.mean, std=run.cfg.std, num_workers=a.num_workers,
              channels_last=a.channels_last)
    # Eager even with --compile: the eval-mode backbone and each new batch shape would compile again
    # (and record CUDA graphs, with reduce-overhead), minutes at ResNet-50 for a few batches.
    with torch.compiler.set_stance("force_eager"), \
            torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        tr = extract_features(bb, run.data.knn_train, run.device, **kw)
        te = extract_features(bb, run.data.knn_test, run.device, **kw)
    return knn_accuracy(*tr, *te, k=a.knn_k, temperature=a.knn_t)


class Control:
    """What happens between steps besides the step: the checks every rank answers alike (a stop asked
    for by a signal, a non-finite value: ``StepChecks``), the checkpoint written inside an epoch, the
    stop itself, and the position a resume inside an epoch continues from."""

    def __init__(self, run: Run, data: Any, stop: StopRequest, guard: NonFiniteGuard | None, log: RunLogger):
        self.run, self.data, self.stop, self.guard, self.log = run, data, stop, guard, log
        self.checks = StepChecks(stop, guard, run.device, run.world)
        self.stopped = False
        self.resume: dict[str, Any] | None = None  # a checkpoint taken inside an epoch, until that epoch starts

    def verify(self, e: Engine) -> bool:
        """Whether a stop was asked for on any rank; NonFiniteError where a step went non-finite on any,
        which no checkpoint may then be written from."""
        stop, bad = self.checks.poll()
        if bad:
            where = (self.guard.describe(e.state.epoch_length) if self.guard is not None and bool(self.guard.bad)
                     else "non-finite loss or gradient on another rank")
            raise NonFiniteError(f"{where}: the run stopped without writing a checkpoint from it; "
                                 f"{kept_line(self.run.args.logdir)} (a lower --base-lr may avoid it)")
        return stop

    def save_last(self, e: Engine) -> None:
        """ckpt-last.pth at this step, inside an epoch (every rank calls it: rank 0 gathers their draws)."""
        draws = all_ranks_draws(self.run, self.data, (e.state.iteration - 1) % e.state.epoch_length + 1)
        if self.run.rank == 0:
            path = os.path.join(self.run.args.logdir, "ckpt-last.pth")
            save_atomic(checkpoint_state(self.run, e, draws), path)

    def halt(self, e: Engine) -> None:
        """End the run here, once rank 0's checkpoint is written (no rank leaves before it is)."""
        idist.barrier()
        self.stopped = True
        at = (e.state.iteration - 1) % e.state.epoch_length + 1
        by = self.stop.name or "a stop signal sent to another rank"
        self.log.info(f"stopped by {by} at epoch {e.state.epoch} step {at}/{e.state.epoch_length}: "
                      f"{os.path.join(self.run.args.logdir, 'ckpt-last.pth')} holds it; continue with --resume last "
                      f"(exit status {EXIT_PREEMPTED})")
        e.terminate()


def attach_control(run: Run, engine: Engine, ctl: Control) -> None:
    """Between steps inside an epoch: checks every --print-freq steps (every step on one process once a
    signal came), ckpt-last.pth every --ckpt-every-steps, and a stop when asked; the epoch's end is
    ``attach_handlers``'s."""
    a = run.args

    @engine.on(Events.ITERATION_COMPLETED)
    def _between_steps(e: Engine):
        it = e.state.iteration
        if it % e.state.epoch_length == 0:
            return
        every = a.ckpt_every_steps is not None and it % a.ckpt_every_steps == 0
        asked = run.world == 1 and ctl.stop.received is not None  # one process: no other rank to agree with
        if not (every or asked or it % a.print_freq == 0):
            return
        stop = ctl.verify(e)
        if stop or every:
            ctl.save_last(e)
        if stop:
            ctl.halt(e)


def attach_handlers(run: Run, engine: Engine, log: RunLogger, ctl: Control) -> None:
    """Per-epoch seeding and schedule, progress lines, the k-NN monitor and checkpoints."""
    a, logdir = run.args, run.args.logdir
    master = run.rank == 0
    pace = Pace()

    @engine.on(Events.STARTED)  # after a resume's restore: the state this run starts from
    def _start(e: Engine):
        pace.start(time.time(), e.state.iteration)

    @engine.on(Events.EPOCH_STARTED)  # fires before Ignite creates the epoch's data iterator
    def _epoch(e: Engine):
        run.set_epoch(e.state.epoch - 1)
        if ctl.resume is not None:  # the epoch a checkpoint was taken inside: continue after its step
            resume_inside_epoch(run, ctl.data, ctl.resume)
            ctl.resume = None

    @engine.on(Events.ITERATION_COMPLETED(every=a.print_freq))
    def _print(e: Engine):
        vals = {k: float(v) for k, v in e.state.output.items()}
        step_s, left = pace.update(time.time(), e.state.iteration, e.state.epoch_length * a.max_epochs)
        ips = a.batch_size / max(1e-9, step_s)
        lr = run.optimizer.param_groups[0]["lr"]
        it_in_epoch = (e.state.iteration - 1) % e.state.epoch_length + 1
        log.info(f"epoch {e.state.epoch} [{it_in_epoch}/{e.state.epoch_length}] "
                 + " ".join(f"{k}={v:.4f}" for k, v in vals.items())
                 + f" lr={lr:.5f} img/s={ips:.0f} eta={duration(left)}")
        log.scalars({f"train/{k}": v for k, v in vals.items()} | {"train/lr": lr, "train/img_per_s": ips},
                    e.state.iteration)

    attach_control(run, engine, ctl)  # after the progress line: a stop's line follows its step's

    @engine.on(Events.EPOCH_COMPLETED)
    def _epoch_end(e: Engine):
        ep = e.state.epoch
        stop = ctl.verify(e)
        if master and ep == run.start_epoch + 1 and (line := decode_report(run.loader)) is not None:
            log.info(f"epoch {ep}: {line}")  # the share is the same every epoch
        if (not stop and a.eval_freq > 0 and (ep % a.eval_freq == 0 or ep == a.max_epochs)
                and run.data.knn_train is not None):  # asked to stop: the checkpoint first, in the time left
            if master:
                acc = knn_monitor(run)
                log.info(f"epoch {ep} knn: 1-NN={acc['nn1']:.4f} weighted-{acc['k']}NN={acc['knn']:.4f} "
                         f"(chance {acc['chance']:.4f})")
                log.scalars({"eval/nn1": acc["nn1"], "eval/knn": acc["knn"]}, e.state.iteration)
                write_json(os.path.join(logdir, "knn.json"), {"epoch": ep, **acc})
            idist.barrier()
        if master:
            state = checkpoint_state(run, e)
            save_epoch(state, logdir, ep, keep=ep % a.ckpt_freq == 0 or ep == a.max_epochs)
        if stop and ep < a.max_epochs:
            ctl.halt(e)
            return
        if a.stop_after is not None and ep - run.start_epoch >= a.stop_after and ep < a.max_epochs:
            log.info(f"stopping after {a.stop_after} epoch(s) as asked (--stop-after); resume with --resume last")
            e.terminate()


def attach_progress_bar(engine: Engine, every: int) -> None:
    """tqdm bar over each epoch on an interactive console (updated every ``every`` steps, so the GPU
    is not synchronised each iteration); log files get the plain lines instead."""
    if sys.stderr.isatty():
        from ignite.handlers import ProgressBar
        ProgressBar(persist=False).attach(engine, output_transform=lambda out: {"loss": out["loss"]},
                                          event_name=Events.ITERATION_COMPLETED(every=every))


def method_line(a, cfg: AugConfig) -> str:
    """Baseline, AugSelf or CASSLE, as the flags make it, naming conditioning flags that change nothing."""
    heads = ", ".join(f"{k} {w:g}" for k, w in augself_weights(a).items())
    augself = f"; AugSelf heads: {heads}" if heads else ""
    if a.aug_inj_type == "proj-none":
        unused = f"; --aug-cond {' '.join(a.aug_cond)} is not used" if a.aug_cond else ""
        return f"projector without conditioning (--aug-inj-type proj-none){unused}{augself}"
    mlp = f"depth {a.aug_nn_depth}, width {a.aug_nn_width}"
    treatment = {"raw": f"as is, {a.aug_inj_type}", "mlp": f"through an MLP ({mlp}), {a.aug_inj_type}",
                 "hn": f"into a hypernetwork ({mlp}) that makes the projector ({a.aug_hn_type})"}[a.aug_treatment]
    line = f"CASSLE: the {descriptor_dim(a.aug_cond)}-d descriptor ({' '.join(a.aug_cond)}) {treatment}{augself}"
    if "blur" in a.aug_cond and cfg.blur_kernel is None:  # allowed (the paper's flags), but worth knowing
        line += f"; its blur piece is always 0, as the --dataset {a.dataset} recipe never blurs"
    return line


def device_word(device_type: str) -> str:
    """The device as the opening lines name it: GPU or CPU."""
    return "GPU" if device_type == "cuda" else device_type.upper()


def input_line(a, in_memory: bool, device: str) -> str:
    """How the views are made and the backbone runs, as the speed flags (resolved) make it."""
    device = device_word(device)
    if in_memory:
        source = f"uint8 images held on the {device}, views made there in batches, crop included"
    elif a.jpeg_decode == "device":
        source = (f"JPEG bytes and crop boxes from {a.num_workers} loader workers, nvJPEG decode and crops in "
                  f"batches on the {device}, the rest of the views there")
    else:
        source = (f"JPEG decode (libjpeg-turbo; PIL for other files) and crops in {a.num_workers} loader workers, "
                  f"the rest of the views on the {device}")
    how = [("compiled" if a.compile_augment else "eager") + (" per stage" if a.augment_graph == "stages" else
                                                             " as one graph per view")]
    if a.augment_ahead > 1:
        how.append(f"{a.augment_ahead} steps at once")
    backbone = f"compiled ({a.compile_mode})" if a.compile else "eager"
    return f"input: {source}; augmentation {', '.join(how)}; backbone {backbone}" + (
        ", channels_last" if a.channels_last else "")


def decode_report(loader) -> str | None:
    """``decode_line`` for a batch source that reports where it decoded (``decode_counts``, see
    datasets/batches.py); None for the others."""
    counts = getattr(loader, "decode_counts", None)
    return decode_line(counts()) if counts is not None else None


def decode_line(counts: DecodeCounts) -> str:
    """Where an epoch's images were decoded on the nvJPEG path: a large workers' share (a folder of
    PNGs, say) means the device decodes little, and the loader workers set the pace."""
    line = (f"decoded {counts.device} images on the {device_word(counts.device_type)} and {counts.workers} in "
            "the loader workers (files nvJPEG may not handle)")
    if counts.refused:
        line += f", {len(counts.refused)} by PIL after the device refused them (the first: {counts.refused[0]})"
    return line + ", in this process"


def opening_lines(run: Run, epoch_length: int) -> list[str]:
    """The run's opening lines: what trains on what, by which method, and what the k-NN monitor compares."""
    a, d = run.args, run.data
    n = sum(p.numel() for p in run.framework.parameters() if p.requires_grad)
    lines = [f"{a.framework} on {a.dataset} ({len(d.train)} images), {a.model}, {n / 1e6:.2f}M trainable parameters, "
             f"{run.world} process(es) on {run.device.type}, {epoch_length} steps/epoch, precision {a.precision}",
             method_line(a, run.cfg), input_line(a, d.in_memory, run.device.type)]
    if a.restarted:
        lines.append(f"{a.logdir} held a run stopped before its first checkpoint: it starts again from epoch 1")
    if a.eval_freq > 0:
        lines.append("k-NN monitor off: the data has no labelled split" if d.knn_train is None else
                     f"k-NN monitor: {len(d.knn_test)} labelled queries against {len(d.knn_train)} labelled images")
    return lines


def training(local_rank: int, args) -> None:
    """Entry of each process (one per GPU, or one on CPU). A stop asked for by one of
    ``--preempt-signals`` exits with ``EXIT_PREEMPTED`` once ckpt-last.pth holds the step it stopped
    after; a non-finite value, a dead loader worker or a lost rank print one line and exit with
    ``EXIT_FAULT``."""
    stop = StopRequest(args.preempt_signals).install()  # before any loader worker is forked: they inherit it
    try:
        _train(args, stop)
    except NonFiniteError as e:
        if idist.get_rank() == 0:  # every rank saw it; one line is enough
            print(f"error: {e}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_FAULT) from None
    except Exception as e:
        line = fault_line(e)
        if line is None:
            raise
        who = f"rank {idist.get_rank()}: " if idist.get_world_size() > 1 else ""
        print(f"error: {who}{line}; the run stopped: {kept_line(args.logdir)}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_FAULT) from None
    finally:
        stop.restore()


def _train(args, stop: StopRequest) -> None:
    device = torch.device(args.device if args.device != "cuda" else f"cuda:{idist.get_local_rank()}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rank, world = idist.get_rank(), idist.get_world_size()
    run = build_run(args, device, rank, world)
    epoch_length = len(run.loader)
    # fp16: the grad scaler skips the steps whose gradients overflow, as it should; only the loss is checked
    guard = NonFiniteGuard(run.framework.parameters(), device, grads=not run.scaler.is_enabled())
    step, data = engine_and_data(run, epoch_length * args.max_epochs, guard, epochs=args.max_epochs)
    engine = Engine(step)
    # The exception that stops a run reaches the entry point, which prints it once: one line for bad
    # data, a traceback for a bug. Ignite would log it before, with a worker's whole traceback.
    engine.logger.setLevel(logging.CRITICAL)
    ckpt = load_checkpoint(args.resume, device, flag="--resume") if args.resume else None
    if ckpt and ckpt["engine"]["epoch_length"] != epoch_length:  # --batch-size is checked in validation
        raise ValueError(f"--resume {args.resume}: its run took {ckpt['engine']['epoch_length']} steps per epoch, "
                         f"the data now gives {epoch_length} ({len(run.data.train)} images at --batch-size "
                         f"{args.batch_size}): the dataset has changed size since")
    if ckpt and (wrong := state_mismatch(run.framework.state_dict(), ckpt["model"])):  # before any file is written
        raise CheckpointError(f"--resume {args.resume}: its weights do not fit the model the flags build ({wrong})")
    if ckpt and (wrong := optimizer_mismatch(run.optimizer.state_dict(), ckpt["optimizer"])):
        raise CheckpointError(f"--resume {args.resume}: its optimiser state does not fit the model the flags build "
                              f"({wrong})")
    if ckpt:
        check_resumable(ckpt, world, f"--resume {args.resume}")
    purge = ckpt["engine"]["iteration"] + 1 if ckpt else (0 if args.restarted else None)
    log = RunLogger(args.logdir, vars(args), enabled=rank == 0, purge_step=purge)
    ctl = Control(run, data, stop, guard, log)
    attach_handlers(run, engine, log, ctl)
    if rank == 0:
        attach_progress_bar(engine, args.print_freq)
    if ckpt:
        restore(run, engine, ckpt)
        run.start_epoch = engine.state.epoch
        if ckpt.get("step"):
            ctl.resume = ckpt
            log.info(f"resumed from {args.resume} in epoch {engine.state.epoch + 1} after step "
                     f"{ckpt['step']}/{epoch_length}")
        else:
            log.info(f"resumed from {args.resume} at epoch {engine.state.epoch}")
        if changed := changed_since(ckpt["args"], args):  # allowed, but e.g. --max-epochs reshapes the lr
            log.info("changed since the checkpoint: " + "; ".join(changed))
    if rank == 0:
        write_json(os.path.join(args.logdir, "args.json"), vars(args))
        for line in opening_lines(run, epoch_length):
            log.info(line)
    engine.run(data, max_epochs=args.max_epochs, epoch_length=epoch_length)
    if rank == 0 and not ctl.stopped:
        log.info(f"done: checkpoint {os.path.join(args.logdir, 'ckpt-last.pth')}")
    log.close()
    if ctl.stopped:
        raise SystemExit(EXIT_PREEMPTED)
