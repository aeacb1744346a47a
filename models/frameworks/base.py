"""The shared base of every SSL framework: backbone -> conditioned projector -> loss (+ AugSelf)."""
from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..augself import AugSelfHeads
from ..projector import ConditionedProjector, ConditionSpec, ProjectorSpec
from .options import FrameworkOptions, check_options


def momentum_copy(module: nn.Module) -> nn.Module:
    """A frozen copy for EMA targets (keys, BYOL target)."""
    target = copy.deepcopy(module)
    for p in target.parameters():
        p.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(target: list[Tensor], online: list[Tensor], m: float) -> None:
    """target <- m * target + (1 - m) * online, tensor by tensor (one fused foreach op)."""
    torch._foreach_lerp_(target, online, 1.0 - m)


def fp32(t: torch.Tensor):
    """Context in which autocast is off: losses are computed from fp32 embeddings in fp32."""
    return torch.autocast(t.device.type, enabled=False)


def cosine_momentum(base: float, step: int, total: int) -> float:
    """BYOL / MoCo v3 schedule: base at step 0 rising to 1 at step ``total``."""
    return 1 - (1 - base) * (math.cos(math.pi * step / max(1, total)) + 1) / 2


@dataclass(frozen=True)
class Progress:
    """Where training stands when a step's hooks run; the target-momentum schedules read it."""

    step: int  # steps taken, this one included (Ignite's 1-based iteration)
    total_steps: int
    epochs: int = 1  # the run's --max-epochs, over which the steps are spread evenly

    @property
    def epoch(self) -> int:
        """The 1-based epoch this step belongs to, as Ignite's ``engine.state.epoch`` counts it."""
        return (self.step - 1) * self.epochs // max(1, self.total_steps) + 1


class Framework(nn.Module):
    """Subclasses define ``projector_spec`` and ``ssl_forward``; the base adds AugSelf and stats.

    Class attributes: ``Options``, the framework's hyper-parameters (a ``FrameworkOptions`` dataclass
    whose defaults are the published recipe, see options.py); ``optimizer`` ("sgd" / "adamw") and
    ``warmup_epochs`` describe the recipe's optimisation; ``param_groups`` may scale or fix learning
    rates per group.
    """

    Options: type[FrameworkOptions] = FrameworkOptions
    optimizer = "sgd"
    warmup_epochs = 0
    # (online, target) attribute names that update_targets averages: the momentum copies that
    # momentum_copy makes (MoCo, MoCo v3, BYOL)
    ema_pairs: tuple[tuple[str, str], ...] = (("backbone", "target_backbone"), ("projector", "target_projector"))

    def __init__(self, backbone: nn.Module, feat_dim: int, cond: ConditionSpec, opts: FrameworkOptions | None = None,
                 augself: AugSelfHeads | None = None):
        super().__init__()
        self.opts = self.own_options(opts)
        self.feat_dim = feat_dim
        self.backbone = backbone
        self.projector = ConditionedProjector(feat_dim, self.projector_spec(feat_dim, opts), cond)
        self.augself = augself if augself is not None and augself.keys else None
        self._ema_params: tuple[list[Tensor], list[Tensor]] | None = None

    @classmethod
    def own_options(cls, opts: FrameworkOptions | None,
                    name_of: Callable[[str], str] | None = None) -> FrameworkOptions:
        """``opts`` as this framework's ``Options``, checked (a ValueError names the field by
        ``name_of``): plain ``FrameworkOptions`` (the shared fields alone) take the recipe's value for
        every hyper-parameter of the framework."""
        if opts is None or type(opts) is FrameworkOptions:
            shared = {f.name: getattr(opts, f.name) for f in fields(FrameworkOptions)} if opts else {}
            opts = cls.Options(**shared)
        if not isinstance(opts, cls.Options):
            raise TypeError(f"{cls.__name__} takes {cls.__name__}.Options, got {type(opts).__qualname__}")
        check_options(opts, name_of or (lambda name: f"{cls.__name__}.Options.{name}"))
        return opts

    @property
    def needs_descriptors(self) -> bool:
        """Whether the forward pass reads the views' descriptors: the projector is conditioned. The
        training step builds descriptors only then."""
        return self.projector.cond.active

    def update_targets(self, m: float) -> None:
        """EMA of every ``ema_pairs`` target from its online module, in one fused op.

        The parameter lists are gathered on the first call, once the model has been moved and
        wrapped. Walking the modules every step costs host time that a
        host-bound step pays in full. Moving, converting or loading weights later keeps
        the Parameter objects, so the lists stay valid (tested).
        """
        if self._ema_params is None:
            pairs = [(getattr(self, o), getattr(self, t)) for o, t in self.ema_pairs]
            self._ema_params = ([p for _, t in pairs for p in t.parameters()],
                                [p for o, _ in pairs for p in o.parameters()])
        ema_update(*self._ema_params, m)

    @staticmethod
    def projector_spec(feat_dim: int, opts: FrameworkOptions) -> ProjectorSpec:
        raise NotImplementedError

    def ssl_forward(self, x1: Tensor, x2: Tensor, d1: Tensor | None, d2: Tensor | None) -> dict[str, Tensor]:
        """Return at least loss, y1 (backbone features of view 1), y2, z1, z2.

        y1 and y2 are what the AugSelf heads see; y2 may be None, and the base then runs the online
        backbone on x2 (MoCo v2 passes its momentum features of x2 instead, as upstream).
        """
        raise NotImplementedError

    def forward(self, x1: Tensor, x2: Tensor, d1: Tensor | None = None, d2: Tensor | None = None,
                targets: tuple[dict, dict] | None = None) -> dict[str, Tensor]:
        out = self.ssl_forward(x1, x2, d1, d2)
        out["ssl_loss"] = out["loss"].detach()
        if self.augself is not None:
            y2 = out["y2"] if out.get("y2") is not None else self.backbone(x2)
            aug_loss, stats = self.augself(out["y1"], y2, targets)
            out["loss"] = out["loss"] + aug_loss
            out.update(stats)
        out.update(self._similarity_stats(out["z1"], out["z2"]))
        return out

    @staticmethod
    @torch.no_grad()
    def _similarity_stats(z1: Tensor, z2: Tensor) -> dict[str, Tensor]:
        z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
        sim = z1 @ z2.t()
        n = sim.shape[0]
        pos = sim.diagonal().mean()
        neg = (sim.sum() - sim.diagonal().sum()) / max(1, n * (n - 1))
        return {"pos_cos": pos, "neg_cos": neg}

    def param_groups(self) -> list[dict]:
        """Trainable parameters with optional ``lr_scale`` and ``fixed_lr`` per group."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "lr_scale": 1.0}]

    def on_before_optimizer_step(self, step: int) -> None:
        """Hook after backward, before the update (e.g. SwAV freezes prototypes)."""

    def on_after_step(self, progress: Progress) -> None:
        """Hook after the update (e.g. EMA of momentum encoders)."""
