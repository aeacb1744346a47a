"""RandomResizedCrop with torchvision's sampling rule, batched on any device, and its replay.

The box sampler is shared by both crop paths: the GPU path (images held in memory, cropped in a
batch with ``resized_crop_batch``) and the loader-worker path (variable-size decoded JPEGs cropped
one at a time with ``crop_pil``). Both therefore give the same record for the same draw.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from PIL import Image
from torch import Tensor


def sample_crop_boxes(
    heights: Tensor,
    widths: Tensor,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    tries: int = 10,
) -> Tensor:
    """Sample one crop box per image as ``torchvision.transforms.RandomResizedCrop`` does.

    Ten (area, log-ratio) proposals per image; the first that fits is placed uniformly; if none
    fits, torchvision's centre-crop fallback with the ratio clamped to ``ratio``.

    Args:
        heights, widths: [B] source sizes (any numeric dtype).
        generator: drives every draw; lives on the device the boxes are wanted on.
    Returns:
        [B, 4] float tensor (top, left, height, width), integer-valued.
    """
    dev = generator.device
    h_src = heights.to(dev, torch.float64)
    w_src = widths.to(dev, torch.float64)
    b = h_src.shape[0]
    u = torch.rand(4, b, tries, generator=generator, device=dev, dtype=torch.float64)
    area = (h_src * w_src)[:, None] * (scale[0] + (scale[1] - scale[0]) * u[0])
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1]
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(area * aspect))
    h = torch.round(torch.sqrt(area / aspect))
    ok = (w > 0) & (h > 0) & (w <= w_src[:, None]) & (h <= h_src[:, None])
    top = torch.floor(u[2] * (h_src[:, None] - h + 1))
    left = torch.floor(u[3] * (w_src[:, None] - w + 1))
    first = torch.argmax(ok.to(torch.int8), dim=1, keepdim=True)
    pick = lambda t: t.gather(1, first)[:, 0]  # noqa: E731
    box = torch.stack([pick(top), pick(left), pick(h), pick(w)], dim=1)

    # Fallback (no proposal fit): whole image, with the aspect ratio clamped into `ratio`.
    in_ratio = w_src / h_src
    fw = torch.where(in_ratio > ratio[1], torch.round(h_src * ratio[1]), w_src)
    fh = torch.where(in_ratio < ratio[0], torch.round(w_src / ratio[0]), h_src)
    fallback = torch.stack([torch.floor((h_src - fh) / 2), torch.floor((w_src - fw) / 2), fh, fw], dim=1)
    box = torch.where(ok.any(dim=1, keepdim=True), box, fallback)
    return box.float()


def _source_coords(start: Tensor, length: Tensor, out: int, src: int) -> Tensor:
    """Bilinear (align_corners=False) sample positions of `out` pixels over [start, start+length),
    clamped to the crop as torch's resize clamps to the edge of its input, in grid_sample units."""
    o = torch.arange(out, device=start.device, dtype=torch.float32) + 0.5
    x = start[:, None] + o[None] * (length[:, None] / out) - 0.5
    x = torch.minimum(torch.maximum(x, start[:, None]), (start + length - 1)[:, None])
    return (2 * x + 1) / src - 1


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
    gy = _source_coords(boxes[:, 0], boxes[:, 2], size, h_src)
    gx = _source_coords(boxes[:, 1], boxes[:, 3], size, w_src)
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
    return F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=False)


def crop_pil(img: Image.Image, size: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Loader-worker crop: sample a box for a decoded image and return the resized uint8 crop.

    Returns:
        (view [3, size, size] uint8, box [4], src_size [2]).
    """
    w, h = img.size
    box = sample_crop_boxes(torch.tensor([h]), torch.tensor([w]), generator)[0]
    top, left, bh, bw = (int(v) for v in box.tolist())
    view = TF.resized_crop(img, top, left, bh, bw, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return TF.pil_to_tensor(view), box, torch.tensor([float(h), float(w)])
