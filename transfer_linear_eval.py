"""Linear evaluation of frozen backbones on downstream datasets (the published protocol).

Example:
    python transfer_linear_eval.py --pretrain-data imagenet100 --ckpt CKPT --model resnet50 \\
      --dataset cifar10 --datadir DATADIR --metric top1
Writes linear-<dataset>-<metric>-<ckpt name>.json next to each checkpoint.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from datasets import PRETRAIN_DATASETS
from datasets.catalog import DOWNSTREAM_DATASETS, METRICS, REGRESSION
from models import BACKBONES
from utils.distributed import default_num_workers


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--ckpt", nargs="+", required=True, help="one or more checkpoints with a 'backbone' key")
    a("--pretrain-data", default=None, help="data the backbone was pretrained on, one of "
      f"{', '.join(PRETRAIN_DATASETS)}: picks the evaluation resize and normalisation (default: the "
      "--dataset stored in a pretrain_cond.py checkpoint; else stl10, upstream's default)")
    a("--model", default=None, help=f"backbone architecture of the checkpoints, one of {', '.join(BACKBONES)} "
      "(default: the --model stored in a pretrain_cond.py checkpoint; else resnet18, upstream's default)")
    a("--dataset", default="cifar10", help=f"downstream dataset, one of {', '.join(DOWNSTREAM_DATASETS)}")
    a("--datadir", default=None, help="dataset root in torchvision's layout (see README for folder datasets)")
    a("--download", action="store_true",
      help="let torchvision download the dataset into --datadir (needs network; not sun397, cub200, mit67, "
           "imagenet100, dog, celeba, 300w, lspose)")
    a("--batch-size", type=int, default=256, help="feature-extraction batch size")
    a("--num-workers", type=int, default=default_num_workers(),
      help="loader workers for feature extraction (default: 4, or this process's CPUs if fewer)")
    a("--metric", default=None, help="top1 or class-avg for the classifications, r2 for the landmark regressions "
      "(celeba, 300w, lspose: an L1-fitted linear head, upstream's R^2) (default: the dataset's published metric)")
    a("--distributed", action="store_true", help="extract features on every visible GPU (one process each)")
    a("--device", default="auto", help="cuda, cpu or auto")
    a("--max-iter", type=int, default=5000, help="L-BFGS iterations per fit (published: 5000)")
    a("--ten-crop", action=argparse.BooleanOptionalAction, default=None,
      help="upstream's 224 px protocol: training features (cub200: its val and refit sets too; flowers-Nshot: "
           "its refit set) from Resize(256)+TenCrop(224), the others from Resize(256)+CenterCrop(224) "
           "(default: on for cub200 and flowers-Nshot with 224 px models: imagenet100 or folder, as upstream)")
    a("--tensorboard", default=None, help="also log the results as TensorBoard scalars into this folder")
    return p


def validate(args) -> None:
    """Every bad input fails here in one line, before any feature is extracted."""
    from augmentations import config_for_dataset
    from datasets.pretrain import TEN_CROP_SIZE
    from utils.training.validate import check_frozen_eval, make_output_dir, require
    if args.dataset not in DOWNSTREAM_DATASETS:
        raise ValueError(f"--dataset must be one of {DOWNSTREAM_DATASETS}, got {args.dataset!r}")
    args.metric = args.metric or METRICS[args.dataset]
    if args.dataset in REGRESSION and args.metric != "r2":
        raise ValueError(f"--metric must be r2 for the landmark regression --dataset {args.dataset}, got {args.metric!r}")
    if args.dataset not in REGRESSION and args.metric not in ("top1", "class-avg"):
        raise ValueError(f"--metric must be top1 or class-avg, got {args.metric!r}"
                         + (" (r2 is for the landmark datasets celeba, 300w, lspose)" if args.metric == "r2" else ""))
    require(args, "positive", "max_iter")
    check_frozen_eval(args, defaults={"pretrain_data": "stl10", "model": "resnet18"})  # upstream's
    size = config_for_dataset(args.pretrain_data).size
    if args.ten_crop is None:
        args.ten_crop = (args.dataset == "cub200" or "shot" in args.dataset) and size == TEN_CROP_SIZE
    elif args.ten_crop and args.dataset in REGRESSION:  # the landmarks follow one crop of the image
        raise ValueError(f"--ten-crop: the landmark regression --dataset {args.dataset} takes one centre crop")
    elif args.ten_crop and size != TEN_CROP_SIZE:  # training crops against test features at another size
        raise ValueError(f"--ten-crop makes {TEN_CROP_SIZE} px training crops: it is for models pretrained at "
                         f"{TEN_CROP_SIZE} px (imagenet100, folder), not --pretrain-data {args.pretrain_data} "
                         f"({size} px)")
    if args.tensorboard:
        make_output_dir(args.tensorboard, "--tensorboard")


def result_path(ckpt: str, dataset: str, metric: str) -> str:
    """Where the result JSON goes: beside the checkpoint, named by dataset, metric and checkpoint."""
    name = os.path.splitext(os.path.basename(ckpt))[0]
    return os.path.join(os.path.dirname(os.path.abspath(ckpt)), f"linear-{dataset}-{metric}-{name}.json")


def evaluate(local_rank: int, args) -> None:
    """One rank's evaluation: frozen features of every split, then the sweep on rank 0."""
    import ignite.distributed as idist

    from augmentations import config_for_dataset
    from datasets.downstream import build_downstream, ten_crop_transforms
    from datasets.downstream_extra import features_to_extract
    from datasets.pretrain import eval_transform
    from utils.evaluation.features import load_backbone, sharded_features
    from utils.evaluation.linear_eval import linear_eval
    from utils.logging import write_json
    device = torch.device("cuda", idist.get_local_rank()) if args.device == "cuda" else torch.device("cpu")
    tf, ttf = ten_crop_transforms(args.pretrain_data) if args.ten_crop else (eval_transform(args.pretrain_data), None)
    splits = build_downstream(args.dataset, args.datadir, tf, ttf, args.download)
    size = config_for_dataset(args.pretrain_data).size
    master = idist.get_rank() == 0
    for path in args.ckpt:
        net = load_backbone(path, args.model, size).to(device)
        feats: list = []  # a split that is another's dataset (CelebA's val and test, LSP's four) reuses its features
        four = (splits.train, splits.val, splits.test, splits.refit)
        for s, first in zip(four, features_to_extract(*four)):
            feats.append(None if s is None else feats[first] if first < len(feats) else
                         sharded_features(net, s, device, args.batch_size, args.num_workers))
        refit = feats.pop()
        if not master:
            continue
        if args.metric == "r2":
            from utils.evaluation.regression_eval import regression_eval
            res = regression_eval(*feats, splits.num_classes, max_iter=args.max_iter, refit=refit)
        else:
            res = linear_eval(*feats, splits.num_classes, args.metric, max_iter=args.max_iter, refit=refit)
        print(f"test {args.metric}={res.test:.4f}", flush=True)
        out = result_path(path, args.dataset, args.metric)
        write_json(out, {"dataset": args.dataset, "metric": args.metric, "ckpt": os.path.abspath(path),
                         "grid": res.grid, "val": res.val, "best_wd": res.best_wd, "best_val": res.best_val,
                         "test": res.test, "sizes": {k: len(f[1]) for k, f in zip(("train", "val", "test", "refit"),
                                                                                 [*feats, refit]) if f is not None},
                         "args": {k: v for k, v in vars(args).items()}})
        print(f"wrote {out}")
        _log_external(args, path, res)


def _log_external(args, path: str, res) -> None:
    tag = f"linear/{args.dataset}/{os.path.basename(path)}"
    if args.tensorboard:
        from torch.utils.tensorboard import SummaryWriter
        with SummaryWriter(args.tensorboard) as tb:
            tb.add_scalar(f"{tag}/test_{args.metric}", res.test)
            tb.add_scalar(f"{tag}/best_val_{args.metric}", res.best_val)
    if os.environ.get("WANDB_PROJECT"):
        from utils.logging import init_wandb
        run = init_wandb(os.path.dirname(os.path.abspath(path)), vars(args))
        if run is not None:
            run.log({f"{tag}/test_{args.metric}": res.test, f"{tag}/best_wd": res.best_wd})
            run.finish()


def main(argv: list[str] | None = None) -> None:
    from utils.logging import RESULTS_KEPT, die_or_raise, interrupted
    args = build_parser().parse_args(argv)
    try:
        validate(args)
        from utils.distributed import launch
        from utils.training.validate import launch_plan
        launch(evaluate, args, *launch_plan(args))
    except Exception as e:  # DataError, CheckpointError and flag errors: one line, no traceback
        die_or_raise(e)
    except KeyboardInterrupt:
        interrupted(RESULTS_KEPT)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
