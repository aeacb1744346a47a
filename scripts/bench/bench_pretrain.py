"""Pretraining throughput: model-only ceiling vs upstream-style input vs this project's pipeline.

    python scripts/bench/bench_pretrain.py --device cuda --out bench.json          # the README table (GPU)
    python scripts/bench/bench_pretrain.py --device cpu --tiny                     # smoke run on a CPU

Settings (MoCo v2 with the paper's CASSLE conditioning, bf16 + channels_last on CUDA):
  r18-32   cifar_resnet18 at 32 px on colordigits (held in memory)
  r18-96   resnet18 at 96 px on synthetic STL-10 binaries written to a temp dir (held in memory)
  r50-224  resnet50 at 224 px on a synthetic folder of 320x320 JPEGs written to a temp dir
Pipelines:
  model     pre-made views and descriptors on the device: the ceiling
  model-eager  the same with the backbone eager where --compile (the CUDA default) compiled it:
            the eager ceiling (bf16 + channels_last), side by side with the compiled pipelines
  upstream  per-image PIL crop in loader workers, then batched colour ops on the device
  ours      the default of pretrain_cond.py (32 px: whole dataset on the device, crop included;
            224 px, "device decode": workers read bytes, nvJPEG decodes each batch on the device
            in decoder threads, crops there; "workers decode": libjpeg-turbo decode + torch crops in
            workers, pinned side-stream prefetch; the other ops batched on the device)
  ours-other  224 px only: the --jpeg-decode path the default did not pick (the default is nvJPEG
            on the device below 8 workers, decode + crop in workers from 8 on)
  augment   the input side of "ours" alone (batches, views, records, descriptors; no model step):
            above the model-only figure, the input pipeline can keep up with the model
  --variants FLAG=VALUE[,FLAG=VALUE] ...  "ours" and "augment" again (those chosen) with input-side
            flags changed (augment_graph, augment_ahead, blur_impl), in the same process and
            round-robin with the rest: the ceiling moved by up to 28 % between processes of the
            same code on one H100 host
Prints a table of images/s (each image = two views) and peak memory (warm-up included), and writes
JSON. Each measurement runs at least --steps steps and --min-seconds, once the loader workers of all
pipelines are idle; with --repeats R the pipelines are measured R times round-robin, and the table
gives the median with the range in brackets (from the second round on, a pipeline first takes the
batches its loader stocked while the others ran). Each measurement is also printed ("round" lines)
and written to the JSON as it is taken, so that a run cut off by a time limit keeps what it measured.
"""
from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from augmentations import BLUR_IMPLS, VIEW_GRAPHS  # noqa: E402
from bench_data import setting_datadir  # noqa: E402
from bench_pipelines import (SETTINGS, VARIANT_FLAGS, Pipelines, backlog, make_args, parse_variant,  # noqa: E402
                             variant_args)
from models import COMPILE_MODES  # noqa: E402


def synchronizer(device: torch.device):
    """A function that waits for ``device``'s queued work (nothing to wait for on a CPU)."""
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def timed(step_fn, it, warmup: int, steps: int, min_seconds: float, batch_size: int, device: torch.device) -> dict:
    """images/s over at least ``steps`` steps and ``min_seconds`` (a 32 px step takes ~15 ms, so a
    fixed step count would time a fraction of a second), after ``warmup`` untimed steps. The peak
    memory spans the warm-up too: a backbone compiled into CUDA graphs allocates its activations once,
    while it records them there, and its replays allocate nothing."""
    sync = synchronizer(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        step_fn(next(it))
    sync()
    n, t = 0, time.perf_counter()
    while n < steps or time.perf_counter() - t < min_seconds:
        step_fn(next(it))
        n += 1
    sync()
    dt = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"images_per_s": n * batch_size / dt, "peak_gib": peak}


def settle(timeout: float = 20.0, interval: float = 0.05, quiet_polls: int = 3) -> float:
    """Waits until this process's children (the loader workers of every pipeline built) have used no
    CPU time for ``quiet_polls`` polls in a row, or ``timeout`` seconds; returns the seconds waited.
    Round-robin timing otherwise lets the loaders of the pipelines not being timed stock up on the
    cores of the one that is: on the H200, r50-224's model-only step measured 2,995 images/s while
    four loaders of 4 workers filled their queues, 4,015 in a later run where one did. Linux (/proc)
    only; elsewhere it returns at once."""
    start, last, quiet = time.perf_counter(), _children_cpu_ticks(), 0
    while last is not None and quiet < quiet_polls and time.perf_counter() - start < timeout:
        time.sleep(interval)
        now = _children_cpu_ticks()
        quiet, last = (quiet + 1 if now == last else 0), now
    return time.perf_counter() - start


