"""transfer_linear_eval.py end to end on CPU, and its one-line errors."""
import json
import os
import re
import time

import pytest

import transfer_linear_eval
from tests.helpers import expect_one_line_error
from tests.data_formats import write_cifar
from utils.checkpoint import save_atomic


def run(argv):
    transfer_linear_eval.main([str(a) for a in argv])


def test_seed_command_on_pretrain_checkpoint(seed_pretrain_run, tmp_path, monkeypatch, capsys):
    ckpt = seed_pretrain_run / "ckpt-last.pth"
    data = write_cifar(str(tmp_path / "cifar"), monkeypatch, "cifar10", n_train=40, n_test=20)
    run(["--pretrain-data", "imagenet100", "--ckpt", ckpt, "--model", "resnet18", "--dataset", "cifar10",
         "--datadir", data, "--metric", "top1", "--num-workers", "0"])
    out = capsys.readouterr().out
    assert len(re.findall(r"^wd=.* val top1=", out, re.M)) == 45 and "best wd=" in out
    test_line = re.search(r"^test top1=([0-9.]+)$", out, re.M)
    res = json.loads((seed_pretrain_run / "linear-cifar10-top1-ckpt-last.json").read_text())
    assert float(test_line.group(1)) == pytest.approx(res["test"], abs=1e-4)
    assert res["sizes"] == {"train": 36, "val": 4, "test": 20} and len(res["grid"]) == 45
    assert res["best_wd"] in res["grid"] and res["args"]["model"] == "resnet18"


@pytest.mark.parametrize("dataset,classes", [("colordigits-digit", 10), ("colordigits-hue", 4)])
def test_builtin_colordigits(colordigits_ckpt, capsys, dataset, classes):
    run(["--pretrain-data", "colordigits", "--ckpt", colordigits_ckpt, "--model", "mini_resnet",
         "--dataset", dataset, "--num-workers", "0", "--max-iter", "50"])
    path = os.path.join(os.path.dirname(colordigits_ckpt), f"linear-{dataset}-top1-ckpt-last.json")
    res = json.load(open(path))
    assert res["sizes"] == {"train": 1294, "val": 144, "test": 359}
    assert res["test"] > 1.5 / classes  # well above chance after one epoch


def test_flowers_n_shot_refits_on_its_own_n_shot_set(colordigits_ckpt, tmp_path, monkeypatch):
    """Upstream refits flowers-Nshot on N per class of train + val, not on the N-shot train set plus val."""
    from tests.data_formats import write_flowers102
    root = write_flowers102(str(tmp_path / "fl"), monkeypatch, n=60)  # train / val / test: 20 images each
    run(["--pretrain-data", "colordigits", "--ckpt", colordigits_ckpt, "--model", "mini_resnet",
         "--dataset", "flowers-5shot", "--datadir", root, "--num-workers", "0", "--max-iter", "5"])
    out = os.path.join(os.path.dirname(colordigits_ckpt), "linear-flowers-5shot-class-avg-ckpt-last.json")
    with open(out) as f:
        res = json.load(f)
    assert res["sizes"] == {"train": 15, "val": 20, "test": 20, "refit": 15}


def test_ctrl_c_says_what_is_kept_in_one_line(colordigits_ckpt, monkeypatch, capsys):
    import utils.evaluation.linear_eval

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(utils.evaluation.linear_eval, "linear_eval", interrupt)
    with pytest.raises(SystemExit) as stop:
        run(["--pretrain-data", "colordigits", "--ckpt", colordigits_ckpt, "--model", "mini_resnet",
             "--dataset", "colordigits-digit", "--num-workers", "0"])
    assert stop.value.code == 130
    assert capsys.readouterr().err == "interrupted: the results printed above are in their JSON files; the " \
                                      "checkpoints after them were not evaluated\n"


def _expect_error(argv, capsys, pattern):
    expect_one_line_error(transfer_linear_eval.main, argv, capsys, pattern)


