"""Checkpoints: written atomically (temp file + rename), read without executing code."""
from __future__ import annotations

import os
import socket
import tempfile
import time
from typing import Any

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, written or used; printed as one line naming the path."""


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


_HELD: dict[str, Any] = {}  # run folder -> its open lock file, kept open while this process lives
# A lock held from another host may outlive its process: after a node crash an NFSv4 server keeps
# it until the client's lease ends (90 s by default). A job requeued elsewhere waits that long.
REMOTE_LOCK_WAIT_S = 120.0


def hold_run_lock(logdir: str) -> None:
    """Lock ``logdir`` for this process's life, so that a second run started on it (a sweep launched
    twice) stops at once instead of writing its checkpoints over this one's. The OS drops the lock
    when the process ends, however it ends, so a requeued job finds the folder free. Only the first
    process of a torchrun/SLURM launch locks; file systems without locks (some NFS) go unlocked."""
    rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or "0"
    key = os.path.realpath(logdir)
    if rank != "0" or key in _HELD:
        return
    try:
        import fcntl
    except ImportError:  # Windows
        return
    try:
        f = open(os.path.join(logdir, ".lock"), "a+")
    except OSError:  # a folder this run cannot write in: the output-folder check names it
        return
    deadline = time.monotonic() + REMOTE_LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            if holder.startswith(socket.gethostname() + ":") or time.monotonic() > deadline:
                f.close()
                raise CheckpointError(f"--logdir {logdir}: another run (host:pid {holder}) is writing there; "
                                      "wait for it to end or choose another folder") from None
            time.sleep(1.0)
        except OSError:
            f.close()
            return
    f.seek(0)
    f.truncate()
    f.write(f"{socket.gethostname()}:{os.getpid()}\n")
    f.flush()
    _HELD[key] = f


def load_checkpoint(path: str, map_location: str | torch.device = "cpu", flag: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; one-line CheckpointError if unreadable, naming
    ``flag`` (the command-line flag that gave ``path``)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{flag} {path}: no such file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means a corrupt or foreign file
        raise CheckpointError(f"{flag} {path}: unreadable or corrupt ({type(e).__name__})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{flag} {path}: expected a dict, got {type(ckpt).__name__}")
    return ckpt


def backbone_state_dict(ckpt: dict[str, Any], path: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The ``backbone`` entry, with a DistributedDataParallel ``module.`` prefix removed if present."""
    if "backbone" not in ckpt:
        raise CheckpointError(f"{path}: has no 'backbone' key (keys: {sorted(ckpt)[:8]})")
    return {k.removeprefix("module."): v for k, v in ckpt["backbone"].items()}
