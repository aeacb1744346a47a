"""augmentations.functional: the jitter with its op order as a tensor equals the sequential jitter; saturation
is upstream's HSV form unless torchvision's is asked for."""
import itertools

import pytest
import torch
import torchvision.transforms.functional as TF

from augmentations import functional as AF
from tests.augmentations.hsv_reference import hsv_saturation


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


# Greys, primaries, channel ties, a black and a white pixel, and random colours: every branch of the HSV
# conversion and, at f > 1, the clamp of S at 1.
EDGE_PIXELS = torch.tensor([[0, 0, 0], [1, 1, 1], [0.4, 0.4, 0.4], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0],
                            [0, 1, 1], [1, 0, 1], [0.5, 0.5, 0.2], [0.2, 0.5, 0.5], [0.3, 0.2, 0.3],
                            [0.9, 0.8, 0.85], [0.05, 0.02, 0.0]])


@pytest.mark.parametrize("factor", [0.0, 0.6, 1.0, 1.4, 3.0])
def test_saturation_is_upstream_s_hsv_form_pixel_by_pixel(factor):
    """The default saturation against kornia 0.4.1's definition, with colorsys per pixel (S clamped at 1)."""
    px = torch.cat([EDGE_PIXELS, torch.rand(50, 3, generator=torch.Generator().manual_seed(0))])
    img = px.t().reshape(3, 8, 8)
    out = AF.adjust_saturation(torch.stack([img, img]), torch.tensor([factor, 1.0]))
    torch.testing.assert_close(out[0], hsv_saturation(img, factor), atol=1e-6, rtol=0)
    torch.testing.assert_close(out[1], img, atol=1e-6, rtol=0)  # each image its own factor
    if factor == 3.0:  # the clamp is reached: the pixel's min channel goes to 0, its max stays
        sat = out[0].reshape(3, -1)[:, 3 + len(EDGE_PIXELS):]
        assert (sat.min(0).values < 1e-6).float().mean() > 0.5
        torch.testing.assert_close(sat.max(0).values, img.reshape(3, -1)[:, 3 + len(EDGE_PIXELS):].max(0).values)


def test_torchvision_saturation_stays_behind_its_flag():
    x, factors = _batch(4, 2)
    ops = AF.color_ops("torchvision")
    for i in range(4):
        ref = TF.adjust_saturation(x[i], float(factors[i, 2]))
        torch.testing.assert_close(ops[2](x, factors[:, 2])[i], ref, atol=2e-6, rtol=0)
    assert AF.color_ops("hsv")[2] is AF.adjust_saturation and AF.color_ops() == AF.COLOR_OPS
    assert not torch.allclose(AF.color_ops("hsv")[2](x, factors[:, 2]), ops[2](x, factors[:, 2]), atol=1e-3)
    with pytest.raises(ValueError, match="--saturation-impl must be one of"):
        AF.color_ops("kornia")


@pytest.mark.parametrize("impl", ["hsv", "torchvision"])
def test_ordered_jitter_uses_the_chosen_saturation(impl):
    x, factors = _batch(3, 4)
    ops = AF.color_ops(impl)
    rows = torch.tensor([2, 0, 1, 3]).repeat(3, 1)
    y = AF.jitter_in_order(x, factors, rows, ops)
    assert torch.equal(y, AF.color_jitter(x, factors, [2, 0, 1, 3], ops))
    ref = TF.adjust_hue(TF.adjust_contrast(TF.adjust_brightness(
        hsv_saturation(x[0], float(factors[0, 2])) if impl == "hsv" else TF.adjust_saturation(x[0], float(factors[0, 2])),
        float(factors[0, 0])), float(factors[0, 1])), float(factors[0, 3]))
    torch.testing.assert_close(y[0], ref, atol=2e-5, rtol=0)
