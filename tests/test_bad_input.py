"""Damaged files, bad flags and faults given to every entry point: each stops with one line naming the
flag or file, before anything is written, and a refused run leaves no folder behind."""
import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

import pretrain_cond
import transfer_few_shot
import transfer_linear_eval
from tests.data_formats import write_class_folders
from tests.helpers import ROOT, expect_one_line_error, load_script
from utils.checkpoint import load_checkpoint

# The flags of conftest's colordigits_ckpt, to resume it.
CKPT_FLAGS = ["--dataset", "colordigits", "--model", "mini_resnet", "--framework", "simclr", "--batch-size", "256",
              "--max-epochs", "2", "--eval-freq", "0", "--device", "cpu", "--aug-treatment", "mlp",
              "--aug-inj-type", "proj-cat", "--aug-cond", "crop", "color", "color_diff", "flip", "blur", "grayscale"]


def damaged(src: str, folder) -> dict[str, str]:
    """Copies of the checkpoint ``src`` in ``folder`` (created): cut in half, one bit flipped in the
    largest tensor's bytes, and one whose backbone holds a NaN; by kind."""
    os.makedirs(folder, exist_ok=True)
    data = Path(src).read_bytes()
    paths = {k: os.path.join(folder, f"{k}.pth") for k in ("truncated", "flipped", "nan")}
    Path(paths["truncated"]).write_bytes(data[:len(data) // 2])
    with zipfile.ZipFile(src) as z:
        big = max(z.infolist(), key=lambda i: i.file_size)
    start = big.header_offset + 30 + len(big.filename.encode()) + len(big.extra)  # local header, then the data
    flipped = bytearray(data)
    flipped[start + big.file_size // 2] ^= 0x04
    Path(paths["flipped"]).write_bytes(bytes(flipped))
    ckpt = load_checkpoint(src)
    for state in (ckpt["backbone"], ckpt["model"]):
        key = next(k for k, v in state.items() if v.is_floating_point() and v.dim() > 1)
        state[key] = state[key].clone()
        state[key].view(-1)[0] = float("nan")
    torch.save(ckpt, paths["nan"])  # as a diverged run of an older version wrote it
    return paths


@pytest.fixture(scope="module")
def bad_ckpts(colordigits_ckpt, tmp_path_factory):
    return damaged(colordigits_ckpt, tmp_path_factory.mktemp("damaged"))


def _listing(folder):
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("kind,pattern", [("truncated", r"unreadable or corrupt"),
                                          ("flipped", r"unreadable or corrupt \(checksum mismatch in \S+\)$")])
def test_a_damaged_checkpoint_given_to_resume_is_one_line_and_nothing_is_written(bad_ckpts, tmp_path, capsys,
                                                                               kind, pattern):
    logdir = tmp_path / "run"
    before = _listing(os.path.dirname(bad_ckpts[kind]))
    expect_one_line_error(pretrain_cond.main, ["--logdir", logdir, *CKPT_FLAGS, "--resume", bad_ckpts[kind]],
                          capsys, rf"^error: --resume {bad_ckpts[kind]}: {pattern}")
    assert not logdir.exists() and _listing(os.path.dirname(bad_ckpts[kind])) == before


def test_a_resume_whose_weights_do_not_fit_the_model_is_one_line_and_leaves_no_folder(colordigits_ckpt, tmp_path,
                                                                                     capsys):
    """E.g. a checkpoint of another version of the code: its arguments match, its state dict does not.
    The folder the refused run made must not then refuse a fresh run there."""
    ckpt = load_checkpoint(colordigits_ckpt)
    dropped = next(k for k in ckpt["model"] if k.startswith("projector"))
    del ckpt["model"][dropped]
    torch.save(ckpt, tmp_path / "other.pth")
    logdir = tmp_path / "run"
    expect_one_line_error(pretrain_cond.main, ["--logdir", logdir, *CKPT_FLAGS, "--resume", tmp_path / "other.pth"],
                          capsys, rf"^error: --resume \S+other.pth: its weights do not fit the model the flags build "
                                  rf"\(1 missing, 0 unexpected, 0 mis-shaped keys, e.g. {dropped}\)$")
    assert not logdir.exists()
    ckpt = load_checkpoint(colordigits_ckpt)
    group = ckpt["optimizer"]["param_groups"][-1]
    n = len(group["params"])
    group["params"] = group["params"][:-1]  # a parameter that another grouping of the optimiser put elsewhere
    torch.save(ckpt, tmp_path / "regrouped.pth")
    expect_one_line_error(pretrain_cond.main, ["--logdir", logdir, *CKPT_FLAGS, "--resume",
                                               tmp_path / "regrouped.pth"], capsys,
                          rf"^error: --resume \S+regrouped.pth: its optimiser state does not fit the model the flags "
                          rf"build \(parameter group {len(ckpt['optimizer']['param_groups']) - 1} holds {n - 1} "
                          rf"parameters, the model's {n}\)$")
    assert not logdir.exists()


@pytest.mark.parametrize("how", ["batch", "download"])
def test_a_run_refused_once_the_data_is_opened_leaves_no_folder(tmp_path, capsys, no_network, how):
    """The batch is checked against the data, and a download made, once the run starts: refused there,
    the folder the checks made (with its lock file) is removed again."""
    logdir = tmp_path / "run"
    flags = {"batch": ["--dataset", "colordigits", "--batch-size", "4096"],
             "download": ["--dataset", "cifar10", "--download", "--datadir", tmp_path / "cifar"]}[how]
    expect_one_line_error(pretrain_cond.main, ["--logdir", logdir, "--model", "mini_resnet", "--framework", "simclr",
                                               "--device", "cpu", "--aug-inj-type", "proj-none", *flags], capsys,
                          {"batch": r"--batch-size 4096 is larger than the dataset",
                           "download": r"--download: could not fetch"}[how])
    assert not logdir.exists()
    mine = tmp_path / "mine"  # a folder the user made is kept, empty as it was
    mine.mkdir()
    expect_one_line_error(pretrain_cond.main, ["--logdir", mine, "--model", "mini_resnet", "--framework", "simclr",
                                               "--device", "cpu", "--aug-inj-type", "proj-none", *flags], capsys, ".")
    assert os.listdir(mine) == []


def _eval_argv(entry, ckpt, tmp_path):
    if entry == "linear":
        return ["--pretrain-data", "colordigits", "--ckpt", ckpt, "--model", "mini_resnet", "--dataset", "cifar10",
                "--datadir", tmp_path, "--num-workers", "0", "--device", "cpu"]  # refused before the data is read
    if entry == "few-shot":
        data = write_class_folders(str(tmp_path / "plant"), [f"leaf{i}" for i in range(6)], 3, size=(32, 32))
        return ["--pretrain-data", "colordigits", "--ckpt", ckpt, "--model", "mini_resnet", "--dataset",
                "plant_disease", "--datadir", data, "--N", "5", "--K", "1", "--Q", "2", "--num-tasks", "5",
                "--num-workers", "0", "--device", "cpu"]
    return ["pca", "--ckpt", ckpt, "--num-images", "32", "--device", "cpu"]


def _entry_main(entry):
    return {"linear": transfer_linear_eval.main, "few-shot": transfer_few_shot.main,
            "analyze": load_script("analyze").main}[entry]


@pytest.mark.parametrize("entry", ["linear", "few-shot", "analyze"])
@pytest.mark.parametrize("kind,pattern", [
    ("truncated", r"unreadable or corrupt"), ("flipped", r"unreadable or corrupt \(checksum mismatch in \S+\)$"),
    ("nan", r"its weights hold NaN or Inf values \(\S+\); the run that wrote it had diverged$")])
def test_a_damaged_checkpoint_given_to_an_evaluation_is_one_line_and_nothing_is_written(bad_ckpts, tmp_path, capsys,
                                                                                      entry, kind, pattern):
    """The NaN one reached L-BFGS (linear), gave NaN features to scikit-learn (few-shot) or a traceback
    in the spectrum (analyze.py pca)."""
    before = _listing(os.path.dirname(bad_ckpts[kind]))
    expect_one_line_error(_entry_main(entry), _eval_argv(entry, bad_ckpts[kind], tmp_path), capsys,
                          rf"^error: --ckpt {bad_ckpts[kind]}: {pattern}")
    assert _listing(os.path.dirname(bad_ckpts[kind])) == before


def test_analyze_on_a_checkpoint_in_a_read_only_folder_is_one_line(colordigits_ckpt, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "shared"
    folder.mkdir()
    shutil.copy(colordigits_ckpt, folder / "ckpt-last.pth")
    real = os.makedirs

    def read_only(path, *a, **k):  # root writes anywhere: the read-only folder is simulated
        if str(path).startswith(str(folder)):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)
    monkeypatch.setattr(os, "makedirs", read_only)
    expect_one_line_error(_entry_main("analyze"), _eval_argv("analyze", folder / "ckpt-last.pth", tmp_path), capsys,
                          rf"^error: --ckpt {folder}/ckpt-last.pth: cannot write its analysis into "
                          rf"{folder}/analysis-ckpt-last \(Permission denied\)$")


def _collect(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "collect_results.py"), *map(str, args)],
                          capture_output=True, text=True, check=False)


def test_collect_results_names_a_damaged_result_and_a_missing_output_folder(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "linear-cifar10-top1-ckpt-last.json").write_text(json.dumps({"test": 0.5}))
    (run / "linear-pets-class-avg-ckpt-last.json").write_text('{"test": 0.7')  # a copy cut short
    out = _collect(run)
    assert out.returncode != 0 and out.stderr == (f"error: {run}/linear-pets-class-avg-ckpt-last.json: not a "
                                                  "result JSON (Expecting ',' delimiter: line 1 column 13 (char 12))\n")
    (run / "linear-pets-class-avg-ckpt-last.json").write_text(json.dumps({"val": 0.7}))
    out = _collect(run)
    assert out.stderr == f"error: {run}/linear-pets-class-avg-ckpt-last.json: not a result JSON (no 'test' value)\n"
    (run / "linear-pets-class-avg-ckpt-last.json").unlink()
    for flag in ("--md", "--csv"):
        out = _collect(run, flag, tmp_path / "no" / "table")
        assert out.returncode != 0 and out.stdout == ""
        assert out.stderr == f"error: {flag} {tmp_path}/no/table: no such folder {tmp_path}/no\n"
    assert _collect(run, "--md", tmp_path / "table.md").returncode == 0
    assert "| run | 50.00 |" in (tmp_path / "table.md").read_text()


def test_few_shot_refuses_one_way_tasks_and_classes_too_small_before_extracting(colordigits_ckpt, tmp_path, capsys,
                                                                              monkeypatch):
    """--N 1 scored 100 % (a task without negatives); class sizes were checked after every feature."""
    import utils.evaluation.features

    def no_extraction(*a, **k):
        raise AssertionError("features extracted before the check")
    monkeypatch.setattr(utils.evaluation.features, "sharded_features", no_extraction)
    argv = _eval_argv("few-shot", colordigits_ckpt, tmp_path)  # 6 classes of 3 images
    expect_one_line_error(transfer_few_shot.main, [*argv, "--N", "1"], capsys,
                          r"^error: --N must be at least 2 \(a task of one class has nothing to tell apart\), got 1$")
    expect_one_line_error(transfer_few_shot.main, [*argv, "--K", "2"], capsys,
                          r"^error: --N 5 --K 2 --Q 2: only 0 classes of --dataset plant_disease have 4 images or "
                          r"more \(the largest has 3\)$")
    expect_one_line_error(transfer_few_shot.main, [*argv, "--N", "7"], capsys,
                          r"^error: --N 7 --K 1 --Q 2: only 6 classes of --dataset plant_disease have 3 images or "
                          r"more \(the largest has 3\)$")


KILLER = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
real, seen = os.replace, []
def replace(src, dst):
    if str(dst).endswith(".pth"):
        seen.append(dst)
        if len(seen) == 2:  # the second checkpoint file of epoch 1
            os.kill(os.getpid(), signal.SIGKILL)
    return real(src, dst)
os.replace = replace
import torchvision.datasets.cifar
torchvision.datasets.cifar.check_integrity = lambda *a: True  # the tiny CIFAR files have their own checksums
import pretrain_cond
pretrain_cond.main(sys.argv[2:])
"""


def test_a_kill_between_an_epochs_two_checkpoints_loses_neither_and_leaves_no_temp_file(tmp_path, monkeypatch):
    """SIGKILL between the writes of ckpt-1.pth and ckpt-last.pth lost ckpt-1.pth for good (the resume
    went on from ckpt-last.pth) and left the killed write's .tmp-*.pth file in the folder forever."""
    from tests.data_formats import write_cifar
    data = write_cifar(str(tmp_path / "cifar"), monkeypatch, "cifar10", n_train=32, n_test=8)  # 2 steps of 16
    logdir = tmp_path / "run"
    argv = ["--logdir", logdir, "--dataset", "cifar10", "--datadir", data, "--model", "mini_resnet", "--framework",
            "simclr", "--batch-size", "16", "--max-epochs", "2", "--ckpt-freq", "1", "--eval-freq", "0",
            "--proj-hidden", "32", "--device", "cpu", "--aug-inj-type", "proj-none"]
    killed = subprocess.run([sys.executable, "-c", KILLER, ROOT, *map(str, argv)], capture_output=True, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert any(f.startswith(".tmp-") for f in os.listdir(logdir))
    pretrain_cond.main([*map(str, argv), "--resume", "last"])
    assert sorted(f for f in os.listdir(logdir) if f.endswith(".pth") or f.startswith(".tmp")) == [
        "ckpt-1.pth", "ckpt-2.pth", "ckpt-last.pth"]
    assert [load_checkpoint(str(logdir / f))["epoch"] for f in ("ckpt-1.pth", "ckpt-last.pth")] == [1, 2]


def test_non_finite_features_stop_the_linear_evaluation_before_l_bfgs():
    from utils.evaluation.linear_eval import linear_eval
    x, y = torch.randn(12, 4), torch.arange(12) % 3
    bad = x.clone()
    bad[5, 2] = float("inf")
    with pytest.raises(ValueError, match="^the val features hold NaN or Inf values: the backbone overflows"):
        linear_eval((x, y), (bad, y), (x, y), 3, grid=[1e-3], max_iter=5, log=lambda s: None)
