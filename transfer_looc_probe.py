"""LooC-protocol linear probe of frozen backbones (MoCo's main_lincls; AugSelf paper, Table 3).

An SGD-trained linear layer on RandomResizedCrop + flip views through the frozen backbone; the best
test top-1 over the epochs is reported. Layouts: cub200 = root/{train,test}/<class>/ (200 classes),
imagenet100 = root/{train,val}/<wnid>/ (val is the test set).

Example:
    python transfer_looc_probe.py --ckpt CKPT --pretrain-data imagenet100 --model resnet50 \\
      --dataset cub200 --datadir CUB_ROOT
Writes looc-<dataset>-top1-<ckpt name>.json next to each checkpoint, and after every epoch the probe's
checkpoint looc-<dataset>-<ckpt name>-probe.pth, from which --resume continues.
"""
from __future__ import annotations

import argparse
import functools
import os
import sys

from datasets import PRETRAIN_DATASETS
from models import BACKBONES
from utils.distributed import default_num_workers
from utils.evaluation.looc_probe import LOOC_DATASETS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--ckpt", nargs="+", required=True, help="one or more checkpoints with a 'backbone' key, probed in turn")
    a("--pretrain-data", default=None, help="data the backbone was pretrained on, one of "
      f"{', '.join(PRETRAIN_DATASETS)}: picks the crop size and normalisation (default: the --dataset stored "
      "in a pretrain_cond.py checkpoint; else imagenet100, the paper's)")
    a("--model", default=None, help=f"backbone architecture, one of {', '.join(BACKBONES)} (default: the --model "
      "stored in a pretrain_cond.py checkpoint; else resnet50, the paper's)")
    a("--dataset", default="cub200", help=f"downstream dataset, one of {', '.join(LOOC_DATASETS)} (paper: cub200)")
    a("--datadir", default=None, help="dataset root (see the layouts above)")
    a("--epochs", type=int, default=200, help="training epochs of the probe (LooC protocol: 200; upstream "
      "transfer_looc_like.py's own default is 100)")
    a("--lr", type=float, default=30.0, help="initial SGD learning rate (MoCo main_lincls: 30)")
    a("--milestones", type=int, nargs="*", default=[120, 160],
      help="epochs at which the lr is divided by 10 (LooC protocol: 120 160; upstream's own default 60 80)")
    a("--momentum", type=float, default=0.9, help="SGD momentum (upstream: 0.9)")
    a("--wd", type=float, default=0.0, help="SGD weight decay (upstream: 0)")
    a("--batch-size", type=int, default=256, help="images per SGD step and per test batch (upstream: 256)")
    a("--num-workers", type=int, default=default_num_workers(),
      help="loader workers (default: 4, or this process's CPUs if fewer)")
    a("--seed", type=int, default=0, help="seed of the head's initialisation, the shuffles and the crops")
    a("--device", default="auto", help="cuda, cpu or auto")
    a("--precision", default="fp32", help="fp32, or bf16: the backbone's forward under bf16 autocast, faster on "
      "a GPU (the head trains in fp32 either way; upstream: fp32)")
    a("--channels-last", action=argparse.BooleanOptionalAction, default=False,
      help="feed the backbone channels-last images (faster convolutions on a GPU; same result)")
    a("--resume", action="store_true", help="continue each probe from its checkpoint beside --ckpt, where one "
      "exists (without it an existing probe checkpoint stops the run)")
    a("--tensorboard", default=None, help="also log the per-epoch test accuracy as TensorBoard scalars here")
    return p


def probe_path(ckpt: str, dataset: str) -> str:
    """The probe's checkpoint: beside ``ckpt``, named by dataset and checkpoint."""
    name = os.path.splitext(os.path.basename(ckpt))[0]
    return os.path.join(os.path.dirname(os.path.abspath(ckpt)), f"looc-{dataset}-{name}-probe.pth")


def result_path(ckpt: str, dataset: str) -> str:
    """Where the result JSON goes: beside the checkpoint, as transfer_linear_eval.py's."""
    name = os.path.splitext(os.path.basename(ckpt))[0]
    return os.path.join(os.path.dirname(os.path.abspath(ckpt)), f"looc-{dataset}-top1-{name}.json")


def settings_of(args):
    """The ProbeSettings the flags give."""
    from utils.evaluation.looc_probe import ProbeSettings
    return ProbeSettings(args.dataset, args.model, args.pretrain_data, args.epochs, args.lr, args.momentum, args.wd,
                         list(args.milestones), args.batch_size, args.seed, args.precision)


