"""Checkpoints: written atomically (temp file + rename), read without executing code."""
from __future__ import annotations

import os
import tempfile
from typing import Any

import torch


class CheckpointError(ValueError):
    pass


def save_atomic(obj: dict[str, Any], path: str) -> None:
    """Write ``obj`` to ``path`` so that a crash leaves either the old file or the new one, never half.
    A disk that is full or read-only gives a one-line CheckpointError; the old file stays as it was."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".pth", dir=directory)
    except OSError as e:
        raise _unwritable(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are shared read-only artefacts
        os.replace(tmp, path)
        _fsync_directory(directory)  # the rename itself survives a power cut only once its folder is synced
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(e, OSError):
            raise _unwritable(path, e) from None
        raise


def _unwritable(path: str, e: OSError) -> CheckpointError:
    kept = "; the previous one is intact" if os.path.exists(path) else ""
    return CheckpointError(f"cannot write checkpoint {path} ({e.strerror or e}){kept}")


def _fsync_directory(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms that cannot open a folder (Windows) order renames themselves
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: str, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; one-line CheckpointError if unreadable."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: no such file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means a corrupt or foreign file
        raise CheckpointError(f"checkpoint {path}: unreadable or corrupt ({type(e).__name__})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path}: expected a dict, got {type(ckpt).__name__}")
    return ckpt


def backbone_state_dict(ckpt: dict[str, Any], path: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The ``backbone`` entry, with a DistributedDataParallel ``module.`` prefix removed if present."""
    if "backbone" not in ckpt:
        raise CheckpointError(f"{path}: has no 'backbone' key (keys: {sorted(ckpt)[:8]})")
    return {k.removeprefix("module."): v for k, v in ckpt["backbone"].items()}
