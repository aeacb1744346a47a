"""Where a training step's time goes: host (CPU) and device time of its regions, and how busy the GPU is.

    python scripts/bench/profile_step.py --device cuda --setting r18-32           # the 32 px step
    python scripts/bench/profile_step.py --device cuda --setting r50-224 --workers 4
    python scripts/bench/profile_step.py --device cpu --tiny --steps 2            # smoke run on a CPU

Runs the default step of pretrain_cond.py (the bench_pretrain.py settings) under torch.profiler and
prints, per region of ``utils.training.step.make_step`` (inputs, forward, backward, optimizer), the host
time spent issuing it and the device time of the kernels it launched, plus the step's wall time,
the kernel launches per step and the costliest kernels (on a CPU: the costliest ATen ops).
If the kernels' total is well under the wall time, the GPU waits for the host: the step is
host-bound, and fewer or fused launches (compiling, CUDA graphs) are what helps. The total sums
kernels over all streams (nvJPEG decoder threads have their own), so near the wall time it does
not by itself prove the GPU full. Writes JSON and, with --trace, a Chrome trace to open in Perfetto.

``--host-profile N`` also runs the input side alone (what the bench's ``augment`` row times) without
the torch profiler, then under cProfile: its host ms per step, which a host-bound step pays in full,
and the N Python functions that spend most of it.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from augmentations import BLUR_IMPLS, VIEW_GRAPHS  # noqa: E402
from bench_data import setting_datadir  # noqa: E402
from bench_pipelines import SETTINGS, endless, make_args, stub_engine  # noqa: E402
from bench_pretrain import synchronizer  # noqa: E402

REGIONS = ("inputs", "forward", "backward", "optimizer")


def _kernels(events) -> list:
    """The GPU kernels among profiler events (not the regions' spans on the GPU timeline)."""
    return [e for e in events if e.device_type.name == "CUDA" and e.key not in REGIONS
            and not getattr(e, "is_user_annotation", False)]


def profile_steps(step, batches, steps: int, device: torch.device, trace: str | None) -> dict:
    """Profile ``steps`` calls of ``step`` on ``batches``; per-region host and device milliseconds per step."""
    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    sync = synchronizer(device)
    sync()
    with profile(activities=activities) as prof:
        t = time.perf_counter()
        for _ in range(steps):
            step(next(batches))
        sync()
        wall = time.perf_counter() - t
    if trace:
        prof.export_chrome_trace(trace)
    events = prof.key_averages()
    # A region shows up twice: as a host annotation (CPU) and, on CUDA, as its span on the GPU
    # timeline; the host one carries both its host time and its kernels' device time.
    regions = {e.key: e for e in events if e.key in REGIONS and e.device_type.name == "CPU"}
    kernels_us = sum(e.self_device_time_total for e in _kernels(events))
    per_step = lambda us: us / 1e3 / steps  # noqa: E731
    launches = sum(e.count for e in events if "LaunchKernel" in e.key or e.key == "cudaGraphLaunch")
    return {
        "wall_ms": 1e3 * wall / steps,
        "device_busy_ms": per_step(kernels_us) if cuda else None,
        "kernel_launches": launches / steps if cuda else None,
        "top": top_ops(events, steps, cuda),
        "regions": {k: {"host_ms": per_step(regions[k].cpu_time_total),
                        "device_ms": per_step(regions[k].device_time_total) if cuda else None}
                    for k in REGIONS if k in regions},
    }


def host_profile(step_inputs, steps: int, device: torch.device, n: int) -> dict:
    """The input side alone (``step_inputs``: an iterator of step inputs): host ms per step unprofiled,
    and the ``n`` Python functions with the most own time under cProfile (ms per step, calls per step)."""
    sync = synchronizer(device)

    def run_steps():
        for _ in range(steps):
            next(step_inputs)
        sync()
    sync()
    t = time.perf_counter()
    run_steps()
    ms = 1e3 * (time.perf_counter() - t) / steps
    prof = cProfile.Profile()
    prof.enable()
    run_steps()
    prof.disable()
    stats = pstats.Stats(prof).stats  # {(file, line, function): (primitive calls, calls, own s, cumulative s, callers)}
    rows = sorted(stats.items(), key=lambda kv: kv[1][2], reverse=True)[:n]
    return {"inputs_ms": ms, "functions": [
        {"name": f"{os.path.basename(f)}:{line}({fn})", "self_ms": 1e3 * tt / steps, "calls": nc / steps}
        for (f, line, fn), (_, nc, tt, _, _) in rows]}


def top_ops(events, steps: int, cuda: bool, n: int = 12) -> list[dict]:
    """The ``n`` costliest ops per step: kernels by device time on CUDA, ATen ops by own host time elsewhere."""
    if cuda:
        rows = _kernels(events)
        cost = lambda e: e.self_device_time_total  # noqa: E731
    else:
        rows = [e for e in events if e.key.startswith("aten::")]
        cost = lambda e: e.self_cpu_time_total  # noqa: E731
    return [{"name": e.key[:100], "ms": cost(e) / 1e3 / steps, "calls": e.count / steps}
            for e in sorted(rows, key=cost, reverse=True)[:n]]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--setting", default="r18-32", choices=list(SETTINGS), help="as in bench_pretrain.py")
    p.add_argument("--workers", type=int, default=4, help="loader workers")
    p.add_argument("--batch-size", type=int, default=256, help="images per step (two views each)")
    p.add_argument("--steps", type=int, default=10, help="profiled steps")
    p.add_argument("--warmup", type=int, default=8, help="unprofiled steps first (compiling, cudnn autotune)")
    p.add_argument("--tiny", action="store_true", help="mini_resnet, for a CPU smoke run")
    p.add_argument("--jpeg-dir", default=None, help="JPEG folder for r50-224 (written there if missing)")
    p.add_argument("--compile-augment", action=argparse.BooleanOptionalAction, default=None,
                   help="as pretrain_cond.py (default: on where Inductor can make GPU code); "
                        "--compile-augment on a CPU makes the host profile resemble the GPU's")
    p.add_argument("--augment-graph", default="auto", choices=["auto", *VIEW_GRAPHS], help="as pretrain_cond.py")
    p.add_argument("--augment-ahead", type=int, default=None, metavar="K", help="as pretrain_cond.py")
    p.add_argument("--blur-impl", default="auto", choices=["auto", *BLUR_IMPLS], help="as pretrain_cond.py")
    p.add_argument("--host-profile", type=int, default=0, metavar="N",
                   help="also time the input side alone and list its N costliest Python functions (cProfile)")
    p.add_argument("--trace", default=None, help="also write a Chrome trace here")
    p.add_argument("--out", default="profile_step.json", help="JSON output")
    return p


def run_profile(a) -> dict:
    """The default step of pretrain_cond.py for ``a``'s setting, warmed up and profiled (and with
    ``a.host_profile``, its input side alone under cProfile). The backbone runs eager, so that its
    kernels show one by one instead of as CUDA-graph replays."""
    from utils.training.run import build_run
    from utils.training.step import engine_and_data, input_stream
    a.precision, a.jpeg_decode = "auto", "auto"
    a.channels_last, a.compile = None, False
    torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory() as tmp:  # build_run reads STL-10 into memory; the JPEGs lie outside tmp
        datadir = setting_datadir(a.setting, tmp, a.batch_size, a.steps + a.warmup + 2, a.tiny,
                                  a.jpeg_dir or "/tmp/cassle-profile-jpegs")
        args = make_args(a.setting, a, datadir, a.workers)
        run = build_run(args, torch.device(a.device))
    engine = stub_engine()
    step, data = engine_and_data(run, 10**6)
    batches = endless(data)()
    for _ in range(a.warmup):
        step(engine, next(batches))
    res = profile_steps(lambda b: step(engine, b), batches, a.steps, run.device, a.trace)
    if a.host_profile:
        res["host"] = host_profile(endless(input_stream(run))(), a.steps, run.device, a.host_profile)
    res.update(setting=a.setting, workers=a.workers, compile_augment=args.compile_augment,
               augment_graph=args.augment_graph,
               augment_ahead=args.augment_ahead, blur_impl=args.blur_impl,
               device=torch.cuda.get_device_name() if a.device == "cuda" else "cpu")
    return res


def print_report(res: dict) -> None:
    busy = (f", kernels {res['device_busy_ms']:.1f} ms from {res['kernel_launches']:.0f} launches"
            if res["device_busy_ms"] is not None else "")
    print(f"{res['device']} {res['setting']}, {res['workers']} workers: step {res['wall_ms']:.1f} ms{busy}")
    print("| region | host ms/step | device ms/step |\n|---|---|---|")
    for k, v in res["regions"].items():
        dev = f"{v['device_ms']:.2f}" if v["device_ms"] is not None else "-"
        print(f"| {k} | {v['host_ms']:.2f} | {dev} |")
    print(f"| costliest {'kernels' if res['device_busy_ms'] is not None else 'host ops'} | ms/step | calls/step |")
    for t in res["top"]:
        print(f"| {t['name'][:60]} | {t['ms']:.2f} | {t['calls']:.0f} |")
    if "host" in res:
        print(f"input side alone, no profiler: {res['host']['inputs_ms']:.2f} ms/step\n"
              "| Python function (cProfile) | own ms/step | calls/step |\n|---|---|---|")
        for t in res["host"]["functions"]:
            print(f"| {t['name'][:60]} | {t['self_ms']:.3f} | {t['calls']:.0f} |")


def main(argv=None) -> dict:
    a = build_parser().parse_args(argv)
    res = run_profile(a)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=2)
    print_report(res)
    return res


if __name__ == "__main__":
    main()
