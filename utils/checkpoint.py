"""Checkpoints: written atomically (temp file + rename), read without executing code."""
from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
import zipfile
from typing import Any

import torch

TEMP_PREFIX = ".tmp-"  # files being written; a process killed meanwhile leaves them (see remove_stale_temps)


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, written or used; printed as one line naming the path."""


def save_atomic(obj: dict[str, Any], path: str) -> None:
    """Write ``obj`` to ``path`` so that a crash leaves either the old file or the new one, never half.
    A disk that is full or read-only, or tensors holding NaN or Inf (weights a diverged run would put
    over the last good ones), give a one-line CheckpointError; the old file stays as it was."""
    if bad := first_non_finite(obj):
        raise CheckpointError(f"refusing to write checkpoint {path}: {bad} holds NaN or Inf values{_kept(path)}")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".pth", dir=directory)
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
        if cause := _os_error(e):
            raise _unwritable(path, cause) from None
        raise


def save_epoch(state: dict[str, Any], logdir: str, epoch: int, keep: bool) -> None:
    """``ckpt-last.pth`` of ``epoch``, and ``ckpt-{epoch}.pth`` too when ``keep``. The kept file is
    written first and ``ckpt-last.pth`` made a hard link to it (one serialisation, not two), so a
    process killed in between leaves a ``ckpt-last.pth`` from before ``epoch``, whose resume writes
    the kept file again, never a ``ckpt-last.pth`` past an epoch whose kept file is missing."""
    last = os.path.join(logdir, "ckpt-last.pth")
    if not keep:
        save_atomic(state, last)
        return
    kept = os.path.join(logdir, f"ckpt-{epoch}.pth")
    save_atomic(state, kept)
    tmp = os.path.join(logdir, f"{TEMP_PREFIX}last-{os.getpid()}.pth")
    try:
        os.link(kept, tmp)
    except OSError:  # a file system without hard links: a second copy
        save_atomic(state, last)
        return
    try:
        os.replace(tmp, last)
        _fsync_directory(logdir)
    except BaseException as e:
        if os.path.lexists(tmp):
            os.remove(tmp)
        if cause := _os_error(e):
            raise _unwritable(last, cause) from None
        raise


def checkpoint_position(path: str) -> tuple[int, int] | None:
    """(epochs finished, steps done in the next one) of a checkpoint, read without loading its tensors;
    None if it cannot be read."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - any failure to read it
        return None
    epoch, step = ckpt.get("epoch"), ckpt.get("step", 0)
    return (epoch, step) if isinstance(epoch, int) and isinstance(step, int) else None


def latest_checkpoint(logdir: str) -> str | None:
    """What ``--resume last`` continues from: ``ckpt-last.pth``, or a kept ``ckpt-N.pth`` of a later
    epoch written after it (a process killed between an epoch's two checkpoint writes leaves the kept
    one newer, or alone; a ``ckpt-last.pth`` copied back from an older one is newer than both, and
    kept); None when the folder holds neither."""
    last = os.path.join(logdir, "ckpt-last.pth")
    if not os.path.isdir(logdir):
        return None
    kept = {int(m[1]): m[0] for m in (re.fullmatch(r"ckpt-(\d+)\.pth", f) for f in os.listdir(logdir)) if m}
    if not kept:
        return last if os.path.isfile(last) else None
    newest = os.path.join(logdir, kept[max(kept)])
    if not os.path.isfile(last):
        return newest
    epoch = (checkpoint_position(last) or (0, 0))[0]  # a damaged one (or one at epoch 0) counts as current
    return last if (epoch or max(kept)) >= max(kept) or os.path.getmtime(last) >= os.path.getmtime(newest) else newest


def first_non_finite(obj: Any, where: str = "") -> str | None:
    """The dotted key of the first floating-point tensor in ``obj`` (nested dicts, lists) that holds a
    NaN or an Inf, or None. One host sync per device, not one per tensor."""
    tensors: list[tuple[str, torch.Tensor]] = []

    def walk(o: Any, key: str) -> None:
        if isinstance(o, torch.Tensor):
            if o.is_floating_point() or o.is_complex():
                tensors.append((key, o))
        elif isinstance(o, dict):
            for k, v in o.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                walk(v, f"{key}.{i}" if key else str(i))
    walk(obj, where)
    by_device: dict[torch.device, list[tuple[str, torch.Tensor]]] = {}
    for key, t in tensors:
        by_device.setdefault(t.device, []).append((key, t))
    for group in by_device.values():
        finite = torch.stack([torch.isfinite(t).all() for _, t in group]).tolist()
        if not all(finite):
            return group[finite.index(False)][0]
    return None


def _os_error(e: BaseException) -> OSError | None:
    """The OSError behind ``e``: itself, or the one torch's zip writer re-raised as a RuntimeError."""
    while e is not None:
        if isinstance(e, OSError):
            return e
        e = e.__cause__ or e.__context__
    return None


def _kept(path: str) -> str:
    return "; the previous one is intact" if os.path.exists(path) else ""


def _unwritable(path: str, e: OSError) -> CheckpointError:
    return CheckpointError(f"cannot write checkpoint {path} ({e.strerror or e}){_kept(path)}")


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


