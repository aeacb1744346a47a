"""Command-line checks of the entry points: every bad input fails here, in one line, before any
file is written or any process is spawned. The one thing made here is the empty output folder
(--logdir, --tensorboard), once everything before it has passed."""
from __future__ import annotations

import importlib.util
import math
import os
import shutil

import torch

from augmentations import AUGSELF_KEYS, AUGSELF_PIECES, check_keys, config_for_dataset
from datasets.pretrain import IN_MEMORY, PRETRAIN_DATASETS, check_pretrain_data
from models import BACKBONES, FRAMEWORKS
from models.frameworks.options import flag_name
from models.projector import ConditionedProjector, ProjectorSpec

from ..checkpoint import (
    checkpoint_position,
    first_non_finite,
    hold_run_lock,
    latest_checkpoint,
    load_checkpoint,
    release_run_lock,
)

# Args that define the network, its data or the steps of an epoch: a resumed run must not change them.
FIXED_ON_RESUME = ("model", "framework", "dataset", "batch_size", "aug_cond", "aug_treatment", "aug_inj_type",
                   "aug_nn_width", "aug_nn_depth", "aug_hn_type", "proj_hidden", *(f"ss_{k}" for k in AUGSELF_KEYS))


# flags added after runs were made: the behaviour such a run had, which its resume keeps
BEFORE_THEIR_FLAG = {"saturation_impl": "torchvision", "mocov3_momentum_schedule": "cosine"}


# args that steer a run but not what it learns (pretrain_cond.py's "run control" group), and derived ones
RUN_CONTROL = ("logdir", "resume", "distributed", "nproc_per_node", "stop_after", "print_freq", "ckpt_freq",
               "eval_freq", "knn_k", "knn_t", "finished", "restarted", "allow_rollback", "ckpt_every_steps",
               "preempt_signals")

# flags removed since (they measured no gain): an older run's checkpoint may hold them; they are ignored
RETIRED = ("overlap_augment", "jpeg_worker_fraction")


def changed_since(old: dict, args) -> list[str]:
    """'--flag old -> new' for each arg a resumed run changes that FIXED_ON_RESUME allows to change
    and that shapes what it learns (e.g. --max-epochs, which reshapes the lr schedule)."""
    new = vars(args)
    return [f"--{k.replace('_', '-')} {v!r} -> {new.get(k)!r}" for k, v in old.items()
            if k not in RUN_CONTROL and k not in RETIRED and new.get(k) != v]


def launcher_world() -> int | None:
    """The world size a launcher set in the environment (torchrun's WORLD_SIZE, or SLURM's task count
    when several tasks were started); None where no launcher made this process's ranks."""
    env = os.environ
    if "WORLD_SIZE" in env:
        return int(env["WORLD_SIZE"])
    if int(env.get("SLURM_NTASKS", "1")) > 1:
        return int(env["SLURM_NTASKS"])
    return None


def world_size_of(args) -> int:
    """The number of processes the run will have: a launcher's, else ``--nproc-per-node``, else every
    visible GPU (1 without ``--distributed`` or on the CPU)."""
    if not args.distributed:
        return 1
    launched = launcher_world()
    if launched is not None:
        return launched
    if getattr(args, "nproc_per_node", None):
        return args.nproc_per_node
    return torch.cuda.device_count() if args.device == "cuda" else 1


def launch_plan(args) -> tuple[str | None, int | None]:
    """(backend, processes to spawn) for ignite.distributed.Parallel; (None, None): this process alone.

    A world of one that no launcher made (``--distributed`` on one GPU) runs in this process: DDP and
    SyncBatchNorm over one process change nothing, and a spawned process costs seconds of imports."""
    launched = launcher_world() is not None
    if not args.distributed or (not launched and world_size_of(args) == 1):
        return None, None
    backend = "nccl" if args.device == "cuda" else "gloo"
    return backend, None if launched else world_size_of(args)


