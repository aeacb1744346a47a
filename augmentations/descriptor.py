"""The CASSLE augmentation descriptor and the AugSelf regression targets.

The descriptor is absolute (it describes one view, not its relation to the other). Pieces are
concatenated in alphabetical key order, so ``crop color color_diff blur grayscale`` is 13-d.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .functional import constant
from .params import ViewParams

DESCRIPTOR_DIMS: dict[str, int] = {"blur": 1, "color": 4, "color_diff": 3, "crop": 4, "flip": 1, "grayscale": 1}


def check_keys(keys: list[str] | tuple[str, ...]) -> list[str]:
    """Validate ``--aug-cond`` keys; returns them sorted alphabetically, duplicates removed."""
    unknown = [k for k in keys if k not in DESCRIPTOR_DIMS]
    if unknown:
        raise ValueError(f"--aug-cond: unknown key(s) {unknown}; expected any of {sorted(DESCRIPTOR_DIMS)}")
    return sorted(set(keys))


def descriptor_layout(keys: list[str] | tuple[str, ...]) -> dict[str, slice]:
    """key -> slice of the descriptor vector, for reading pieces back (analysis, tests)."""
    layout, start = {}, 0
    for k in check_keys(keys):
        layout[k] = slice(start, start + DESCRIPTOR_DIMS[k])
        start += DESCRIPTOR_DIMS[k]
    return layout


def descriptor_dim(keys: list[str] | tuple[str, ...]) -> int:
    """The projector's condition width for ``--aug-cond keys`` (unknown keys raise, naming the flag)."""
    return sum(DESCRIPTOR_DIMS[k] for k in check_keys(keys))


def crop_piece(p: ViewParams, flip: Tensor | None = None) -> Tensor:
    """[cy, cx, h, w] relative to the source image; cx mirrored where ``flip`` (default: own flip)."""
    top, left, h, w = p.box.unbind(dim=1)
    hs, ws = p.src_size.unbind(dim=1)
    cy, cx = top / hs + h / hs / 2, left / ws + w / ws / 2
    flip = p.flip if flip is None else flip
    cx = torch.where(flip, 1.0 - cx, cx)
    return torch.stack([cy, cx, h / hs, w / ws], dim=1)


def color_piece(p: ViewParams, jitter_ranges: tuple[tuple[float, float], ...]) -> Tensor:
    """Jitter factors centred and scaled by their sampling width, into [-0.5, 0.5]; 0 if not jittered."""
    # Multiplicative factors are centred on 1, hue on 0 (upstream encoding, not the interval middle).
    neutral = constant((1.0, 1.0, 1.0, 0.0), p.box.device)
    width = constant(tuple(max(hi - lo, 1e-12) for lo, hi in jitter_ranges), p.box.device)
    enc = (p.jitter_factors - neutral) / width
    return torch.where(p.jitter[:, None], enc, torch.zeros_like(enc))


def build_descriptor(p: ViewParams, keys: list[str] | tuple[str, ...],
                     jitter_ranges: tuple[tuple[float, float], ...]) -> Tensor:
    """The [B, D] descriptor for the chosen ``--aug-cond`` keys (alphabetical order)."""
    pieces = {
        "blur": lambda: p.blur_sigma[:, None],
        "color": lambda: color_piece(p, jitter_ranges),
        "color_diff": lambda: p.color_diff,
        "crop": lambda: crop_piece(p),
        "flip": lambda: p.flip.float()[:, None],
        "grayscale": lambda: p.gray.float()[:, None],
    }
    keys = check_keys(keys)
    if not keys:
        return torch.zeros(len(p), 0, device=p.box.device)
    return torch.cat([pieces[k]().float() for k in keys], dim=1)


@dataclass(frozen=True)
class AugSelfPiece:
    """One AugSelf target (view 1 relative to view 2): what its head predicts and how it is scored."""

    out: int  # the head's output width: the target's, or the 4 rotation classes
    what: str  # what the head predicts, for --ss-<key>'s help
    loss: str = "mse"  # "mse" on tanh outputs, "bce" on a logit, "ce" over classes
    recipe_has: str | None = None  # the AugConfig field a recipe must set for the target to vary
    absent: str = ""  # what a recipe without it never does (the refusal's words)


# The one list of AugSelf pieces (--ss-<key>): the heads, the flags, the targets and the checks follow it.
AUGSELF_PIECES: dict[str, AugSelfPiece] = {
    "crop": AugSelfPiece(4, "crop box"),
    "color": AugSelfPiece(4, "jitter factors"),
    "flip": AugSelfPiece(1, "same flip", loss="bce"),
    "blur": AugSelfPiece(1, "blur sigma", recipe_has="blur_kernel", absent="blurs (32 px recipes have no blur)"),
    "rot": AugSelfPiece(4, "rotation (stl10_rot)", loss="ce", recipe_has="rotate",
                        absent="rotates (only stl10_rot does)"),
    "sol": AugSelfPiece(1, "solarize threshold (stl10_sol)", recipe_has="solarize",
                        absent="solarizes (only stl10_sol does)"),
}
AUGSELF_KEYS = tuple(AUGSELF_PIECES)


def augself_targets(p1: ViewParams, p2: ViewParams, keys: list[str] | tuple[str, ...],
                    jitter_ranges: tuple[tuple[float, float], ...],
                    upstream_flip_quirk: bool = True) -> dict[str, Tensor]:
    """AugSelf targets of view 1 relative to view 2 (swap the arguments for the other direction).

    ``upstream_flip_quirk``: upstream mirrors *both* views' x-centres with view 1's flip flag; the
    published AugSelf numbers come from that. False mirrors each view by its own flag.
    """
    out = {}
    for k in keys:
        if k == "crop":
            f1 = p1.flip
            f2 = p1.flip if upstream_flip_quirk else p2.flip
            out[k] = crop_piece(p1, f1) - crop_piece(p2, f2)
        elif k == "color":
            out[k] = color_piece(p1, jitter_ranges) - color_piece(p2, jitter_ranges)
        elif k == "flip":
            out[k] = (p1.flip == p2.flip).float()[:, None]
        elif k == "blur":
            out[k] = (p1.blur_sigma - p2.blur_sigma)[:, None]
        elif k == "rot":
            out[k] = torch.remainder(p1.rot_k - p2.rot_k, 4)
        elif k == "sol":
            out[k] = (p1.sol_threshold - p2.sol_threshold)[:, None]
        else:
            raise ValueError(f"unknown AugSelf target {k!r}; expected any of {AUGSELF_KEYS}")
    return out