def validate(args) -> None:
    """Every bad input fails here in one line, before any image is read."""
    from utils.checkpoint import load_checkpoint
    from utils.evaluation.looc_probe import check_looc_data, check_resumable
    from utils.training.validate import check_frozen_eval, make_output_dir, require
    if args.dataset not in LOOC_DATASETS:
        raise ValueError(f"--dataset must be one of {LOOC_DATASETS}, got {args.dataset!r}")
    require(args, "positive", "epochs", "lr")
    require(args, "non-negative", "wd")
    require(args, "momentum", "momentum")
    ms = args.milestones
    if any(m <= 0 or m >= args.epochs for m in ms) or ms != sorted(set(ms)):
        raise ValueError(f"--milestones must be increasing epochs between 1 and --epochs {args.epochs} - 1, "
                         f"got {' '.join(map(str, ms)) or 'none'}")
    if args.precision not in ("fp32", "bf16"):
        raise ValueError(f"--precision must be fp32 or bf16, got {args.precision!r}")
    check_frozen_eval(args, defaults={"pretrain_data": "imagenet100", "model": "resnet50"})
    check_looc_data(args.dataset, args.datadir)
    for path in args.ckpt:
        probe = probe_path(path, args.dataset)
        if os.path.exists(probe) and not args.resume:
            raise ValueError(f"--ckpt {path}: a probe checkpoint {probe} exists; pass --resume to continue it, "
                             "or delete it to start again")
        if os.path.exists(probe):
            check_resumable(load_checkpoint(probe, flag="--resume"), settings_of(args), probe)
    if args.tensorboard:
        make_output_dir(args.tensorboard, "--tensorboard")


def evaluate(args) -> None:
    """Probe every checkpoint in turn; write each result JSON once its last epoch is done."""
    import torch

    from augmentations import config_for_dataset
    from models.backbones import BACKBONE_DIMS
    from utils.evaluation.features import load_backbone
    from utils.logging import write_json
    from utils.evaluation.looc_probe import (
        build_probe,
        load_probe_state,
        looc_splits,
        looc_transforms,
        run_probe,
        save_probe,
    )
    cfg = config_for_dataset(args.pretrain_data)
    train, test, num_classes = looc_splits(args.dataset, args.datadir, *looc_transforms(cfg.size, cfg.mean, cfg.std))
    device = torch.device(args.device)
    for path in args.ckpt:
        backbone = load_backbone(path, args.model, cfg.size)
        probe = build_probe(backbone, BACKBONE_DIMS[args.model], num_classes, settings_of(args), device,
                            args.channels_last)
        ppath = probe_path(path, args.dataset)
        if args.resume and os.path.exists(ppath):
            load_probe_state(probe, ppath)
            print(f"resuming {ppath} after epoch {len(probe.history)} of {args.epochs}", flush=True)
        ckpt = os.path.abspath(path)
        save = functools.partial(save_probe, probe, ckpt, ppath)
        run_probe(probe, train, test, args.num_workers, save, log=lambda msg: print(msg, flush=True))
        best, at = probe.best()
        print(f"test top1={best:.4f}", flush=True)
        out = result_path(path, args.dataset)
        write_json(out, {"dataset": args.dataset, "metric": "top1", "protocol": "looc", "ckpt": ckpt,
                         "test": best, "best_epoch": at, "last": probe.history[-1]["test"],
                         "history": probe.history, "probe_ckpt": ppath,
                         "sizes": {"train": len(train), "test": len(test)}, "args": vars(args)})
        print(f"wrote {out}")
        _log_external(args, path, probe.history, best)


def _log_external(args, path: str, history: list[dict], best: float) -> None:
    tag = f"looc/{args.dataset}/{os.path.basename(path)}"
    if args.tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        with SummaryWriter(args.tensorboard) as tb:
            for row in history:
                tb.add_scalar(f"{tag}/test_top1_per_epoch", row["test"], row["epoch"])
            tb.add_scalar(f"{tag}/test_top1", best)
    if os.environ.get("WANDB_PROJECT"):
        from utils.logging import init_wandb
        run = init_wandb(os.path.dirname(os.path.abspath(path)), vars(args))
        if run is not None:
            run.log({f"{tag}/test_top1": best})
            run.finish()


def main(argv: list[str] | None = None) -> None:
    from utils.logging import die_or_raise, interrupted
    args = build_parser().parse_args(argv)
    try:
        validate(args)
        evaluate(args)
    except Exception as e:  # noqa: BLE001 - DataError, CheckpointError, flag errors: one line; others re-raised
        die_or_raise(e)
    except KeyboardInterrupt:
        interrupted("each probe's checkpoint holds its last finished epoch; run again with --resume to continue")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
