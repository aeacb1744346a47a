"""Batched image ops with one parameter per sample, on float images in [0, 1], any device.

Each op follows the arithmetic of its ``torchvision.transforms.functional`` counterpart, so a
single image replayed through torchvision gives the same pixels; saturation follows kornia 0.4.1's
HSV form by default (what the published runs used), torchvision's blend on request. torchvision's functional ops
take one scalar per call; applying them image by image on a GPU costs one kernel launch per
image and op, which is what makes per-sample augmentation slow. These take a [B] factor instead.
"""
from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision


def constant(values: tuple, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """A small constant tensor, made once per device and dtype.

    ``torch.tensor(values, device="cuda")`` is a pageable host-to-device copy that PyTorch follows
    with a stream synchronisation: made every step, it would stop the host from running ahead of
    the GPU. Callers must not modify the result in place.
    """
    if torch.compiler.is_compiling():  # a graph constant there; the cache is for eager runs
        return torch.tensor(values, dtype=dtype, device=device)
    return _cached_constant(values, torch.device(device), dtype)


@lru_cache(maxsize=None)
def _cached_constant(values: tuple, device: torch.device, dtype: torch.dtype) -> Tensor:
    with torch.inference_mode(False):  # a cached inference tensor could not be used outside that mode
        return torch.tensor(values, dtype=dtype).to(device)


def _per_sample(f: Tensor, x: Tensor) -> Tensor:
    return f.to(x.dtype).view(-1, 1, 1, 1)


def _blend(a: Tensor, b: Tensor, ratio: Tensor) -> Tensor:
    """torchvision's ``ratio * a + (1 - ratio) * b``, clamped; as one lerp (round-off level equal)."""
    return torch.lerp(b, a, _per_sample(ratio, a)).clamp_(0.0, 1.0)


def rgb_to_gray(x: Tensor) -> Tensor:
    """[B, 3, H, W] -> [B, 1, H, W] luma."""
    w = constant(_GRAY_WEIGHTS, x.device, x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


def adjust_brightness(x: Tensor, factor: Tensor) -> Tensor:
    """torchvision's ``adjust_brightness`` with one factor per image; ``x`` in [0, 1]."""
    return (x * _per_sample(factor, x)).clamp_(0.0, 1.0)  # the blend with black, exactly


def adjust_contrast(x: Tensor, factor: Tensor) -> Tensor:
    """torchvision's ``adjust_contrast`` per image: a blend with the image's mean grey level."""
    mean = rgb_to_gray(x).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(x, mean, factor)


def adjust_saturation(x: Tensor, factor: Tensor) -> Tensor:
    """kornia 0.4.1's ``adjust_saturation`` per image (upstream's jitter): RGB -> HSV, S <- clamp(S f, 0, 1),
    V and H kept, HSV -> RGB.

    kornia is not a dependency, and the round trip through hue is needless work: with H and V kept,
    each channel c becomes v - (v - c) min(f, v / chroma), v the max and chroma = max - min of the
    pixel (the min is the clamp of S at 1). That is the same arithmetic in a handful of element-wise
    ops over the batch, which a compiler fuses into one kernel.
    """
    mn, v = x.aminmax(dim=1, keepdim=True)
    # A grey pixel (chroma 0) has v - c = 0 for every channel: any finite or infinite limit leaves it.
    limit = v / (v - mn).clamp_min(torch.finfo(x.dtype).tiny)
    scale = torch.minimum(_per_sample(factor, x), limit)
    return (v - (v - x) * scale).clamp_(0.0, 1.0)


def adjust_saturation_torchvision(x: Tensor, factor: Tensor) -> Tensor:
    """torchvision's ``adjust_saturation`` per image: a blend with the image's own greyscale."""
    return _blend(x, rgb_to_gray(x), factor)


def _rgb_to_hsv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """torchvision's RGB -> HSV: [B, 3, H, W] -> (h, s, v), each [B, H, W], h in [0, 1)."""
    mn, v = x.aminmax(dim=1)
    chroma = v - mn
    flat = chroma == 0
    s = chroma / torch.where(flat, 1.0, v)
    rc, gc, bc = ((v.unsqueeze(1) - x) / torch.where(flat, 1.0, chroma).unsqueeze(1)).unbind(dim=1)
    r, g, _ = x.unbind(dim=1)
    # Hue sector by which channel holds the maximum (red wins ties, then green), in sixths.
    h = torch.where(v == r, bc - gc, torch.where(v == g, 2.0 + rc - bc, 4.0 + gc - rc))
    return torch.fmod(h / 6.0 + 1.0, 1.0), s, v


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    """HSV -> RGB for all three channels at once: channel n in (5, 3, 1) is v - v s clamp(min(k, 4 - k),
    0, 1) with k = (n + 6h) mod 6. Equals torchvision's sector table (p, q, t) up to round-off, in a
    quarter of the ops."""
    n = constant((5.0, 3.0, 1.0), h.device, h.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + 6.0 * h.unsqueeze(1), 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * ramp


def adjust_hue(x: Tensor, factor: Tensor) -> Tensor:
    """Rotate hue by ``factor`` (fraction of a turn, in [-0.5, 0.5]) per sample."""
    h, s, v = _rgb_to_hsv(x)
    return _hsv_to_rgb(torch.remainder(h + factor.to(x.dtype).view(-1, 1, 1), 1.0), s, v)


COLOR_OPS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)
SATURATION_IMPLS = ("hsv", "torchvision")  # --saturation-impl: kornia 0.4.1's HSV form (upstream), or the blend


def color_ops(saturation_impl: str = "hsv") -> tuple:
    """The four jitter ops (brightness, contrast, saturation, hue) with the chosen saturation."""
    if saturation_impl not in SATURATION_IMPLS:
        raise ValueError(f"--saturation-impl must be one of {SATURATION_IMPLS}, got {saturation_impl!r}")
    return COLOR_OPS if saturation_impl == "hsv" else (*COLOR_OPS[:2], adjust_saturation_torchvision, COLOR_OPS[3])


def color_jitter(x: Tensor, factors: Tensor, order: list[int] | Tensor, ops: tuple = COLOR_OPS) -> Tensor:
    """Apply the four jitter ``ops`` with per-sample ``factors`` [B, 4] in the given op order."""
    for k in (order.tolist() if isinstance(order, Tensor) else order):
        x = ops[k](x, factors[:, k])
    return x


def jitter_in_order(x: Tensor, factors: Tensor, order: Tensor, ops: tuple = COLOR_OPS) -> Tensor:
    """``color_jitter`` with the op order as a [B, 4] tensor: a pure tensor function, so one compiled
    graph serves all 24 orders. Each of the four slots computes all four ops and keeps the one the
    order names, which is four times the jitter arithmetic; the pixels are those of ``color_jitter``."""
    for slot in range(4):
        k = order[:, slot].view(-1, 1, 1, 1)
        out = ops[3](x, factors[:, 3])
        for j in (2, 1, 0):
            out = torch.where(k == j, ops[j](x, factors[:, j]), out)
        x = out
    return x


def grayscale(x: Tensor) -> Tensor:
    """torchvision's 3-channel ``rgb_to_grayscale``, as a broadcast view (no copy of the grey plane)."""
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


BLUR_IMPLS = ("conv", "shift")  # ways to compute the same blur (gaussian_blur's impl)


def gaussian_blur(x: Tensor, sigma: Tensor, kernel_size: int, impl: str = "conv") -> Tensor:
    """Per-sample Gaussian blur with reflect padding, as ``torchvision...gaussian_blur``.

    Separable; the 2-D kernel is the outer product of the 1-D ones. ``impl="conv"``: two grouped
    1-D convolutions (one group per image channel), two kernel launches for a whole batch with
    different sigmas, the fastest eager form. ``impl="shift"``: each pass is a weighted sum of
    ``kernel_size`` shifted slices; eager that is many launches, but Inductor fuses it (padding
    included) into one stencil kernel per pass, where it cannot fuse a convolution.
    """
    if impl not in BLUR_IMPLS:
        raise ValueError(f"blur impl must be {' or '.join(map(repr, BLUR_IMPLS))}, got {impl!r}")
    b, c, h, w = x.shape
    k = gaussian_kernels(sigma, kernel_size).to(x.dtype)  # [B, k]
    pad = kernel_size // 2
    if impl == "shift":
        y = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        y = _shifted_sum(y, k, dim=2, size=h)
        return _shifted_sum(y, k, dim=3, size=w)
    k = k.repeat_interleave(c, dim=0)  # [B*C, k]
    y = F.pad(x.reshape(1, b * c, h, w), (pad, pad, pad, pad), mode="reflect")
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)
    return y.reshape(b, c, h, w)


def _shifted_sum(y: Tensor, k: Tensor, dim: int, size: int) -> Tensor:
    """sum_i k[:, i] * y.narrow(dim, i, size): a per-sample 1-D correlation along ``dim``."""
    taps = k.view(k.shape[0], k.shape[1], 1, 1, 1)
    out = y.narrow(dim, 0, size) * taps[:, 0]
    for i in range(1, k.shape[1]):
        out = out + y.narrow(dim, i, size) * taps[:, i]
    return out


def solarize(x: Tensor, threshold: Tensor) -> Tensor:
    """torchvision's ``solarize`` with one threshold per image: pixels at or above it are inverted."""
    return torch.where(x >= _per_sample(threshold, x), 1.0 - x, x)


def rotate90(x: Tensor, k: Tensor) -> Tensor:
    """Rotate each square image by k[i] x 90 degrees counter-clockwise."""
    out = x
    for r in range(1, 4):  # every rotation of the whole batch, selected per sample: no host sync
        out = torch.where((k == r).view(-1, 1, 1, 1), torch.rot90(x, r, dims=(-2, -1)), out)
    return out


def hflip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror the images where the bool ``flip`` [B] is set; the others pass unchanged."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def normalize(x: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """(x - mean) / std per channel, the constants cached per device and dtype."""
    m = constant(tuple(mean), x.device, x.dtype).view(1, -1, 1, 1)
    s = constant(tuple(std), x.device, x.dtype).view(1, -1, 1, 1)
    return (x - m) / s