def hold_run_lock(logdir: str, create: bool = True) -> None:
    """Lock ``logdir`` for this process's life, so that a second run started on it (a sweep launched
    twice) stops at once instead of writing its checkpoints over this one's. The OS drops the lock
    when the process ends, however it ends, so a requeued job finds the folder free. Only the first
    process of a torchrun/SLURM launch locks; file systems without locks (some NFS) go unlocked.
    ``create=False`` writes nothing: it takes the lock only if the folder already has a lock file (a
    run has used it), to tell a run writing there now before any other check of the folder. Once
    locked, the temporary files of a killed run's checkpoint writes are removed."""
    rank = os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or "0"
    key = os.path.realpath(logdir)
    lock = os.path.join(logdir, ".lock")
    if rank != "0" or key in _HELD or not (create or os.path.isfile(lock)):
        return
    try:
        import fcntl
    except ImportError:  # Windows
        return
    try:
        f = open(lock, "a+")
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
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{socket.gethostname()}:{os.getpid()}\n")
        f.flush()
    except OSError as e:  # a full disk: the first checkpoint could not be written either
        with contextlib.suppress(OSError):  # closing flushes the same bytes again
            f.close()
        os.remove(lock)  # emptied above, and still ours: a refused run leaves no lock file
        raise CheckpointError(f"--logdir {logdir}: cannot write its lock file ({e.strerror or e})") from None
    _HELD[key] = f
    remove_stale_temps(logdir)


def remove_stale_temps(logdir: str) -> list[str]:
    """Delete the temporary files that writes killed mid-way left in ``logdir`` (checkpoints and JSON);
    only for the process that holds the folder's lock, when no other writer can be at work there."""
    gone = []
    for name in os.listdir(logdir):
        if (name.startswith(TEMP_PREFIX) and name.endswith(".pth")) or name.endswith(".json.tmp"):
            try:
                os.remove(os.path.join(logdir, name))
                gone.append(name)
            except OSError:
                pass
    return gone


def release_run_lock(logdir: str, remove_folder: bool) -> None:
    """Give up the lock of a run refused before it wrote anything: its lock file goes, and the folder
    too when ``remove_folder`` (this run made it), so a refused run leaves nothing behind. A folder
    holding anything else is left as it is, lock file included."""
    key = os.path.realpath(logdir)
    f = _HELD.get(key)
    if f is None:
        return
    try:
        if os.listdir(logdir) != [".lock"]:
            return
        os.remove(os.path.join(logdir, ".lock"))  # while still locked: no other run can be taking it
        del _HELD[key]
        f.close()
        if remove_folder:
            os.rmdir(logdir)
    except OSError:
        pass


def load_checkpoint(path: str, map_location: str | torch.device = "cpu", flag: str = "checkpoint") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; one-line CheckpointError if unreadable, naming
    ``flag`` (the command-line flag that gave ``path``)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{flag} {path}: no such file")
    if bad := damaged_record(path):
        raise CheckpointError(f"{flag} {path}: unreadable or corrupt ({bad})")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to unpickle means a corrupt or foreign file
        raise CheckpointError(f"{flag} {path}: unreadable or corrupt ({type(e).__name__})") from None
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"{flag} {path}: expected a dict, got {type(ckpt).__name__}")
    return ckpt


def damaged_record(path: str) -> str | None:
    """What is wrong with the zip archive ``torch.save`` wrote at ``path``, checked against the CRC-32
    it stores for each record (``torch.load`` checks none: a flipped bit in a tensor loads silently);
    None for an intact archive, or a file of the older, non-zip format."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.CRC == 0 and info.file_size:  # written without checksums (torch's option)
                    continue
                with z.open(info) as f:
                    while f.read(1 << 22):  # zipfile compares the CRC-32 at the end of each record
                        pass
    except zipfile.BadZipFile as e:
        record = f" in {info.filename}" if "CRC" in str(e) else ""
        return f"checksum mismatch{record}" if record else f"damaged archive: {e}"
    except (OSError, EOFError, ValueError, NotImplementedError) as e:
        return f"damaged archive: {e}"
    return None


def state_mismatch(own: dict[str, torch.Tensor], given: dict[str, Any]) -> str | None:
    """How the state dict ``given`` fails to fit a module whose state dict is ``own`` (counts of missing,
    unexpected and mis-shaped keys, and the first of them), or None where it loads strictly."""
    if not isinstance(given, dict):
        return f"a {type(given).__name__}, not a state dict"
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    wrong = [k for k in own if k in given and (not isinstance(given[k], torch.Tensor) or own[k].shape !=
                                                given[k].shape)]
    if not (missing or unexpected or wrong):
        return None
    return (f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} mis-shaped keys, "
            f"e.g. {(missing or unexpected or wrong)[0]}")


def optimizer_mismatch(own: dict[str, Any], given: Any) -> str | None:
    """How the optimiser state ``given`` fails to fit an optimiser whose state dict is ``own`` (its
    parameter groups and their sizes), or None where it loads."""
    groups = given.get("param_groups") if isinstance(given, dict) else None
    if not isinstance(groups, list):
        return "no parameter groups"
    if len(groups) != len(own["param_groups"]):
        return f"{len(groups)} parameter groups, the model's {len(own['param_groups'])}"
    for i, (theirs, ours) in enumerate(zip(groups, own["param_groups"])):
        n = len(theirs.get("params", ()))
        if n != len(ours["params"]):
            return f"parameter group {i} holds {n} parameters, the model's {len(ours['params'])}"
    return None


def backbone_state_dict(ckpt: dict[str, Any], path: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The ``backbone`` entry, with a DistributedDataParallel ``module.`` prefix removed if present."""
    if "backbone" not in ckpt:
        raise CheckpointError(f"{path}: has no 'backbone' key (keys: {sorted(ckpt)[:8]})")
    return {k.removeprefix("module."): v for k, v in ckpt["backbone"].items()}
