"""How much of a frozen backbone's features the image's colour explains, and what the digit k-NN reads
without it (colordigits).

    python scripts/colordigits_colour_share.py --ckpt RUN/ckpt-last.pth [RUN2/ckpt-last.pth ...] [--model mini_resnet]

Per checkpoint, on colordigits' train and test images (the probes' split): the features are regressed
by least squares on a quadratic function of the image's colour (mean RGB of its ink, the brightest
fifth of the pixels, and of its background), fitted on the train images. It prints the share of the
centred train-feature variance that regression explains, the 1-NN cosine digit accuracy of the test
images against the train images (the k-NN monitor's), and the same 1-NN on the residual features
(the colour-explained part removed from both). A backbone whose cosine distances are dominated by
colour has a large share and a residual 1-NN well above its raw one.
"""
from __future__ import annotations

import argparse
import os
import sys

import torch
from torch import Tensor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

INK_FRACTION = 0.2  # the brightest fifth of a 32 px colordigits image is ink (the digit covers about a third)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", nargs="+", required=True, help="checkpoints with a 'backbone' key")
    p.add_argument("--model", default=None, help="backbone architecture (default: as the checkpoint stores it)")
    p.add_argument("--device", default="auto", help="cuda, cpu or auto")
    return p


def colour_regressors(images: Tensor) -> Tensor:
    """[N, 28]: ink and background mean RGB (6), their pairwise products (21, upper triangle), a constant."""
    x = images.float() / 255
    bright = x.amax(1, keepdim=True).flatten(1)
    ink = (bright >= bright.quantile(1 - INK_FRACTION, dim=1, keepdim=True)).float().view(-1, 1, *x.shape[2:])
    back = 1 - ink
    colour = torch.cat([(x * ink).sum((2, 3)) / ink.sum((2, 3)), (x * back).sum((2, 3)) / back.sum((2, 3))], 1)
    i, j = torch.triu_indices(6, 6)
    return torch.cat([colour, colour[:, i] * colour[:, j], torch.ones(len(x), 1)], 1)


def colour_share(f_train: Tensor, a_train: Tensor) -> tuple[float, Tensor]:
    """(share of the centred feature variance explained by ``a_train``, least-squares coefficients)."""
    coef = torch.linalg.lstsq(a_train.double(), f_train.double()).solution
    centred = f_train.double() - f_train.double().mean(0)
    resid = f_train.double() - a_train.double() @ coef
    return 1 - (resid.pow(2).sum() / centred.pow(2).sum()).item(), coef


def nn1_accuracy(bank: Tensor, bank_labels: Tensor, queries: Tensor, labels: Tensor) -> float:
    """1-NN cosine accuracy of ``queries`` against ``bank`` (the k-NN monitor's 1-NN)."""
    unit = torch.nn.functional.normalize
    sim = unit(queries.double(), dim=1) @ unit(bank.double(), dim=1).t()
    return (bank_labels[sim.argmax(1)] == labels).double().mean().item()


def measure(path: str, model: str | None, device: torch.device) -> dict[str, float]:
    from datasets.downstream import build_downstream
    from datasets.pretrain import eval_transform
    from models import BACKBONES
    from utils.checkpoint import load_checkpoint
    from utils.evaluation.features import load_backbone
    from utils.evaluation.knn import extract_features
    from utils.training.validate import stored
    ckpt = load_checkpoint(path, flag="--ckpt")
    model = model or stored(ckpt, "model", BACKBONES)
    if model is None:
        raise ValueError(f"--ckpt {path} stores no --model: pass --model")
    net = load_backbone(path, model, 32, ckpt=ckpt).to(device)
    splits = build_downstream("colordigits-digit", None, eval_transform("colordigits"))
    (f_tr, y_tr), (f_te, y_te) = (extract_features(net, s, device) for s in (splits.train, splits.test))
    a_tr = colour_regressors(splits.train.dataset.uint8_images[torch.as_tensor(splits.train.indices)])
    a_te = colour_regressors(splits.test.uint8_images)
    share, coef = colour_share(f_tr.cpu(), a_tr)
    f_tr, f_te = f_tr.cpu().double(), f_te.cpu().double()
    out = {"colour_share": share, "nn1": nn1_accuracy(f_tr, y_tr.cpu(), f_te, y_te.cpu()),
           "nn1_residual": nn1_accuracy(f_tr - a_tr.double() @ coef, y_tr.cpu(), f_te - a_te.double() @ coef,
                                        y_te.cpu())}
    print(f"{path}: colour explains {out['colour_share']:.1%} of the feature variance; digit 1-NN "
          f"{out['nn1']:.4f}, without the colour-explained part {out['nn1_residual']:.4f}", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    from utils.logging import die, die_or_raise
    from utils.training.validate import resolve_device
    args = build_parser().parse_args(argv)
    missing = [c for c in args.ckpt if not os.path.isfile(c)]
    if missing:
        die(f"--ckpt {missing[0]}: no such file")
    try:
        device = torch.device(resolve_device(args.device))
        for path in args.ckpt:
            measure(path, args.model, device)
    except Exception as e:  # a checkpoint without a backbone, or of another --model: one line
        die_or_raise(e)


if __name__ == "__main__":
    main()
