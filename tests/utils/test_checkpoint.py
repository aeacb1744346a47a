"""Atomic checkpoint writes and safe loading."""
import errno
import os
import tempfile

import pytest
import torch

from utils.checkpoint import CheckpointError, backbone_state_dict, load_checkpoint, save_atomic


def test_save_is_atomic_and_failed_save_keeps_old_file(tmp_path):
    path = str(tmp_path / "ckpt.pth")
    save_atomic({"backbone": {"w": torch.ones(2)}}, path)
    with pytest.raises(Exception):
        save_atomic({"bad": lambda: 0}, path)  # not picklable: fails mid-write
    assert torch.equal(load_checkpoint(path)["backbone"]["w"], torch.ones(2))
    assert os.listdir(tmp_path) == ["ckpt.pth"]  # no temp file left behind


def test_full_disk_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "ckpt.pth")
    save_atomic({"backbone": {"w": torch.ones(2)}}, path)

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)  # where a full disk shows up at the latest
    with pytest.raises(CheckpointError, match=rf"^cannot write checkpoint {path} \(No space left on device\); "
                                              "the previous one is intact$"):
        save_atomic({"backbone": {"w": torch.zeros(2)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["backbone"]["w"], torch.ones(2))
    assert os.listdir(tmp_path) == ["ckpt.pth"]

    def read_only(**kw):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
    monkeypatch.setattr(tempfile, "mkstemp", read_only)  # a folder that became read-only
    with pytest.raises(CheckpointError, match=r"^cannot write checkpoint \S+new.pth \(Permission denied\)$"):
        save_atomic({"w": 1}, str(tmp_path / "new.pth"))


def test_load_refuses_code_corrupt_and_missing(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    evil = str(tmp_path / "evil.pth")
    torch.save({"x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        load_checkpoint(evil)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth: unreadable"):
        load_checkpoint(str(junk))
    with pytest.raises(CheckpointError, match="^checkpoint .*none.pth: no such file$"):
        load_checkpoint(str(tmp_path / "none.pth"))
    with pytest.raises(CheckpointError, match="^--ckpt .*junk.pth: unreadable or corrupt"):  # named by its flag
        load_checkpoint(str(junk), flag="--ckpt")


def test_backbone_state_strips_module_prefix_and_needs_key():
    sd = backbone_state_dict({"backbone": {"module.conv1.weight": torch.zeros(1)}})
    assert list(sd) == ["conv1.weight"]
    with pytest.raises(CheckpointError, match="no 'backbone' key"):
        backbone_state_dict({"model": {}}, "x.pth")


@pytest.fixture
def small_disk(tmp_path):
    """A folder on a 256 KiB file system: a tmpfs where this runs as root, else None (the test patches)."""
    import shutil
    import subprocess
    where = tmp_path / "disk"
    where.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount") or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(where)], capture_output=True,
            check=False).returncode:
        yield None
        return
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


class _FullFile:
    """A file whose writes fail as on a full disk once ``room`` bytes are written."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, b):
        self.room -= len(b)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def test_a_disk_that_fills_up_inside_torch_save_is_one_line(small_disk, tmp_path, monkeypatch):
    """torch.save re-raises the file's ENOSPC as a RuntimeError of its zip writer."""
    folder = small_disk or tmp_path
    path = str(folder / "ckpt.pth")
    save_atomic({"backbone": {"w": torch.ones(2)}}, path)
    if small_disk is None:  # not root: the write is made to fail after 4 KiB
        real = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda fd, mode: _FullFile(real(fd, mode), 4096))
    with pytest.raises(CheckpointError, match=rf"^cannot write checkpoint {path} \(No space left on device\); "
                                              "the previous one is intact$"):
        save_atomic({"backbone": {"w": torch.zeros(300_000)}}, path)  # 1.2 MB on 256 KiB
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["backbone"]["w"], torch.ones(2))
    assert os.listdir(folder) == ["ckpt.pth"]


def test_the_run_lock_on_a_full_disk_is_one_line(small_disk, tmp_path, monkeypatch):
    from utils.checkpoint import hold_run_lock
    folder = small_disk or tmp_path
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    if small_disk is None:
        import builtins
        real = builtins.open
        monkeypatch.setattr(builtins, "open", lambda p, *a, **k: _FullFile(real(p, *a, **k), 0)
                            if str(p).endswith(".lock") else real(p, *a, **k))
    else:
        with open(folder / "filler", "wb", buffering=0) as f, pytest.raises(OSError, match="No space left"):
            while True:  # fill the disk
                f.write(b"\0" * 4096)
    with pytest.raises(CheckpointError, match=rf"^--logdir {folder}: cannot write its lock file \(No space left "
                                              r"on device\)$"):
        hold_run_lock(str(folder))


def test_save_refuses_non_finite_weights_and_keeps_the_previous_file(tmp_path):
    """A run whose weights went NaN must not replace the last good checkpoint with them."""
    path = str(tmp_path / "ckpt-last.pth")
    good = {"model": {"w": torch.ones(3)}, "optimizer": {"state": {0: {"momentum_buffer": torch.ones(3)}}}}
    save_atomic(good, path)
    for where, bad in [("model.w", {"model": {"w": torch.tensor([1.0, float("nan"), 0.0])}}),
                       ("optimizer.state.0.momentum_buffer",
                        {"model": {"w": torch.ones(3)},
                         "optimizer": {"state": {0: {"momentum_buffer": torch.tensor([float("inf")])}}}})]:
        with pytest.raises(CheckpointError, match=rf"^refusing to write checkpoint {path}: {where} holds NaN or "
                                                  r"Inf values; the previous one is intact$"):
            save_atomic(bad, path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(3))
    assert os.listdir(tmp_path) == ["ckpt-last.pth"]
    save_atomic({"model": {"step": torch.tensor(3)}, "rng": torch.ByteTensor([255])}, path)  # integers pass


def test_bit_flips_and_truncation_are_caught_on_load(tmp_path):
    """torch.load does not check the zip's CRC-32s: a flipped bit in a tensor loaded silently changed."""
    path = tmp_path / "ckpt.pth"
    w = torch.linspace(-1, 1, 4096)
    save_atomic({"model": {"w": w}}, str(path))
    data = path.read_bytes()
    at = data.index(w[2048].numpy().tobytes())  # a byte of the tensor's data
    flipped = bytearray(data)
    flipped[at + 3] ^= 0x10
    (tmp_path / "flipped.pth").write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match=r"^--resume \S+flipped.pth: unreadable or corrupt \(checksum "
                                              r"mismatch in \S+\)$"):
        load_checkpoint(str(tmp_path / "flipped.pth"), flag="--resume")
    (tmp_path / "cut.pth").write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=r"^--ckpt \S+cut.pth: unreadable or corrupt"):
        load_checkpoint(str(tmp_path / "cut.pth"), flag="--ckpt")
    assert torch.equal(load_checkpoint(str(path))["model"]["w"], w)


def test_a_kept_checkpoint_is_never_lost_to_a_death_between_the_writes(tmp_path, monkeypatch):
    """An epoch that keeps ckpt-N.pth writes it and ckpt-last.pth: a process killed at any point of those
    writes leaves ckpt-N.pth, or a ckpt-last.pth from before epoch N (whose resume writes ckpt-N again)."""
    from utils.checkpoint import save_epoch

    class Killed(BaseException):
        pass
    real = os.replace
    for death in range(1, 6):
        folder = tmp_path / str(death)
        folder.mkdir()
        save_epoch({"epoch": 1}, str(folder), 1, keep=False)
        calls = [0]

        def dying(src, dst, calls=calls, death=death):
            calls[0] += 1
            if calls[0] == death:
                raise Killed
            return real(src, dst)
        monkeypatch.setattr(os, "replace", dying)
        try:
            save_epoch({"epoch": 2}, str(folder), 2, keep=True)
        except Killed:
            pass
        monkeypatch.undo()
        last = load_checkpoint(str(folder / "ckpt-last.pth"))["epoch"]
        assert last == 1 or (folder / "ckpt-2.pth").exists(), death
