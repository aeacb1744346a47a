"""Augmentation-sensitivity analysis of a pretrained checkpoint (CPU or GPU).

    python scripts/analyze.py <command> --ckpt RUN/ckpt-last.pth [--num-images 512] [--device cpu]

Commands:
  predict-aug    ridge-regression R^2 of each descriptor piece from frozen backbone features
  invariance     cosine(feature of image, feature of augmented copy) per augmentation type, at every
                 ResNet stage and at the projector output (true and mismatched descriptor); and the
                 published losses between the two (InfoNCE, self-distillation, CCA), per --batch-size
  interpolation  the same similarity while the colour-jitter or blur strength is swept; plotted
  pca            eigen-spectrum of the features and its power-law exponent
  neighbors      grid image of nearest-neighbour retrievals for a few queries (--dump-latents: and
                 the features, latents-test-<dataset>.pkl)
Each writes <cmd>.json (+ .csv / .png) into RUN/analysis-<ckpt>/ and logs to TensorBoard there.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

COMMANDS = ("predict-aug", "invariance", "interpolation", "pca", "neighbors")
AUG_TYPES = ("identity", "crop", "color", "blur", "grayscale", "flip")


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", help=" | ".join(COMMANDS))
    p.add_argument("--ckpt", required=True, help="checkpoint written by pretrain_cond.py")
    p.add_argument("--dataset", default=None, help="images to analyse (default: the pretraining dataset)")
    p.add_argument("--datadir", default=None, help="dataset root (default: the pretraining --datadir)")
    p.add_argument("--num-images", type=int, default=512, help="images from the labelled test split")
    p.add_argument("--batch-size", type=int, default=256, help="forward batch size; invariance: also the batch "
                   "its losses are computed on, then averaged (published: 256)")
    p.add_argument("--queries", type=int, default=6, help="neighbors: query images")
    p.add_argument("--k", type=int, default=8, help="neighbors: neighbours per query")
    p.add_argument("--dump-latents", action="store_true", help="neighbors: also pickle the backbone features "
                   "(float32 numpy array, image order) as latents-test-<dataset>.pkl, as upstream's --dump-latents")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled augmentations")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    return p.parse_args(argv)


class Setup:
    """Checkpoint -> framework in eval mode, images of the analysed dataset, output folder."""

    def __init__(self, a):
        from augmentations import config_for_dataset
        from datasets.pretrain import build_pretrain_data
        from utils.checkpoint import load_checkpoint
        from utils.training.run import build_model
        from utils.training.validate import check_finite_weights, resolve_device
        ckpt = load_checkpoint(a.ckpt, flag="--ckpt")
        if not isinstance(ckpt.get("args"), dict) or "model" not in ckpt:
            raise ValueError(f"--ckpt {a.ckpt}: needs a checkpoint from pretrain_cond.py (keys 'args' and 'model')")
        check_finite_weights(ckpt["model"], a.ckpt)
        self.out = os.path.join(os.path.dirname(os.path.abspath(a.ckpt)),
                                "analysis-" + os.path.splitext(os.path.basename(a.ckpt))[0])
        _writable(self.out, a.ckpt, make=False)  # before any work: a shared checkpoint's folder may be read-only
        self.train_args = SimpleNamespace(**ckpt["args"])
        self.device = torch.device(resolve_device(a.device))
        # the run's saturation; runs from before --saturation-impl existed used torchvision's
        self.cfg = dataclasses.replace(config_for_dataset(self.train_args.dataset, self.train_args.color_aug),
                                       saturation_impl=getattr(self.train_args, "saturation_impl", "torchvision"))
        self.model = build_model(self.train_args, self.cfg.size)
        self.model.load_state_dict(ckpt["model"])
        self.model.to(self.device).eval()
        dataset = a.dataset or self.train_args.dataset
        data = build_pretrain_data(dataset, a.datadir or self.train_args.datadir)
        self.images, self.labels = _first_images(data.knn_test or data.train, a.num_images, self.cfg.size)
        self.keys = self.train_args.aug_cond
        _writable(self.out, a.ckpt, make=True)
        self.batch = a.batch_size
        self.gen = torch.Generator(device=self.device).manual_seed(a.seed)

    @torch.no_grad()
    def forward(self, views, params=None):
        """Per-layer features (and projector outputs with the true / mismatched descriptor)."""
        from augmentations import build_descriptor
        from utils.evaluation.analysis import stage_features
        outs: dict[str, list] = {}
        for i in range(0, len(views), self.batch):
            feats = stage_features(self.model.backbone, views[i:i + self.batch].to(self.device))
            if params is not None:
                proj = self.model.projector
                d = build_descriptor(params[i:i + self.batch], self.keys, self.cfg.jitter_ranges) \
                    if self.model.needs_descriptors else None
                feats["projector"] = proj(feats["pool"], d)
                feats["projector_mismatched"] = proj(feats["pool"], d.roll(1, 0) if d is not None else None)
            for k, v in feats.items():
                outs.setdefault(k, []).append(v.float().cpu())
        return {k: torch.cat(v) for k, v in outs.items()}

    def identity_views(self):
        from augmentations import ViewAugment
        return ViewAugment(isolated(self.cfg, "identity"))(self.images.to(self.device), self.gen)

    def save(self, name: str, obj, rows: list[dict] | None = None) -> None:
        with open(os.path.join(self.out, f"{name}.json"), "w") as f:
            json.dump(obj, f, indent=2)
        if rows:
            with open(os.path.join(self.out, f"{name}.csv"), "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
        print(f"wrote {os.path.join(self.out, name)}.json")

    def tensorboard(self):
        from torch.utils.tensorboard import SummaryWriter
        return SummaryWriter(self.out)


def _writable(out: str, ckpt: str, make: bool) -> None:
    """ValueError naming --ckpt when ``out`` (or the folder it would be made in) cannot be written;
    ``make``: create it now."""
    try:
        if make:
            os.makedirs(out, exist_ok=True)
        where = out if os.path.isdir(out) else os.path.dirname(out)
        if not os.access(where, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as e:
        raise ValueError(f"--ckpt {ckpt}: cannot write its analysis into {out} ({e.strerror})") from None


def _first_images(data, n: int, size: int):
    """uint8 [n, 3, size, size] images and labels: tensor datasets as they are, files resized+cropped."""
    if not isinstance(data, torch.utils.data.Dataset):  # TensorImages: uint8 tensors in memory
        return data.images[:n], data.labels[:n]
    from torchvision import transforms as T
    tf = T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])
    if isinstance(data, torch.utils.data.Subset):  # a folder's held-out k-NN queries
        data, samples = data.dataset, [data.dataset.samples[i] for i in data.indices[:n]]
    else:
        samples = data.samples[:n]
    return torch.stack([tf(data.loader(p).convert("RGB")) for p, _ in samples]), torch.tensor([y for _, y in samples])


def isolated(cfg, kind: str):
    """The training augmentation with only ``kind`` switched on (identity: nothing, full-image crop)."""
    off = dataclasses.replace(cfg, p_jitter=0.0, p_gray=0.0, p_flip=0.0, p_blur=0.0, crop_scale=(1.0, 1.0),
                              solarize=False, rotate=False)
    on = {"identity": {}, "crop": {"crop_scale": cfg.crop_scale}, "color": {"p_jitter": 1.0},
          "blur": {"p_blur": 1.0, "blur_kernel": cfg.blur_kernel or 9}, "grayscale": {"p_gray": 1.0},
          "flip": {"p_flip": 1.0}}[kind]
    return dataclasses.replace(off, **on)


def cmd_predict_aug(s: Setup):
    from augmentations import DESCRIPTOR_DIMS, ViewAugment, ViewParams, build_descriptor
    from utils.evaluation.analysis import ridge_r2
    aug = ViewAugment(s.cfg)
    views, params = zip(*(aug(s.images.to(s.device), s.gen) for _ in range(2)))
    views, params = torch.cat(views), ViewParams.cat(list(params)).to("cpu")
    feats = s.forward(views)["pool"]
    res = {}
    for key in DESCRIPTOR_DIMS:
        target = build_descriptor(params, [key], s.cfg.jitter_ranges)
        r = ridge_r2(feats, target) if target.std(0).max() > 0 else {"r2": None, "note": "constant (not sampled)"}
        res[key] = r
        print(f"{key:>10}: R^2 = {r['r2'] if r['r2'] is None else round(r['r2'], 4)}")
    s.save("predict-aug", res, [{"piece": k, "r2": v["r2"]} for k, v in res.items()])
    with s.tensorboard() as tb:
        for k, v in res.items():
            if v["r2"] is not None:
                tb.add_scalar(f"predict-aug/{k}", v["r2"])


def cmd_invariance(s: Setup):
    """Cosine per augmentation and layer (invariance.json), and the published losses between image
    and copy (invariance-losses.json; the CSV holds both). As published, the projector's outputs are
    L2-normalised before the losses (only CCA, unnormalised by definition, sees the difference)."""
    import torch.nn.functional as F

    from augmentations import ViewAugment
    from utils.evaluation.analysis import batched_losses, mean_cosine
    x0, p0 = s.identity_views()
    ref = s.forward(x0, p0.to(s.device))
    res, losses, rows = {}, {}, []
    for kind in AUG_TYPES:
        views, p = ViewAugment(isolated(s.cfg, kind))(s.images.to(s.device), s.gen)
        feats = s.forward(views, p)
        res[kind], losses[kind] = {}, {}
        for layer, f in feats.items():
            r = ref["projector" if layer.startswith("projector") else layer]
            res[kind][layer] = mean_cosine(r, f)
            unit = layer.startswith("projector")
            losses[kind][layer] = batched_losses(F.normalize(r, dim=1) if unit else r,
                                                 F.normalize(f, dim=1) if unit else f, s.batch)
            rows.append({"augmentation": kind, "layer": layer, "cosine": res[kind][layer],
                         **{k: v["mean"] for k, v in losses[kind][layer].items()}})
        print(f"{kind:>10}: " + " ".join(f"{k}={v:.3f}" for k, v in res[kind].items()))
        print(" " * 12 + " ".join(f"{k}: infonce={v['infonce']['mean']:.3f} self_distill="
                                  f"{v['self_distill']['mean']:.3f} cca={v['cca']['mean']:.3g}"
                                  for k, v in losses[kind].items() if k in ("pool", "projector")))
    s.save("invariance-losses", losses)
    s.save("invariance", res, rows)
    with s.tensorboard() as tb:
        for kind, d in res.items():
            tb.add_scalars(f"invariance/{kind}", d)
            for name in ("infonce", "self_distill", "cca"):
                tb.add_scalars(f"invariance-{name}/{kind}", {k: v[name]["mean"] for k, v in losses[kind].items()})


def cmd_interpolation(s: Setup):
    from augmentations import ViewAugment, ViewParams
    from utils.evaluation.analysis import mean_cosine
    x0, p0 = s.identity_views()
    ref = s.forward(x0, p0.to(s.device))
    crops = (x0.float() * torch.tensor(s.cfg.std, device=x0.device).view(1, 3, 1, 1)
             + torch.tensor(s.cfg.mean, device=x0.device).view(1, 3, 1, 1)).clamp(0, 1)
    strengths = torch.linspace(0, 1, 11).tolist()
    curves: dict[str, dict[str, list[float]]] = {}
    for kind in ("color", "blur"):
        cfg = isolated(s.cfg, kind)
        aug = ViewAugment(cfg)
        for st in strengths:
            p = p0.drawn()
            if kind == "color":  # every factor at `st` of the way to the edge of the training range
                p["jitter"][:] = True
                p["jitter_factors"][:] = torch.tensor([1 + s.cfg.brightness * st, 1 + s.cfg.contrast * st,
                                                       1 + s.cfg.saturation * st, s.cfg.hue * st])
            else:
                p["blur_sigma"][:] = s.cfg.sigma[1] * st
            views = aug.apply(crops.clone(), p)
            feats = s.forward(views, ViewParams(box=p0.box, src_size=p0.src_size, **p))
            for layer, f in feats.items():
                key = "projector" if layer.startswith("projector") else layer
                curves.setdefault(kind, {}).setdefault(layer, []).append(mean_cosine(ref[key], f))
    s.save("interpolation", {"strengths": strengths, "curves": curves},
           [{"augmentation": k, "layer": l, "strength": st, "cosine": v}
            for k, d in curves.items() for l, vals in d.items() for st, v in zip(strengths, vals)])
    fig = _plot_curves(strengths, curves)
    fig.savefig(os.path.join(s.out, "interpolation.png"), dpi=120)
    with s.tensorboard() as tb:
        tb.add_figure("interpolation", fig)


def _plot_curves(xs, curves):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 3.6), squeeze=False)
    for ax, (kind, d) in zip(axes[0], curves.items()):
        for layer, ys in d.items():
            ax.plot(xs, ys, marker="o", ms=3, label=layer, ls="--" if "mismatched" in layer else "-")
        ax.set_title(f"{kind} strength sweep")
        ax.set_xlabel("strength (fraction of the training range)")
        ax.set_ylabel("cosine to the unaugmented image")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def cmd_pca(s: Setup):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from utils.evaluation.analysis import power_law
    x0, _ = s.identity_views()
    res = power_law(s.forward(x0)["pool"])
    print(f"power-law exponent alpha = {res['alpha']:.3f}")
    s.save("pca", res, [{"index": i + 1, "eigenvalue": e} for i, e in enumerate(res["eigenvalues"])])
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.loglog(range(1, len(res["eigenvalues"]) + 1), res["eigenvalues"])
    ax.set_title(f"feature spectrum, alpha={res['alpha']:.2f}")
    ax.set_xlabel("index")
    ax.set_ylabel("eigenvalue")
    fig.tight_layout()
    fig.savefig(os.path.join(s.out, "pca.png"), dpi=120)
    with s.tensorboard() as tb:
        tb.add_scalar("pca/alpha", res["alpha"])
        tb.add_figure("pca/spectrum", fig)


def cmd_neighbors(s: Setup, queries: int, k: int, dump_as: str | None = None):
    """The retrieval grid; ``dump_as``: also pickle the features (numpy, float32) under that name."""
    from torchvision.utils import make_grid, save_image

    from utils.evaluation.analysis import nearest_neighbours
    x0, _ = s.identity_views()
    feats = s.forward(x0)["pool"]
    if dump_as:
        import pickle
        with open(os.path.join(s.out, dump_as), "wb") as f:
            pickle.dump(feats.float().numpy(), f)
        print(f"wrote {os.path.join(s.out, dump_as)}")
    q = list(range(min(queries, len(feats))))
    nn_idx = nearest_neighbours(feats, q, k)
    same = [float((s.labels[n] == s.labels[i]).float().mean()) for i, n in zip(q, nn_idx)]
    s.save("neighbors", {"queries": q, "neighbors": nn_idx, "same_label_fraction": same})
    rows = [torch.cat([s.images[i:i + 1], s.images[n]]) for i, n in zip(q, nn_idx)]
    grid = make_grid(torch.cat(rows).float() / 255, nrow=k + 1, padding=2)
    save_image(grid, os.path.join(s.out, "neighbors.png"))
    with s.tensorboard() as tb:
        tb.add_image("neighbors", grid)


def main(argv=None) -> None:
    from utils.logging import die, die_or_raise
    from utils.training.validate import require
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        parse(argv)  # prints the commands and flags, then exits
    if not argv or argv[0] not in COMMANDS:
        die(f"unknown command {argv[0] if argv else ''!r}; expected one of {', '.join(COMMANDS)}")
    a = parse(argv)
    try:
        require(a, "positive", "num_images", "batch_size", "queries", "k")
        s = Setup(a)
        if a.command == "neighbors":
            dataset = a.dataset or s.train_args.dataset
            cmd_neighbors(s, a.queries, a.k, f"latents-test-{dataset}.pkl" if a.dump_latents else None)
        else:
            globals()["cmd_" + a.command.replace("-", "_")](s)
    except Exception as e:  # missing checkpoint, unknown dataset, bad data root
        die_or_raise(e)


if __name__ == "__main__":
    main()