def _children_cpu_ticks() -> int | None:
    """User + system CPU clock ticks of this process's live children so far, or None without /proc."""
    if not os.path.isdir("/proc/self"):
        return None
    total = 0
    for child in multiprocessing.active_children():
        try:
            with open(f"/proc/{child.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()  # the name in brackets may hold spaces
        except OSError:  # ended since it was listed
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of proc(5)
    return total


def summarise(runs: list[dict]) -> dict:
    """The median of repeated measurements, with all of them (their spread is the noise)."""
    rates = [r["images_per_s"] for r in runs]
    peaks = [r["peak_gib"] for r in runs if r["peak_gib"] is not None]
    return {"images_per_s": statistics.median(rates), "images_per_s_all": rates,
            "peak_gib": max(peaks) if peaks else None}


def measure(builders: dict, a, device: torch.device, backlogs: dict[str, int]):
    """Every pipeline ``a.repeats`` times, round-robin, so slow drifts of the machine hit them alike.
    From the second round on, a pipeline first works through its ``backlogs[name]`` steps made ahead
    while the others ran, so that its timed steps go at the pace its loader keeps up, not at that of
    a stock. Yields (round, name, all runs so far) after each measurement, so that a run cut off by a
    time limit keeps, and has printed, what it measured (GPU time is often scarce)."""
    made = {name: build() for name, build in builders.items()}
    its = {name: iter(batches()) for name, (_, batches) in made.items()}
    runs = {name: [] for name in made}
    for rep in range(a.repeats):
        for name, (step, _) in made.items():
            # compiled and warm after the first round
            warmup = a.warmup if rep == 0 else max(min(a.warmup, 2), backlogs[name])
            settle()
            runs[name].append(timed(step, its[name], warmup, a.steps, a.min_seconds, a.batch_size, device))
            yield rep, name, runs


def bench_setting(setting: str, a, workers: int, datadir: str | None):
    """Yields the table's rows for one setting and worker count, for the pipelines measured so far,
    after each measurement (which it prints as a "round" line, against that round's model-only figure)."""
    from utils.training.run import build_run
    args = make_args(setting, a, datadir, workers)
    pipes = Pipelines(build_run(args, torch.device(a.device)), a, workers)
    builders, variants = pipes.builders(setting, datadir)
    common = dict(setting=setting, workers=workers, model=args.model, precision=args.precision,
                  channels_last=args.channels_last, compile=_compiled(args),
                  augment_graph=args.augment_graph, augment_ahead=args.augment_ahead, blur_impl=args.blur_impl)
    backlogs = {n: 0 if n == "model" else backlog(workers, (variants[n][2] if n in variants else args).augment_ahead)
                for n in builders}
    for rep, name, runs in measure(builders, a, pipes.run.device, backlogs):
        rate, model = runs[name][rep]["images_per_s"], runs.get("model", [])
        vs = f" ({rate / model[rep]['images_per_s']:.2f} of the model)" if len(model) > rep and name != "model" else ""
        print(f"round {rep + 1}/{a.repeats} {setting} {workers} workers: {pipes.label(name)} "
              f"{rate:.0f} images/s{vs}", flush=True)
        yield [{"pipeline": pipes.label(n), "default": n == "ours", **summarise(measured), **common,
                **({**variants[n][0], "variant": variants[n][1]} if n in variants else {})}
               for n, measured in runs.items() if measured]


def _compiled(args) -> str:
    what = {(False, False): "off", (True, False): "backbone", (False, True): "augment", (True, True): "both"}[
        (bool(args.compile), bool(args.compile_augment))]
    what += f" ({args.compile_mode})" if args.compile and args.compile_mode != "default" else ""
    what += " (whole view)" if args.compile_augment and args.augment_graph == "view" else ""
    return what + (f", {args.augment_ahead} steps ahead" if args.augment_ahead > 1 else "")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--precision", default="auto", help="fp32, bf16, fp16 or auto (bf16 on CUDA)")
    p.add_argument("--jpeg-decode", default="auto",
                   help="JPEG path for 'ours' (auto: pretrain_cond.py's rule, nvJPEG on CUDA below 8 workers)")
    p.add_argument("--pipelines", nargs="+", default=["model", "upstream", "ours", "ours-other", "augment"],
                   choices=["model", "model-eager", "upstream", "ours", "ours-other", "augment"],
                   help="what to measure (model-eager: the model-only step with the backbone eager; ours-other: "
                        "JPEG folders, the decode path the default did not pick; augment: the default's input "
                        "side alone, no model step)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC (default: pretrain_cond.py's, on for CUDA)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the backbone (default: as pretrain_cond.py, on for CUDA)")
    p.add_argument("--compile-mode", default="auto", choices=["auto", *COMPILE_MODES],
                   help="torch.compile mode for --compile (default: as pretrain_cond.py, CUDA graphs on CUDA)")
    p.add_argument("--compile-augment", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the batched augmentation (default: as pretrain_cond.py, on for CUDA)")
    p.add_argument("--augment-graph", default="auto", choices=["auto", *VIEW_GRAPHS],
                   help="with compiled augmentation: one graph per stage, or the whole view as one graph "
                        "(default: as pretrain_cond.py)")
    p.add_argument("--augment-ahead", type=int, default=None, metavar="K",
                   help="make K steps' inputs together, one call per view (needs --augment-graph view; "
                        "default: as pretrain_cond.py, 8 at r18-32 on CUDA)")
    p.add_argument("--blur-impl", default="auto", choices=["auto", *BLUR_IMPLS],
                   help="Gaussian blur implementation (r50-224; default: as pretrain_cond.py)")
    p.add_argument("--variants", nargs="+", default=[], metavar="FLAG=VALUE",
                   help="also measure 'ours' and 'augment' with input-side flags changed, in the same process "
                        f"(flags: {', '.join(VARIANT_FLAGS)}; e.g. augment_graph=view blur_impl=conv "
                        "augment_graph=view,augment_ahead=8)")
    p.add_argument("--settings", nargs="+", default=["r18-32", "r50-224"], choices=list(SETTINGS),
                   help="which settings to measure (r18-96 is measured only when asked for)")
    p.add_argument("--workers", nargs="+", type=int, default=[4, 16], help="loader workers to try")
    p.add_argument("--batch-size", type=int, default=256, help="images per step (two views each)")
    p.add_argument("--steps", type=int, default=30, help="timed steps per measurement, at least")
    p.add_argument("--min-seconds", type=float, default=2.0, help="timed seconds per measurement, at least")
    p.add_argument("--repeats", type=int, default=1,
                   help="measurements per pipeline, taken round-robin; the table gives their median and range")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (cudnn autotune, workers)")
    p.add_argument("--tiny", action="store_true", help="mini_resnet, for a CPU smoke run")
    p.add_argument("--out", default="bench_pretrain.json", help="JSON output")
    p.add_argument("--jpeg-dir", default=None, help="reuse/keep the synthetic JPEG folder here (default: temp)")
    return p


def main(argv=None):
    p = build_parser()
    a = p.parse_args(argv)
    for spec in a.variants:  # every variant must be a valid run before anything is measured
        try:
            flags = parse_variant(spec)
            for setting, w in itertools.product(a.settings, a.workers):
                variant_args(setting, a, flags, None, w)
        except ValueError as e:
            p.error(str(e) if str(e).startswith("--variants") else f"--variants {spec}: {e}")
    torch.backends.cudnn.benchmark = True
    device = torch.cuda.get_device_name() if a.device == "cuda" else "cpu"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for setting in a.settings:
            datadir = setting_datadir(setting, tmp, a.batch_size, a.steps + a.warmup + 2, a.tiny, a.jpeg_dir)
            for w in a.workers:
                measured = []
                for measured in bench_setting(setting, a, w, datadir):
                    with open(a.out, "w") as f:  # after each measurement, so a cut-off run keeps what it measured
                        json.dump({"device": device, "rows": rows + measured, "args": vars(a)}, f, indent=2)
                rows += measured
    print(table(rows, device))


def table(rows: list[dict], device: str) -> str:
    lines = [f"device: {device}", "| setting | model | precision | NHWC | compile | workers | pipeline | images/s "
             "| vs model | peak GiB |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ceiling = [x["images_per_s"] for x in rows if x["pipeline"] == "model" and all(
            x[k] == r[k] for k in ("setting", "workers", "precision", "channels_last", "compile"))]
        ratio = f"{r['images_per_s'] / ceiling[0]:.2f}" if ceiling else "-"
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "-"
        every = r.get("images_per_s_all", [])
        rate = f"{r['images_per_s']:.0f}" + (f" ({min(every):.0f}-{max(every):.0f})" if len(every) > 1 else "")
        lines.append(f"| {r['setting']} | {r['model']} | {r['precision']} | {'on' if r['channels_last'] else 'off'} | "
                     f"{r['compile']} | {r['workers']} | {r['pipeline']} | {rate} | {ratio} | {peak} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
