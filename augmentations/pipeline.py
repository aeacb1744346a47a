"""The pretraining augmentation: one view of a batch, plus the record of every parameter drawn.

Order, as upstream: crop -> flip -> colour jitter (p=0.8, the four ops in one random order per
batch) -> [solarize] -> grayscale -> blur -> [rotation] -> normalise.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import Tensor

from . import functional as AF
from .crop import boxes_from_uniforms, crop_uniforms, resized_crop_batch
from .functional import constant
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
    blur_impl: str = "conv"  # how, not what: "conv" or "shift" (AF.gaussian_blur); same pixels to float rounding
    saturation_impl: str = "hsv"  # what: upstream's HSV saturation, or torchvision's blend (AF.color_ops)

    def __post_init__(self) -> None:
        AF.color_ops(self.saturation_impl)  # refuses an unknown one, naming the flag

    @property
    def jitter_ranges(self) -> tuple[tuple[float, float], ...]:
        """Sampling interval of each jitter factor (b, c, s multiplicative; hue additive)."""
        return ((max(0.0, 1 - self.brightness), 1 + self.brightness),
                (max(0.0, 1 - self.contrast), 1 + self.contrast),
                (max(0.0, 1 - self.saturation), 1 + self.saturation),
                (-self.hue, self.hue))


def config_for_dataset(dataset: str, color_aug: str = "default") -> AugConfig:
    """The recipe's augmentation for ``--dataset`` and ``--color-aug`` (scales jitter and p_gray).

    As upstream, ``--color-aug`` exists for stl10 alone (its other recipes have fixed strengths), so
    another strength for another dataset is refused rather than silently ignored.
    """
    if color_aug not in COLOR_AUG_SCALE:
        raise ValueError(f"--color-aug must be one of {sorted(COLOR_AUG_SCALE)}, got {color_aug!r}")
    if color_aug != "default" and dataset != "stl10":
        raise ValueError(f"--color-aug {color_aug}: only --dataset stl10 has a colour-strength option (as "
                         f"upstream); --dataset {dataset} takes --color-aug default")
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


VIEW_GRAPHS = ("stages", "view")  # what one compiled call covers: a stage of a view, or all of it
N_UNIFORMS = 13  # columns of the one non-crop draw per view (see params_from_uniforms)
JITTER_ORDERS = tuple(itertools.permutations(range(4)))


def params_from_uniforms(u: Tensor, cfg: AugConfig) -> dict[str, Tensor]:
    """Every non-crop parameter of B views from one [B, N_UNIFORMS] draw, as a pure function.

    Columns: flip, jitter, the four jitter factors, gray, blur on, sigma, solarize on, threshold,
    rotate on, quarter turns. An op the recipe leaves out has probability 0, so it never fires.
    """
    lo = constant(tuple(r[0] for r in cfg.jitter_ranges), u.device)
    hi = constant(tuple(r[1] for r in cfg.jitter_ranges), u.device)
    blur = u[:, 7] < (cfg.p_blur if cfg.blur_kernel is not None else 0.0)
    solarized = u[:, 9] < (cfg.p_solarize if cfg.solarize else 0.0)
    rotated = u[:, 11] < (cfg.p_rotate if cfg.rotate else 0.0)
    return dict(
        flip=u[:, 0] < cfg.p_flip,
        jitter=u[:, 1] < cfg.p_jitter,
        jitter_factors=lo + (hi - lo) * u[:, 2:6],
        gray=u[:, 6] < cfg.p_gray,
        blur_sigma=torch.where(blur, cfg.sigma[0] + (cfg.sigma[1] - cfg.sigma[0]) * u[:, 8], 0.0),
        solarized=solarized,
        sol_threshold=torch.where(solarized, u[:, 10], 1.0),
        rot_k=torch.where(rotated, (u[:, 12] * 4).long().clamp_(max=3), 0),
    )


def _as_float(images: Tensor) -> Tensor:
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def crop_stage(images: Tensor, u: Tensor, cfg: AugConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Equal-size images -> (crops [B, 3, S, S] float, boxes [B, 4], source sizes [B, 2])."""
    b, dev = images.shape[0], images.device
    src_size = constant((float(images.shape[2]), float(images.shape[3])), dev).expand(b, 2)
    boxes = boxes_from_uniforms(src_size[:, 0], src_size[:, 1], u, cfg.crop_scale)
    return resized_crop_batch(_as_float(images), boxes, cfg.size), boxes, src_size.clone()


