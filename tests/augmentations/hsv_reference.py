"""Upstream's saturation (kornia 0.4.1: RGB -> HSV, S <- clamp(S f, 0, 1), HSV -> RGB), pixel by pixel
with the standard library's ``colorsys``: a reference that shares no code with the package."""
import colorsys

import torch


def hsv_saturation(img: torch.Tensor, factor: float) -> torch.Tensor:
    """[3, H, W] float image in [0, 1] -> the same with its HSV saturation scaled by ``factor``, clamped."""
    flat = img.reshape(3, -1).t().double().tolist()
    out = []
    for r, g, b in flat:
        h, s, v = colorsys.rgb_to_hsv(r, g, b)
        out.append(colorsys.hsv_to_rgb(h, min(max(s * factor, 0.0), 1.0), v))
    return torch.tensor(out, dtype=img.dtype).t().reshape(img.shape)
