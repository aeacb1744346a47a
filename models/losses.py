"""SSL losses as pure functions of embeddings (no module state; distributed gathers passed in)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def info_nce(q: Tensor, k: Tensor, queue: Tensor, temperature: float) -> Tensor:
    """MoCo v2: positives q.k, negatives q.queue; q, k, queue rows L2-normalised."""
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ queue.t()
    logits = torch.cat([pos, neg], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


def nt_xent(z1: Tensor, z2: Tensor, temperature: float, z1_all: Tensor | None = None,
            z2_all: Tensor | None = None, offset: int = 0) -> Tensor:
    """SimCLR over 2N views: each view's positive is its pair, negatives are all other views.

    With ``z*_all`` (gathered over ranks, this rank's rows at ``offset``) negatives span the
    global batch; otherwise the local one.
    """
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    keys = torch.cat([F.normalize(z1_all, dim=1), F.normalize(z2_all, dim=1)]) if z1_all is not None \
        else torch.cat([z1, z2])
    n, n_all = z1.shape[0], keys.shape[0] // 2
    queries = torch.cat([z1, z2])
    logits = queries @ keys.t() / temperature
    idx = torch.arange(n, device=z1.device) + offset
    self_idx = torch.cat([idx, idx + n_all])
    pos_idx = torch.cat([idx + n_all, idx])
    self_mask = torch.arange(2 * n_all, device=z1.device)[None] == self_idx[:, None]
    logits = logits.masked_fill(self_mask, float("-inf"))  # index_put of a Python float would sync a GPU
    return F.cross_entropy(logits, pos_idx)


def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """SimSiam: -cos(p, stop-grad z), averaged."""
    return -F.cosine_similarity(p, z.detach(), dim=1).mean()


def byol_loss(p: Tensor, z: Tensor) -> Tensor:
    """BYOL: 2 - 2 cos(p, stop-grad z), averaged."""
    return (2 - 2 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


def barlow_twins_loss(c: Tensor, lambd: float) -> Tensor:
    """Barlow Twins on a (global) cross-correlation matrix c: on-diagonal to 1, off-diagonal to 0."""
    on = (torch.diagonal(c) - 1).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + lambd * off


def mocov3_contrastive(q: Tensor, k_all: Tensor, temperature: float, offset: int) -> Tensor:
    """MoCo v3: q against all gathered keys, positive at this rank's offset; scaled by 2T."""
    q, k_all = F.normalize(q, dim=1), F.normalize(k_all, dim=1)
    logits = q @ k_all.t() / temperature
    labels = torch.arange(q.shape[0], device=q.device) + offset
    return F.cross_entropy(logits, labels) * (2 * temperature)


@torch.no_grad()
def sinkhorn(scores: Tensor, eps: float, iters: int, all_reduce=lambda t: t, world_batch: int | None = None) -> Tensor:
    """SwAV's equal-partition assignment: rows (samples) sum to 1 after the final step.

    ``all_reduce`` sums a tensor over ranks (identity on one process); ``world_batch`` is the
    global number of samples.
    """
    q = torch.exp(scores.float() / eps).t()  # [K, B]
    k = q.shape[0]
    b = world_batch or q.shape[1]
    q /= all_reduce(q.sum())
    for _ in range(iters):
        q /= all_reduce(q.sum(dim=1, keepdim=True))
        q /= k
        q /= q.sum(dim=0, keepdim=True)
        q /= b
    return (q * b).t()


def swav_loss(scores1: Tensor, scores2: Tensor, q1: Tensor, q2: Tensor, temperature: float) -> Tensor:
    """Swapped prediction: view 2's scores predict view 1's codes and vice versa, the two directions
    summed as upstream (not averaged: the SSL gradient keeps its weight against weight decay and
    the AugSelf heads)."""
    l1 = -(q1 * F.log_softmax(scores2 / temperature, dim=1)).sum(dim=1).mean()
    l2 = -(q2 * F.log_softmax(scores1 / temperature, dim=1)).sum(dim=1).mean()
    return l1 + l2