def test_bad_inputs(colordigits_ckpt, tmp_path, capsys):
    base = ["--pretrain-data", "colordigits", "--ckpt", colordigits_ckpt, "--model", "mini_resnet"]
    _expect_error([*base, "--dataset", "cifar10", "--datadir", tmp_path / "none"], capsys,
                  r"--datadir .*none: no such directory")
    _expect_error([*base, "--dataset", "cifar10"], capsys, r"--dataset cifar10 needs --datadir, the folder that holds it$")
    (tmp_path / "empty").mkdir()
    _expect_error([*base, "--dataset", "pets", "--datadir", tmp_path / "empty"], capsys,
                  r"pets not found or corrupted .*--download")
    _expect_error([*base, "--dataset", "imagenet1k"], capsys, r"--dataset must be one of")
    _expect_error([*base, "--dataset", "colordigits-digit", "--metric", "top5"], capsys,
                  r"--metric must be top1 or class-avg")
    save_atomic({"model": {}}, str(tmp_path / "nobb.pth"))
    _expect_error(["--ckpt", tmp_path / "nobb.pth", "--model", "mini_resnet", "--dataset", "colordigits-digit",
                   "--pretrain-data", "colordigits"], capsys, r"--ckpt .*nobb.pth: has no 'backbone' key")
    _expect_error([*base[:4], "--model", "resnet18", "--dataset", "colordigits-digit"], capsys,
                  r"--ckpt .*: backbone does not match --model resnet18 \(\d+ missing")
    for flag, value, expected in [("--pretrain-data", "imagenet", r"--pretrain-data must be one of"),
                                  ("--max-iter", "0", r"--max-iter must be positive, got 0$"),
                                  ("--batch-size", "0", r"--batch-size must be positive, got 0$"),
                                  ("--num-workers", "-2", r"--num-workers must be >= 0, got -2$")]:
        _expect_error([*base, "--dataset", "colordigits-digit", flag, value], capsys, expected)
    (tmp_path / "a-file").write_text("")
    _expect_error([*base, "--dataset", "colordigits-digit", "--tensorboard", tmp_path / "a-file" / "tb"], capsys,
                  r"--tensorboard .*a-file/tb: cannot create this folder \(Not a directory\)$")


def test_a_model_pretrained_on_any_pretraining_dataset_can_be_evaluated(tmp_path):
    """The sweep passes a run's --dataset as --pretrain-data: stl10_rot and folder runs included
    (a checkpoint without pretraining arguments, so that no value contradicts it)."""
    import torch
    from PIL import Image
    from datasets import PRETRAIN_DATASETS
    from datasets.pretrain import eval_transform
    from models import build_backbone
    ckpt = str(tmp_path / "backbone-only.pth")
    torch.save({"backbone": build_backbone("mini_resnet", 32)[0].state_dict()}, ckpt)
    sizes = {}
    for data in PRETRAIN_DATASETS:
        args = transfer_linear_eval.build_parser().parse_args(
            ["--pretrain-data", data, "--ckpt", ckpt, "--model", "mini_resnet", "--dataset", "colordigits-digit"])
        transfer_linear_eval.validate(args)
        sizes[data] = eval_transform(data)(Image.new("RGB", (300, 260))).shape[-1]
    assert sizes == {"cifar10": 32, "cifar100": 32, "stl10": 96, "stl10_rot": 96, "stl10_sol": 96,
                     "colordigits": 32, "imagenet100": 224, "folder": 224}


def test_a_checkpoint_in_a_read_only_folder_fails_before_any_feature_is_extracted(colordigits_ckpt, capsys,
                                                                                   monkeypatch):
    import utils.training.validate
    folder = os.path.dirname(os.path.abspath(colordigits_ckpt))
    access = os.access  # root may write anywhere: the read-only folder is simulated
    monkeypatch.setattr(utils.training.validate.os, "access", lambda p, mode: p != folder and access(p, mode))
    _expect_error(["--pretrain-data", "colordigits", "--ckpt", colordigits_ckpt, "--model", "mini_resnet",
                   "--dataset", "colordigits-digit"], capsys,
                  r"--ckpt .*ckpt-last.pth: its folder is not writable, and the result JSON is written next to it$")


def test_tensorboard_logging(colordigits_ckpt, tmp_path):
    run(["--pretrain-data", "colordigits", "--ckpt", colordigits_ckpt, "--model", "mini_resnet",
         "--dataset", "colordigits-hue", "--num-workers", "0", "--max-iter", "50", "--tensorboard", tmp_path / "tb"])
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path / "tb")).Reload()
    tags = acc.Tags()["scalars"]
    assert any(t.endswith("/test_top1") for t in tags)


