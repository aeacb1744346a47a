"""The pretraining augmentation: one view of a batch, plus the record of every parameter drawn.

Order, as upstream: crop -> flip -> colour jitter (p=0.8, the four ops in one random order per
batch) -> [solarize] -> grayscale -> blur -> [rotation] -> normalise.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from . import functional as AF
from .crop import resized_crop_batch, sample_crop_boxes
from .params import ViewParams

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
STL10_MEAN, STL10_STD = (0.43, 0.42, 0.39), (0.27, 0.26, 0.27)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261)
COLOR_AUG_SCALE = {"default": 1.0, "strong": 2.0, "weak": 0.5}


@dataclass(frozen=True)
class AugConfig:
    """Everything that defines the pretraining augmentation of one dataset."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    blur_kernel: int | None = None  # None: no blur (32 px data)
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    p_jitter: float = 0.8
    p_gray: float = 0.2
    p_flip: float = 0.5
    p_blur: float = 0.5
    sigma: tuple[float, float] = (0.1, 2.0)
    crop_scale: tuple[float, float] = (0.2, 1.0)
    solarize: bool = False
    p_solarize: float = 0.5
    rotate: bool = False
    p_rotate: float = 0.5

    @property
    def jitter_ranges(self) -> tuple[tuple[float, float], ...]:
        """Sampling interval of each jitter factor (b, c, s multiplicative; hue additive)."""
        return ((max(0.0, 1 - self.brightness), 1 + self.brightness),
                (max(0.0, 1 - self.contrast), 1 + self.contrast),
                (max(0.0, 1 - self.saturation), 1 + self.saturation),
                (-self.hue, self.hue))


def config_for_dataset(dataset: str, color_aug: str = "default") -> AugConfig:
    """The recipe's augmentation for ``--dataset`` and ``--color-aug`` (scales jitter and p_gray)."""
    if color_aug not in COLOR_AUG_SCALE:
        raise ValueError(f"--color-aug must be one of {sorted(COLOR_AUG_SCALE)}, got {color_aug!r}")
    s = COLOR_AUG_SCALE[color_aug]
    jitter = dict(brightness=0.4 * s, contrast=0.4 * s, saturation=0.4 * s, hue=min(0.5, 0.1 * s), p_gray=0.2 * s)
    if dataset in ("imagenet100", "imagenet", "folder"):
        return AugConfig(224, IMAGENET_MEAN, IMAGENET_STD, blur_kernel=23, **jitter)
    if dataset in ("stl10", "stl10_rot", "stl10_sol"):
        return AugConfig(96, STL10_MEAN, STL10_STD, blur_kernel=9, solarize=dataset == "stl10_sol",
                         rotate=dataset == "stl10_rot", **jitter)
    if dataset in ("cifar10", "cifar100", "colordigits"):
        return AugConfig(32, CIFAR_MEAN, CIFAR_STD, blur_kernel=None, **jitter)
    raise ValueError(f"--dataset {dataset!r} has no augmentation recipe")


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g, device=g.device)


def _bernoulli(n: int, p: float, g: torch.Generator) -> Tensor:
    return torch.rand(n, generator=g, device=g.device) < p


def _check_images(images: Tensor) -> Tensor:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W] RGB, got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch; expected at least one image")
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    return images.float()


