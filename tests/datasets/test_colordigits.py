"""colordigits: deterministic, its labels true to the pixels, each label readable from raw pixels."""
import colorsys
import itertools

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

from datasets.catalog import NUM_CLASSES
from datasets.colordigits import HUE_RANGE, LABELS, LEVEL_RANGE, make_colordigits


@pytest.fixture(scope="module")
def data():
    return make_colordigits("train"), make_colordigits("test")


def test_deterministic_split_and_label_ranges(data):
    (tr, ytr), (te, yte) = data
    again = make_colordigits("test")
    assert torch.equal(again[0], te) and all(torch.equal(again[1][k], yte[k]) for k in LABELS)
    assert tr.shape == (1438, 3, 32, 32) and te.shape == (359, 3, 32, 32) and tr.dtype == torch.uint8
    for k in LABELS:  # every class present in both splits
        assert set(ytr[k].tolist()) == set(yte[k].tolist()) == set(range(NUM_CLASSES[f"colordigits-{k}"]))
    with pytest.raises(ValueError, match="'train' or 'test'"):
        make_colordigits("val")


def test_colour_labels_match_the_ink(data):
    """Hue, saturation and value of each image's brightest pixel (colorsys) fall in the labelled bins."""
    (images, labels), _ = data
    x = images[:300].float() / 255
    flat = x.flatten(2)  # [N, 3, HW]
    ink = flat.gather(2, flat.max(1).values.argmax(1)[:, None, None].expand(-1, 3, 1))[..., 0]
    hsv = np.array([colorsys.rgb_to_hsv(*map(float, px)) for px in ink])
    def level(v, lo, hi, n):
        return np.clip(((v - lo) / (hi - lo) * n).astype(int), 0, n - 1)
    expect = {"hue": level(hsv[:, 0], *HUE_RANGE, NUM_CLASSES["colordigits-hue"]),
              "saturation": level(hsv[:, 1], *LEVEL_RANGE, NUM_CLASSES["colordigits-saturation"]),
              "brightness": level(hsv[:, 2], *LEVEL_RANGE, NUM_CLASSES["colordigits-brightness"])}
    for k, e in expect.items():  # uint8 rounding and the grey background can move an edge value one bin
        assert (e == labels[k][:300].numpy()).mean() > 0.9, k
        assert np.abs(e - labels[k][:300].numpy()).max() <= 1, k


def test_hue_bins_are_narrower_than_the_hue_jitter():
    from augmentations import config_for_dataset
    cfg = config_for_dataset("colordigits")
    width = (HUE_RANGE[1] - HUE_RANGE[0]) / NUM_CLASSES["colordigits-hue"]
    assert width < cfg.hue and HUE_RANGE[1] - HUE_RANGE[0] <= 2 * cfg.hue + 1e-9
    lo, hi = cfg.jitter_ranges[1]  # saturation and brightness levels: neighbours within one jitter factor
    centres = [LEVEL_RANGE[0] + (i + 0.5) * (LEVEL_RANGE[1] - LEVEL_RANGE[0]) / 3 for i in range(3)]
    assert all(lo <= a / b and b / a <= hi + 1e-9 for a, b in itertools.pairwise(centres))


def test_every_label_is_readable_from_raw_pixels(data):
    """A linear probe on 8x8 average-pooled pixels reads the content and each sensitivity label far above
    chance: the information is in the images, so a backbone that loses it has discarded it."""
    (tr, ytr), (te, yte) = data
    pool = lambda x: torch.nn.functional.avg_pool2d(x.float() / 255, 4).flatten(1).numpy()  # noqa: E731
    xtr, xte = pool(tr), pool(te)
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    for k in LABELS:
        clf = LogisticRegression(max_iter=300).fit((xtr - mu) / sd, ytr[k].numpy())
        acc = clf.score((xte - mu) / sd, yte[k].numpy())
        chance = yte[k].bincount().max().item() / len(te)
        assert acc > chance + 0.25, (k, acc, chance)
