"""Pretrain a backbone with CASSLE (conditioned projector), AugSelf or a plain SSL baseline.

Example (the paper's CASSLE MoCo v2 recipe on ImageNet-100):
    python pretrain_cond.py --logdir runs/cassle-moco --framework moco --dataset imagenet100 \\
      --datadir $IMAGENET_100_FOLDER --model resnet50 --batch-size 256 --max-epochs 500 \\
      --aug-treatment mlp --aug-nn-depth 6 --aug-nn-width 64 --aug-inj-type proj-cat \\
      --aug-cond crop color color_diff blur grayscale --base-lr 0.03 --wd 1e-4 \\
      --ckpt-freq 50 --eval-freq 50 --num-workers 16 --seed 1 --distributed
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from augmentations import (
    AUGSELF_PIECES,
    BLUR_IMPLS,
    DESCRIPTOR_DIMS,
    SATURATION_IMPLS,
    VIEW_GRAPHS,
)
from datasets import PRETRAIN_DATASETS
from models import BACKBONES, COMPILE_MODES, FRAMEWORKS
from models.frameworks.options import argparse_kwargs, flag_fields, flag_name
from utils.distributed import default_num_workers
from utils.preemption import DEFAULT_STOP_SIGNALS, EXIT_PREEMPTED, STOP_SIGNALS


def _data_flags(a) -> None:
    a("--dataset", default="stl10",
      help=f"pretraining data, one of {', '.join(PRETRAIN_DATASETS)} (paper: imagenet100)")
    a("--datadir", default=None, help="dataset root (torchvision layout; imagenet100: root/{train,val}/<wnid>/)")
    a("--download", action="store_true",
      help="let torchvision download CIFAR/STL10 into --datadir (needs network; not imagenet100, folder)")
    a("--num-workers", type=int, default=default_num_workers(),
      help="loader workers per process for JPEG folders (and k-NN) (default: 4, or this process's CPUs if fewer)")
    a("--color-aug", default="default", choices=["default", "strong", "weak"],
      help="scale colour-jitter strengths and grayscale probability by 1 / 2 / 0.5; stl10 only, as "
           "upstream (paper: default)")
    a("--saturation-impl", default="hsv", choices=list(SATURATION_IMPLS),
      help="colour-jitter saturation: 'hsv' scales the HSV saturation (clamped at 1), as upstream's kornia "
           "0.4.1 did for the paper; 'torchvision' blends with the greyscale image (default: hsv)")


def _optimisation_flags(a) -> None:
    a("--framework", default="simsiam", help=f"SSL method, one of {', '.join(FRAMEWORKS)}")
    a("--model", default="resnet18", help=f"backbone, one of {', '.join(BACKBONES)} (paper: resnet50)")
    a("--batch-size", type=int, default=256, help="global batch size over all processes (paper: 256)")
    a("--max-epochs", type=int, default=200, help="training epochs (paper: 500 on ImageNet-100)")
    a("--base-lr", type=float, default=0.03, help="lr = base_lr x batch / 256 (paper: 0.03 moco, 0.05 others)")
    a("--wd", type=float, default=5e-4, help="weight decay (paper: 1e-4 on ImageNet-100)")
    a("--momentum", type=float, default=0.9, help="SGD momentum (paper: 0.9)")
    a("--seed", type=int, default=0, help="seed for weights, data order and augmentations (paper: 1)")


def _run_flags(a) -> None:
    a("--logdir", required=True, help="output folder: log.txt, TensorBoard events, args.json, checkpoints")
    a("--resume", default=None, help="continue from a checkpoint path, or 'last' for LOGDIR/ckpt-last.pth")
    a("--allow-rollback", action="store_true",
      help="let --resume take a checkpoint older than LOGDIR/ckpt-last.pth, which the run then overwrites "
           "(refused without it; a new --logdir needs no flag)")
    a("--distributed", action="store_true",
      help="one process per GPU (spawned; one GPU runs in this process), or the ranks of torchrun/SLURM")
    a("--nproc-per-node", type=int, default=None, help="processes to spawn with --distributed (default: #GPUs)")
    a("--stop-after", type=int, default=None,
      help="train at most N epochs in this invocation, then exit (time-limited jobs; continue with --resume last)")
    a("--print-freq", type=int, default=10, help="log training values every N iterations")
    a("--ckpt-freq", type=int, default=10, help="keep ckpt-{epoch}.pth every N epochs (ckpt-last.pth: every epoch)")
    a("--ckpt-every-steps", type=int, default=None, metavar="N",
      help="also write ckpt-last.pth every N steps inside epochs, for long epochs (default: at epoch ends only); "
           "a resume continues from that step exactly (docs/reliability.md)")
    a("--preempt-signals", nargs="*", default=list(DEFAULT_STOP_SIGNALS), choices=STOP_SIGNALS, metavar="SIG",
      help="signals on which every rank finishes its step, ckpt-last.pth is written there and the run exits "
           f"with status {EXIT_PREEMPTED} (--resume last continues it exactly), any of {', '.join(STOP_SIGNALS)} "
           f"(default: {' '.join(DEFAULT_STOP_SIGNALS)}: preemption and SLURM's --signal warning; none: leave them be)")
    a("--eval-freq", type=int, default=1, help="k-NN monitor every N epochs (0: never)")
    a("--knn-k", type=int, default=200, help="most neighbours of the weighted k-NN monitor (InstDisc's 200); "
      "the k used is min(this, labelled bank size // (10 x classes)), a tenth of a class (utils/evaluation/knn.py)")
    a("--knn-t", type=float, default=0.1, help="temperature of the weighted k-NN monitor")


def _conditioning_flags(a) -> None:
    a("--aug-treatment", default="raw", choices=["raw", "mlp", "hn"],
      help="descriptor embedding: as is, MLP, or hypernetwork generating the projector (paper: mlp)")
    a("--aug-nn-width", type=int, default=32, help="width of the embedding MLP (paper: 64)")
    a("--aug-nn-depth", type=int, default=2, help="depth of the embedding MLP (paper: 6)")
    a("--aug-hn-type", default="mlp", choices=["mlp", "mlp-bn"],
      help="hypernetwork-generated projector with or without BN before each ReLU")
    a("--aug-inj-type", default="proj-cat", choices=["proj-cat", "proj-add", "proj-mul", "proj-none"],
      help="how the embedding enters the projector; proj-none = plain baseline (paper: proj-cat)")
    a("--aug-cond", nargs="*", default=[], metavar="KEY",
      help=f"descriptor pieces, any of {', '.join(DESCRIPTOR_DIMS)} "
           "(paper: crop color color_diff blur grayscale [flip])")


def _augself_flags(a) -> None:
    for k, piece in AUGSELF_PIECES.items():
        a(f"--ss-{k}", type=float, default=-1.0, help=f"weight of the {piece.what} prediction loss")
    a("--augself-flip-quirk", action=argparse.BooleanOptionalAction, default=True,
      help="mirror both views' crop x-centres by view 1's flip, as upstream (published numbers)")


def _speed_flags(a) -> None:
    a("--device", default="auto", help="cuda, cpu or auto (cuda when available)")
    a("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
      help="autocast dtype; auto = bf16 on CUDA, fp32 on CPU (losses are computed in fp32)")
    a("--channels-last", action=argparse.BooleanOptionalAction, default=None,
      help="NHWC memory format (default: on for CUDA)")
    a("--compile", action=argparse.BooleanOptionalAction, default=None,
      help="torch.compile the online backbone (default: on for one-process CUDA runs where Inductor can "
           "generate GPU code, where its CUDA graphs measured faster, docs/speed.md; off on CPU and with "
           "--distributed, where it is not yet tested)")
    a("--compile-mode", default="auto", choices=["auto", *COMPILE_MODES],
      help="torch.compile mode for --compile: 'reduce-overhead' replays the backbone's kernels as CUDA "
           "graphs; auto = reduce-overhead on CUDA, default on CPU")
    a("--compile-augment", action=argparse.BooleanOptionalAction, default=None,
      help="torch.compile the batched augmentation, descriptors and AugSelf targets: ~200 small ops "
           "per view become a few fused kernels; the first steps are slower while it compiles "
           "(default: on for CUDA, where it measured faster; off on CPU)")
    a("--augment-graph", default="auto", choices=["auto", *VIEW_GRAPHS],
      help="with --compile-augment: 'stages' compiles each stage of a view on its own (each jitter op "
           "too, so the 24 op orders share the graphs); 'view' compiles the whole view as one graph, "
           "each jitter slot computing all four ops and keeping the drawn one: one call per view "
           "instead of nine, same draws and pixels (auto: view where --augment-ahead is above 1, as it "
           "is by default for the datasets held in memory on CUDA; stages otherwise)")
    a("--blur-impl", default="auto", choices=["auto", *BLUR_IMPLS],
      help="Gaussian blur as two grouped convolutions ('conv') or as sums of shifted slices, which "
           "torch.compile fuses into one kernel per pass ('shift'); same pixels to float rounding "
           "(auto: shift with --compile-augment, conv otherwise: the faster one in each case, "
           "docs/speed.md)")
    a("--augment-ahead", type=int, default=None, metavar="K",
      help="make the views, records and descriptors of K steps together, one call per view, the draws "
           "taken batch by batch (same draws, same run): the input side's fixed host cost is paid "
           "once per K steps, for steps bound by the host (small images); needs --augment-graph view "
           "(default: 8 for the datasets held in memory (32 and 96 px) when the augmentation is compiled on "
           "CUDA, where it measured faster; 1, each step's own, otherwise)")
    a("--jpeg-decode", default="auto", choices=["auto", "device", "workers"],
      help="JPEG folders: 'device' = workers read bytes, nvJPEG decodes batches on the GPU; "
           "'workers' = decode + crop in loader workers (libjpeg-turbo and torch for plain JPEGs, PIL for "
           "other files); auto = device on CUDA with < 8 workers, else workers (the faster one in each case, "
           "docs/speed.md)")


def _variant_flags(a) -> None:
    a("--proj-hidden", type=int, default=None,
      help="override the projector hidden width (BYOL paper: 4096; Barlow Twins: all three widths)")
    for framework, cls in FRAMEWORKS.items():  # each framework's own flags, declared in its Options
        for f in flag_fields(cls.Options):
            a(flag_name(framework, f.name), **argparse_kwargs(cls.Options, f))
    a("--torchvision-init", action="store_true",
      help="keep torchvision's conv init (upstream re-initialises convs with PyTorch defaults)")


GROUPS = [("data", _data_flags), ("model and optimisation", _optimisation_flags), ("run control", _run_flags),
          ("CASSLE conditioning", _conditioning_flags),
          ("AugSelf (weight <= 0 disables; paper: --ss-crop 0.5 --ss-color 0.5)", _augself_flags),
          ("speed (beyond upstream; README 'Speed' gives the measurement behind each default)", _speed_flags),
          ("variants of upstream's recipe (beyond upstream)", _variant_flags)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for title, add_flags in GROUPS:
        add_flags(p.add_argument_group(title).add_argument)
    return p


def main(argv: list[str] | None = None) -> None:
    from utils.logging import die, die_or_raise, interrupted
    from utils.training.validate import launch_plan, release_refused_logdir, validate

    args = build_parser().parse_args(argv)
    try:
        validate(args)
    except ValueError as e:
        release_refused_logdir(args)
        die(str(e))
    if args.finished:
        print(f"run in {args.logdir} already finished at epoch {args.finished} (--max-epochs {args.max_epochs}); "
              "nothing to do. Raise --max-epochs to continue it.")
        return
    from utils.distributed import launch
    from utils.preemption import exit_for_spawned_rank
    from utils.training.trainer import training
    try:
        launch(training, args, *launch_plan(args))
    except Exception as e:  # noqa: BLE001 - data that passed the presence check but cannot be read (e.g. a corrupt image)
        release_refused_logdir(args)  # stopped before writing anything: no folder holding only .lock
        exit_for_spawned_rank(e, args.logdir)  # a rank that stopped on a signal, printed its fault, or died
        die_or_raise(e)
    except KeyboardInterrupt:
        last = os.path.join(args.logdir, "ckpt-last.pth")
        interrupted(f"{last} holds the last checkpoint; add --resume last to continue from it"
                    if os.path.exists(last) else "no checkpoint was written yet")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    torch.backends.cudnn.benchmark = True
    main()
