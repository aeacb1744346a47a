"""Cost of one augmented view: ATen ops it dispatches, and time per view, eager vs torch.compile.

    python scripts/bench/bench_augment.py --device cuda --compile inductor     # GPU: eager and compiled
    python scripts/bench/bench_augment.py --device cpu --batch-size 4          # CPU: op counts, host time

One view = ``ViewAugment`` on an in-memory batch (crop included) + the CASSLE descriptor. At small
batches on a GPU the time per view is host time (Python + one kernel launch per op), which is why
the op count matters; ``--compile`` fuses the pure stages into a few kernels. It is measured
twice: each stage compiled on its own, and the whole view as one graph (``whole_view=True``).
``--stage-times`` adds, for the per-stage runs, the host time that issuing each stage takes (the
device is waited for between views, outside the timing: what a step bound by the host pays), eager
against compiled, per stage: a
compiled call has a fixed host cost that a stage of two or three ops may not earn back.
Recipes: cifar10 (32 px from 32 px images) and imagenet100 (224 px from 256 px images, blur 23).
Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

from augmentations import (BLUR_IMPLS, VIEW_GRAPHS, ViewAugment, build_descriptor, compiled,  # noqa: E402
                           config_for_dataset)
from augmentations.functional import COLOR_OPS  # noqa: E402
from bench_pretrain import synchronizer  # noqa: E402

KEYS = ["blur", "color", "color_diff", "crop", "flip", "grayscale"]
SOURCE = {"cifar10": 32, "imagenet100": 256}


class OpCount(TorchDispatchMode):
    """Counts the ATen ops dispatched (views included: each is a call, though not a kernel)."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


STAGES = ("_crop", "_params", "_pre", "_post")  # ViewAugment's compiled stages, besides its jitter ops


def stage_host_us(aug, describe, view_args, views: int, sync) -> dict[str, float]:
    """Median host microseconds per call of each stage of ``aug`` (per-stage graphs) and of
    ``describe``, over ``views`` views. Times the issuing of the work, not the work itself: the
    device is waited for between views (untimed), so no launch waits for a full queue."""
    spent: dict[str, list[float]] = {}

    def timer(name: str, fn):
        def run(*args):
            t = time.perf_counter()
            out = fn(*args)
            spent.setdefault(name, []).append(time.perf_counter() - t)
            return out
        return run

    saved = {k: getattr(aug, k) for k in (*STAGES, "_color_ops")}
    try:
        for k in STAGES:
            setattr(aug, k, timer(k[1:], saved[k]))
        aug._color_ops = tuple(timer(op.__name__, f) for op, f in zip(COLOR_OPS, saved["_color_ops"]))
        timed_describe = timer("descriptor", describe)
        images, gen, host, cfg = view_args
        for _ in range(views):
            _, p = aug(images, gen, host_generator=host)
            timed_describe(p, KEYS, cfg.jitter_ranges)
            sync()
    finally:
        for k, v in saved.items():
            setattr(aug, k, v)
    return {k: 1e6 * statistics.median(v) for k, v in spent.items()}


