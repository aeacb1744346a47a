"""Loading a frozen backbone from any checkpoint and extracting features, sharded over processes."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from models import build_backbone

from ..checkpoint import CheckpointError, backbone_state_dict, load_checkpoint
from ..distributed import gather_no_grad, rank, world_size
from .knn import extract_features


def load_backbone(path: str, model: str, image_size: int, flag: str = "--ckpt",
                  ckpt: dict | None = None) -> nn.Module:
    """Build ``model`` and load ``ckpt['backbone']`` strictly (CheckpointError on any mismatch, naming
    ``flag``, the command-line flag that gave ``path``); ``ckpt``: the checkpoint, if already loaded."""
    ckpt = load_checkpoint(path, flag=flag) if ckpt is None else ckpt
    state = backbone_state_dict(ckpt, f"{flag} {path}")
    net, _ = build_backbone(model, image_size)
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        ex = (missing or unexpected or wrong)[0]
        raise CheckpointError(f"{flag} {path}: backbone does not match --model {model} ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected, {len(wrong)} mis-shaped keys, e.g. {ex})")
    net.load_state_dict(state)
    return net


@torch.no_grad()
def sharded_features(backbone: nn.Module, data: Dataset, device: torch.device, batch_size: int,
                     num_workers: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of ``data`` in dataset order; with several processes each takes every world-th item."""
    w, r = world_size(), rank()
    n = len(data)
    part = Subset(data, list(range(r, n, w))) if w > 1 else data
    f, y = extract_features(backbone, part, device, batch_size, num_workers=num_workers)
    if w == 1:
        return f, y
    per = -(-n // w)  # ceil: pad every shard to the same length for all_gather
    rows = f.shape[0] // max(1, len(part))  # > 1 for multi-crop
    pad = per * rows - f.shape[0]
    f = torch.cat([f, f.new_zeros(pad, f.shape[1])])
    y = torch.cat([y, y.new_zeros(pad, *y.shape[1:])])  # labels, or the regressions' coordinate rows
    fa, ya = gather_no_grad(f).view(w, per, rows, -1), gather_no_grad(y).view(w, per, rows, *y.shape[1:])
    # shard r holds items r, r + w, ...: interleaved, items 0..n-1 come first, in order, then the padding
    return (fa.transpose(0, 1).reshape(-1, f.shape[1])[:n * rows],
            ya.transpose(0, 1).reshape(-1, *y.shape[1:])[:n * rows])
