"""Losses against closed forms and against naive reference implementations written here."""
import math

import pytest
import torch
import torch.nn.functional as F

from models import losses as L


def ref_nt_xent(z1, z2, t):
    """Loop over anchors: -log(exp(pos/t) / sum_{j != i} exp(s_ij/t))."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n2 = z.shape[0]
    total = 0.0
    for i in range(n2):
        j = (i + n2 // 2) % n2
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n2) if k != i)
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / den)
    return total / n2


def test_info_nce_closed_form_aligned_and_orthogonal():
    q = torch.eye(4)[:2]           # two unit queries
    k = q.clone()                  # aligned keys: pos = 1
    queue = torch.eye(4)[2:]       # orthogonal negatives: neg = 0
    t = 0.2
    expected = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 2))
    assert L.info_nce(q, k, queue, t).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_matches_reference_and_is_symmetric():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    assert L.nt_xent(z1, z2, 0.2).item() == pytest.approx(ref_nt_xent(z1, z2, 0.2), rel=1e-5)
    assert L.nt_xent(z1, z2, 0.2).item() == pytest.approx(L.nt_xent(z2, z1, 0.2).item(), rel=1e-6)


def test_nt_xent_with_gathered_keys_equals_local_on_one_rank():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    assert L.nt_xent(z1, z2, 0.5, z1, z2, 0).item() == pytest.approx(L.nt_xent(z1, z2, 0.5).item(), rel=1e-6)


def test_nt_xent_with_global_negatives_averaged_over_ranks_is_the_whole_batch_loss():
    """--simclr-global-negatives: each rank's queries against the gathered keys, its rows at its offset;
    the ranks' mean (what DDP's averaged gradients descend) is the loss of the global batch on one GPU."""
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(12, 8, generator=g), torch.randn(12, 8, generator=g)
    world, n = 3, 4
    per_rank = [L.nt_xent(z1[r * n:(r + 1) * n], z2[r * n:(r + 1) * n], 0.2, z1, z2, offset=r * n)
                for r in range(world)]
    assert sum(x.item() for x in per_rank) / world == pytest.approx(ref_nt_xent(z1, z2, 0.2), rel=1e-5)
    local = sum(L.nt_xent(z1[r * n:(r + 1) * n], z2[r * n:(r + 1) * n], 0.2).item() for r in range(world)) / world
    assert local != pytest.approx(ref_nt_xent(z1, z2, 0.2), rel=1e-3)  # upstream's local negatives differ


def test_negative_cosine_and_byol_closed_form():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    z = torch.tensor([[3.0, 0.0], [2.0, 0.0]])  # cos = 1 and 0
    assert L.negative_cosine(p, z).item() == pytest.approx(-0.5)
    assert L.byol_loss(p, z).item() == pytest.approx((0.0 + 2.0) / 2)


def test_negative_cosine_stops_gradient_to_target():
    p, z = torch.randn(3, 4, requires_grad=True), torch.randn(3, 4, requires_grad=True)
    L.negative_cosine(p, z).backward()
    assert p.grad is not None and z.grad is None


def test_barlow_twins_identity_correlation_is_zero_and_known_value():
    assert L.barlow_twins_loss(torch.eye(5), 0.0051).item() == 0.0
    c = torch.tensor([[0.5, 0.2], [0.1, 1.0]])
    assert L.barlow_twins_loss(c, 0.5).item() == pytest.approx(0.25 + 0.5 * (0.04 + 0.01))


def test_mocov3_matches_reference_and_scaling():
    g = torch.Generator().manual_seed(2)
    q, k = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g)
    t = 0.2
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)
    ref = sum(-torch.log_softmax(qn[i] @ kn.t() / t, 0)[i] for i in range(4)) / 4 * 2 * t
    assert L.mocov3_contrastive(q, k, t, 0).item() == pytest.approx(ref.item(), rel=1e-5)


def test_sinkhorn_marginals():
    g = torch.Generator().manual_seed(3)
    # SwAV scores are cosines between unit embeddings and unit prototypes.
    z = F.normalize(torch.randn(64, 16, generator=g) + 2 * torch.randn(1, 16, generator=g), dim=1)
    scores = z @ F.normalize(torch.randn(10, 16, generator=g), dim=1).t()
    q = L.sinkhorn(scores, 0.05, 3)
    torch.testing.assert_close(q.sum(1), torch.ones(64), atol=1e-5, rtol=0)  # each sample a distribution
    # Balancing spreads the samples over prototypes far more evenly than a plain softmax does.
    plain = torch.softmax(scores / 0.05, dim=1).sum(0)
    assert (q.sum(0) - 6.4).abs().max() < 0.25 * (plain - 6.4).abs().max()
    q50 = L.sinkhorn(scores, 0.05, 50)
    torch.testing.assert_close(q50.sum(0), torch.full((10,), 6.4), atol=1e-3, rtol=0)


def test_swav_loss_closed_form():
    s = torch.zeros(2, 3)
    q = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    assert L.swav_loss(s, s, q, q, 0.1).item() == pytest.approx(2 * math.log(3))  # log 3 per direction


def test_swav_loss_sums_the_two_directions():
    """Upstream (A trainers.py:371-373): loss = l1 + l2, l1 = -mean_i sum_k q1[i,k] log softmax(s2[i]/T)[k]
    and l2 the same with the views exchanged."""
    s1 = [[0.2, -0.5, 0.9], [0.0, 0.4, -0.3]]
    s2 = [[-0.1, 0.7, 0.3], [0.6, -0.2, 0.1]]
    q1 = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]
    q2 = [[0.3, 0.3, 0.4], [0.5, 0.25, 0.25]]
    t = 0.1

    def direction(q, s):  # cross-entropy of codes q against softmax(s / t), averaged over samples
        total = 0.0
        for qi, si in zip(q, s):
            norm = math.log(sum(math.exp(v / t) for v in si))
            total -= sum(qk * (sk / t - norm) for qk, sk in zip(qi, si))
        return total / len(q)
    expected = direction(q1, s2) + direction(q2, s1)
    got = L.swav_loss(*(torch.tensor(v) for v in (s1, s2, q1, q2)), t).item()
    assert got == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", ["info_nce", "nt_xent", "byol", "barlow"])
def test_loss_falls_under_optimisation(name):
    g = torch.Generator().manual_seed(4)
    z1 = torch.randn(16, 8, generator=g, requires_grad=True)
    z2 = torch.randn(16, 8, generator=g, requires_grad=True)
    queue = F.normalize(torch.randn(32, 8, generator=g), dim=1)
    fns = {
        "info_nce": lambda: L.info_nce(F.normalize(z1, dim=1), F.normalize(z2, dim=1), queue, 0.2),
        "nt_xent": lambda: L.nt_xent(z1, z2, 0.2),
        "byol": lambda: L.byol_loss(z1, z2),
        "barlow": lambda: L.barlow_twins_loss(
            (z1 - z1.mean(0)) .t() @ (z2 - z2.mean(0)) / (16 * z1.std(0)[:, None] * z2.std(0)[None]), 0.0051),
    }
    opt = torch.optim.SGD([z1, z2], lr=0.1)
    first = fns[name]().item()
    for _ in range(30):
        opt.zero_grad()
        fns[name]().backward()
        opt.step()
    assert fns[name]().item() < first
