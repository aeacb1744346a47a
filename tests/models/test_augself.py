"""AugSelf heads: each piece's loss against its closed form, the weighted total over the 2B rows of
both directions, and the checks on the pieces asked for."""
import math

import pytest
import torch

from models.augself import AUGSELF_OUT, AugSelfHeads


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_piece_losses_match_their_closed_forms():
    heads = AugSelfHeads(4, {"crop": 1.0})
    pred = torch.tensor([[0.3, -1.2], [2.0, 0.0]])
    target = torch.tensor([[0.1, -0.5], [0.9, 0.2]])
    mse = sum((math.tanh(p) - t) ** 2 for p, t in zip(pred.flatten().tolist(), target.flatten().tolist())) / 4
    assert heads.piece_loss("crop", pred, target).item() == pytest.approx(mse, rel=1e-6)

    logits, flips = torch.tensor([[1.5], [-0.4], [0.0]]), torch.tensor([[1.0], [0.0], [1.0]])
    bce = -sum(t * math.log(sigmoid(p)) + (1 - t) * math.log(1 - sigmoid(p))
               for p, t in zip(logits.flatten().tolist(), flips.flatten().tolist())) / 3
    assert heads.piece_loss("flip", logits, flips).item() == pytest.approx(bce, rel=1e-6)

    scores, quarter_turns = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 0.4]]), torch.tensor([0, 3])
    ce = -sum(math.log(math.exp(s[k]) / sum(math.exp(v) for v in s))
              for s, k in zip(scores.tolist(), quarter_turns.tolist())) / 2
    assert heads.piece_loss("rot", scores, quarter_turns).item() == pytest.approx(ce, rel=1e-6)


def test_piece_loss_is_fp32_for_half_precision_predictions():
    heads = AugSelfHeads(4, {"color": 1.0})
    torch.manual_seed(0)
    pred, target = torch.randn(6, 4).bfloat16(), torch.rand(6, 4)
    loss = heads.piece_loss("color", pred, target)
    assert loss.dtype == torch.float32
    expected = sum((math.tanh(p) - t) ** 2 for p, t in zip(pred.float().flatten().tolist(), target.flatten().tolist()))
    assert loss.item() == pytest.approx(expected / 24, rel=1e-6)  # not rounded to bf16's 3 significant digits


def _head_reference(head: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """Linear -> BN (batch statistics, biased variance) -> ReLU, twice, then Linear + bias."""
    lin1, bn1, _, lin2, bn2, _, lin3 = head

    def bn(h, m):
        return (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + m.eps) * m.weight + m.bias
    h = torch.relu(bn(x @ lin1.weight.t(), bn1))
    h = torch.relu(bn(h @ lin2.weight.t(), bn2))
    return h @ lin3.weight.t() + lin3.bias


def test_each_head_runs_once_on_the_2b_rows_of_both_directions_and_each_piece_is_reported():
    """Upstream (A trainers.py:29-42) feeds each head the 2B rows [y1|y2 ; y2|y1] in one call, so
    its BatchNorm normalises over both directions at once; the loss is the piece's mean over the 2B
    rows. Two calls on B rows each give other batch statistics, and another loss."""
    torch.manual_seed(0)
    feat, n = 6, 5
    heads = AugSelfHeads(feat, {"crop": 0.5, "flip": 0.25}).train()
    with torch.no_grad():  # BN affine parameters away from (1, 0)
        for m in heads.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
    y1, y2 = torch.randn(n, feat), torch.randn(n, feat)
    t12 = {"crop": torch.rand(n, 4) * 2 - 1, "flip": torch.randint(0, 2, (n, 1)).float()}
    t21 = {"crop": torch.rand(n, 4) * 2 - 1, "flip": torch.randint(0, 2, (n, 1)).float()}
    total, stats = heads(y1, y2, (t12, t21))

    with torch.no_grad():
        rows = torch.cat([torch.cat([y1, y2], 1), torch.cat([y2, y1], 1)], 0)
        crop_pred = torch.tanh(_head_reference(heads.heads["crop"], rows)).flatten().tolist()
        crop_t = torch.cat([t12["crop"], t21["crop"]]).flatten().tolist()
        crop = sum((p - t) ** 2 for p, t in zip(crop_pred, crop_t)) / len(crop_t)
        flip_logit = _head_reference(heads.heads["flip"], rows).flatten().tolist()
        flip_t = torch.cat([t12["flip"], t21["flip"]]).flatten().tolist()
        flip = -sum(t * math.log(sigmoid(p)) + (1 - t) * math.log(1 - sigmoid(p))
                    for p, t in zip(flip_logit, flip_t)) / len(flip_t)
    assert stats["augself_crop"].item() == pytest.approx(crop, rel=1e-5)
    assert stats["augself_flip"].item() == pytest.approx(flip, rel=1e-5)
    assert total.item() == pytest.approx(0.5 * crop + 0.25 * flip, rel=1e-5)
    swapped, _ = heads(y2, y1, (t21, t12))  # the views' roles exchanged, targets with them: the same loss
    assert swapped.item() == pytest.approx(total.item(), rel=1e-6)
    total.backward()
    assert all(p.grad is not None for p in heads.parameters())


def test_heads_have_the_recipe_shape_and_only_positive_weights_make_one():
    heads = AugSelfHeads(10, {"crop": 0.5, "color": 0.0, "rot": -1.0, "sol": 0.1})
    assert heads.keys == ["crop", "sol"] and set(heads.heads) == {"crop", "sol"}
    linears = [m for m in heads.heads["crop"] if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(20, 512), (512, 512), (512, AUGSELF_OUT["crop"])]
    assert heads.heads["sol"][-1].out_features == AUGSELF_OUT["sol"] == 1


def test_an_unknown_piece_is_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown AugSelf piece\(s\) \['hue'\]"):
        AugSelfHeads(8, {"crop": 1.0, "hue": 1.0})


def test_every_augself_piece_has_its_flag_its_target_and_a_head_that_trains_on_it():
    """augmentations.descriptor.AUGSELF_PIECES is the one list: each piece gets a --ss-<key> flag, a
    target from augself_targets and a head whose loss takes that target."""
    import pretrain_cond
    from augmentations import (
        AUGSELF_PIECES,
        ViewParams,
        augself_targets,
        config_for_dataset,
    )

    flags = {s for a in pretrain_cond.build_parser()._actions for s in a.option_strings}
    assert {f"--ss-{k}" for k in AUGSELF_PIECES} <= flags
    boxes = torch.tensor([[0.0, 0.0, 20.0, 30.0], [5.0, 2.0, 10.0, 10.0]])
    src = torch.full((2, 2), 40.0)
    p1, p2 = ViewParams.identity(boxes, src), ViewParams.identity(boxes.flip(0), src)
    p1.rot_k[:] = torch.tensor([1, 2])
    ranges = config_for_dataset("stl10").jitter_ranges
    keys = list(AUGSELF_PIECES)
    targets = (augself_targets(p1, p2, keys, ranges), augself_targets(p2, p1, keys, ranges))
    heads = AugSelfHeads(3, dict.fromkeys(keys, 1.0))
    assert heads.keys == keys
    loss, stats = heads(torch.randn(2, 3), torch.randn(2, 3), targets)
    assert torch.isfinite(loss) and set(stats) == {f"augself_{k}" for k in keys}
