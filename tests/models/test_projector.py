"""The conditioned projector: what the descriptor changes, and where gradients go."""
import pytest
import torch

from models.mlp import mlp_block
from models.projector import ConditionedProjector, ConditionSpec, ProjectorSpec

SPEC = ProjectorSpec(hidden=16, out=8, depth=2)
F_DIM, D_DIM = 12, 5


def _make(treatment, injection, desc=D_DIM, feat=F_DIM):
    torch.manual_seed(0)
    return ConditionedProjector(feat, SPEC, ConditionSpec(desc, treatment, injection, width=6, depth=2))


def test_proj_none_ignores_descriptor():
    p = _make("raw", "proj-none", desc=0).eval()
    x = torch.randn(4, F_DIM)
    torch.testing.assert_close(p(x, torch.randn(4, 3)), p(x, torch.randn(4, 3)))
    assert sum(1 for _ in p.parameters()) == len(list(mlp_block(F_DIM, 16, 8, 2).parameters()))


@pytest.mark.parametrize("treatment,injection", [
    ("raw", "proj-cat"), ("mlp", "proj-cat"), ("mlp", "proj-add"), ("mlp", "proj-mul"),
    ("raw", "proj-add"), ("raw", "proj-mul"), ("hn", "proj-cat")])
def test_output_changes_with_descriptor_and_embedding_gets_gradients(treatment, injection):
    desc = F_DIM if treatment == "raw" and injection != "proj-cat" else D_DIM
    p = _make(treatment, injection, desc=desc)
    x = torch.randn(6, F_DIM)
    d1, d2 = torch.randn(6, desc), torch.randn(6, desc)
    p.train()
    out1, out2 = p(x, d1), p(x, d2)
    assert not torch.allclose(out1, out2)
    out1.square().sum().backward()
    emb = p.embed if p.embed is not None else p.net.hypernet
    grads = [q.grad for q in emb.parameters()]
    if treatment == "raw":
        assert grads == []  # raw has no parameters of its own
    else:
        assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_paper_setting_projector_input_is_2112():
    cond = ConditionSpec(13, "mlp", "proj-cat", width=64, depth=6)
    p = ConditionedProjector(2048, ProjectorSpec(2048, 128, 2), cond)
    assert p.in_dim == 2112
    assert p.net[0].in_features == 2112
    linears = [m for m in p.embed if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 6 and linears[0].in_features == 13 and linears[-1].out_features == 64


def test_raw_add_with_wrong_size_is_refused():
    with pytest.raises(ValueError, match="proj-add.*raw.*2048, got 13"):
        ConditionedProjector(2048, SPEC, ConditionSpec(13, "raw", "proj-add"))


def test_conditioned_without_descriptor_is_refused():
    with pytest.raises(ValueError, match="--aug-cond"):
        ConditionSpec(0, "mlp", "proj-cat")
    with pytest.raises(ValueError, match="--aug-treatment"):
        ConditionSpec(3, "linear", "proj-cat")


def _bn(x, weight=None, bias=None, eps=1e-5):
    """Training-mode BatchNorm1d: batch mean and biased variance."""
    x = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + eps)
    return x if weight is None else x * weight + bias


