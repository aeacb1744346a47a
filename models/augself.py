"""AugSelf heads: predict how view 1 was augmented relative to view 2 from both backbone features."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from augmentations.descriptor import AUGSELF_PIECES

from .mlp import mlp_block

AUGSELF_OUT = {k: piece.out for k, piece in AUGSELF_PIECES.items()}  # each head's output width


class AugSelfHeads(nn.Module):
    """One MLP (2F -> 512 -> 512 -> out) per enabled piece; weight <= 0 disables a piece."""

    def __init__(self, feat_dim: int, weights: dict[str, float]):
        super().__init__()
        unknown = set(weights) - set(AUGSELF_OUT)
        if unknown:
            raise ValueError(f"unknown AugSelf piece(s) {sorted(unknown)}; expected any of {list(AUGSELF_OUT)}")
        self.weights = {k: float(w) for k, w in weights.items() if w > 0}
        self.heads = nn.ModuleDict({k: mlp_block(2 * feat_dim, 512, AUGSELF_OUT[k], 3) for k in self.weights})

    @property
    def keys(self) -> list[str]:
        """The augmentations the heads predict, in the order of their weights."""
        return list(self.weights)

    def piece_loss(self, key: str, pred: Tensor, target: Tensor) -> Tensor:
        """One head's loss, in fp32, as its piece says: BCE (flip), cross-entropy (rotation), else MSE on
        tanh outputs."""
        pred, loss = pred.float(), AUGSELF_PIECES[key].loss
        if loss == "bce":
            return F.binary_cross_entropy_with_logits(pred, target.float())
        if loss == "ce":
            return F.cross_entropy(pred, target.long())
        return F.mse_loss(torch.tanh(pred), target.float())

    def forward(self, y1: Tensor, y2: Tensor, targets: tuple[dict[str, Tensor], dict[str, Tensor]]
                ) -> tuple[Tensor, dict[str, Tensor]]:
        """Weighted sum of the pieces' losses over both directions (1->2, 2->1).

        As upstream, each head runs once on the 2B rows [y1|y2 ; y2|y1], so its BatchNorm takes
        its statistics over both directions together.
        """
        t12, t21 = targets
        pairs = torch.cat([torch.cat([y1, y2], 1), torch.cat([y2, y1], 1)], 0)
        total = y1.new_zeros((), dtype=torch.float32)
        stats = {}
        for k, head in self.heads.items():
            loss = self.piece_loss(k, head(pairs), torch.cat([t12[k], t21[k]], 0))
            stats[f"augself_{k}"] = loss.detach()
            total = total + self.weights[k] * loss
        return total, stats
