"""The synthetic datasets the benchmarks write, in the on-disk formats the real loaders read.

  write_jpegs     a folder of smooth random JPEGs in 10 class folders (the r50-224 setting)
  write_stl10     STL-10's binary files, train+unlabeled and test (the r18-96 setting)
  setting_datadir the --datadir a bench_pretrain.py setting trains on, written if missing
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

STL10_SIDE = 96
STL10_STEPS_PER_EPOCH = 64  # a multiple of every --augment-ahead, so that no group of steps is padded


def _write_jpeg(job: tuple[str, int, int, bool]) -> None:
    from PIL import Image
    root, i, side, progressive = job
    small = np.random.default_rng(i).integers(0, 256, (side // 16, side // 16, 3), dtype=np.uint8)
    Image.fromarray(small).resize((side, side), Image.BILINEAR).save(os.path.join(root, f"c{i % 10}", f"{i}.jpg"),
                                                                       progressive=progressive)


def write_jpegs(root: str, n: int, side: int = 320, progressive: bool = False) -> str:
    """n smooth random side x side JPEGs (PIL's defaults: quality 75, 4:2:0, baseline unless
    ``progressive``) in 10 class folders."""
    for c in range(10):
        os.makedirs(os.path.join(root, f"c{c}"), exist_ok=True)
    with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as pool:  # PIL's resize and encoder release the GIL
        list(pool.map(_write_jpeg, [(root, i, side, progressive) for i in range(n)]))
    return root


def write_stl10(root: str, n: int) -> str:
    """STL-10's binary release under ``root/stl10_binary`` (column-major 3 x 96 x 96 uint8 images,
    1-based uint8 labels) with ``n`` images in train+unlabeled, the split pretraining reads (up to
    100 of them labelled, as many again in test), and make torchvision's ``STL10`` accept it in
    this process.

    torchvision checks the files against the MD5 sums of the real release, which synthetic files
    cannot match; the file list is set to check only that each file exists. The pixels are uniform
    noise: an in-memory dataset's speed does not depend on them.
    """
    from torchvision.datasets import STL10
    base = os.path.join(root, STL10.base_folder)
    os.makedirs(base, exist_ok=True)
    rng, labelled = np.random.default_rng(0), min(100, n // 2)
    for stem, count in (("train", labelled), ("test", labelled), ("unlabeled", n - labelled)):
        shape = (count, 3, STL10_SIDE, STL10_SIDE)
        rng.integers(0, 256, shape, dtype=np.uint8).tofile(os.path.join(base, f"{stem}_X.bin"))
        if stem != "unlabeled":
            (np.arange(count) % 10 + 1).astype(np.uint8).tofile(os.path.join(base, f"{stem}_y.bin"))
    with open(os.path.join(base, STL10.class_names_file), "w") as f:
        f.write("\n".join(f"class{i}" for i in range(10)))
    STL10.train_list = [[name, None] for name, _ in STL10.train_list]
    STL10.test_list = [[name, None] for name, _ in STL10.test_list]
    return root


def setting_datadir(setting: str, tmp: str, batch_size: int, steps: int, tiny: bool,
                    jpeg_dir: str | None = None) -> str | None:
    """The --datadir of a bench_pretrain.py setting, written under ``tmp``: r50-224's JPEGs, enough
    for ``steps`` steps, go to ``jpeg_dir`` if given (kept, and reused when it holds enough files);
    r18-96's STL-10 files hold 64 steps an epoch, which the benchmarks repeat; r18-32's colordigits
    is built in (None)."""
    if setting == "r50-224":
        root, n = jpeg_dir or os.path.join(tmp, "jpegs"), batch_size * steps
        if not os.path.isdir(root) or sum(len(f) for _, _, f in os.walk(root)) < n:
            write_jpegs(root, n, 320 if not tiny else 64)
        return root
    if setting == "r18-96":
        return write_stl10(os.path.join(tmp, "stl10"), batch_size * STL10_STEPS_PER_EPOCH)
    return None
