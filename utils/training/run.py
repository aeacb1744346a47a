"""What one rank needs for a pretraining run, built from validated arguments before any file is written:
data and loader, augmentation recipe, framework (compiled, DDP-wrapped as asked), optimiser, AMP scaler
and the generators every random draw comes from."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import ignite.distributed as idist
import torch
from torch import nn

from augmentations import AUGSELF_KEYS, AugConfig, config_for_dataset, descriptor_dim
from datasets import DeviceBatches, PretrainData, build_pretrain_data, worker_crop_loader
from datasets.batches import BatchSource
from datasets.device_decode import DeviceDecodePrefetcher, bytes_loader
from datasets.loaders import DevicePrefetcher
from datasets.seeds import draw_seed
from models import FRAMEWORKS, ConditionSpec, Framework, FrameworkOptions, build_framework
from models.frameworks.options import options_from_args

from ..distributed import ddp_no_buffer_sync
from ..schedule import lr_factor, set_lr

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
BACKBONE_COMPILE_BACKEND = "inductor"  # for --compile (--compile-mode applies to inductor only); tests use aot_eager


def condition_spec(args) -> ConditionSpec:
    """How the projector takes the descriptor (``--aug-*`` flags); width 0 for the baseline."""
    dim = descriptor_dim(args.aug_cond) if args.aug_inj_type != "proj-none" else 0
    return ConditionSpec(dim, args.aug_treatment, args.aug_inj_type, args.aug_nn_width, args.aug_nn_depth,
                         args.aug_hn_type)


def augself_weights(args) -> dict[str, float]:
    """The AugSelf heads asked for (``--ss-<key>`` above 0) and their loss weights."""
    return {k: getattr(args, f"ss_{k}") for k in AUGSELF_KEYS if getattr(args, f"ss_{k}") > 0}


def build_model(args, image_size: int) -> Framework:
    """The framework with its backbone, conditioned projector and AugSelf heads, on the CPU."""
    return build_framework(args.framework, args.model, condition_spec(args), framework_options(args),
                           augself_weights(args), image_size=image_size, torchvision_init=args.torchvision_init)


def framework_options(args) -> FrameworkOptions:
    """The chosen framework's ``Options``: its flags' values (``--<framework>-*``) and the shared settings."""
    return options_from_args(FRAMEWORKS[args.framework].Options, args.framework, vars(args),
                             proj_hidden=args.proj_hidden, imagenet=args.dataset in ("imagenet100", "folder"))


def scaled_lr(args) -> float:
    """The linear scaling rule of the recipe: lr = base_lr x global batch / 256."""
    return args.base_lr * args.batch_size / 256


def build_optimizer(framework: Framework, args) -> torch.optim.Optimizer:
    """The framework's optimiser (SGD, or AdamW for MoCo v3) at the scaled learning rate; the
    schedule sets each group's rate from ``lr_scale`` / ``fixed_lr`` every epoch."""
    lr = scaled_lr(args)
    groups = framework.param_groups()
    if framework.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=args.wd)
    return torch.optim.SGD(groups, lr=lr, momentum=args.momentum, weight_decay=args.wd)


@dataclass
class Run:
    """Everything one rank needs for the run; built before any file is written."""

    args: Any
    device: torch.device
    rank: int
    world: int
    data: PretrainData
    loader: BatchSource
    cfg: AugConfig
    framework: Framework  # unwrapped, for hooks and checkpoints
    model: nn.Module  # DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    generator: torch.Generator  # on the device: every augmentation draw
    host_generator: torch.Generator = field(default_factory=torch.Generator)  # jitter op order (see ViewAugment)
    start_epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        """Re-seed data order and augmentation draws from (seed, epoch, rank): resume is exact. Also
        set training mode here, once an epoch, not every step: ``train()`` walks every submodule,
        host time that a host-bound step pays in full."""
        self.model.train()
        self.loader.set_epoch(epoch)
        seed = draw_seed(self.args.seed, epoch, self.rank)
        self.generator.manual_seed(seed)
        self.host_generator.manual_seed(seed)
        factor = lr_factor(epoch, self.args.max_epochs, self.framework.warmup_epochs)
        set_lr(self.optimizer, scaled_lr(self.args), factor)


def build_loader(args, data: PretrainData, size: int, device: torch.device, rank: int = 0,
                 world: int = 1) -> DeviceBatches | DeviceDecodePrefetcher | DevicePrefetcher:
    """This rank's batches: the tensor dataset on the device, or a JPEG folder decoded as
    ``args.jpeg_decode`` says (nvJPEG on the device, or decoding in the workers)."""
    per_rank = args.batch_size // world
    if data.in_memory:
        return DeviceBatches(data.train, per_rank, args.seed, device, rank, world)
    if args.jpeg_decode == "device":
        loader = bytes_loader(data.train.samples, per_rank, args.seed, args.num_workers, rank, world, size=size)
        return DeviceDecodePrefetcher(loader, device)
    return DevicePrefetcher(worker_crop_loader(data.train, size, per_rank, args.seed, args.num_workers,
                                               rank, world, pin_memory=device.type == "cuda"), device)


def aug_config(args) -> AugConfig:
    """The augmentation that validated arguments ask for: the dataset's recipe, and how to blur."""
    return replace(config_for_dataset(args.dataset, args.color_aug), blur_impl=args.blur_impl,
                   saturation_impl=args.saturation_impl)


def build_run(args, device: torch.device, rank: int = 0, world: int = 1) -> Run:
    """This rank's Run; the same seed on every rank gives every rank the same initial weights."""
    cfg = aug_config(args)
    data = build_pretrain_data(args.dataset, args.datadir, args.download)
    loader = build_loader(args, data, cfg.size, device, rank, world)
    torch.manual_seed(args.seed)  # identical initial weights on every rank
    framework = build_model(args, cfg.size).to(device)
    if args.channels_last:
        framework = framework.to(memory_format=torch.channels_last)
    if args.compile:
        framework.backbone.compile(backend=BACKBONE_COMPILE_BACKEND, mode=args.compile_mode)
    optimizer = build_optimizer(framework, args)
    model = framework
    if world > 1:
        model = idist.auto_model(framework, sync_bn=device.type == "cuda", **ddp_no_buffer_sync())
    amp = AMP_DTYPES[args.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")
    gen = torch.Generator(device=device)
    return Run(args, device, rank, world, data, loader, cfg, framework, model, optimizer, scaler, amp, gen)
