"""Few-shot evaluation of frozen backbones: N-way K-shot episodes on cub200, fc100, plant_disease.

Example:
    python transfer_few_shot.py --pretrain-data imagenet100 --ckpt CKPT --model resnet50 \\
      --dataset cub200 --datadir CUB_ROOT --N 5 --K 1
Folder layouts: cub200 = root/{train,test}/<class>/; fc100 = root/test/<class>/;
plant_disease = root/<class>/. Writes fewshot-<dataset>-<N>way<K>shot-<ckpt name>.json next to each checkpoint.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

from datasets import PRETRAIN_DATASETS
from models import BACKBONES
from utils.distributed import default_num_workers

FEW_SHOT_DATASETS = ("cub200", "fc100", "plant_disease")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--ckpt", nargs="+", required=True, help="checkpoints with a 'backbone' key")
    a("--pretrain-data", default=None, help="data the backbone was pretrained on, one of "
      f"{', '.join(PRETRAIN_DATASETS)}: picks the evaluation resize and normalisation (default: the "
      "--dataset stored in a pretrain_cond.py checkpoint; else stl10, upstream's default)")
    a("--model", default=None, help=f"backbone architecture, one of {', '.join(BACKBONES)} (default: the "
      "--model stored in a pretrain_cond.py checkpoint; else resnet18, upstream's default)")
    a("--dataset", default="cub200", help=f"one of {', '.join(FEW_SHOT_DATASETS)}")
    a("--datadir", required=True, help="dataset root (see the layouts above)")
    a("--N", type=int, default=5, help="classes per task, at least 2 (published: 5)")
    a("--K", type=int, default=1, help="support images per class (published: 1 and 5)")
    a("--Q", type=int, default=16, help="query images per class (published: 16)")
    a("--num-tasks", type=int, default=2000, help="episodes (published: 2000)")
    a("--seed", type=int, default=0, help="seed of the episode sampler")
    a("--batch-size", type=int, default=256, help="feature-extraction batch size")
    a("--num-workers", type=int, default=default_num_workers(),
      help="loader workers for feature extraction (default: 4, or this process's CPUs if fewer)")
    a("--device", default="auto", help="cuda, cpu or auto")
    return p


def main(argv: list[str] | None = None) -> None:
    from augmentations import config_for_dataset
    from datasets.downstream import few_shot_pool
    from datasets.pretrain import eval_transform
    from utils.evaluation.features import load_backbone, sharded_features
    from utils.evaluation.few_shot import check_episodes, check_ways, few_shot_eval, pool_labels
    from utils.logging import RESULTS_KEPT, die_or_raise, interrupted, write_json
    from utils.training.validate import check_frozen_eval, require

    args = build_parser().parse_args(argv)
    try:
        if args.dataset not in FEW_SHOT_DATASETS:
            raise ValueError(f"--dataset must be one of {FEW_SHOT_DATASETS}, got {args.dataset!r}")
        require(args, "positive", "N", "K", "Q", "num_tasks")
        check_ways(args.N)
        check_frozen_eval(args, defaults={"pretrain_data": "stl10", "model": "resnet18"})  # upstream's
        device = torch.device(args.device)
        size = config_for_dataset(args.pretrain_data).size
        pool = few_shot_pool(args.dataset, args.datadir, eval_transform(args.pretrain_data))
        if (labels := pool_labels(pool)) is not None:  # before any feature is extracted
            check_episodes(labels, args.N, args.K, args.Q, args.dataset)
        for path in args.ckpt:
            net = load_backbone(path, args.model, size).to(device)
            f, y = sharded_features(net, pool, device, args.batch_size, args.num_workers)
            mean, ci = few_shot_eval(f.cpu().numpy(), y.cpu().numpy(), args.N, args.K, args.Q, args.num_tasks,
                                     args.seed)
            print(f"{args.dataset} {args.N}-way {args.K}-shot: acc={100 * mean:.2f} +- {100 * ci:.2f}")
            name = os.path.splitext(os.path.basename(path))[0]
            out = os.path.join(os.path.dirname(os.path.abspath(path)),
                               f"fewshot-{args.dataset}-{args.N}way{args.K}shot-{name}.json")
            write_json(out, {"acc": mean, "ci95": ci, "args": vars(args)})
    except Exception as e:  # DataError, CheckpointError and flag errors: one line, no traceback
        die_or_raise(e)
    except KeyboardInterrupt:
        interrupted(RESULTS_KEPT)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    main()
