"""transfer_looc_probe.py end to end on CPU (a CUB-200 tree in the published layout, an ImageNet-100
tree), its resume, and its one-line errors."""
import json
import os
import re

import pytest
import torch

import transfer_looc_probe
from tests.data_formats import write_class_folders, write_imagenet100
from tests.helpers import expect_one_line_error
from utils.checkpoint import save_atomic

CUB_CLASSES = [f"{c + 1:03d}.Bird_{c}" for c in range(200)]


@pytest.fixture(scope="module")
def cub(tmp_path_factory):
    """root/{train,test}/<class>/ with CUB's 200 classes, one image per class in each."""
    root = tmp_path_factory.mktemp("cub")
    write_class_folders(str(root / "train"), CUB_CLASSES, 1, size=(40, 36))
    write_class_folders(str(root / "test"), CUB_CLASSES, 1, size=(40, 36), seed=7)
    return str(root)


def _backbone_ckpt(folder) -> str:
    from models import build_backbone
    torch.manual_seed(0)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "ckpt-last.pth")
    save_atomic({"backbone": build_backbone("mini_resnet", 32)[0].state_dict()}, path)
    return path


def probe_argv(ckpt, cub, *extra):
    return ["--ckpt", ckpt, "--pretrain-data", "colordigits", "--model", "mini_resnet", "--dataset", "cub200",
            "--datadir", cub, "--epochs", "2", "--milestones", "1", "--batch-size", "64", "--num-workers", "0",
            "--device", "cpu", *extra]


@pytest.fixture(scope="module")
def full_run(cub, tmp_path_factory):
    """An uninterrupted two-epoch probe: (its folder, its result JSON, what it printed)."""
    import io
    from contextlib import redirect_stdout
    ckpt = _backbone_ckpt(tmp_path_factory.mktemp("full"))
    out = io.StringIO()
    with redirect_stdout(out):
        transfer_looc_probe.main(probe_argv(ckpt, cub))
    folder = os.path.dirname(ckpt)
    with open(os.path.join(folder, "looc-cub200-top1-ckpt-last.json")) as f:
        return folder, json.load(f), out.getvalue()


def test_cub200_writes_the_best_epoch_and_ends_as_the_linear_evaluation(full_run):
    folder, res, out = full_run
    lines = out.strip().splitlines()
    assert lines[-1] == f"wrote {os.path.join(folder, 'looc-cub200-top1-ckpt-last.json')}"
    assert re.fullmatch(r"test top1=([0-9.]+)", lines[-2]).group(1) == f"{res['test']:.4f}"
    assert [r["epoch"] for r in res["history"]] == [1, 2] and [r["lr"] for r in res["history"]] == [30.0, 3.0]
    accs = [r["test"] for r in res["history"]]
    assert res["test"] == max(accs) and res["best_epoch"] == accs.index(max(accs)) + 1
    assert res["last"] == accs[-1] and res["sizes"] == {"train": 200, "test": 200}
    assert (res["dataset"], res["metric"], res["protocol"]) == ("cub200", "top1", "looc")
    assert len(re.findall(r"^epoch \d/2 lr=", out, re.MULTILINE)) == 2
    state = torch.load(os.path.join(folder, "looc-cub200-ckpt-last-probe.pth"), weights_only=True)
    assert state["epoch"] == 2 and state["head"]["weight"].shape == (200, 128)


def test_a_stopped_probe_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, capsys):
    """On a four-class tree in CUB's layout (the class count is lowered for speed): stopped in its
    second epoch and resumed, a probe ends where an uninterrupted one does."""
    import utils.evaluation.looc_probe
    monkeypatch.setitem(utils.evaluation.looc_probe.LOOC_FOLDERS, "cub200", ("train", "test", 4))
    for split, seed in (("train", 0), ("test", 7)):
        write_class_folders(str(tmp_path / "cub" / split), CUB_CLASSES[:4], 3, size=(40, 36), seed=seed)
    cub = str(tmp_path / "cub")
    whole, stopped = _backbone_ckpt(tmp_path / "whole"), _backbone_ckpt(tmp_path / "stopped")
    transfer_looc_probe.main(probe_argv(whole, cub, "--batch-size", "5"))
    train_epoch = utils.evaluation.looc_probe.train_epoch

    def stop_in_second_epoch(probe, data, epoch, workers):
        if epoch == 1:
            raise KeyboardInterrupt
        return train_epoch(probe, data, epoch, workers)
    monkeypatch.setattr(utils.evaluation.looc_probe, "train_epoch", stop_in_second_epoch)
    with pytest.raises(SystemExit) as stop:
        transfer_looc_probe.main(probe_argv(stopped, cub, "--batch-size", "5"))
    assert stop.value.code == 130 and "--resume" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "stopped" / "looc-cub200-top1-ckpt-last.json")
    monkeypatch.setattr(utils.evaluation.looc_probe, "train_epoch", train_epoch)
    expect_one_line_error(transfer_looc_probe.main, probe_argv(stopped, cub, "--batch-size", "5"), capsys,
                          r"--ckpt .*ckpt-last.pth: a probe checkpoint .*-probe.pth exists; pass --resume")
    transfer_looc_probe.main(probe_argv(stopped, cub, "--batch-size", "5", "--resume"))
    assert "resuming" in capsys.readouterr().out
    got, want = (json.loads((tmp_path / d / "looc-cub200-top1-ckpt-last.json").read_text())
                 for d in ("stopped", "whole"))
    assert len(got["history"]) == 2 and got["history"] == want["history"] and got["test"] == want["test"]
    heads = [torch.load(tmp_path / d / "looc-cub200-ckpt-last-probe.pth", weights_only=True)["head"]["weight"]
             for d in ("stopped", "whole")]
    assert torch.equal(*heads)
    expect_one_line_error(transfer_looc_probe.main, probe_argv(stopped, cub, "--resume", "--lr", "10"), capsys,
                          r"--resume: .*probe.pth was made with other settings \(lr 30.0 -> 10.0; batch_size 5 -> 64\)")