def measure(recipe: str, backend: str | None, a, device: torch.device, whole_view: bool = False,
            blur_impl: str = "conv") -> dict:
    cfg = dataclasses.replace(config_for_dataset(recipe), blur_impl=blur_impl)
    side = SOURCE[recipe]
    images = torch.randint(0, 256, (a.batch_size, 3, side, side), dtype=torch.uint8, device=device)
    aug, describe = ViewAugment(cfg, backend, whole_view), compiled(build_descriptor, backend)
    gen, host = torch.Generator(device).manual_seed(0), torch.Generator().manual_seed(0)
    sync = synchronizer(device)

    def view():
        x, p = aug(images, gen, host_generator=host)
        return x, describe(p, KEYS, cfg.jitter_ranges)

    t = time.perf_counter()
    for _ in range(a.warmup):  # compiles, and meets each jitter op order's first ops
        view()
    sync()
    warm = time.perf_counter() - t
    ops = None
    if backend is None:
        with OpCount() as c:
            view()
        ops = c.n
    t = time.perf_counter()
    for _ in range(a.views):
        view()
    sync()
    per_view = (time.perf_counter() - t) / a.views
    stages = None
    if a.stage_times and not whole_view:
        stages = stage_host_us(aug, describe, (images, gen, host, cfg), a.views, sync)
    return {"recipe": recipe, "backend": backend or "eager", "graph": "view" if whole_view else "stages",
            "blur_impl": blur_impl if cfg.blur_kernel is not None else None,
            "batch_size": a.batch_size, "ops_per_view": ops, "stage_host_us": stages,
            "ms_per_view": per_view * 1e3, "views_per_s": a.batch_size / per_view, "warmup_s": warm}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--recipes", nargs="+", default=list(SOURCE), choices=list(SOURCE), help="augmentation recipes")
    p.add_argument("--batch-size", type=int, default=256, help="images per view batch")
    p.add_argument("--views", type=int, default=50, help="timed views")
    p.add_argument("--warmup", type=int, default=30, help="untimed views first (compilation, caches)")
    p.add_argument("--compile", default=None, help="also measure torch.compile with this backend (e.g. inductor)")
    p.add_argument("--blur-impls", nargs="+", default=["conv"], choices=BLUR_IMPLS,
                   help="Gaussian blur implementations to measure (recipes with blur)")
    p.add_argument("--graphs", nargs="+", default=list(VIEW_GRAPHS), choices=VIEW_GRAPHS,
                   help="compiled graphs to measure: each stage its own graph, and/or the whole view as one")
    p.add_argument("--stage-times", action="store_true",
                   help="also time the host's cost of issuing each stage, per-stage runs only (eager and compiled)")
    p.add_argument("--out", default="bench_augment.json", help="JSON output")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    runs = [(None, False)] + ([(a.compile, g == "view") for g in a.graphs] if a.compile else [])
    rows = [measure(r, b, a, device, whole, impl) for r in a.recipes for impl in a.blur_impls for b, whole in runs
            if impl == a.blur_impls[0] or config_for_dataset(r).blur_kernel is not None]
    with open(a.out, "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "rows": rows, "args": vars(a)}, f, indent=2)
    print(f"device: {name}, batch {a.batch_size}\n"
          "| recipe | augmentation | blur | ATen ops / view | ms / view | views/s |\n|---|---|---|---|---|---|")
    graph = {"stages": "", "view": ", whole view"}
    for r in rows:
        ops = r["ops_per_view"] if r["ops_per_view"] is not None else "-"
        how = r["backend"] + (graph[r["graph"]] if r["backend"] != "eager" else "")
        print(f"| {r['recipe']} | {how} | {r['blur_impl'] or '-'} | {ops} | {r['ms_per_view']:.3f} "
              f"| {r['views_per_s']:.0f} |")
    if a.stage_times:
        print_stage_table(rows)


def print_stage_table(rows: list[dict]) -> None:
    """Host microseconds per call of each stage: eager beside each compiled backend, per recipe and blur."""
    timed = [r for r in rows if r["stage_host_us"]]
    hows = list(dict.fromkeys(r["backend"] for r in timed))
    print(f"| recipe | blur | stage | {' | '.join(f'host us per call, {h}' for h in hows)} |\n"
          f"|---|---|---|{'---|' * len(hows)}")
    for recipe, blur in dict.fromkeys((r["recipe"], r["blur_impl"]) for r in timed):
        per = {r["backend"]: r["stage_host_us"] for r in timed if (r["recipe"], r["blur_impl"]) == (recipe, blur)}
        for stage in per[hows[0]]:
            cells = " | ".join(f"{per[h][stage]:.0f}" if h in per else "-" for h in hows)
            print(f"| {recipe} | {blur or '-'} | {stage} | {cells} |")


if __name__ == "__main__":
    main()
