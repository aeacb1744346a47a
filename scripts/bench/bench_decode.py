"""Where the time of the JPEG-folder input goes: batched decode, per-image crop + resize, PIL.

    python scripts/bench/bench_decode.py --device cuda                        # GPU (nvJPEG)
    python scripts/bench/bench_decode.py --device cpu --n 48 --chunks 16      # smoke run on a CPU

images/s of, on synthetic 320 px JPEGs (baseline and progressive):
  decode        torchvision.io.decode_jpeg on --device, one call per chunk of images, one thread
  decode xT     the same from T threads at once, each on its own CUDA stream (what
                DeviceDecodePrefetcher does; 1.98x one thread on an H200 for baseline JPEGs)
  crop-resize   datasets.device_decode.crop_resize: both antialiased crops of each decoded image,
                each image made float on its own ("float per image", the CPU default) or all in
                one conversion ("float per call", the CUDA default)
  workers       one loader worker's rate on the --jpeg-decode workers path (datasets.loaders.TwoCrops:
                header, both boxes, libjpeg-turbo decode through torchvision, both crops by torch's
                uint8 resize), in this process on one thread, as in a worker
  pil           the same with PIL's decode and crops (``pil_only``: upstream's way, and the bench's
                upstream-style pipeline)
  loader        the nvJPEG path's loader alone (workers read bytes and draw boxes), and the main
                thread's CPU time per batch spent taking batches in
  workers loader, pil loader   the --jpeg-decode workers path's loader (both crops of every image
                made in --loader-workers workers), with the workers' decode and with PIL's
On GPUs with a hardware JPEG decoder (A100, H100) torchvision sends baseline JPEGs to it in one
batch and decodes progressive ones one by one with a host Huffman stage; comparing the two rows
shows which path a machine takes. Prints a table and writes JSON.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

from bench_data import write_jpegs  # noqa: E402
from bench_pretrain import synchronizer  # noqa: E402


def _rate(fn, images: int, repeats: int, device: torch.device) -> float:
    fn()  # warm-up: decoder state, allocator, kernels
    sync = synchronizer(device)
    sync()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return images * repeats / (time.perf_counter() - t)


def _decode(data: list, device: torch.device, stream=None) -> list:
    from datasets.jpeg import decode
    with torch.cuda.stream(stream) if stream is not None else nullcontext():
        return decode(data, device)


def measure(root: str, kind: str, a, device: torch.device) -> list[dict]:
    from augmentations import sample_crop_boxes
    from datasets.device_decode import crop_resize
    from datasets.jpeg import read_bytes
    from datasets.folders import image_folder
    from datasets.loaders import TwoCrops
    folder = image_folder(root)
    files = [path for path, _ in folder.samples]
    data, n, rows = [read_bytes(f) for f in files], len(files), []
    row = lambda what, r, **kw: rows.append({"jpeg": kind, "what": what, "images_per_s": r, **kw})  # noqa: E731
    for chunk in a.chunks:
        row("decode", _rate(lambda: [_decode(data[i:i + chunk], device) for i in range(0, n, chunk)],
                            n, a.repeats, device), chunk=chunk, threads=1)
    streams = [torch.cuda.Stream(device) if device.type == "cuda" else None for _ in range(a.threads)]
    parts = [list(range(n))[t::a.threads] for t in range(a.threads)]
    with ThreadPoolExecutor(a.threads) as pool:
        def threaded():
            list(pool.map(lambda t: _decode([data[i] for i in parts[t]], device, streams[t]), range(a.threads)))
        row("decode", _rate(threaded, n, a.repeats, device), chunk=len(parts[0]), threads=a.threads)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in a loader worker
    batch = [(0, i) for i in range(min(n, a.loader_batch))]  # what a worker is asked for at once
    ways = {what: TwoCrops(folder, a.size, seed=0, pil_only=what == "pil") for what in ("workers", "pil")}
    rates = {what: [] for what in ways}
    for _ in range(a.repeats):  # round-robin, so that a noisy host slows both alike
        for what, two_crops in ways.items():
            rates[what].append(_rate(lambda: two_crops.__getitems__(batch), len(batch), 1, torch.device("cpu")))
    for what, r in rates.items():
        row(what, statistics.median(r), chunk=len(batch), threads=1, all=r)
    torch.set_num_threads(threads)
    if kind != "baseline":
        return rows
    images = _decode(data, device)
    g = torch.Generator().manual_seed(0)
    hw = torch.tensor([list(im.shape[1:]) for im in images])
    b1, b2 = (sample_crop_boxes(hw[:, 0], hw[:, 1], g) for _ in range(2))
    for together in (False, True):  # crop_resize's convert_together: the CPU's default, the GPU's
        row("crop-resize, float per " + ("call" if together else "image"),
            _rate(lambda: crop_resize(images, (b1, b2), a.size, together), n, a.repeats, device), chunk=n, threads=1)
    for what, (rate, main_ms) in _loader_rates(folder, a).items():
        row(what, rate, chunk=min(a.loader_batch, n), threads=a.loader_workers, main_thread_ms_per_batch=main_ms)
    return rows


def _loader_rates(folder, a) -> dict[str, tuple[float, float]]:
    """Items/s of each JPEG loader with ``--loader-workers`` workers: the nvJPEG path's ("loader":
    bytes and boxes only) and the workers path's, with its decode and with PIL's ("workers loader",
    "pil loader": both crops of every image); and the main thread's CPU time per batch taking
    batches in, time the training step cannot use. One epoch of each per round, round-robin;
    medians over ``--repeats`` rounds."""
    from datasets.device_decode import bytes_loader
    from datasets.loaders import worker_crop_loader
    batch, workers = min(a.loader_batch, len(folder)), a.loader_workers
    loaders = {"loader": bytes_loader(folder.samples, batch, seed=0, num_workers=workers, size=a.size),
               "workers loader": worker_crop_loader(folder, a.size, batch, seed=0, num_workers=workers),
               "pil loader": worker_crop_loader(folder, a.size, batch, seed=0, num_workers=workers, pil_only=True)}
    rates, main_ms = {k: [] for k in loaders}, {k: [] for k in loaders}
    for loader in loaders.values():
        for _ in loader:  # starts the (persistent) workers
            pass
    for epoch in range(1, 1 + a.repeats):
        for what, loader in loaders.items():
            loader.sampler.set_epoch(epoch)
            t, cpu, batches = time.perf_counter(), time.thread_time(), 0
            for _ in loader:
                batches += 1
            rates[what].append(batches * batch / (time.perf_counter() - t))
            main_ms[what].append(1e3 * (time.thread_time() - cpu) / batches)
    return {k: (statistics.median(rates[k]), statistics.median(main_ms[k])) for k in loaders}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda or cpu")
    p.add_argument("--n", type=int, default=512, help="JPEGs per measurement")
    p.add_argument("--side", type=int, default=320, help="JPEG side in pixels")
    p.add_argument("--size", type=int, default=224, help="crop output size")
    p.add_argument("--chunks", type=int, nargs="+", default=[32, 128, 512], help="images per decode call")
    p.add_argument("--threads", type=int, default=4, help="decoder threads for the threaded row")
    p.add_argument("--repeats", type=int, default=3, help="timed passes over the images")
    p.add_argument("--loader-workers", type=int, default=4, help="loader workers for the loader row")
    p.add_argument("--loader-batch", type=int, default=256, help="batch size for the loader row")
    p.add_argument("--out", default="bench_decode.json", help="JSON output")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("baseline", "progressive"):
            root = write_jpegs(os.path.join(tmp, kind), a.n, a.side, progressive=kind == "progressive")
            rows += measure(root, kind, a, device)
    with open(a.out, "w") as f:
        json.dump({"device": name, "torch": torch.__version__, "rows": rows, "args": vars(a)}, f, indent=2)
    print(f"device: {name}, {a.n} JPEGs of {a.side} px\n| JPEG | what | images per call | threads | images/s |"
          "\n|---|---|---|---|---|")
    for r in rows:
        main = f" (main thread {r['main_thread_ms_per_batch']:.1f} ms/batch)" if "main_thread_ms_per_batch" in r else ""
        print(f"| {r['jpeg']} | {r['what']}{main} | {r['chunk']} | {r['threads']} | {r['images_per_s']:.0f} |")


if __name__ == "__main__":
    main()