def test_hypernetwork_ends_with_bn_over_the_generated_parameters_and_its_projector_has_none():
    """Upstream: the hypernetwork is load_mlp(..., last_bn=True), so a BatchNorm over the generated
    parameters ends it, and the generated projector has no final BN even where the framework's
    projector has one (last_bn=True below, as SimSiam's). Reference: per sample, written out here."""
    torch.manual_seed(0)
    spec = ProjectorSpec(hidden=16, out=8, depth=2, last_bn=True)
    p = ConditionedProjector(F_DIM, spec, ConditionSpec(D_DIM, "hn", "proj-cat", width=6, depth=2)).train()
    hn = p.net.hypernet
    n_params = F_DIM * F_DIM + F_DIM + F_DIM * 8 + 8
    assert [type(m).__name__ for m in hn] == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert hn[3].bias is None and hn[4].num_features == n_params and hn[4].affine
    with torch.no_grad():  # affine parameters away from their (1, 0) initialisation
        for bn in (hn[1], hn[4]):
            bn.weight.normal_(1.0, 0.3)
            bn.bias.normal_(0.0, 0.3)
    x, d = torch.randn(5, F_DIM), torch.randn(5, D_DIM)
    out = p(x, d)
    with torch.no_grad():
        h = torch.relu(_bn(d @ hn[0].weight.t(), hn[1].weight, hn[1].bias))
        theta = _bn(h @ hn[3].weight.t(), hn[4].weight, hn[4].bias)
        for i in range(5):
            w1 = theta[i, :F_DIM * F_DIM].reshape(F_DIM, F_DIM)
            b1 = theta[i, F_DIM * F_DIM:F_DIM * F_DIM + F_DIM]
            rest = theta[i, F_DIM * F_DIM + F_DIM:]
            w2, b2 = rest[:F_DIM * 8].reshape(F_DIM, 8), rest[F_DIM * 8:]
            expected = torch.relu(x[i] @ w1 + b1) @ w2 + b2  # no BN after the last layer
            torch.testing.assert_close(out[i], expected, atol=1e-5, rtol=1e-5)


def test_hypernetwork_mlp_bn_normalises_each_hidden_layer_over_the_batch():
    torch.manual_seed(0)
    p = ConditionedProjector(F_DIM, SPEC, ConditionSpec(D_DIM, "hn", "proj-cat", width=6, depth=2,
                                                        hn_type="mlp-bn")).train()
    x, d = torch.randn(5, F_DIM), torch.randn(5, D_DIM)
    out = p(x, d)
    with torch.no_grad():
        theta = p.net.hypernet(d)
        w1 = theta[:, :F_DIM * F_DIM].reshape(5, F_DIM, F_DIM)
        b1 = theta[:, F_DIM * F_DIM:F_DIM * F_DIM + F_DIM]
        h = torch.relu(_bn(torch.einsum("bi,bio->bo", x, w1) + b1))
        rest = theta[:, F_DIM * F_DIM + F_DIM:]
        w2, b2 = rest[:, :F_DIM * 8].reshape(5, F_DIM, 8), rest[:, F_DIM * 8:]
        torch.testing.assert_close(out, torch.einsum("bi,bio->bo", h, w2) + b2, atol=1e-5, rtol=1e-5)


def test_mlp_block_depth_one_and_bias_rules():
    one = mlp_block(4, 9, 3, 1)
    assert len(one) == 1 and one[0].bias is not None
    last = mlp_block(4, 9, 3, 2, last_bn=True, last_bn_affine=False)
    assert last[-2].bias is None and last[-1].weight is None
    assert [type(m).__name__ for m in mlp_block(4, 9, 3, 3)] == [
        "Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d", "ReLU", "Linear"]


def test_mlp_linear_layers_start_uniform_within_one_over_root_fan_in():
    """Upstream's load_mlp re-initialises every Linear uniform on +-1/sqrt(fan_in), weight and bias
    (C models.py:14-24, 67); PyTorch's own Linear init draws the same."""
    torch.manual_seed(0)
    net = mlp_block(64, 128, 32, 2)
    for lin in (net[0], net[3]):
        bound = 1 / lin.in_features ** 0.5
        assert bound * 0.97 < lin.weight.abs().max().item() <= bound
    assert net[3].bias.abs().max().item() <= 1 / 128 ** 0.5 and net[3].bias.abs().max().item() > 0.8 / 128 ** 0.5


def test_hypernetwork_ignores_the_injection_type():
    """Upstream's hn branch never reads --aug-inj-type (C cond_utils.py:94-147, 194-223): proj-cat,
    proj-add and proj-mul build the same hypernetwork and give the same embedding."""
    x, d = torch.randn(4, F_DIM), torch.randn(4, D_DIM)
    outs = []
    for injection in ("proj-cat", "proj-add", "proj-mul"):
        p = _make("hn", injection).train()
        outs.append(p(x, d))
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[0], outs[2])