class ViewAugment:
    """Draws one augmented view per image of a batch and records its parameters.

    Call it once per view. With ``boxes`` given, the images are crops already made elsewhere
    (loader workers) at ``cfg.size``, and only the remaining ops run here.
    """

    def __init__(self, cfg: AugConfig):
        self.cfg = cfg

    def sample(self, b: int, generator: torch.Generator,
               host_generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Draw every non-crop parameter for b samples.

        The jitter op order (one per batch) is drawn from ``host_generator`` when given, so that
        applying it needs no device-to-host copy (which would stall the CUDA queue every view).
        """
        c, g = self.cfg, generator
        og = host_generator if host_generator is not None else g
        factors = torch.stack([_uniform(b, lo, hi, g) for lo, hi in c.jitter_ranges], dim=1)
        p = dict(
            flip=_bernoulli(b, c.p_flip, g),
            jitter=_bernoulli(b, c.p_jitter, g),
            jitter_factors=factors,
            jitter_order=torch.randperm(4, generator=og, device=og.device).repeat(b, 1),
            gray=_bernoulli(b, c.p_gray, g),
        )
        blur = _bernoulli(b, c.p_blur, g) & (c.blur_kernel is not None)
        p["blur_sigma"] = torch.where(blur, _uniform(b, *c.sigma, g), torch.zeros(b, device=g.device))
        p["solarized"] = _bernoulli(b, c.p_solarize, g) & c.solarize
        p["sol_threshold"] = torch.where(p["solarized"], _uniform(b, 0.0, 1.0, g), torch.ones(b, device=g.device))
        rot = _bernoulli(b, c.p_rotate, g) & c.rotate
        k = torch.randint(0, 4, (b,), generator=g, device=g.device)
        p["rot_k"] = torch.where(rot, k, torch.zeros_like(k))
        return p

    def __call__(
        self,
        images: Tensor,
        generator: torch.Generator,
        boxes: Tensor | None = None,
        src_size: Tensor | None = None,
        host_generator: torch.Generator | None = None,
    ) -> tuple[Tensor, ViewParams]:
        """Augment a batch; returns (normalised views [B, 3, S, S], record).

        Args:
            images: [B, 3, H, W] uint8 or float in [0, 1], on the generator's device.
            generator: drives every draw, so a seed reproduces the views.
            boxes, src_size: the crops' boxes and source sizes when the crop was done already.
            host_generator: a CPU generator for the jitter op order (keeps CUDA runs sync-free).
        """
        x = _check_images(images)
        b, dev = x.shape[0], x.device
        if boxes is None:
            src_size = torch.tensor([x.shape[2], x.shape[3]], device=dev, dtype=torch.float32).repeat(b, 1)
            boxes = sample_crop_boxes(src_size[:, 0], src_size[:, 1], generator, scale=self.cfg.crop_scale)
            x = resized_crop_batch(x, boxes.to(dev), self.cfg.size)
        elif src_size is None or x.shape[-1] != self.cfg.size or x.shape[-2] != self.cfg.size:
            raise ValueError(f"pre-cropped images must be {self.cfg.size}x{self.cfg.size} and come with src_size")
        p = self.sample(b, generator, host_generator)
        order = p["jitter_order"][0]  # before the move: drawn on the host, it is read without a device sync
        p = {k: v.to(dev, non_blocking=True) for k, v in p.items()}
        x = self.apply(x, p, order)
        return x, ViewParams(box=boxes.to(dev).float(), src_size=src_size.to(dev).float(), **p)

    def apply(self, x: Tensor, p: dict[str, Tensor], order: Tensor | list[int] | None = None) -> Tensor:
        """Run flip -> jitter -> solarize -> gray -> blur -> rotate -> normalise; fills color_diff.

        ``order``: the jitter op order, when a host copy is at hand (else read from the record).
        """
        cfg = self.cfg
        x = AF.hflip(x, p["flip"])
        before = x.mean(dim=(2, 3))
        jit = p["jitter"]
        x = torch.where(jit.view(-1, 1, 1, 1), AF.color_jitter(x, p["jitter_factors"], p["jitter_order"][0] if order is None else order), x)
        p["color_diff"] = torch.where(jit[:, None], before - x.mean(dim=(2, 3)), torch.zeros_like(before))
        if cfg.solarize:
            x = torch.where(p["solarized"].view(-1, 1, 1, 1), AF.solarize(x, p["sol_threshold"]), x)
        x = torch.where(p["gray"].view(-1, 1, 1, 1), AF.grayscale(x), x)
        if cfg.blur_kernel is not None:
            x = AF.gaussian_blur(x, p["blur_sigma"], cfg.blur_kernel)
        if cfg.rotate:
            x = AF.rotate90(x, p["rot_k"])
        return AF.normalize(x, cfg.mean, cfg.std)