def resolve_device(device: str, flag: str = "--device") -> str:
    """``flag``'s value as 'cuda' or 'cpu' ('auto': cuda when visible); ValueError for anything else."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cuda", "cpu"):
        raise ValueError(f"{flag} must be cuda, cpu or auto, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{flag} cuda: no CUDA device is visible")
    return device


def triton_usable() -> bool:
    """Whether torch.compile can generate CUDA code here: Inductor's GPU backend is Triton, which
    needs compute capability 7.0 (Volta) or later and a C compiler for its launcher."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    return (importlib.util.find_spec("triton") is not None and compiler is not None
            and torch.cuda.get_device_capability() >= (7, 0))


def resolve_defaults(args) -> None:
    """Replace every device-dependent default ("auto", None) by its value, chosen by measurement
    (README, Speed), and refuse flag combinations that cannot run; the scripts use it too."""
    args.device = resolve_device(args.device)
    if args.precision == "auto":
        args.precision = "bf16" if args.device == "cuda" else "fp32"
    if args.channels_last is None:
        args.channels_last = args.device == "cuda"
    can_compile = args.device == "cpu" or triton_usable()
    if args.compile_augment is None:  # docs/speed.md; on a CPU compiling costs more than it saves
        args.compile_augment = args.device == "cuda" and can_compile
    if args.compile is None:  # CUDA graphs measured faster (docs/speed.md); DDP with them is untested
        args.compile = args.device == "cuda" and can_compile and not getattr(args, "distributed", False)
    for flag in ("compile", "compile_augment"):
        if getattr(args, flag) and not can_compile:
            raise ValueError(f"--{flag.replace('_', '-')} on CUDA needs Triton, a C compiler and a GPU of compute "
                             "capability >= 7.0; drop the flag")
    if args.compile_mode not in ("auto", "default") and not args.compile:
        raise ValueError(f"--compile-mode {args.compile_mode} is how --compile compiles the backbone: add --compile")
    if args.compile_mode == "auto":
        args.compile_mode = "reduce-overhead" if args.compile and args.device == "cuda" else "default"
    if args.blur_impl == "auto":  # the faster one in each case (docs/speed.md)
        args.blur_impl = "shift" if args.compile_augment else "conv"
    # several steps' views at once pay the input side's host cost once per group (docs/speed.md)
    held_on_gpu = args.device == "cuda" and args.compile_augment and args.dataset in IN_MEMORY
    if args.augment_ahead is None:
        args.augment_ahead = 8 if held_on_gpu and args.augment_graph != "stages" else 1
    if args.augment_graph == "auto":
        args.augment_graph = "view" if args.augment_ahead > 1 else "stages"
    if args.augment_graph == "view" and not args.compile_augment:
        raise ValueError("--augment-graph view compiles the whole view: it needs --compile-augment")
    if args.augment_ahead > 1 and args.augment_graph != "view":
        raise ValueError(f"--augment-ahead {args.augment_ahead} makes each view of {args.augment_ahead} steps in one "
                         "whole-view call: it needs --augment-graph view")
    if args.jpeg_decode == "auto":  # the crossover in docs/speed.md
        args.jpeg_decode = "device" if args.device == "cuda" and args.num_workers < 8 else "workers"
    args.aug_cond = check_keys(args.aug_cond)


# name -> (test, what the flag must be): the range rules that the entry points apply to their flags.
RULES = {
    "positive": (lambda v: v > 0, "must be positive"),
    "non-negative": (lambda v: v >= 0, "must be >= 0"),
    "momentum": (lambda v: 0 <= v < 1, "must be in [0, 1)"),
}


def require(args, rule: str, *flags: str) -> None:
    """ValueError naming the first of ``flags`` (attribute names) whose value, when set, breaks ``rule``
    or is not a finite number."""
    test, expected = RULES[rule]
    for flag in flags:
        value = getattr(args, flag)
        require_finite(flag, value)
        if value is not None and not test(value):
            raise ValueError(f"--{flag.replace('_', '-')} {expected}, got {value}")


