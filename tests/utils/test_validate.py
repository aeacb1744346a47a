"""Defaults that depend on the device: chosen by measurement (README, Speed), resolved before training."""
import pytest
import torch

import pretrain_cond
import utils.validate as validate_module
from utils.validate import _normalise


def _args(*extra):
    return pretrain_cond.build_parser().parse_args(["--logdir", "x", *extra])


@pytest.mark.parametrize("workers,decode", [(4, "device"), (7, "device"), (8, "workers"), (16, "workers")])
def test_cuda_defaults(monkeypatch, workers, decode):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(validate_module, "triton_usable", lambda: True)
    a = _args("--device", "cuda", "--num-workers", str(workers))
    _normalise(a)
    assert (a.precision, a.channels_last, a.compile, a.compile_augment, a.jpeg_decode) == (
        "bf16", True, False, True, decode)


def test_compiling_on_a_gpu_without_triton_support_is_off_by_default_and_refused_when_asked(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (6, 1))  # e.g. a P100 or GTX 1080
    a = _args("--device", "cuda")
    _normalise(a)
    assert a.compile_augment is False
    for flag in ("--compile-augment", "--compile"):
        with pytest.raises(ValueError, match=f"^{flag} on CUDA needs Triton"):
            _normalise(_args("--device", "cuda", flag))


def test_cpu_defaults_and_explicit_choices_are_kept():
    a = _args("--device", "cpu")
    _normalise(a)
    assert (a.precision, a.channels_last, a.compile_augment, a.jpeg_decode) == ("fp32", False, False, "workers")
    b = _args("--device", "cpu", "--jpeg-decode", "device", "--precision", "bf16", "--channels-last",
              "--compile-augment")
    _normalise(b)
    assert (b.precision, b.channels_last, b.compile_augment, b.jpeg_decode) == ("bf16", True, True, "device")


def test_resolve_device_shared_by_every_entry_point(monkeypatch):
    from utils.validate import resolve_device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="--device must be cuda, cpu or auto, got 'gpu'"):
        resolve_device("gpu")
