"""The pretraining run around an Ignite Engine: data -> two views + records -> descriptors ->
framework loss (+ AugSelf) -> optimiser step, with schedule, monitors and checkpoints as handlers."""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any

import ignite.distributed as idist
import torch
from ignite.engine import Engine, Events
from torch import nn
from torch.profiler import record_function
from torch.utils._pytree import tree_map

from augmentations import (AugConfig, ViewAugment, ViewDraws, augself_targets, build_descriptor, compiled,
                           config_for_dataset, descriptor_dim)
from datasets import DeviceBatches, PretrainData, build_pretrain_data, worker_crop_loader
from datasets.device_decode import DeviceDecodePrefetcher, bytes_loader
from datasets.loaders import DevicePrefetcher
from models import ConditionSpec, Framework, FrameworkOptions, build_framework
from models.augself import AUGSELF_OUT

from .checkpoint import load_checkpoint, save_atomic
from .distributed import ddp_no_buffer_sync
from .input_stream import InputStream
from .knn import extract_features, knn_accuracy
from .logging import Pace, RunLogger, duration, write_json
from .schedule import lr_factor, set_lr
from .validate import changed_since

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
AUGMENT_COMPILE_BACKEND = "inductor"  # for --compile-augment; tests use "aot_eager" (same graphs, no codegen)
BACKBONE_COMPILE_BACKEND = "inductor"  # for --compile (--compile-mode applies to inductor only); likewise


def condition_spec(args) -> ConditionSpec:
    dim = descriptor_dim(args.aug_cond) if args.aug_inj_type != "proj-none" else 0
    return ConditionSpec(dim, args.aug_treatment, args.aug_inj_type, args.aug_nn_width, args.aug_nn_depth,
                         args.aug_hn_type)


def augself_weights(args) -> dict[str, float]:
    return {k: getattr(args, f"ss_{k}") for k in AUGSELF_OUT if getattr(args, f"ss_{k}") > 0}


def build_model(args, image_size: int) -> Framework:
    opts = FrameworkOptions(proj_hidden=args.proj_hidden, imagenet=args.dataset in ("imagenet100", "folder"),
                            moco_enqueue=args.moco_enqueue, simclr_global_negatives=args.simclr_global_negatives)
    return build_framework(args.framework, args.model, condition_spec(args), opts, augself_weights(args),
                           image_size=image_size, torchvision_init=args.torchvision_init)


def scaled_lr(args) -> float:
    """The linear scaling rule of the recipe: lr = base_lr x global batch / 256."""
    return args.base_lr * args.batch_size / 256


def build_optimizer(framework: Framework, args) -> torch.optim.Optimizer:
    lr = scaled_lr(args)
    groups = framework.param_groups()
    if framework.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=args.wd)
    return torch.optim.SGD(groups, lr=lr, momentum=args.momentum, weight_decay=args.wd)


