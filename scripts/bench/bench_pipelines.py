"""The settings and pipelines that scripts/bench/bench_pretrain.py measures and scripts/bench/profile_step.py
profiles: pretrain_cond.py's arguments for a setting, and each pipeline as (step function, batch source)."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import torch  # noqa: E402

from augmentations import BLUR_IMPLS, VIEW_GRAPHS  # noqa: E402

SETTINGS = {"r18-32": ("cifar_resnet18", "colordigits"), "r18-96": ("resnet18", "stl10"),
            "r50-224": ("resnet50", "folder")}  # (--model, --dataset)
CASSLE = ["--framework", "moco", "--aug-treatment", "mlp", "--aug-nn-depth", "6", "--aug-nn-width", "64",
          "--aug-inj-type", "proj-cat", "--aug-cond", "crop", "color", "color_diff", "blur", "grayscale"]


def make_args(setting: str, a, datadir: str | None, workers: int):
    """pretrain_cond.py's arguments, defaults resolved, for ``setting`` with the speed flags that
    ``a`` (bench_pretrain.py's or profile_step.py's) sets; the flags it leaves unset keep their defaults."""
    import pretrain_cond
    from utils.training.validate import resolve_defaults
    model, dataset = SETTINGS[setting]
    if a.tiny:
        model = "mini_resnet"
    argv = ["--logdir", "unused", "--dataset", dataset, "--model", model, "--batch-size", str(a.batch_size),
            "--num-workers", str(workers), "--device", a.device, "--precision", a.precision,
            "--jpeg-decode", a.jpeg_decode, "--augment-graph", a.augment_graph, "--blur-impl", a.blur_impl, *CASSLE]
    if a.augment_ahead is not None:
        argv += ["--augment-ahead", str(a.augment_ahead)]
    if a.channels_last is not None:
        argv.append("--channels-last" if a.channels_last else "--no-channels-last")
    if getattr(a, "compile_mode", "auto") != "auto":  # profile_step.py has no such flag
        argv += ["--compile-mode", a.compile_mode]
    for flag in ("compile", "compile_augment"):
        if getattr(a, flag) is not None:
            argv.append(f"--{'' if getattr(a, flag) else 'no-'}{flag.replace('_', '-')}")
    if datadir:
        argv += ["--datadir", datadir]
    args = pretrain_cond.build_parser().parse_args(argv)
    resolve_defaults(args)
    return args


def stub_engine():
    """An Ignite Engine that only carries ``state.iteration``, for calling step functions directly."""
    from ignite.engine import Engine
    engine = Engine(lambda e, b: None)
    engine.state.iteration = 1
    return engine


def endless(loader):
    """Re-iterate a loader over epochs (each epoch re-seeded)."""
    def gen():
        epoch = 0
        while True:
            (loader.set_epoch if hasattr(loader, "set_epoch") else loader.sampler.set_epoch)(epoch)
            yield from loader
            epoch += 1
    return gen


class Pipelines:
    """The pipelines a setting is measured with: each method gives (step function, batch source)."""

    def __init__(self, run, a, workers: int):
        self.run, self.a, self.workers = run, a, workers
        self.engine = stub_engine()
        self.other = {"device": "workers", "workers": "device"}[run.args.jpeg_decode]

    def model(self):
        """(a) views, records and descriptors made once, reused every step: the ceiling."""
        from utils.training.step import make_inputs, make_model_step
        made = make_inputs(self.run)([next(iter(endless(self.run.loader)()))])[0]
        model_step = make_model_step(self.run, 10**6)
        return (lambda _: model_step(self.engine, made)), lambda: iter(int, 1)

    def model_eager(self):
        """(a) with the backbone eager where --compile compiled it: the eager ceiling
        (bf16 + channels_last, no compilation), in the same process as the compiled pipelines."""
        step, batches = self.model()

        def eager(b):
            with torch.compiler.set_stance("force_eager"):  # as the k-NN monitor runs the backbone
                return step(b)
        return eager, batches

    def upstream(self):
        """(b) PIL crops in loader workers, plain copies, colour ops batched on the device."""
        from datasets import PretrainData, worker_crop_loader
        from datasets.batches import TwoViewBatch
        from utils.training.step import make_step
        run = self.run
        pil = run.data.train if not run.data.in_memory else _PILView(run.data.train)
        loader = worker_crop_loader(pil, run.cfg.size, self.a.batch_size, run.args.seed, self.workers, pil_only=True)
        one_by_one = argparse.Namespace(**{**vars(run.args), "augment_ahead": 1})  # each batch's views on their own
        up_run = dataclasses.replace(run, args=one_by_one, data=PretrainData(pil, None, None), loader=loader)
        up_step = make_step(up_run, 10**6)
        return (lambda b: up_step(self.engine, TwoViewBatch(*(t.to(run.device, non_blocking=True) for t in b)))), \
            endless(loader)

    def ours(self, run=None):
        """(c) the default of pretrain_cond.py (or ``run``: that of another JPEG path or a --variants flag)."""
        from utils.training.step import engine_and_data
        step, data = engine_and_data(run or self.run, 10**6)
        return (lambda b: step(self.engine, b)), endless(data)

    def ours_other(self):
        """(d) JPEG folders: the --jpeg-decode path that the default did not pick."""
        from utils.training.run import build_loader
        run = self.run
        args = argparse.Namespace(**{**vars(run.args), "jpeg_decode": self.other})
        return self.ours(dataclasses.replace(run, loader=build_loader(args, run.data, run.cfg.size, run.device)))

    def augment(self, run=None):
        """(e) the input side of (c) alone (utils.training.step.make_inputs): views, descriptors, targets; no model."""
        from utils.training.step import input_stream
        return (lambda _: None), endless(input_stream(run or self.run))

    def builders(self, setting: str, datadir: str | None) -> tuple[dict, dict]:
        """({name: builder} of the pipelines asked for, {variant name: (flags, spec, its run's
        arguments)}): the --variants are "ours" and "augment" again on a run with those input-side
        flags changed."""
        from utils.training.run import aug_config
        kinds = {"model": self.model, "model-eager": self.model_eager, "upstream": self.upstream, "ours": self.ours,
                 "ours-other": self.ours_other, "augment": self.augment}
        chosen = [n for n in self.a.pipelines if not (self.run.data.in_memory and n == "ours-other")]  # no JPEGs
        builders, variants = {n: kinds[n] for n in chosen}, {}
        for spec in self.a.variants:
            flags = parse_variant(spec)
            vargs = variant_args(setting, self.a, flags, datadir, self.workers)
            vrun = dataclasses.replace(self.run, args=vargs, cfg=aug_config(vargs))
            for kind in ("ours", "augment"):
                if kind in self.a.pipelines:
                    builders[f"{kind} [{spec}]"] = functools.partial(kinds[kind], vrun)
                    variants[f"{kind} [{spec}]"] = (flags, spec, vargs)
        return builders, variants

    def label(self, name: str) -> str:
        """The table's name for a pipeline: JPEG settings say which decode path "ours" took."""
        args = self.run.args
        decode = {"ours": args.jpeg_decode, "ours-other": self.other}.get(name)
        return name if self.run.data.in_memory or decode is None else f"ours ({decode} decode)"


