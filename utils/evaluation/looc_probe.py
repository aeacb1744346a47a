"""The LooC-protocol linear probe: MoCo's ``main_lincls`` on a frozen backbone.

A linear layer (weights N(0, 0.01), bias 0) on the pooled features of the frozen backbone, kept in
eval mode so that its batch-norm statistics never move, trained by SGD (lr 30, momentum 0.9, no
weight decay) on RandomResizedCrop + horizontal-flip views of the whole training set, with the lr
divided by 10 at each milestone. The test set (Resize(256) + CenterCrop(224) at 224 px) is scored
after every epoch and the best top-1 over the epochs is reported, as upstream's
``transfer_looc_like.py`` does. A checkpoint of the probe after every epoch lets a stopped run
continue to the same result. One deliberate difference: upstream's head kept torchvision's 1000
outputs whatever the dataset; here it has one output per class, so no unused logit can win a test
prediction.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from datasets.errors import DataError, NamesUnreadable, read_rgb

from ..checkpoint import CheckpointError, load_checkpoint, save_atomic

# dataset -> (training folder, test folder, classes) under --datadir: upstream reads <train> and <val>
# image folders; CUB-200 keeps the layout the other evaluations read (root/{train,test}/<class>/).
LOOC_FOLDERS = {"cub200": ("train", "test", 200), "imagenet100": ("train", "val", 100)}
LOOC_DATASETS = tuple(LOOC_FOLDERS)


@dataclass
class ProbeSettings:
    """Everything that shapes what the probe learns: a resumed probe must keep all of it."""

    dataset: str
    model: str
    pretrain_data: str
    epochs: int = 200
    lr: float = 30.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    milestones: list[int] = field(default_factory=lambda: [120, 160])
    batch_size: int = 256
    seed: int = 0
    precision: str = "fp32"


def lr_at(epoch: int, lr: float, milestones: list[int]) -> float:
    """The lr of 0-based ``epoch``: ``lr`` divided by 10 for every milestone reached."""
    return lr * 0.1 ** sum(epoch >= m for m in milestones)


def looc_transforms(size: int, mean: tuple, std: tuple) -> tuple[T.Compose, T.Compose]:
    """(train, test) transforms at the pretraining resolution ``size``; the test resize keeps
    upstream's 256 / 224 ratio."""
    norm = [T.ToTensor(), T.Normalize(mean, std)]
    train = T.Compose([T.RandomResizedCrop(size), T.RandomHorizontalFlip(), *norm])
    test = T.Compose([T.Resize(round(size * 256 / 224)), T.CenterCrop(size), *norm])
    return train, test


def _image_folder(path: str, name: str, transform):
    from torchvision.datasets import ImageFolder

    from datasets.folders import ImageNet100
    if name == "imagenet100":
        return ImageNet100(os.path.dirname(path), os.path.basename(path), transform)
    return ImageFolder(path, transform=transform, loader=read_rgb)


def check_looc_data(name: str, root: str | None) -> None:
    """Presence check of ``--datadir`` for ``--dataset name`` (folders and class folders, not images)."""
    from datasets.folders import ImageNet100
    if name not in LOOC_FOLDERS:
        raise DataError(f"--dataset must be one of {LOOC_DATASETS}, got {name!r}")
    if not root:
        raise DataError(f"--dataset {name} needs --datadir, the folder that holds it")
    if not os.path.isdir(root):
        raise DataError(f"--datadir {root}: no such directory")
    train, test, num_classes = LOOC_FOLDERS[name]
    classes = []
    for split in (train, test):
        path = os.path.join(root, split)
        if name == "imagenet100":
            classes.append(ImageNet100.check(path))
            continue
        if not os.path.isdir(path):
            raise DataError(f"--datadir {root}: missing {path} (expected root/{train}/<class>/ and "
                            f"root/{test}/<class>/)")
        classes.append(sorted(e.name for e in os.scandir(path) if e.is_dir()))
        if len(classes[-1]) != num_classes:
            raise DataError(f"--datadir {root}: {path} has {len(classes[-1])} class folders, expected "
                            f"{num_classes} for {name}")
    if classes[0] != classes[1]:
        raise DataError(f"--datadir {root}: {train}/ and {test}/ must hold the same class folders")


def looc_splits(name: str, root: str, train_tf, test_tf) -> tuple[Dataset, Dataset, int]:
    """(training set, test set, number of classes): the whole training folder, as upstream."""
    check_looc_data(name, root)
    try:
        train, test = (_image_folder(os.path.join(root, split), name, tf)
                       for split, tf in zip(LOOC_FOLDERS[name][:2], (train_tf, test_tf)))
    except FileNotFoundError as e:  # a class folder without images
        raise DataError(f"--datadir {root}: {str(e).splitlines()[0]}") from None
    return NamesUnreadable(train, name), NamesUnreadable(test, name), LOOC_FOLDERS[name][2]


def new_head(dim: int, num_classes: int) -> nn.Linear:
    """The probe: N(0, 0.01) weights and zero bias (MoCo's initialisation)."""
    head = nn.Linear(dim, num_classes)
    nn.init.normal_(head.weight, std=0.01)
    nn.init.zeros_(head.bias)
    return head


