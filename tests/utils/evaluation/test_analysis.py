"""Known answers for the analysis numerics."""
import pytest
import torch

from models import build_backbone
from utils.evaluation.analysis import mean_cosine, nearest_neighbours, power_law, ridge_r2, stage_features


def test_ridge_r2_near_one_when_features_contain_target_and_near_zero_for_noise():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(600, 4, generator=g)
    noise = torch.randn(600, 20, generator=g)
    assert ridge_r2(torch.cat([noise, target @ torch.randn(4, 4, generator=g)], 1), target)["r2"] > 0.99
    assert abs(ridge_r2(noise, target)["r2"]) < 0.1


def test_power_law_recovers_exponent():
    g = torch.Generator().manual_seed(1)
    alpha = 1.5
    scales = torch.arange(1, 65, dtype=torch.float64).pow(-alpha / 2)
    q, _ = torch.linalg.qr(torch.randn(64, 64, generator=g, dtype=torch.float64))
    z = torch.randn(20000, 64, generator=g, dtype=torch.float64) * scales
    res = power_law(z @ q)
    assert res["alpha"] == pytest.approx(alpha, abs=0.08)
    assert res["explained"][-1] == pytest.approx(1.0)


def test_stage_features_and_cosine():
    net, _ = build_backbone("mini_resnet")
    x = torch.randn(3, 3, 32, 32)
    feats = stage_features(net.eval(), x)
    assert list(feats) == ["layer1", "layer2", "layer3", "layer4", "pool"]
    assert feats["layer2"].shape == (3, 32) and feats["pool"].shape == (3, 128)
    assert mean_cosine(feats["pool"], feats["pool"]) == pytest.approx(1.0)


def test_nearest_neighbours_exclude_self():
    f = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert nearest_neighbours(f, [0, 2], 1) == [[1], [3]]
