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
