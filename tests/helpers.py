"""Assertions, paths and small runs shared by the tests."""
import importlib.util
import os
import re

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository


def load_script(name: str):
    """The module of ``scripts/<name>.py`` (``name`` may hold a sub-folder, ``bench/bench_pretrain``),
    freshly executed (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(os.path.basename(name), os.path.join(ROOT, "scripts", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def expect_one_line_error(main, argv, capsys, pattern: str) -> None:
    """``main(argv)`` exits with status 2 and a single stderr line 'error: ...' matching ``pattern``."""
    capsys.readouterr()  # drop what earlier runs printed
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: "), err
    assert re.search(pattern, err), err


def tiny_run(tmp_path, *extra, device="cpu", data=("--dataset", "colordigits")):
    """A built pretraining Run of mini_resnet on colordigits (batch 32, 1 epoch), set to epoch 0. On
    CUDA the backbone stays eager unless ``extra`` names --compile: the CUDA tests built on this
    check the input side and the step around the backbone, whose CUDA graphs have a test of their own."""
    import pretrain_cond
    from utils.training.run import build_run
    from utils.training.validate import validate
    eager = [] if {"--compile", "--no-compile", "--compile-mode"} & set(extra) else ["--no-compile"]
    args = pretrain_cond.build_parser().parse_args(
        ["--logdir", str(tmp_path / "run"), *data, "--model", "mini_resnet", "--batch-size", "32",
         "--max-epochs", "1", "--proj-hidden", "32", "--device", device, *eager, *extra])
    validate(args)
    run = build_run(args, torch.device(device))
    run.set_epoch(0)
    return run


class StubEngine:
    """What a step function reads of an Ignite Engine: ``state.iteration``."""

    class state:
        iteration = 1