def test_imagenet100_trains_on_train_and_scores_val(tmp_path):
    data = write_imagenet100(str(tmp_path / "in100"), per_class=1, val_per_class=1, size=(40, 36))
    ckpt = _backbone_ckpt(tmp_path / "run")
    transfer_looc_probe.main(["--ckpt", ckpt, "--pretrain-data", "colordigits", "--model", "mini_resnet",
                              "--dataset", "imagenet100", "--datadir", data, "--epochs", "1", "--milestones",
                              "--num-workers", "0", "--device", "cpu"])
    res = json.loads((tmp_path / "run" / "looc-imagenet100-top1-ckpt-last.json").read_text())
    assert res["sizes"] == {"train": 100, "test": 100}  # the extra class folder is not one of the 100
    assert [r["lr"] for r in res["history"]] == [30.0]


def test_bad_inputs(cub, tmp_path, capsys):
    ckpt = _backbone_ckpt(tmp_path / "run")

    def expect(pattern, *extra, ckpt=ckpt, datadir=cub):
        argv = probe_argv(ckpt, datadir)
        for flag, value in zip(extra[::2], extra[1::2]):
            at = argv.index(flag) if flag in argv else None
            if at is None:
                argv += [flag, value]
            elif value is None:  # a flag to drop with its one value
                del argv[at:at + 2]
            else:
                argv[at + 1] = value
        expect_one_line_error(transfer_looc_probe.main, [a for a in argv if a is not None], capsys, pattern)
    expect(r"--ckpt .*none.pth: no such file$", ckpt=tmp_path / "none.pth")
    save_atomic({"model": {}}, str(tmp_path / "nobb.pth"))
    expect(r"--ckpt .*nobb.pth: has no 'backbone' key", ckpt=tmp_path / "nobb.pth")
    expect(r"--datadir .*missing: no such directory$", datadir=tmp_path / "missing")
    expect(r"--dataset cub200 needs --datadir", "--datadir", None)
    expect(r"--dataset must be one of \('cub200', 'imagenet100'\), got 'cifar10'$", "--dataset", "cifar10")
    expect(r"--epochs must be positive, got 0$", "--epochs", "0")
    expect(r"--lr must be positive, got -1.0$", "--lr", "-1")
    expect(r"--momentum must be in \[0, 1\), got 1.0$", "--momentum", "1")
    expect(r"--wd must be >= 0, got -0.1$", "--wd", "-0.1")
    expect(r"--milestones must be increasing epochs between 1 and --epochs 2 - 1, got 2$", "--milestones", "2")
    expect(r"--precision must be fp32 or bf16, got 'fp16'$", "--precision", "fp16")
    expect(r"--batch-size must be positive, got 0$", "--batch-size", "0")
    (tmp_path / "half" / "test").mkdir(parents=True)
    expect(r"--datadir .*half: missing .*half/train \(expected root/train/<class>/ and root/test/<class>/\)$",
           datadir=tmp_path / "half")
    write_class_folders(str(tmp_path / "few" / "train"), CUB_CLASSES[:3], 1)
    write_class_folders(str(tmp_path / "few" / "test"), CUB_CLASSES[:3], 1)
    expect(r"--datadir .*few: .*few/train has 3 class folders, expected 200 for cub200$", datadir=tmp_path / "few")


def test_milestones_out_of_order_and_the_resnet50_default(cub, tmp_path, capsys):
    ckpt = _backbone_ckpt(tmp_path)
    argv = probe_argv(ckpt, cub)
    argv[argv.index("--epochs") + 1] = "200"
    at = argv.index("--milestones")
    expect_one_line_error(transfer_looc_probe.main, argv[:at + 1] + ["160", "120"] + argv[at + 2:], capsys,
                          r"--milestones must be increasing .* got 160 120$")
    parsed = transfer_looc_probe.build_parser().parse_args(["--ckpt", "x"])
    assert (parsed.epochs, parsed.lr, parsed.milestones, parsed.momentum, parsed.wd, parsed.batch_size) == (
        200, 30.0, [120, 160], 0.9, 0.0, 256)
    model_at = argv.index("--model")
    expect_one_line_error(transfer_looc_probe.main, argv[:model_at] + argv[model_at + 2:], capsys,
                          r"--ckpt .*: backbone does not match --model resnet50")
