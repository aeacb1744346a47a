"""Convert a checkpoint's ResNet-50 backbone into the weights file detectron2 loads (MODEL.WEIGHTS).

    python scripts/convert_to_detectron2.py CKPT OUT.pkl

CKPT: any checkpoint with a 'backbone' key holding a torchvision-style ResNet-50 (pretrain_cond.py's
ckpt-*.pth). OUT.pkl: a pickle {"model": {name: numpy array}, "__author__": ..., "matching_heuristics":
True} with detectron2's parameter names (stem.conv1, res2.0.conv1.norm, res2.0.shortcut, ...), for the
R50-C4 configs in detection/ (which set RESNETS.STRIDE_IN_1X1 False and RGB input with the ImageNet
mean and std, as torchvision's ResNet-50 expects).
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import sys

import numpy as np
import torch

AUTHOR = "CASSLE (torchvision-style ResNet-50)"
_NORM = "(?P<f>weight|bias|running_mean|running_var|num_batches_tracked)"
# (torchvision name, detectron2 name) patterns of the same parameter: torchvision's layerN is
# detectron2's res(N+1); bnK follows convK as convK.norm; the downsample pair is the shortcut and its norm
_PAIRS = (
    (r"conv1\.weight", r"stem\.conv1\.weight"),
    (rf"bn1\.{_NORM}", rf"stem\.conv1\.norm\.{_NORM}"),
    (r"layer(?P<s>\d)\.(?P<b>\d+)\.conv(?P<c>\d)\.weight", r"res(?P<s>\d)\.(?P<b>\d+)\.conv(?P<c>\d)\.weight"),
    (rf"layer(?P<s>\d)\.(?P<b>\d+)\.bn(?P<c>\d)\.{_NORM}", rf"res(?P<s>\d)\.(?P<b>\d+)\.conv(?P<c>\d)\.norm\.{_NORM}"),
    (r"layer(?P<s>\d)\.(?P<b>\d+)\.downsample\.0\.weight", r"res(?P<s>\d)\.(?P<b>\d+)\.shortcut\.weight"),
    (rf"layer(?P<s>\d)\.(?P<b>\d+)\.downsample\.1\.{_NORM}", rf"res(?P<s>\d)\.(?P<b>\d+)\.shortcut\.norm\.{_NORM}"),
)


def _fill(pattern: str, groups: dict[str, str]) -> str:
    """A name from one of _PAIRS' patterns with its groups filled in and its escapes dropped."""
    name = re.sub(r"\(\?P<(\w)>[^)]*\)", lambda g: groups[g[1]], pattern)
    return name.replace("\\.", ".")


def _translate(name: str, to_d2: bool) -> str | None:
    for tv, d2 in _PAIRS:
        src, dst = (tv, d2) if to_d2 else (d2, tv)
        if m := re.fullmatch(src, name):
            groups = dict(m.groupdict())
            if "s" in groups:  # torchvision's layerN is detectron2's res(N+1)
                groups["s"] = str(int(groups["s"]) + (1 if to_d2 else -1))
            return _fill(dst, groups)
    return None


def d2_name(name: str) -> str:
    """detectron2's name of the torchvision ResNet parameter or buffer ``name``; ValueError if none."""
    out = _translate(name, to_d2=True)
    if out is None:
        raise ValueError(f"{name}: not a ResNet parameter detectron2 has a name for")
    return out


def torchvision_name(name: str) -> str:
    """The inverse of ``d2_name``."""
    out = _translate(name, to_d2=False)
    if out is None:
        raise ValueError(f"{name}: not a detectron2 ResNet name")
    return out


def check_resnet50(state: dict[str, torch.Tensor], path: str) -> None:
    """ValueError unless ``state`` holds exactly torchvision's ResNet-50 without its classifier."""
    from torchvision.models import resnet50
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        want = {k: v.shape for k, v in resnet50(weights=None).state_dict().items() if not k.startswith("fc.")}
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    wrong = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k])]
    if missing or unexpected or wrong:
        ex = (missing or unexpected or wrong)[0]
        raise ValueError(f"{path}: backbone is not a torchvision-style ResNet-50, which detectron2's R50-C4 "
                         f"takes ({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped "
                         f"keys, e.g. {ex})")


def to_detectron2(state: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """detectron2's ``model`` dict: every tensor as a numpy array under its detectron2 name."""
    return {d2_name(k): v.detach().cpu().numpy() for k, v in state.items()}


def from_detectron2(model: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The torchvision state dict back from detectron2's ``model`` dict."""
    return {torchvision_name(k): torch.from_numpy(np.asarray(v)) for k, v in model.items()}


def convert(ckpt_path: str, out_path: str) -> int:
    """Write ``out_path`` from ``ckpt_path``'s backbone; returns the number of tensors written."""
    from utils.checkpoint import backbone_state_dict, load_checkpoint
    out_dir = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(out_dir) or not os.access(out_dir, os.W_OK):
        raise ValueError(f"OUT {out_path}: its folder does not exist or is not writable")
    state = backbone_state_dict(load_checkpoint(ckpt_path, flag="CKPT"), f"CKPT {ckpt_path}")
    check_resnet50(state, f"CKPT {ckpt_path}")
    obj = {"model": to_detectron2(state), "__author__": AUTHOR, "matching_heuristics": True}
    tmp = out_path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            pickle.dump(obj, f)
        os.replace(tmp, out_path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise ValueError(f"OUT {out_path}: cannot write ({e.strerror or e})") from None
    return len(obj["model"])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("ckpt", help="checkpoint with a 'backbone' key holding a ResNet-50 (e.g. a run's ckpt-last.pth)")
    p.add_argument("out", help="the detectron2 weights file to write (.pkl), given as MODEL.WEIGHTS")
    args = p.parse_args(argv)
    from utils.logging import die_or_raise
    try:
        n = convert(args.ckpt, args.out)
    except ValueError as e:  # CheckpointError included: one line, no traceback
        die_or_raise(e)
    print(f"wrote {args.out} ({n} tensors in detectron2's names)")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
