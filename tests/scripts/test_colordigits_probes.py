"""scripts/colordigits_probes.py: every label set from one extraction, as transfer_linear_eval.py scores each."""
import json
import os
import shutil

import pytest
import torch

import transfer_linear_eval
from tests.helpers import expect_one_line_error, load_script

LEARN_EPOCHS = 12  # the CPU size trains 30; at 12 seed 0 reads the digit at about 73 % (random init: about 48 %)


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
    (["--fit-device", "tpu"], r"--fit-device must be cuda, cpu or auto, got 'tpu'"),
])
def test_bad_input_one_line(colordigits_ckpt, probes, capsys, argv, pattern):
    expect_one_line_error(probes.main, ["--ckpt", colordigits_ckpt, *argv], capsys, pattern)


def test_pretraining_learns_the_content(tmp_path, probes):
    """The benchmark's first property at toy size: a short SimCLR pretraining (the CPU size's recipe,
    fewer epochs) makes the digit linearly readable far better than the random initialisation it
    started from, which in turn reads it above chance. Content that pretraining cannot learn would
    make every sensitivity column meaningless."""
    import pretrain_cond
    from models.backbones import build_backbone
    run = tmp_path / "run"
    pretrain_cond.main(["--logdir", str(run), "--dataset", "colordigits", "--model", "mini_resnet",
                        "--framework", "simclr", "--batch-size", "64", "--max-epochs", str(LEARN_EPOCHS),
                        "--base-lr", "0.3", "--wd", "5e-4", "--eval-freq", "0", "--seed", "0", "--device", "cpu",
                        "--aug-inj-type", "proj-none"])
    init = tmp_path / "init" / "ckpt-last.pth"
    init.parent.mkdir()
    torch.manual_seed(0)  # a random initialisation of the same architecture
    torch.save({"backbone": build_backbone("mini_resnet")[0].state_dict()}, init)
    acc = {name: probes.probe(str(path), "mini_resnet", ["digit"], 100, 256, torch.device("cpu"), 6)["digit"]
           for name, path in (("pretrained", run / "ckpt-last.pth"), ("random", init))}
    chance = 0.12  # the most frequent digit's share of the test set, 44 of 359
    assert acc["random"] > chance + 0.15, acc
    assert acc["pretrained"] > acc["random"] + 0.15, acc