def backlog(workers: int, augment_ahead: int) -> int:
    """Steps' inputs a pipeline can hold ready while the others are measured: its loader workers'
    prefetched batches (4 each), the nvJPEG prefetcher's batches in flight (2) and the rest of a
    group of --augment-ahead steps."""
    return 4 * workers + 2 + augment_ahead


VARIANT_FLAGS = {"augment_graph": VIEW_GRAPHS, "augment_ahead": ("1", "2", "4", "8", "16", "32"),
                 "blur_impl": ("auto", *BLUR_IMPLS)}


def parse_variant(spec: str) -> dict[str, object]:
    """"flag=value[,flag=value...]" -> {flag: value} for input-side flags that --variants may change."""
    flags = {}
    for part in spec.split(","):
        flag, eq, value = part.partition("=")
        flag = flag.replace("-", "_")
        if not eq or flag not in VARIANT_FLAGS or value not in VARIANT_FLAGS[flag] or flag in flags:
            allowed = "; ".join(f"{k}={'|'.join(v)}" for k, v in VARIANT_FLAGS.items())
            raise ValueError(f"--variants {spec!r}: expected flag=value pairs, each flag once, joined by ',' "
                             f"({allowed})")
        flags[flag] = int(value) if flag == "augment_ahead" else value
    return flags


def variant_args(setting: str, a, flags: dict[str, object], datadir: str | None, workers: int):
    """pretrain_cond.py's arguments with the --variants flags changed, checked by its parser and
    validation as on its command line."""
    return make_args(setting, argparse.Namespace(**{**vars(a), **flags}), datadir, workers)


class _PILView(torch.utils.data.Dataset):
    """In-memory uint8 images served as PIL images, as a torchvision dataset would."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        from torchvision.transforms.functional import to_pil_image
        return to_pil_image(self.data.images[i]), int(self.data.labels[i])
