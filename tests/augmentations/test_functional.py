"""augmentations.functional: the jitter with its op order as a tensor equals the sequential jitter."""
import itertools

import torch

from augmentations import functional as AF


def _batch(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=g), size=(12, 12), mode="bilinear")
    factors = torch.stack([0.6 + 0.8 * torch.rand(n, generator=g) for _ in range(3)]
                          + [0.2 * torch.rand(n, generator=g) - 0.1], dim=1)
    return x, factors


def test_jitter_in_order_gives_the_sequential_pixels_for_every_order():
    x, factors = _batch(5, 0)
    outs = set()
    for order in itertools.permutations(range(4)):
        rows = torch.tensor(order).repeat(5, 1)
        y = AF.jitter_in_order(x, factors, rows)
        assert torch.equal(y, AF.color_jitter(x, factors, list(order))), order
        outs.add(y.sum().item())
    assert len(outs) > 12  # the order matters, so the test could tell orders apart


def test_jitter_in_order_follows_each_sample_s_own_row():
    x, factors = _batch(3, 1)
    orders = torch.tensor([[3, 2, 1, 0], [0, 1, 2, 3], [2, 0, 3, 1]])
    y = AF.jitter_in_order(x, factors, orders)
    for i in range(3):
        one = AF.color_jitter(x[i:i + 1], factors[i:i + 1], orders[i].tolist())
        assert torch.equal(y[i:i + 1], one)