def require_finite(flag: str, value) -> None:
    """ValueError naming ``--flag`` when ``value`` (or an item of it) is a float NaN or Inf: argparse's
    ``float`` parses 'nan' and 'inf', which pass ``> 0`` (inf) or fail every test silently (nan)."""
    for v in value if isinstance(value, (list, tuple)) else [value]:
        if isinstance(v, float) and not math.isfinite(v):
            raise ValueError(f"--{flag.replace('_', '-')} must be a finite number, got {v}")


def check_finite_flags(args) -> None:
    """``require_finite`` for every flag: learning rates, weight decays, temperatures, loss weights."""
    for flag, value in vars(args).items():
        require_finite(flag, value)


def make_output_dir(path: str, flag: str) -> bool:
    """Create the folder a run writes into now, so that a place it cannot write fails before any work;
    True when this call made it."""
    made = not os.path.isdir(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"{flag} {path}: cannot create this folder ({e.strerror})") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path}: this folder is not writable")
    return made


def eval_view(pretrain_data: str) -> tuple:
    """What the evaluation transform takes from the pretraining data: its resolution and normalisation."""
    cfg = config_for_dataset(pretrain_data)
    return cfg.size, cfg.mean, cfg.std


def stored(ckpt: dict, key: str, allowed: tuple) -> str | None:
    """``key`` of the arguments a pretrain_cond.py checkpoint stores, if one of ``allowed``; else None."""
    value = ckpt["args"].get(key) if isinstance(ckpt.get("args"), dict) else None
    return value if value in allowed else None


def _defaults_from_checkpoint(args, path: str, ckpt: dict, defaults: dict[str, str]) -> list[str]:
    """--pretrain-data and --model as given or, left out, as the first checkpoint stores them (``defaults``
    for one that stores none), each value taken named with where it came from; a --pretrain-data that
    would resize or normalise a checkpoint's images otherwise is refused (a wrong --model fails to load)."""
    trained_on = stored(ckpt, "dataset", PRETRAIN_DATASETS)
    taken = []
    for name, value in (("pretrain_data", trained_on), ("model", stored(ckpt, "model", BACKBONES))):
        if getattr(args, name) is None:
            setattr(args, name, value or defaults[name])
            source = f"as {path} stores it" if value else f"the default: {path} stores none"
            taken.append(f"--{name.replace('_', '-')} {getattr(args, name)} ({source})")
    if trained_on and eval_view(trained_on) != eval_view(args.pretrain_data):
        raise ValueError(f"--ckpt {path} was pretrained on --dataset {trained_on}, whose images --pretrain-data "
                         f"{args.pretrain_data} would resize or normalise otherwise: pass --pretrain-data "
                         f"{trained_on} (and evaluate checkpoints of such different data in separate runs)")
    return taken


def check_finite_weights(state: dict, path: str, flag: str = "--ckpt") -> None:
    """ValueError naming the first weight of ``state`` that holds a NaN or an Inf: features of such a
    backbone are NaN, which L-BFGS, scikit-learn and the spectrum fail on far from the cause."""
    if bad := first_non_finite(state):
        raise ValueError(f"{flag} {path}: its weights hold NaN or Inf values ({bad}); the run that wrote it "
                         "had diverged")