@dataclass
class Run:
    """Everything one rank needs for the run; built before any file is written."""

    args: Any
    device: torch.device
    rank: int
    world: int
    data: PretrainData
    loader: Any
    cfg: AugConfig
    framework: Framework  # unwrapped, for hooks and checkpoints
    model: nn.Module  # DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    generator: torch.Generator  # on the device: every augmentation draw
    host_generator: torch.Generator = field(default_factory=torch.Generator)  # jitter op order (see ViewAugment)
    start_epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Re-seed data order and augmentation draws from (seed, epoch, rank): resume is exact. Also
        set training mode here, once an epoch, not every step: ``train()`` walks every submodule,
        host time (~0.8 ms a call on the 2-core CPU) that a host-bound step pays in full."""
        self.model.train()
        self.loader.set_epoch(epoch)
        seed = (self.args.seed * 1_000_003 + epoch) * 8191 + self.rank
        self.generator.manual_seed(seed)
        self.host_generator.manual_seed(seed)
        factor = lr_factor(epoch, self.args.max_epochs, self.framework.warmup_epochs)
        set_lr(self.optimizer, scaled_lr(self.args), factor)


def build_loader(args, data: PretrainData, size: int, device: torch.device, rank: int = 0, world: int = 1):
    """This rank's batches: the tensor dataset on the device, or a JPEG folder decoded as
    ``args.jpeg_decode`` says (nvJPEG on the device, or PIL in workers)."""
    per_rank = args.batch_size // world
    if data.in_memory:
        return DeviceBatches(data.train, per_rank, args.seed, device, rank, world)
    if args.jpeg_decode == "device":
        loader = bytes_loader(data.train.samples, per_rank, args.seed, args.num_workers, rank, world, size=size,
                              worker_fraction=args.jpeg_worker_fraction)
        return DeviceDecodePrefetcher(loader, device)
    return DevicePrefetcher(worker_crop_loader(data.train, size, per_rank, args.seed, args.num_workers,
                                               rank, world, pin_memory=device.type == "cuda"), device)


def aug_config(args) -> AugConfig:
    """The augmentation that validated arguments ask for: the dataset's recipe, and how to blur."""
    return replace(config_for_dataset(args.dataset, args.color_aug), blur_impl=args.blur_impl)


