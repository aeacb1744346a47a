"""Linear probes of frozen backbones on every colordigits label set, from one feature extraction each.

    python scripts/colordigits_probes.py --ckpt RUN/ckpt-last.pth [RUN2/ckpt-last.pth ...] \\
        [--labels digit hue saturation brightness flip] [--max-iter 5000] [--model mini_resnet]

The protocol and result files of ``transfer_linear_eval.py --pretrain-data colordigits --dataset
colordigits-<label>`` (linear-colordigits-<label>-top1-<ckpt>.json beside each checkpoint): the label
sets share their images and their train / val / test split, so the features are extracted once per
checkpoint instead of once per label. A checkpoint with only a 'backbone' key (a random
initialisation) needs --model.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets.colordigits import LABELS  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", nargs="+", required=True, help="checkpoints with a 'backbone' key")
    p.add_argument("--labels", nargs="+", default=list(LABELS), help=f"label sets to probe, of {', '.join(LABELS)}")
    p.add_argument("--model", default=None, help="backbone architecture (default: as the checkpoint stores it)")
    p.add_argument("--max-iter", type=int, default=5000, help="L-BFGS iterations per fit (published: 5000)")
    p.add_argument("--grid-every", type=int, default=1, help="try every N-th weight decay of the published "
                   "45-value grid, ends included (published: 1; a coarser sweep for quick CPU comparisons)")
    p.add_argument("--batch-size", type=int, default=256, help="feature-extraction batch size")
    p.add_argument("--device", default="auto", help="device for the backbone's features: cuda, cpu or auto")
    p.add_argument("--fit-device", default="cpu", help="device for the L-BFGS sweeps (default cpu: at 1,438 x 512 "
                   "features an iteration costs less than a GPU's kernel launches and host syncs; docs/colordigits.md)")
    return p


def probe(path: str, model: str | None, labels: list[str], max_iter: int, batch_size: int,
          device: torch.device, grid_every: int = 1, fit_device: torch.device | None = None) -> dict[str, float]:
    """Write one result JSON per label for the checkpoint at ``path``; return {label: test top-1}."""
    from datasets.catalog import NUM_CLASSES
    from datasets.colordigits import make_colordigits
    from datasets.downstream import build_downstream
    from datasets.pretrain import eval_transform
    from models import BACKBONES
    from transfer_linear_eval import result_path
    from utils.checkpoint import load_checkpoint
    from utils.evaluation.features import load_backbone
    from utils.evaluation.knn import extract_features
    from utils.evaluation.linear_eval import WD_GRID, linear_eval
    from utils.logging import write_json
    from utils.training.validate import stored
    ckpt = load_checkpoint(path, flag="--ckpt")
    model = model or stored(ckpt, "model", BACKBONES)
    if model is None:
        raise ValueError(f"--ckpt {path} stores no --model: pass --model")
    net = load_backbone(path, model, 32, ckpt=ckpt).to(device)
    splits = build_downstream("colordigits-digit", None, eval_transform("colordigits"))
    fit_device = fit_device or device
    feats = [extract_features(net, s, device, batch_size)[0].to(fit_device)
             for s in (splits.train, splits.val, splits.test)]
    (_, y_train), (_, y_test) = make_colordigits("train"), make_colordigits("test")
    index = [torch.as_tensor(splits.train.indices), torch.as_tensor(splits.val.indices), None]
    grid = WD_GRID[::grid_every] + ([WD_GRID[-1]] if (len(WD_GRID) - 1) % grid_every else [])
    out = {}
    for label in labels:
        ys = [y_train[label][i] if i is not None else y_test[label] for i in index]
        res = linear_eval(*zip(feats, (y.to(fit_device) for y in ys)), NUM_CLASSES[f"colordigits-{label}"], "top1",
                          grid, max_iter=max_iter, log=lambda *_: None)
        dataset = f"colordigits-{label}"
        write_json(result_path(path, dataset, "top1"), {
            "dataset": dataset, "metric": "top1", "ckpt": os.path.abspath(path), "grid": res.grid, "val": res.val,
            "best_wd": res.best_wd, "best_val": res.best_val, "test": res.test,
            "sizes": {k: len(f) for k, f in zip(("train", "val", "test"), feats)},
            "args": {"model": model, "pretrain_data": "colordigits", "max_iter": max_iter,
                     "grid_every": grid_every}})
        out[label] = res.test
        print(f"{path} {dataset}: test top1={res.test:.4f}", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    from utils.logging import die, die_or_raise
    from utils.training.validate import resolve_device
    args = build_parser().parse_args(argv)
    bad = [x for x in args.labels if x not in LABELS]
    if bad:
        die(f"--labels {bad[0]}: expected one of {', '.join(LABELS)}")
    for flag in ("max_iter", "grid_every", "batch_size"):
        if getattr(args, flag) < 1:
            die(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    missing = [c for c in args.ckpt if not os.path.isfile(c)]
    if missing:
        die(f"--ckpt {missing[0]}: no such file")
    try:
        device = torch.device(resolve_device(args.device))
        fit_device = torch.device(resolve_device(args.fit_device, flag="--fit-device"))
        for path in args.ckpt:
            probe(path, args.model, args.labels, args.max_iter, args.batch_size, device, args.grid_every, fit_device)
    except Exception as e:  # a checkpoint without a backbone, or of another --model: one line
        die_or_raise(e)


if __name__ == "__main__":
    main()