def pre_jitter(x: Tensor, flip: Tensor) -> tuple[Tensor, Tensor]:
    """Flip, and the per-channel means that color_diff is measured from."""
    x = AF.hflip(_as_float(x), flip)
    return x, x.mean(dim=(2, 3))


def post_jitter(x: Tensor, jittered: Tensor, before: Tensor, p: dict[str, Tensor],
                cfg: AugConfig) -> tuple[Tensor, Tensor]:
    """Keep the jitter where drawn -> color_diff -> solarize -> gray -> blur -> rotate -> normalise."""
    jit = p["jitter"]
    x = torch.where(jit.view(-1, 1, 1, 1), jittered, x)
    color_diff = torch.where(jit[:, None], before - x.mean(dim=(2, 3)), 0.0)
    if cfg.solarize:
        x = torch.where(p["solarized"].view(-1, 1, 1, 1), AF.solarize(x, p["sol_threshold"]), x)
    x = torch.where(p["gray"].view(-1, 1, 1, 1), AF.grayscale(x), x)
    if cfg.blur_kernel is not None:
        x = AF.gaussian_blur(x, p["blur_sigma"], cfg.blur_kernel, cfg.blur_impl)
    if cfg.rotate:
        x = AF.rotate90(x, p["rot_k"])
    return AF.normalize(x, cfg.mean, cfg.std), color_diff


def view_from_draws(images: Tensor, u: Tensor, jitter_order: Tensor, cfg: AugConfig,
                    u_crop: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor], Tensor | None, Tensor | None]:
    """A whole view as one pure function of its draws: the crop (unless ``u_crop`` is None: pre-cropped
    images), then ``ViewAugment.apply``'s ops with the jitter order as a tensor. Returns (view, params,
    boxes, source sizes); the boxes are None for pre-cropped images."""
    boxes = src_size = None
    x = images
    if u_crop is not None:
        x, boxes, src_size = crop_stage(images, u_crop, cfg)
    p = params_from_uniforms(u, cfg)
    p["jitter_order"] = jitter_order
    x, before = pre_jitter(x, p["flip"])
    jittered = AF.jitter_in_order(x, p["jitter_factors"], jitter_order, AF.color_ops(cfg.saturation_impl))
    x, p["color_diff"] = post_jitter(x, jittered, before, p, cfg)
    return x, p, boxes, src_size


def order_rows(order: list[int], b: int, device: torch.device) -> Tensor:
    """The jitter op order as the record keeps it: [b, 4], the same row for every sample."""
    perms = constant(JITTER_ORDERS, device, torch.long)  # all 24 made at once: none is made mid-run
    return perms[JITTER_ORDERS.index(tuple(order))].repeat(b, 1)


def _check_images(images: Tensor) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W] RGB, got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("images is an empty batch; expected at least one image")
    if images.dtype != torch.uint8 and not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")


@dataclass
class ViewDraws:
    """Every random draw behind one view of b images. The view is a pure function of them
    (``view_from_draws``), so draws taken batch by batch can be joined and applied in one call."""

    u: Tensor  # [b, N_UNIFORMS]: everything but the crop (params_from_uniforms)
    jitter_order: Tensor  # [b, 4]: the op order, as the record keeps it
    u_crop: Tensor | None  # [4, b, tries] (crop_uniforms); None for images cropped elsewhere

    @staticmethod
    def cat(draws: list[ViewDraws]) -> ViewDraws:
        """The draws of several batches as those of one batch, in the same order."""
        crop = None if draws[0].u_crop is None else torch.cat([d.u_crop for d in draws], dim=1)
        return ViewDraws(torch.cat([d.u for d in draws]), torch.cat([d.jitter_order for d in draws]), crop)


RECOMPILE_LIMIT = 64


def compiled(fn, backend: str | None):
    """``fn`` under ``torch.compile`` with ``backend`` (whole graph, static shapes); ``fn`` for None."""
    if backend is None:
        return fn
    # Each function is compiled once per recipe and batch shape. A process may hold more of those than
    # Dynamo's default limit of 8 per function (a benchmark of several settings, the tests), and with
    # fullgraph=True the ninth would be an error, not a slow step.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    return torch.compile(fn, backend=backend, dynamic=False, fullgraph=True)