def build_run(args, device: torch.device, rank: int = 0, world: int = 1) -> Run:
    cfg = aug_config(args)
    data = build_pretrain_data(args.dataset, args.datadir, args.download)
    loader = build_loader(args, data, cfg.size, device, rank, world)
    torch.manual_seed(args.seed)  # identical initial weights on every rank
    framework = build_model(args, cfg.size).to(device)
    if args.channels_last:
        framework = framework.to(memory_format=torch.channels_last)
    if args.compile:
        framework.backbone.compile(backend=BACKBONE_COMPILE_BACKEND, mode=args.compile_mode)
    optimizer = build_optimizer(framework, args)
    model = framework
    if world > 1:
        model = idist.auto_model(framework, sync_bn=device.type == "cuda", **ddp_no_buffer_sync())
    amp = AMP_DTYPES[args.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")
    gen = torch.Generator(device=device)
    return Run(args, device, rank, world, data, loader, cfg, framework, model, optimizer, scaler, amp, gen)


def _sources(run: Run, batch) -> tuple[tuple, tuple]:
    """A loader batch's (images, boxes, source sizes) for each view; no boxes where the crop is made here."""
    if run.data.in_memory:
        images, _ = batch
        return (images, None, None), (images, None, None)
    v1, b1, s1, v2, b2, s2, _ = batch  # already on the device (DevicePrefetcher)
    return (v1, b1, s1), (v2, b2, s2)


def make_views(run: Run, batches: list, aug: ViewAugment):
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


def split_steps(inputs, n: int) -> list:
    """The joined inputs of n equal batches -> each batch's inputs, as slices of them (no copies)."""
    b = inputs[0].shape[0] // n
    return [tree_map(lambda t: t[i * b:(i + 1) * b] if torch.is_tensor(t) else t, inputs) for i in range(n)]


def make_inputs(run: Run):
    """The step's input side: loader batches -> one (x1, x2, d1, d2, AugSelf targets) per batch,
    made together (``make_views``) and compiled with ``--compile-augment``; descriptors and targets
    are None where the method has none."""
    backend = AUGMENT_COMPILE_BACKEND if run.args.compile_augment else None
    aug = ViewAugment(run.cfg, backend, whole_view=run.args.augment_graph == "view")
    describe, targets_of = compiled(build_descriptor, backend), compiled(augself_targets, backend)
    cond_active = run.framework.projector.cond.active
    heads = run.framework.augself
    ranges = run.cfg.jitter_ranges
    quirk = run.args.augself_flip_quirk

    @record_function("inputs")  # the regions scripts/profile_step.py reports
    def inputs(batches: list) -> list:
        x1, p1, x2, p2 = make_views(run, batches, aug)
        d1 = describe(p1, run.args.aug_cond, ranges) if cond_active else None
        d2 = describe(p2, run.args.aug_cond, ranges) if cond_active else None
        targets = None
        if heads is not None:
            targets = (targets_of(p1, p2, heads.keys, ranges, quirk), targets_of(p2, p1, heads.keys, ranges, quirk))
        joined = (x1, x2, d1, d2, targets)
        return [joined] if run.args.augment_ahead == 1 else split_steps(joined, run.args.augment_ahead)[:len(batches)]

    return inputs


def make_model_step(run: Run, total_steps: int):
    """The step after the input side: (x1, x2, d1, d2, targets) -> loss, backward, optimiser, hooks."""

    def model_step(engine: Engine, inputs) -> dict[str, torch.Tensor]:
        x1, x2, d1, d2, targets = inputs
        with record_function("forward"), torch.autocast(run.device.type, dtype=run.amp_dtype,
                                                        enabled=run.amp_dtype is not None):
            out = run.model(x1, x2, d1, d2, targets)
        run.optimizer.zero_grad(set_to_none=True)
        with record_function("backward"):
            run.scaler.scale(out["loss"]).backward()
        with record_function("optimizer"):
            run.framework.on_before_optimizer_step(engine.state.iteration - 1)
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.framework.on_after_step(engine.state.iteration, total_steps)
        return {k: v.detach() for k, v in out.items() if torch.is_tensor(v) and v.dim() == 0}

    return model_step


def make_step(run: Run, total_steps: int):
    """The whole step on a loader batch: make_inputs, then make_model_step."""
    inputs, model_step = make_inputs(run), make_model_step(run, total_steps)

    def step(engine: Engine, batch) -> dict[str, torch.Tensor]:
        return model_step(engine, inputs([batch])[0])

    return step


def input_stream(run: Run, overlap: bool | None = None) -> InputStream:
    """The loader as step inputs, ``--augment-ahead`` batches' at a time (and with ``overlap``, by default
    ``--overlap-augment``, one group ahead, on a side stream)."""
    overlap = run.args.overlap_augment if overlap is None else overlap
    return InputStream(run.loader, make_inputs(run), run.device, ahead=run.args.augment_ahead, overlap=overlap)


def engine_and_data(run: Run, total_steps: int):
    """(step function, data) for the Engine: with ``--augment-ahead`` > 1 or ``--overlap-augment`` the
    data is an InputStream of step inputs and the step is the model step; else the loader and the whole step."""
    if run.args.overlap_augment or run.args.augment_ahead > 1:
        return make_model_step(run, total_steps), input_stream(run)
    return make_step(run, total_steps), run.loader


def checkpoint_state(run: Run, engine: Engine) -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state()}
    if run.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(run.device)
    return {"epoch": engine.state.epoch, "args": vars(run.args), "backbone": run.framework.backbone.state_dict(),
            "model": run.framework.state_dict(), "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(), "engine": engine.state_dict(), "rng": rng}


def restore(run: Run, engine: Engine, ckpt: dict[str, Any]) -> None:
    run.framework.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scaler.load_state_dict(ckpt["scaler"])
    engine.load_state_dict(ckpt["engine"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if "cuda" in ckpt["rng"] and run.device.type == "cuda":
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"], run.device)


def knn_monitor(run: Run) -> dict[str, float]:
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


def attach_handlers(run: Run, engine: Engine, log: RunLogger) -> None:
    a, logdir = run.args, run.args.logdir
    master = run.rank == 0
    pace = Pace()

    @engine.on(Events.STARTED)  # after a resume's restore: the state this run starts from
    def _start(e: Engine):
        pace.start(time.time(), e.state.iteration)

    @engine.on(Events.EPOCH_STARTED)  # fires before Ignite creates the epoch's data iterator
    def _epoch(e: Engine):
        run.set_epoch(e.state.epoch - 1)

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

    @engine.on(Events.EPOCH_COMPLETED)
    def _epoch_end(e: Engine):
        ep = e.state.epoch
        if a.eval_freq > 0 and (ep % a.eval_freq == 0 or ep == a.max_epochs) and run.data.knn_train is not None:
            if master:
                acc = knn_monitor(run)
                log.info(f"epoch {ep} knn: 1-NN={acc['nn1']:.4f} weighted-{acc['k']}NN={acc['knn']:.4f}")
                log.scalars({"eval/nn1": acc["nn1"], "eval/knn": acc["knn"]}, e.state.iteration)
                write_json(os.path.join(logdir, "knn.json"), {"epoch": ep, **acc})
            idist.barrier()
        if master:
            state = checkpoint_state(run, e)
            save_atomic(state, os.path.join(logdir, "ckpt-last.pth"))
            if ep % a.ckpt_freq == 0 or ep == a.max_epochs:
                save_atomic(state, os.path.join(logdir, f"ckpt-{ep}.pth"))
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


def describe(run: Run, epoch_length: int) -> list[str]:
    """The run's opening lines: what trains on what, by which method, and what the k-NN monitor compares."""
    a, d = run.args, run.data
    n = sum(p.numel() for p in run.framework.parameters() if p.requires_grad)
    lines = [f"{a.framework} on {a.dataset} ({len(d.train)} images), {a.model}, {n / 1e6:.2f}M trainable parameters, "
             f"{run.world} process(es) on {run.device.type}, {epoch_length} steps/epoch, precision {a.precision}",
             method_line(a, run.cfg)]
    if a.restarted:
        lines.append(f"{a.logdir} held a run stopped before its first checkpoint: it starts again from epoch 1")
    if a.eval_freq > 0:
        lines.append("k-NN monitor off: the data has no labelled split" if d.knn_train is None else
                     f"k-NN monitor: {len(d.knn_test)} labelled queries against {len(d.knn_train)} labelled images")
    return lines


def training(local_rank: int, args) -> None:
    """Entry of each process (one per GPU, or one on CPU)."""
    device = torch.device(args.device if args.device != "cuda" else f"cuda:{idist.get_local_rank()}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rank, world = idist.get_rank(), idist.get_world_size()
    run = build_run(args, device, rank, world)
    epoch_length = len(run.loader)
    step, data = engine_and_data(run, epoch_length * args.max_epochs)
    engine = Engine(step)
    # The exception that stops a run reaches the entry point, which prints it once: one line for bad
    # data, a traceback for a bug. Ignite would log it before, with a worker's whole traceback.
    engine.logger.setLevel(logging.CRITICAL)
    ckpt = load_checkpoint(args.resume, device) if args.resume else None
    if ckpt and ckpt["engine"]["epoch_length"] != epoch_length:  # --batch-size is checked in validation
        raise ValueError(f"--resume {args.resume}: its run took {ckpt['engine']['epoch_length']} steps per epoch, "
                         f"the data now gives {epoch_length} ({len(run.data.train)} images at --batch-size "
                         f"{args.batch_size}): the dataset has changed size since")
    purge = ckpt["engine"]["iteration"] + 1 if ckpt else (0 if args.restarted else None)
    log = RunLogger(args.logdir, vars(args), enabled=rank == 0, purge_step=purge)
    attach_handlers(run, engine, log)
    if rank == 0:
        attach_progress_bar(engine, args.print_freq)
    if ckpt:
        restore(run, engine, ckpt)
        run.start_epoch = engine.state.epoch
        log.info(f"resumed from {args.resume} at epoch {engine.state.epoch}")
        if changed := changed_since(ckpt["args"], args):  # allowed, but e.g. --max-epochs reshapes the lr
            log.info("changed since the checkpoint: " + "; ".join(changed))
    if rank == 0:
        write_json(os.path.join(args.logdir, "args.json"), vars(args))
        for line in describe(run, epoch_length):
            log.info(line)
    engine.run(data, max_epochs=args.max_epochs, epoch_length=epoch_length)
    if rank == 0:
        log.info(f"done: checkpoint {os.path.join(args.logdir, 'ckpt-last.pth')}")
    log.close()
