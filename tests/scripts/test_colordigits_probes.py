"""scripts/colordigits_probes.py: every label set from one extraction, as transfer_linear_eval.py scores each."""
import json
import os
import shutil

import pytest
import torch

import transfer_linear_eval
from tests.helpers import expect_one_line_error, load_script


@pytest.fixture(scope="module")
def probes():
    return load_script("colordigits_probes")


def _result(ckpt, label):
    return json.load(open(os.path.join(os.path.dirname(ckpt), f"linear-colordigits-{label}-top1-ckpt-last.json")))


def test_same_numbers_as_transfer_linear_eval(colordigits_ckpt, probes, tmp_path):
    """The one extraction gives a label the number its own transfer_linear_eval.py run gives."""
    ckpt = str(tmp_path / "ckpt-last.pth")  # a copy: the results go beside it, not into the shared run
    shutil.copy(colordigits_ckpt, ckpt)
    transfer_linear_eval.main(["--pretrain-data", "colordigits", "--ckpt", ckpt, "--model", "mini_resnet",
                               "--dataset", "colordigits-hue", "--num-workers", "0", "--max-iter", "10"])
    expected = _result(ckpt, "hue")
    probes.main(["--ckpt", ckpt, "--labels", "flip", "hue", "--max-iter", "10", "--device", "cpu"])
    got = _result(ckpt, "hue")
    assert got["test"] == expected["test"] and got["best_wd"] == expected["best_wd"]
    assert got["sizes"] == expected["sizes"] == {"train": 1294, "val": 144, "test": 359}
    assert len(_result(ckpt, "flip")["grid"]) == 45  # its own result too, over the whole grid


def test_random_init_checkpoint_and_coarse_grid(tmp_path, probes):
    from models.backbones import build_backbone
    torch.manual_seed(0)
    ckpt = str(tmp_path / "ckpt-last.pth")
    torch.save({"backbone": build_backbone("mini_resnet")[0].state_dict()}, ckpt)
    probes.main(["--ckpt", ckpt, "--model", "mini_resnet", "--labels", "saturation", "--max-iter", "20",
                 "--grid-every", "4", "--device", "cpu"])
    res = _result(ckpt, "saturation")
    assert len(res["grid"]) == 12 and res["grid"][0] == pytest.approx(1e-6) and res["grid"][-1] == pytest.approx(1e5)
    assert res["test"] > 0.5  # three levels: a random-init backbone reads saturation well above chance


@pytest.mark.parametrize("argv,pattern", [
    (["--labels", "colour"], r"--labels colour: expected one of digit, hue, saturation, brightness, flip"),
    (["--grid-every", "0"], r"--grid-every must be positive, got 0"),
])
def test_bad_input_one_line(colordigits_ckpt, probes, capsys, argv, pattern):
    expect_one_line_error(probes.main, ["--ckpt", colordigits_ckpt, *argv], capsys, pattern)