class ViewAugment:
    """Draws one augmented view per image of a batch and records its parameters.

    Call it once per view. With ``boxes`` given, the images are crops already made elsewhere
    (loader workers) at ``cfg.size``, and only the remaining ops run here.

    Each view costs two random draws (crop, everything else); the rest is pure tensor functions
    of those draws. ``compile_backend`` (e.g. "inductor") wraps each of them in ``torch.compile``,
    which fuses the ~200 small ops of a view into a few kernels. The jitter ops are compiled one
    by one, so the 24 possible op orders need no recompilation. With ``whole_view`` the whole view
    is one function (``view_from_draws``: one compiled call per view instead of nine, for steps
    that are bound by the host's launch time), with the same draws and pixels.
    ``draw_view`` and ``view`` split a call into its draws and their use, so that the draws of
    several batches can be joined (``ViewDraws.cat``) and their views made in one call.
    """

    def __init__(self, cfg: AugConfig, compile_backend: str | None = None, whole_view: bool = False):
        self.cfg = cfg
        wrap = lambda f: compiled(f, compile_backend)  # noqa: E731
        self._crop, self._params = wrap(crop_stage), wrap(params_from_uniforms)
        self._pre, self._post = wrap(pre_jitter), wrap(post_jitter)
        self._color_ops = tuple(wrap(op) for op in AF.color_ops(cfg.saturation_impl))
        self._view = wrap(view_from_draws) if whole_view else None

    def draw(self, b: int, generator: torch.Generator,
             host_generator: torch.Generator | None = None) -> tuple[list[int], Tensor]:
        """The non-crop draw of b samples: (jitter op order, [b, N_UNIFORMS] uniforms).

        The op order (one per batch) is drawn from ``host_generator`` when given, so that applying
        it needs no device-to-host copy (which would stall the CUDA queue every view).
        """
        og = host_generator if host_generator is not None else generator
        order = torch.randperm(4, generator=og, device=og.device).tolist()
        return order, torch.rand(b, N_UNIFORMS, generator=generator, device=generator.device)

    def sample(self, b: int, generator: torch.Generator,
               host_generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], list[int]]:
        """Draw every non-crop parameter for b samples; returns (params, jitter op order)."""
        order, u = self.draw(b, generator, host_generator)
        p = self._params(u, self.cfg)
        p["jitter_order"] = order_rows(order, b, u.device)
        return p, order

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
        _check_images(images)
        x, dev, b = images, images.device, images.shape[0]
        if boxes is not None and (src_size is None or x.shape[-1] != self.cfg.size or x.shape[-2] != self.cfg.size):
            raise ValueError(f"pre-cropped images must be {self.cfg.size}x{self.cfg.size} and come with src_size")
        if self._view is not None:  # one call for the whole view (whole_view)
            return self.view(x, self.draw_view(b, generator, host_generator, crop=boxes is None), boxes, src_size)
        if boxes is None:
            x, boxes, src_size = self._crop(x, crop_uniforms(b, generator), self.cfg)
        p, order = self.sample(b, generator, host_generator)
        x = self.apply(x, p, order)
        return x, ViewParams(box=boxes.to(dev).float(), src_size=src_size.to(dev).float(), **p)

    def draw_view(self, b: int, generator: torch.Generator, host_generator: torch.Generator | None = None,
                  crop: bool = True) -> ViewDraws:
        """Every draw of one view of b images, in the order ``__call__`` takes them (the crop's first)."""
        u_crop = crop_uniforms(b, generator) if crop else None
        order, u = self.draw(b, generator, host_generator)
        return ViewDraws(u, order_rows(order, b, generator.device), u_crop)

    def view(self, images: Tensor, draws: ViewDraws, boxes: Tensor | None = None,
             src_size: Tensor | None = None) -> tuple[Tensor, ViewParams]:
        """The view of ``images`` for ``draws`` in one call: the whole-view graph (compiled when this
        augmentation is, eager otherwise). ``boxes``/``src_size``: as ``__call__``, for draws without a crop."""
        x, p, drawn, size = (self._view or view_from_draws)(images, draws.u, draws.jitter_order, self.cfg, draws.u_crop)
        if draws.u_crop is not None:
            boxes, src_size = drawn, size
        dev = images.device
        return x, ViewParams(box=boxes.to(dev).float(), src_size=src_size.to(dev).float(), **p)

    def apply(self, x: Tensor, p: dict[str, Tensor], order: list[int] | None = None) -> Tensor:
        """Run flip -> jitter -> solarize -> gray -> blur -> rotate -> normalise; fills color_diff.

        ``x``: crops, uint8 or float in [0, 1]. ``order``: the jitter op order, when a host copy is
        at hand (else read from the record, which waits for the device).
        """
        order = p["jitter_order"][0].tolist() if order is None else order
        x, before = self._pre(x, p["flip"])
        y = x
        for k in order:
            y = self._color_ops[k](y, p["jitter_factors"][:, k])
        x, p["color_diff"] = self._post(x, y, before, p, self.cfg)
        return x