def check_frozen_eval(args, defaults: dict[str, str]) -> None:
    """The checks both frozen-feature evaluations (linear, few-shot) share: flags, device, and each
    checkpoint's pretraining data, backbone and folder, where its result JSON is written once all the
    work is done. Sets ``args.pretrain_data`` and ``args.model`` where they were left out, and prints
    those values, each named with where it came from."""
    from ..evaluation.features import load_backbone
    if args.pretrain_data is not None and args.pretrain_data not in PRETRAIN_DATASETS:
        raise ValueError(f"--pretrain-data must be one of {PRETRAIN_DATASETS}, got {args.pretrain_data!r}")
    if args.model is not None and args.model not in BACKBONES:
        raise ValueError(f"--model must be one of {BACKBONES}, got {args.model!r}")
    require(args, "positive", "batch_size")
    require(args, "non-negative", "num_workers")
    args.device = resolve_device(args.device)
    taken = []
    for path in args.ckpt:
        ckpt = load_checkpoint(path, flag="--ckpt")
        taken += _defaults_from_checkpoint(args, path, ckpt, defaults)
        load_backbone(path, args.model, config_for_dataset(args.pretrain_data).size, ckpt=ckpt)
        check_finite_weights(ckpt["backbone"], path)
        if not os.access(os.path.dirname(os.path.abspath(path)), os.W_OK):
            raise ValueError(f"--ckpt {path}: its folder is not writable, and the result JSON is written next to it")
    if taken:
        print("using " + ", ".join(taken))


def _check_numbers(args) -> None:
    require(args, "positive", "batch_size", "max_epochs", "print_freq", "ckpt_freq", "ckpt_every_steps", "stop_after",
            "augment_ahead", "nproc_per_node", "base_lr", "knn_k", "knn_t", "proj_hidden", "aug_nn_width", "aug_nn_depth")
    require(args, "non-negative", "num_workers", "eval_freq", "wd")
    require(args, "momentum", "momentum")
    world = world_size_of(args)
    if world < 1:
        raise ValueError("--distributed: no GPU visible; use --device cpu (gloo) or --nproc-per-node N")
    if args.batch_size % world:
        raise ValueError(f"--batch-size {args.batch_size} is not divisible by the world size {world}")
    if args.batch_size // world < 2:
        # Batch norm cannot train on one sample, and SimCLR's views of one image have no negatives.
        raise ValueError(f"--batch-size {args.batch_size} gives each of {world} process(es) one image; "
                         "batch norm and the contrastive losses need at least 2 per process")


def _check_model(args) -> None:
    if args.model not in BACKBONES:
        raise ValueError(f"--model must be one of {BACKBONES}, got {args.model!r}")
    if args.framework not in FRAMEWORKS:
        raise ValueError(f"--framework must be one of {tuple(FRAMEWORKS)}, got {args.framework!r}")
    from models.backbones import BACKBONE_DIMS
    from utils.training.run import condition_spec, framework_options
    # the checks the framework's Options declare for its flags (--<framework>-*)
    FRAMEWORKS[args.framework].own_options(framework_options(args), lambda name: flag_name(args.framework, name))
    # A one-layer stand-in projector runs the same conditioning checks as the real one, cheaply.
    ConditionedProjector(BACKBONE_DIMS[args.model], ProjectorSpec(8, 8, 1), condition_spec(args))


def _check_augself(args) -> None:
    """An AugSelf head for an augmentation the dataset's recipe never applies would learn a constant 0."""
    cfg = config_for_dataset(args.dataset, args.color_aug)
    for key, piece in AUGSELF_PIECES.items():
        missing = piece.recipe_has is not None and getattr(cfg, piece.recipe_has) in (None, False)
        if missing and getattr(args, f"ss_{key}") > 0:
            raise ValueError(f"--ss-{key}: the --dataset {args.dataset} recipe never {piece.absent}, so there is "
                             "nothing to predict; drop the flag")


_MADE: set[str] = set()  # --logdir folders this process created (a refused run removes them again)


def _check_logdir_and_resume(args) -> None:
    args.finished, args.restarted = 0, False
    if os.path.isdir(args.logdir):  # first: a run writing there now is the one thing to report
        hold_run_lock(args.logdir, create=False)  # only where a run left a lock file: nothing is written
    if args.resume is None:
        files = [f for f in os.listdir(args.logdir) if f != ".lock"] if os.path.isdir(args.logdir) else []
        if any(f.startswith("ckpt-") and f.endswith(".pth") for f in files):
            raise ValueError(f"--logdir {args.logdir} holds a run's checkpoints; pass --resume last to continue "
                             "that run, or choose a new folder")
        # A run stopped before its first checkpoint (a job preempted in epoch 1) starts again in its folder.
        args.restarted = "args.json" in files
        if files and not args.restarted:
            raise ValueError(f"--logdir {args.logdir} exists and is not empty, and holds no run; choose a new folder")
    else:
        _check_resume(args)
    if make_output_dir(args.logdir, "--logdir"):
        _MADE.add(os.path.realpath(args.logdir))
    hold_run_lock(args.logdir)


