"""Descriptor pieces and AugSelf targets against hand-computed values."""
import pytest
import torch

from augmentations import (ViewParams, augself_targets, build_descriptor, config_for_dataset, descriptor_dim,
                           descriptor_layout)

RANGES = config_for_dataset("cifar10").jitter_ranges
PAPER = ["crop", "color", "color_diff", "blur", "grayscale"]


def _record(box, flip=False, src=(100.0, 200.0)):
    p = ViewParams.identity(torch.tensor([box], dtype=torch.float32), torch.tensor([src]))
    p.flip[:] = flip
    return p


def test_identity_augmentation_gives_neutral_descriptor():
    p = _record([0, 0, 100, 200])
    d = build_descriptor(p, PAPER + ["flip"], RANGES)
    lay = descriptor_layout(PAPER + ["flip"])
    assert d[0, lay["crop"]].tolist() == [0.5, 0.5, 1.0, 1.0]
    for k in ("blur", "color", "color_diff", "flip", "grayscale"):
        assert (d[0, lay[k]] == 0).all(), k


def test_crop_piece_and_flip_mirror_cx():
    p = _record([10, 20, 50, 40])
    lay = descriptor_layout(["crop"])
    assert build_descriptor(p, ["crop"], RANGES)[0, lay["crop"]].tolist() == pytest.approx([0.35, 0.2, 0.5, 0.2])
    p.flip[:] = True
    assert build_descriptor(p, ["crop"], RANGES)[0].tolist() == pytest.approx([0.35, 0.8, 0.5, 0.2])


def test_known_jitter_gives_known_colour_row():
    p = _record([0, 0, 100, 200])
    p.jitter[:] = True
    p.jitter_factors[:] = torch.tensor([1.4, 0.6, 1.2, -0.05])
    assert build_descriptor(p, ["color"], RANGES)[0].tolist() == pytest.approx([0.5, -0.5, 0.25, -0.25])
    p.jitter[:] = False
    assert build_descriptor(p, ["color"], RANGES)[0].tolist() == [0, 0, 0, 0]


def test_blur_gray_flip_pieces():
    p = _record([0, 0, 100, 200], flip=True)
    p.blur_sigma[:] = 1.5
    p.gray[:] = True
    assert build_descriptor(p, ["grayscale", "flip", "blur"], RANGES)[0].tolist() == [1.5, 1.0, 1.0]


@pytest.mark.parametrize("keys,dim", [(PAPER, 13), (PAPER + ["flip"], 14), (["crop"], 4), (["color_diff"], 3),
                                      (["flip", "blur"], 2), ([], 0)])
def test_dimension_for_each_combination(keys, dim):
    assert descriptor_dim(keys) == dim
    assert build_descriptor(_record([0, 0, 10, 10]), keys, RANGES).shape == (1, dim)


def test_pieces_are_concatenated_in_alphabetical_order():
    lay = descriptor_layout(["grayscale", "crop", "blur", "color_diff", "color", "flip"])
    assert list(lay) == ["blur", "color", "color_diff", "crop", "flip", "grayscale"]
    assert lay["crop"] == slice(8, 12) and lay["grayscale"] == slice(13, 14)


def test_unknown_key_is_refused():
    with pytest.raises(ValueError, match="--aug-cond.*'colour'"):
        descriptor_dim(["colour"])


def test_augself_targets_both_directions():
    p1, p2 = _record([10, 20, 50, 40], flip=True), _record([0, 0, 100, 100], flip=False)
    p1.blur_sigma[:], p2.blur_sigma[:] = 1.0, 0.25
    p1.rot_k[:], p2.rot_k[:] = 1, 3
    keys = ["crop", "flip", "blur", "rot", "color", "sol"]
    t12 = augself_targets(p1, p2, keys, RANGES, upstream_flip_quirk=False)
    t21 = augself_targets(p2, p1, keys, RANGES, upstream_flip_quirk=False)
    # own flags: cx1 = 1 - 0.2 = 0.8, cx2 = 0.25
    assert t12["crop"][0].tolist() == pytest.approx([0.35 - 0.5, 0.8 - 0.25, 0.5 - 1.0, 0.2 - 0.5])
    torch.testing.assert_close(t21["crop"], -t12["crop"])
    assert t12["flip"].item() == 0.0 and t21["flip"].item() == 0.0
    assert t12["blur"].item() == pytest.approx(0.75) and t21["blur"].item() == pytest.approx(-0.75)
    assert t12["rot"].item() == 2 and t21["rot"].item() == 2
    assert t12["color"].abs().sum() == 0 and t12["sol"].abs().sum() == 0


def test_augself_upstream_flip_quirk_mirrors_both_with_view1_flag():
    p1, p2 = _record([10, 20, 50, 40], flip=True), _record([0, 0, 100, 100], flip=False)
    p2.box[:] = torch.tensor([0.0, 0.0, 100.0, 60.0])  # cx2 = 0.15, mirrored by view 1's flag -> 0.85
    quirk = augself_targets(p1, p2, ["crop"], RANGES, upstream_flip_quirk=True)["crop"][0]
    fixed = augself_targets(p1, p2, ["crop"], RANGES, upstream_flip_quirk=False)["crop"][0]
    assert quirk[1].item() == pytest.approx(0.8 - 0.85)
    assert fixed[1].item() == pytest.approx(0.8 - 0.15)
    # Other coordinates do not depend on the switch.
    assert quirk[[0, 2, 3]].tolist() == pytest.approx(fixed[[0, 2, 3]].tolist())
