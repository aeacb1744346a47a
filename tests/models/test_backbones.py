"""Backbones: output widths, torchvision key compatibility, ViT specifics."""
import math

import pytest
import torch
from torchvision import models as tvm

from models.backbones import build_backbone, sincos_pos_embed


@pytest.mark.parametrize("name,tv,dim", [("resnet18", tvm.resnet18, 512), ("resnet50", tvm.resnet50, 2048),
                                         ("cifar_resnet18", None, 512)])
def test_resnet_state_dict_loads_into_torchvision_with_only_fc_missing(name, tv, dim):
    net, f = build_backbone(name)
    assert f == dim
    x = torch.randn(2, 3, 32, 32)
    assert net.eval()(x).shape == (2, dim)
    if tv is not None:
        res = tv(weights=None).load_state_dict(net.state_dict(), strict=False)
        assert set(res.missing_keys) == {"fc.weight", "fc.bias"} and res.unexpected_keys == []


def test_cifar_stem_keeps_resolution():
    net, _ = build_backbone("cifar_resnet18")
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, torch.nn.Identity)


def test_upstream_conv_reinit_is_default_and_switchable():
    torch.manual_seed(0)
    ours, _ = build_backbone("resnet18")
    torch.manual_seed(0)
    tvi, _ = build_backbone("resnet18", torchvision_init=True)
    # kaiming-uniform(a=sqrt(5)) bound = 1/sqrt(fan_in); torchvision's kaiming-normal(fan_out) is wider.
    fan_in = 3 * 7 * 7
    assert ours.conv1.weight.abs().max() <= 1 / fan_in ** 0.5 + 1e-6
    assert tvi.conv1.weight.abs().max() > 1 / fan_in ** 0.5
    assert (ours.layer1[0].bn2.weight == 0).all()  # zero_init_residual kept


@pytest.fixture(scope="module")
def vit_small():
    torch.manual_seed(0)
    return build_backbone("vit_small", image_size=32)


def test_vit_small_shapes_fixed_pos_embed_frozen_patch(vit_small):
    net, f = vit_small
    assert f == 384 and len(net.encoder.layers) == 12
    assert not net.encoder.pos_embedding.requires_grad and not net.conv_proj.weight.requires_grad
    torch.testing.assert_close(net.encoder.pos_embedding.data, sincos_pos_embed(2, 384))
    assert net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 384)
    assert build_backbone("vit_base", image_size=32)[1] == 768


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="--model must be one of"):
        build_backbone("resnet999")


def test_sincos_embedding_encodes_the_row_in_its_first_half_as_mocov3():
    """MoCo v3's vits.py: tokens numbered row by row; channels [sin(r w), cos(r w), sin(c w), cos(c w)]
    with w_i = 1 / 10000^(i / (D/4)), r the patch's row, c its column; a zero row for CLS."""
    grid, dim = 3, 8
    emb = sincos_pos_embed(grid, dim)[0]
    assert emb.shape == (1 + grid * grid, dim) and not emb[0].any()
    for k in range(grid * grid):
        r, c = k // grid, k % grid
        expected = []
        for pos in (r, r, c, c):
            expected.append([pos / 10000 ** (i / 2) for i in range(2)])
        want = [math.sin(a) for a in expected[0]] + [math.cos(a) for a in expected[1]] + \
            [math.sin(a) for a in expected[2]] + [math.cos(a) for a in expected[3]]
        assert emb[1 + k].tolist() == pytest.approx(want, abs=1e-6), k


def test_vit_initialisation_is_mocov3s(vit_small):
    """MoCo v3's vits.py:31-47: Q, K, V each Xavier-uniform over its own D x D block (bound sqrt(6 / 2D)),
    other linear layers Xavier-uniform, linear biases zero, CLS token N(0, 1e-6), patch projection
    uniform over sqrt(6 / (3 p^2 + D)) with a zero bias."""
    net, d = vit_small

    def spans(w, bound):  # uniform on [-bound, bound]: the extremes come within 2 % of the bound
        return w.abs().max().item() <= bound and w.abs().max().item() > 0.98 * bound
    for layer in net.encoder.layers:
        attn, mlp = layer.self_attention, layer.mlp
        for block in attn.in_proj_weight.detach().chunk(3):
            assert spans(block, math.sqrt(6 / (d + d)))
        assert not attn.in_proj_bias.any() and not attn.out_proj.bias.any()
        assert spans(attn.out_proj.weight, math.sqrt(6 / (d + d)))
        assert spans(mlp[0].weight, math.sqrt(6 / (d + 4 * d))) and spans(mlp[3].weight, math.sqrt(6 / (4 * d + d)))
        assert not mlp[0].bias.any() and not mlp[3].bias.any()
    assert 0.8e-6 < net.class_token.std().item() < 1.2e-6
    assert spans(net.conv_proj.weight, math.sqrt(6 / (3 * 16 * 16 + d))) and not net.conv_proj.bias.any()