def release_refused_logdir(args) -> None:
    """After a run refused or failed before writing anything (a batch larger than the dataset, a failed
    download): its lock file goes, and its --logdir too if this run made it, so nothing is left behind."""
    logdir = getattr(args, "logdir", None)
    if logdir:
        release_run_lock(logdir, remove_folder=os.path.realpath(logdir) in _MADE)


def _check_resume(args) -> None:
    if args.resume == "last":
        args.resume = latest_checkpoint(args.logdir)
        if args.resume is None:
            raise ValueError(f"--resume last: --logdir {args.logdir} holds no ckpt-last.pth (no epoch of a run "
                             "there has ended); leave out --resume to start a run")
    ckpt = load_checkpoint(args.resume, flag="--resume")
    missing = [k for k in ("args", "model", "engine", "optimizer", "epoch") if k not in ckpt]
    if missing:
        raise ValueError(f"--resume {args.resume}: not a pretraining checkpoint (missing {', '.join(missing)})")
    old = ckpt["args"]
    if not isinstance(old, dict):  # a damaged or foreign file: the user's one line, not a TypeError
        raise ValueError(f"--resume {args.resume}: not a pretraining checkpoint (its 'args' is a "  # noqa: TRY004
                         f"{type(old).__name__}, not a dict)")
    for k, before in BEFORE_THEIR_FLAG.items():
        if k not in old and hasattr(args, k):
            setattr(args, k, before)  # a run made before the flag goes on as it started
    differ = [f"--{k.replace('_', '-')} {old.get(k)!r} -> {getattr(args, k)!r}"
              for k in FIXED_ON_RESUME if old.get(k) != getattr(args, k)]
    if differ:
        raise ValueError(f"--resume {args.resume}: incompatible arguments: {'; '.join(differ)}")
    _check_rollback(args, (ckpt["epoch"], ckpt.get("step", 0)))
    if ckpt["epoch"] >= args.max_epochs:
        args.finished = ckpt["epoch"]


def _check_rollback(args, position: tuple[int, int]) -> None:
    """A checkpoint older than the folder's ckpt-last.pth (an earlier epoch, or an earlier step of the
    same one), resumed into that folder, would overwrite it with an earlier state (and later the kept
    ckpt-N.pth past it): refused unless --allow-rollback."""
    last = os.path.join(args.logdir, "ckpt-last.pth")
    if getattr(args, "allow_rollback", False) or not os.path.isfile(last) or os.path.samefile(last, args.resume):
        return
    newer = checkpoint_position(last)  # None for a damaged ckpt-last.pth, which holds nothing worth keeping
    if newer is not None and newer > position:
        def at(p: tuple[int, int]) -> str:
            return f"epoch {p[0]}" + (f", step {p[1]}" if p[1] else "")
        raise ValueError(f"--resume {args.resume} is at {at(position)}, older than {last} ({at(newer)}), which "
                         "this run would overwrite: pass --allow-rollback to go back, or a new --logdir")


def validate(args) -> None:
    """Normalise ``args`` in place (auto device/precision, sorted --aug-cond) or raise ValueError."""
    if args.dataset not in PRETRAIN_DATASETS:
        raise ValueError(f"--dataset must be one of {PRETRAIN_DATASETS}, got {args.dataset!r}")
    check_finite_flags(args)
    resolve_defaults(args)
    _check_numbers(args)
    _check_model(args)
    _check_augself(args)
    check_pretrain_data(args.dataset, args.datadir, args.download)
    _check_logdir_and_resume(args)
