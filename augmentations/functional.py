"""Batched image ops with one parameter per sample, on float images in [0, 1], any device.

Each op follows the arithmetic of its ``torchvision.transforms.functional`` counterpart, so a
single image replayed through torchvision gives the same pixels. torchvision's functional ops
take one scalar per call; applying them image by image on a GPU costs one kernel launch per
image and op, which is what makes per-sample augmentation slow. These take a [B] factor instead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision


def _per_sample(f: Tensor, x: Tensor) -> Tensor:
    return f.to(x.dtype).view(-1, 1, 1, 1)


def _blend(a: Tensor, b: Tensor, ratio: Tensor) -> Tensor:
    r = _per_sample(ratio, a)
    return (r * a + (1.0 - r) * b).clamp(0.0, 1.0)


def rgb_to_gray(x: Tensor) -> Tensor:
    """[B, 3, H, W] -> [B, 1, H, W] luma."""
    r, g, b = x.unbind(dim=1)
    return (_GRAY_WEIGHTS[0] * r + _GRAY_WEIGHTS[1] * g + _GRAY_WEIGHTS[2] * b).unsqueeze(1)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    return _blend(x, torch.zeros_like(x), factor)


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    mean = rgb_to_gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    return _blend(x, rgb_to_gray(x), factor)


def _rgb_to_hsv(x: Tensor) -> Tensor:
    r, g, b = x.unbind(dim=1)
    v, _ = x.max(dim=1)
    mn, _ = x.min(dim=1)
    chroma = v - mn
    flat = chroma == 0
    s = chroma / torch.where(flat, torch.ones_like(v), v)
    c = torch.where(flat, torch.ones_like(chroma), chroma)
    rc, gc, bc = (v - r) / c, (v - g) / c, (v - b) / c
    # Hue sector by which channel holds the maximum (red wins ties, then green), in sixths.
    h = torch.where(v == r, bc - gc, torch.where(v == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(flat, torch.zeros_like(h), h)
    h = torch.fmod(h / 6.0 + 1.0, 1.0)
    return torch.stack((h, s, v), dim=1)


def _hsv_to_rgb(x: Tensor) -> Tensor:
    h, s, v = x.unbind(dim=1)
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    sector = sector.to(torch.int64) % 6
    p = (v * (1.0 - s)).clamp(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp(0.0, 1.0)
    # (r, g, b) per sector 0..5: (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q)
    table = torch.stack([
        torch.stack((v, q, p, p, t, v), dim=1),
        torch.stack((t, v, v, q, p, p), dim=1),
        torch.stack((p, p, t, v, v, q), dim=1),
    ], dim=1)  # [B, 3, 6, H, W]
    idx = sector[:, None, None].expand(-1, 3, 1, -1, -1)
    return table.gather(2, idx).squeeze(2)


def adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    """Rotate hue by ``factor`` (fraction of a turn, in [-0.5, 0.5]) per sample."""
    hsv = _rgb_to_hsv(x)
    h = torch.remainder(hsv[:, 0] + factor.to(x.dtype).view(-1, 1, 1), 1.0)
    return _hsv_to_rgb(torch.stack((h, hsv[:, 1], hsv[:, 2]), dim=1))


COLOR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(x: Tensor, factors: Tensor, order: list[int] | Tensor) -> Tensor:
    """Apply the four jitter ops with per-sample ``factors`` [B, 4] in the given op order."""
    for k in (order.tolist() if isinstance(order, Tensor) else order):
        x = COLOR_OPS[k](x, factors[:, k])
    return x


def grayscale(x: Tensor) -> Tensor:
    return rgb_to_gray(x).expand(-1, 3, -1, -1)


def gaussian_kernels(sigma: Tensor, kernel_size: int) -> Tensor:
    """[B] sigmas -> [B, k] normalised 1-D kernels; sigma <= 0 gives the identity (delta) kernel."""
    half = (kernel_size - 1) * 0.5
    xs = torch.linspace(-half, half, kernel_size, device=sigma.device, dtype=torch.float32)
    s = sigma.float().clamp_min(1e-6)[:, None]
    pdf = torch.exp(-0.5 * (xs[None] / s) ** 2)
    k = pdf / pdf.sum(dim=1, keepdim=True)
    delta = (xs.abs() < 0.5).float().expand_as(k)
    return torch.where(sigma[:, None] > 0, k, delta)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int) -> Tensor:
    """Per-sample Gaussian blur with reflect padding, as ``torchvision...gaussian_blur``.

    Separable: two grouped 1-D convolutions (one group per image channel), so a whole batch with
    different sigmas is two kernel launches; the 2-D kernel is the outer product of the 1-D ones.
    """
    b, c, h, w = x.shape
    k = gaussian_kernels(sigma, kernel_size).to(x.dtype).repeat_interleave(c, dim=0)  # [B*C, k]
    pad = kernel_size // 2
    y = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)
    return y.reshape(b, c, h, w)


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    return torch.where(x >= _per_sample(threshold, x), 1.0 - x, x)


def rotate90(x: Tensor, k: Tensor) -> Tensor:
    """Rotate each square image by k[i] x 90 degrees counter-clockwise."""
    out = x
    for r in range(1, 4):  # every rotation of the whole batch, selected per sample: no host sync
        out = torch.where((k == r).view(-1, 1, 1, 1), torch.rot90(x, r, dims=(-2, -1)), out)
    return out


def hflip(x: Tensor, flip: Tensor) -> Tensor:
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    m = torch.tensor(mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
    return (x - m) / s
