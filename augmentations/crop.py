"""RandomResizedCrop with torchvision's sampling rule, batched on any device, and its replay.

The box sampler is shared by both crop paths: the GPU path (images held in memory, cropped in a
batch with ``resized_crop_batch``) and the loader-worker path (variable-size decoded JPEGs cropped
one at a time with ``crop_pil_box``). Both therefore give the same record for the same draw.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor

from .functional import constant


CROP_TRIES = 10  # torchvision's number of (area, ratio) proposals per image


def crop_uniforms(b: int, generator: torch.Generator, tries: int = CROP_TRIES) -> Tensor:
    """The random draw behind ``b`` crop boxes: [4, b, tries] float64 uniforms on the generator's
    device (area, log-ratio, top and left fractions of each proposal)."""
    return torch.rand(4, b, tries, generator=generator, device=generator.device, dtype=torch.float64)


def boxes_from_uniforms(
    heights: Tensor,
    widths: Tensor,
    u: Tensor,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Tensor:
    """``torchvision.transforms.RandomResizedCrop``'s rule, batched, as a pure function of ``u``.

    Per image, the first of the proposals that fits is placed uniformly; if none fits,
    torchvision's centre-crop fallback with the aspect ratio clamped into ``ratio``.

    Args:
        heights, widths: [B] source sizes (any numeric dtype).
        u: [4, B, tries] uniforms from ``crop_uniforms``.
    Returns:
        [B, 4] float tensor (top, left, height, width), integer-valued.
    """
    h_src = heights.to(u.device, torch.float64)[:, None]
    w_src = widths.to(u.device, torch.float64)[:, None]
    area = (h_src * w_src) * (scale[0] + (scale[1] - scale[0]) * u[0])
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1])
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    ok = (w > 0) & (h > 0) & (w <= w_src) & (h <= h_src)
    top = torch.floor(u[2] * (h_src - h + 1))
    left = torch.floor(u[3] * (w_src - w + 1))
    first = torch.argmax(ok.to(torch.int8), dim=1, keepdim=True)  # [B, 1]
    proposals = torch.stack([top, left, h, w], dim=2)  # [B, tries, 4]
    box = proposals.gather(1, first[:, :, None].expand(-1, 1, 4))[:, 0]

    # Fallback (no proposal fit): whole image, with the aspect ratio clamped into `ratio`.
    in_ratio = w_src / h_src
    fw = torch.where(in_ratio > ratio[1], torch.round(h_src * ratio[1]), w_src)
    fh = torch.where(in_ratio < ratio[0], torch.round(w_src / ratio[0]), h_src)
    fallback = torch.cat([torch.floor((h_src - fh) / 2), torch.floor((w_src - fw) / 2), fh, fw], dim=1)
    return torch.where(ok.any(dim=1, keepdim=True), box, fallback).float()


def sample_crop_boxes(
    heights: Tensor,
    widths: Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> Tensor:
    """Draw one crop box per image (see ``boxes_from_uniforms``); boxes on the generator's device."""
    return boxes_from_uniforms(heights, widths, crop_uniforms(heights.shape[0], generator), scale, ratio)


def pair_uniforms(generator: torch.Generator, tries: int = CROP_TRIES) -> Tensor:
    """The draw behind one image's two crop boxes: [4, 2, tries], the same numbers as two
    ``crop_uniforms(1, generator)`` draws made one after the other."""
    return torch.rand(2, 4, tries, generator=generator, dtype=torch.float64).transpose(0, 1)


def sample_box_pairs(sizes: Tensor, generators: list[torch.Generator]) -> Tensor:
    """Two crop boxes for each image of ``sizes`` [B, 2] (height, width): [B, 2, 4].

    Image i's pair comes from ``generators[i]`` alone, so a loader worker can batch the rule over
    whatever images it holds: the rule is ~30 tensor ops whatever B is, which per image cost a
    worker as much as reading the file.
    """
    u = torch.cat([pair_uniforms(g) for g in generators], dim=1)
    hw = sizes.repeat_interleave(2, dim=0)
    return boxes_from_uniforms(hw[:, 0], hw[:, 1], u).view(-1, 2, 4)


def resized_crop_batch(images: Tensor, boxes: Tensor, size: int) -> Tensor:
    """Crop each image to its box and resize to ``size`` x ``size`` (bilinear), in one batch.

    Equals ``torchvision.transforms.functional.resized_crop(img, *box, [size, size])`` per image
    whenever the crop is not larger than ``size`` (always the case for in-memory datasets stored
    at the training resolution, where antialiasing is a no-op); larger crops are resized without
    antialiasing. One ``grid_sample`` call replaces B separate crop/resize kernels.

    Args:
        images: [B, C, H, W] float.
        boxes: [B, 4] (top, left, height, width).
    """
    b, _, h_src, w_src = images.shape
    boxes = boxes.to(images.device, torch.float32)
    start, length = boxes[:, :2, None], boxes[:, 2:, None]  # [B, 2, 1], (y, x)
    # Bilinear (align_corners=False) sample positions over [start, start + length), clamped to the
    # crop as torch's resize clamps to the edge of its input; then in grid_sample units.
    o = torch.arange(size, device=images.device, dtype=torch.float32) + 0.5
    pos = start + o * (length / size) - 0.5
    pos = torch.minimum(torch.maximum(pos, start), start + length - 1)
    src = constant((float(h_src), float(w_src)), images.device).view(1, 2, 1)
    gy, gx = ((2 * pos + 1) / src - 1).unbind(dim=1)
    grid = torch.stack((gx[:, None, :].expand(b, size, size), gy[:, :, None].expand(b, size, size)), dim=-1)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def crop_pil_box(img: Image.Image, box: Tensor, size: int) -> Tensor:
    """The loader-worker crop of a decoded image to ``box`` (top, left, h, w), resized to ``size``
    x ``size`` with PIL's antialiased bilinear filter; uint8 [3, size, size]."""
    top, left, bh, bw = (int(v) for v in box.tolist())
    view = TF.resized_crop(img, top, left, bh, bw, [size, size], interpolation=TF.InterpolationMode.BILINEAR,
                           antialias=True)
    return TF.pil_to_tensor(view)
