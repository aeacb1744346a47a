"""The published invariance losses (InfoNCE, self-distillation, CCA) against closed forms."""
import math

import numpy as np
import pytest
import torch

from utils.evaluation.analysis import (
    batched_losses,
    cca_loss,
    infonce_loss,
    self_distillation_loss,
)


def test_self_distillation_is_minus_the_mean_cosine():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(6, 5, generator=g)
    assert self_distillation_loss(a, a) == pytest.approx(-1.0, abs=1e-12)
    assert self_distillation_loss(a, -2 * a) == pytest.approx(1.0, abs=1e-12)
    b = torch.randn(6, 5, generator=g)
    an, bn = a.numpy().astype(np.float64), b.numpy().astype(np.float64)
    cos = (an * bn).sum(1) / np.linalg.norm(an, axis=1) / np.linalg.norm(bn, axis=1)
    assert self_distillation_loss(a, b) == pytest.approx(-cos.mean(), abs=1e-12)


def test_infonce_closed_forms():
    t = 0.2
    eye = torch.eye(2)  # orthonormal pair: logits 1/t on the diagonal, 0 off it
    assert infonce_loss(eye, 3 * eye, t) == pytest.approx(2 * t * math.log(1 + math.exp(-1 / t)), abs=1e-12)
    a = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # unit rows
    b = np.array([[0.8, 0.6], [1.0, 0.0], [0.0, 2.0]])
    s = a @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T / t
    ce = np.log(np.exp(s).sum(1)) - np.diag(s)
    assert infonce_loss(torch.from_numpy(a), torch.from_numpy(b), t) == pytest.approx(2 * t * ce.mean(), abs=1e-12)


def test_cca_of_a_whitened_copy_is_zero_and_the_general_closed_form():
    n, d, lam = 16, 4, 0.0051
    q, _ = torch.linalg.qr(torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    white = q * math.sqrt(n)  # columns orthogonal, each with mean square 1
    assert cca_loss(white, white) == pytest.approx(0.0, abs=1e-12)
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    c = a.numpy().astype(np.float64).T @ b.numpy().astype(np.float64) / n
    off = c - np.diag(np.diag(c))
    assert cca_loss(a, b, lam) == pytest.approx(((np.diag(c) - 1) ** 2).sum() + lam * (off ** 2).sum(), rel=1e-9)


def test_batched_losses_average_the_batches_equally():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(10, 3, generator=g), torch.randn(10, 3, generator=g)
    out = batched_losses(a, b, 4)  # batches of 4, 4 and 2 rows
    per = [infonce_loss(a[i:i + 4], b[i:i + 4]) for i in (0, 4, 8)]
    assert out["infonce"]["mean"] == pytest.approx(np.mean(per)) and out["infonce"]["std"] == pytest.approx(np.std(per))
    assert out["self_distill"]["mean"] == pytest.approx(np.mean([self_distillation_loss(a[i:i + 4], b[i:i + 4])
                                                                 for i in (0, 4, 8)]))
    assert set(out) == {"infonce", "self_distill", "cca"}
