"""Backbones: output widths, torchvision key compatibility, ViT specifics."""
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


def test_vit_small_shapes_fixed_pos_embed_frozen_patch():
    net, f = build_backbone("vit_small", image_size=32)
    assert f == 384 and len(net.encoder.layers) == 12
    assert not net.encoder.pos_embedding.requires_grad and not net.conv_proj.weight.requires_grad
    torch.testing.assert_close(net.encoder.pos_embedding.data, sincos_pos_embed(2, 384))
    assert net.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 384)
    assert build_backbone("vit_base", image_size=32)[1] == 768


def test_unknown_model_is_refused():
    with pytest.raises(ValueError, match="--model must be one of"):
        build_backbone("resnet999")