@dataclass
class Probe:
    """A probe being trained: the frozen backbone, the head, its optimiser and what it reported so far."""

    backbone: nn.Module
    head: nn.Linear
    optimizer: torch.optim.SGD
    device: torch.device
    settings: ProbeSettings
    channels_last: bool = False
    history: list[dict] = field(default_factory=list)  # one row per finished epoch

    def features(self, x: Tensor) -> Tensor:
        """Frozen pooled features of a batch, in fp32 (the backbone under bf16 autocast if asked)."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast(self.device.type, torch.bfloat16,
                                             enabled=self.settings.precision == "bf16"):
            return self.backbone(x).float()

    def best(self) -> tuple[float, int]:
        """(best test top-1, its 1-based epoch); the first of equal ones, as upstream's strict ``>``."""
        if not self.history:
            return float("nan"), 0
        row = max(self.history, key=lambda r: (r["test"], -r["epoch"]))
        return row["test"], row["epoch"]

    def state(self, backbone_ckpt: str) -> dict:
        """What a probe checkpoint holds."""
        return {"head": self.head.state_dict(), "optimizer": self.optimizer.state_dict(), "epoch": len(self.history),
                "history": self.history, "settings": asdict(self.settings), "backbone_ckpt": backbone_ckpt}


def build_probe(backbone: nn.Module, dim: int, num_classes: int, settings: ProbeSettings, device: torch.device,
                channels_last: bool = False) -> Probe:
    """The frozen backbone (eval mode, no gradients) with a fresh head and MoCo's SGD."""
    torch.manual_seed(settings.seed)  # the head's initialisation
    head = new_head(dim, num_classes).to(device)
    backbone = backbone.to(device).eval().requires_grad_(False)
    if channels_last:
        backbone = backbone.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(head.parameters(), settings.lr, momentum=settings.momentum,
                          weight_decay=settings.weight_decay)
    return Probe(backbone, head, opt, device, settings, channels_last)


def check_resumable(state: dict, settings: ProbeSettings, path: str) -> None:
    """A probe checkpoint must have been made with the same settings; CheckpointError naming them."""
    missing = [k for k in ("head", "optimizer", "epoch", "history", "settings") if k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a probe checkpoint (missing {', '.join(missing)})")
    new = asdict(settings)
    differ = [f"{k} {v!r} -> {new.get(k)!r}" for k, v in state["settings"].items() if new.get(k) != v]
    if differ:
        raise CheckpointError(f"--resume: {path} was made with other settings ({'; '.join(differ)}); "
                              "delete it or run with its settings")


def save_probe(probe: Probe, backbone_ckpt: str, path: str) -> None:
    """Write the probe's checkpoint atomically: a stop while writing leaves the previous epoch's."""
    save_atomic(probe.state(backbone_ckpt), path)


def load_probe_state(probe: Probe, path: str) -> None:
    """Continue ``probe`` from the checkpoint at ``path`` (head, optimiser, history)."""
    state = load_checkpoint(path, map_location=probe.device, flag="--resume")
    check_resumable(state, probe.settings, path)
    probe.head.load_state_dict(state["head"])
    probe.optimizer.load_state_dict(state["optimizer"])
    probe.history = list(state["history"])


def _epoch_seed(seed: int, epoch: int) -> int:
    return seed * 1_000_003 + epoch  # one stream per epoch, so a resumed run draws what it would have


def train_epoch(probe: Probe, data: Dataset, epoch: int, num_workers: int) -> float:
    """One epoch of SGD on the head at the epoch's lr; returns the mean training loss."""
    lr = lr_at(epoch, probe.settings.lr, probe.settings.milestones)
    for group in probe.optimizer.param_groups:
        group["lr"] = lr
    seed = _epoch_seed(probe.settings.seed, epoch)
    torch.manual_seed(seed)  # the crops and flips drawn in this process (no loader workers)
    loader = DataLoader(data, probe.settings.batch_size, shuffle=True, num_workers=num_workers,
                        generator=torch.Generator().manual_seed(seed), pin_memory=probe.device.type == "cuda")
    total, count = torch.zeros((), device=probe.device), 0
    for x, y in loader:
        y = y.to(probe.device, non_blocking=True)
        loss = F.cross_entropy(probe.head(probe.features(x)), y)
        probe.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        probe.optimizer.step()
        total += loss.detach() * len(y)
        count += len(y)
    return (total / max(1, count)).item()


@torch.no_grad()
def test_top1(probe: Probe, data: Dataset, batch_size: int, num_workers: int) -> float:
    """Top-1 accuracy (a fraction) of the probe on ``data``."""
    loader = DataLoader(data, batch_size, num_workers=num_workers, pin_memory=probe.device.type == "cuda")
    correct, count = torch.zeros((), device=probe.device), 0
    for x, y in loader:
        y = y.to(probe.device, non_blocking=True)
        correct += (probe.head(probe.features(x)).argmax(1) == y).sum()
        count += len(y)
    return (correct / max(1, count)).item()


def run_probe(probe: Probe, train: Dataset, test: Dataset, num_workers: int, save: Callable[[], None],
              log: Callable[[str], None] = print) -> None:
    """Train from the epoch after ``probe.history`` to the last, scoring the test set and calling
    ``save`` (the atomic probe checkpoint) after every epoch."""
    s = probe.settings
    for epoch in range(len(probe.history), s.epochs):
        loss = train_epoch(probe, train, epoch, num_workers)
        if not math.isfinite(loss):
            raise ValueError(f"the probe's training loss became {loss} in epoch {epoch + 1} (lr "
                             f"{lr_at(epoch, s.lr, s.milestones):g}); lower --lr")
        acc = test_top1(probe, test, s.batch_size, num_workers)
        probe.history.append({"epoch": epoch + 1, "lr": lr_at(epoch, s.lr, s.milestones), "train_loss": loss,
                              "test": acc})
        save()
        best, at = probe.best()
        log(f"epoch {epoch + 1}/{s.epochs} lr={probe.history[-1]['lr']:.4g} loss={loss:.4f} "
            f"test top1={acc:.4f} (best {best:.4f}, epoch {at})")
