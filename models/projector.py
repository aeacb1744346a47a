"""The conditioned projector: a projector MLP that also sees the augmentation descriptor.

``--aug-treatment`` decides how the descriptor is embedded (raw / mlp / hypernetwork) and
``--aug-inj-type`` where it enters (concatenated, added, multiplied, or ignored: the baseline).
The embedding network is part of this module, so it shares the projector's optimiser, is
EMA-copied with it into momentum projectors, and is saved with it.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .mlp import mlp_block

TREATMENTS = ("raw", "mlp", "hn")
INJECTIONS = ("proj-cat", "proj-add", "proj-mul", "proj-none")


@dataclass(frozen=True)
class ProjectorSpec:
    """Shape of a framework's projector before conditioning."""

    hidden: int
    out: int
    depth: int
    last_bn: bool = False
    last_bn_affine: bool = True


@dataclass(frozen=True)
class ConditionSpec:
    """How the descriptor conditions the projector (the ``--aug-*`` flags)."""

    desc_dim: int = 0
    treatment: str = "raw"
    injection: str = "proj-none"
    width: int = 32
    depth: int = 2
    hn_type: str = "mlp"

    def __post_init__(self):
        if self.treatment not in TREATMENTS:
            raise ValueError(f"--aug-treatment must be one of {TREATMENTS}, got {self.treatment!r}")
        if self.injection not in INJECTIONS:
            raise ValueError(f"--aug-inj-type must be one of {INJECTIONS}, got {self.injection!r}")
        if self.hn_type not in ("mlp", "mlp-bn"):
            raise ValueError(f"--aug-hn-type must be mlp or mlp-bn, got {self.hn_type!r}")
        if self.injection != "proj-none" and self.desc_dim <= 0:
            raise ValueError(f"--aug-inj-type {self.injection} needs a descriptor: give --aug-cond keys")

    @property
    def active(self) -> bool:
        """Whether the projector takes the descriptor (every injection but ``proj-none``)."""
        return self.injection != "proj-none"


class HyperProjector(nn.Module):
    """Projector whose weights and biases are generated per sample from the descriptor.

    Layers are F -> F ... -> out (hidden layers F wide); the generated weights are applied with
    batched matmuls (one ``baddbmm`` per layer for the whole batch). As upstream, the hypernetwork
    ends with a BatchNorm over the generated parameters, and the generated projector has no final
    BatchNorm whatever the framework's projector has (``spec.last_bn`` is not used here).
    """

    def __init__(self, feat_dim: int, spec: ProjectorSpec, cond: ConditionSpec):
        super().__init__()
        dims = [feat_dim] * spec.depth + [spec.out]
        self.shapes = list(itertools.pairwise(dims))
        n_params = sum(i * o + o for i, o in self.shapes)
        self.hypernet = mlp_block(cond.desc_dim, cond.width, n_params, cond.depth, last_bn=True)
        self.hidden_bn = nn.ModuleList(
            nn.BatchNorm1d(o) if cond.hn_type == "mlp-bn" else nn.Identity() for _, o in self.shapes[:-1])

    def forward(self, x: Tensor, d: Tensor) -> Tensor:
        theta = self.hypernet(d)
        start = 0
        for layer, (i, o) in enumerate(self.shapes):
            w = theta[:, start:start + i * o].view(-1, i, o)
            b = theta[:, start + i * o:start + i * o + o]
            start += i * o + o
            x = torch.baddbmm(b[:, None, :], x[:, None, :], w)[:, 0]
            if layer < len(self.shapes) - 1:
                x = torch.relu(self.hidden_bn[layer](x))
        return x


class ConditionedProjector(nn.Module):
    """projector(features, descriptor) -> embedding, per ``ConditionSpec``."""

    def __init__(self, feat_dim: int, spec: ProjectorSpec, cond: ConditionSpec):
        super().__init__()
        self.cond = cond
        self.embed: nn.Module | None = None
        if cond.active and cond.treatment == "hn":
            self.net: nn.Module = HyperProjector(feat_dim, spec, cond)
            return
        in_dim = feat_dim
        if cond.active:
            emb_dim = {"proj-cat": cond.width if cond.treatment == "mlp" else cond.desc_dim}.get(cond.injection, feat_dim)
            if cond.treatment == "raw" and cond.injection != "proj-cat" and cond.desc_dim != feat_dim:
                raise ValueError(f"--aug-inj-type {cond.injection} with --aug-treatment raw needs a descriptor of "
                                 f"the backbone's width {feat_dim}, got {cond.desc_dim}; use mlp or proj-cat")
            if cond.treatment == "mlp":
                self.embed = mlp_block(cond.desc_dim, cond.width, emb_dim, cond.depth, last_bn=True)
            else:
                self.embed = nn.Identity()
            if cond.injection == "proj-cat":
                in_dim = feat_dim + emb_dim
        self.in_dim = in_dim
        self.net = mlp_block(in_dim, spec.hidden, spec.out, spec.depth, spec.last_bn, spec.last_bn_affine)

    def forward(self, x: Tensor, d: Tensor | None = None) -> Tensor:
        if not self.cond.active:
            return self.net(x)
        if d is None:
            raise ValueError("this projector is conditioned: pass the augmentation descriptor")
        d = d.to(x.dtype)
        if isinstance(self.net, HyperProjector):
            return self.net(x, d)
        e = self.embed(d)
        if self.cond.injection == "proj-cat":
            x = torch.cat([x, e], dim=1)
        elif self.cond.injection == "proj-add":
            x = x + e
        else:
            x = x * e
        return self.net(x)
