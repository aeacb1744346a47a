"""The MLP block used for projectors, predictors, descriptor embeddings and AugSelf heads."""
from __future__ import annotations

from torch import nn


def mlp_block(in_dim: int, hidden_dim: int, out_dim: int, depth: int, last_bn: bool = False,
              last_bn_affine: bool = True) -> nn.Sequential:
    """(depth-1) x [Linear(no bias) -> BN -> ReLU] -> Linear(bias only without last BN) [-> BN].

    Depth 1 is a single linear layer (upstream's builder fails there).
    """
    if depth < 1:
        raise ValueError(f"MLP depth must be >= 1, got {depth}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(depth - 1):
        layers += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    layers.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(out_dim, affine=last_bn_affine))
    return nn.Sequential(*layers)
