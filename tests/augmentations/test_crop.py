"""The crop sampler follows torchvision's RandomResizedCrop rule."""
import math

import torch

from augmentations import sample_box_pairs, sample_crop_boxes


def test_boxes_are_valid_and_cover_scale_and_ratio():
    g = torch.Generator().manual_seed(0)
    h = torch.full((4000,), 120.0)
    w = torch.full((4000,), 90.0)
    box = sample_crop_boxes(h, w, g)
    top, left, bh, bw = box.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + bh <= 120).all() and (left + bw <= 90).all()
    area = bh * bw / (120 * 90)
    assert area.min() >= 0.2 - 0.02 and area.max() <= 1.0
    ratio = bw / bh
    assert ratio.min() > 3 / 4 - 0.05 and ratio.max() < 4 / 3 + 0.05
    assert torch.equal(box, box.round())


def test_fallback_is_centre_crop_with_clamped_ratio():
    # A 10 x 1000 strip: no proposal fits, so the fallback clamps to ratio 4/3.
    box = sample_crop_boxes(torch.tensor([10.0]), torch.tensor([1000.0]), torch.Generator().manual_seed(0))
    assert box[0].tolist() == [0.0, float((1000 - round(10 * 4 / 3)) // 2), 10.0, float(round(10 * 4 / 3))]


def test_distribution_matches_torchvision_sampler():
    """Same rule as torchvision: compare mean crop area fraction over many draws."""
    from torchvision.transforms import RandomResizedCrop
    torch.manual_seed(0)
    img = torch.zeros(3, 64, 48)
    tv = [RandomResizedCrop.get_params(img, [0.2, 1.0], [3 / 4, 4 / 3]) for _ in range(3000)]
    tv_area = sum(h * w for _, _, h, w in tv) / (3000 * 64 * 48)
    ours = sample_crop_boxes(torch.full((3000,), 64.0), torch.full((3000,), 48.0), torch.Generator().manual_seed(1))
    our_area = float((ours[:, 2] * ours[:, 3]).mean() / (64 * 48))
    assert math.isclose(tv_area, our_area, abs_tol=0.02)


def test_box_pairs_are_two_draws_in_a_row_and_do_not_depend_on_the_batch():
    """A loader worker batches the box rule over its images; each image's pair must still be what
    its own generator gives alone (two draws in a row), whatever else is in the batch."""
    sizes = torch.randint(8, 900, (300, 2), generator=torch.Generator().manual_seed(0))
    pairs = sample_box_pairs(sizes, [torch.Generator().manual_seed(i) for i in range(300)])
    assert pairs.shape == (300, 2, 4)
    for i in range(300):
        g = torch.Generator().manual_seed(i)
        one = [sample_crop_boxes(sizes[i, :1], sizes[i, 1:], g)[0] for _ in range(2)]
        assert torch.equal(pairs[i], torch.stack(one)), i
    assert not torch.equal(pairs[:, 0], pairs[:, 1])