def test_wandb_offline_logs_the_result_beside_the_checkpoint(colordigits_ckpt, tmp_path, monkeypatch):
    import shutil
    ckpt = shutil.copy(colordigits_ckpt, tmp_path / "ckpt-last.pth")  # the run goes beside it: not the shared one
    monkeypatch.setenv("WANDB_PROJECT", "cassle-test")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run(["--pretrain-data", "colordigits", "--ckpt", ckpt, "--model", "mini_resnet",
         "--dataset", "colordigits-hue", "--num-workers", "0", "--max-iter", "50"])
    (offline,) = (tmp_path / "wandb").glob("offline-run-*")
    (record,) = offline.rglob("*.wandb")
    # wandb's service process writes the record; on a loaded machine it lands shortly after finish()
    deadline = time.monotonic() + 60
    while b"linear/colordigits-hue/ckpt-last.pth/test_top1" not in record.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert b"linear/colordigits-hue/ckpt-last.pth/test_top1" in record.read_bytes()


def test_pretrain_data_and_model_come_from_the_checkpoint_and_must_agree_with_it(colordigits_ckpt, tmp_path, capsys):
    """Left out, --pretrain-data and --model are the checkpoint's own --dataset and --model (upstream's
    stl10 and resnet18 for a checkpoint without them); a --pretrain-data that would resize or normalise
    its images otherwise is refused."""
    import torch

    from models import build_backbone

    def validated(*extra):
        args = transfer_linear_eval.build_parser().parse_args(
            ["--ckpt", *extra[:1], "--model", "mini_resnet", "--device", "cpu", *map(str, extra[1:])])
        transfer_linear_eval.validate(args)
        return args
    assert validated(colordigits_ckpt, "--dataset", "colordigits-digit").pretrain_data == "colordigits"
    stored = transfer_linear_eval.build_parser().parse_args(["--ckpt", colordigits_ckpt, "--device", "cpu"])
    capsys.readouterr()
    transfer_linear_eval.validate(stored)  # neither flag given: both as the checkpoint stores them
    assert (stored.pretrain_data, stored.model) == ("colordigits", "mini_resnet")
    assert capsys.readouterr().out == (f"using --pretrain-data colordigits (as {colordigits_ckpt} stores it), "
                                       f"--model mini_resnet (as {colordigits_ckpt} stores it)\n")
    assert validated(colordigits_ckpt, "--pretrain-data", "cifar100").pretrain_data == "cifar100"  # same 32 px view
    _expect_error(["--ckpt", colordigits_ckpt, "--model", "mini_resnet", "--pretrain-data", "stl10"], capsys,
                  r"--ckpt .*ckpt-last.pth was pretrained on --dataset colordigits, whose images --pretrain-data "
                  r"stl10 would resize or normalise otherwise: pass --pretrain-data colordigits")
    bare = str(tmp_path / "backbone-only.pth")  # e.g. a converted checkpoint: no pretraining arguments
    torch.save({"backbone": build_backbone("mini_resnet", 96)[0].state_dict()}, bare)
    capsys.readouterr()
    assert validated(bare).pretrain_data == "stl10"
    assert capsys.readouterr().out == f"using --pretrain-data stl10 (the default: {bare} stores none)\n"
    with pytest.raises(ValueError, match="backbone does not match --model resnet18"):  # upstream's default model
        transfer_linear_eval.validate(transfer_linear_eval.build_parser().parse_args(["--ckpt", bare, "--device", "cpu"]))
    assert not validated(bare, "--dataset", "cub200").ten_crop
    assert validated(bare, "--dataset", "cub200", "--pretrain-data", "folder").ten_crop  # any 224 px model
    _expect_error(["--ckpt", colordigits_ckpt, "--model", "mini_resnet", "--dataset", "colordigits-digit", "--ten-crop"],
                  capsys, r"--ten-crop makes 224 px training crops: it is for models pretrained at 224 px "
                  r"\(imagenet100, folder\), not --pretrain-data colordigits \(32 px\)$")
