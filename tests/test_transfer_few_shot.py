"""transfer_few_shot.py: its one-line errors, before any feature is extracted."""
import pytest

import transfer_few_shot
from tests.helpers import expect_one_line_error


@pytest.mark.parametrize("extra,pattern", [
    (["--dataset", "miniimagenet"], r"--dataset must be one of \('cub200', 'fc100', 'plant_disease'\)"),
    (["--N", "0"], r"--N must be positive, got 0$"),
    (["--num-tasks", "-5"], r"--num-tasks must be positive, got -5$"),
    (["--pretrain-data", "imagenet"], r"--pretrain-data must be one of \('stl10', 'imagenet100'"),
    (["--model", "resnet99"], r"--model must be one of"),
    (["--batch-size", "0"], r"--batch-size must be positive, got 0$"),
    (["--num-workers", "-1"], r"--num-workers must be >= 0, got -1$"),
    (["--model", "resnet18"], r"backbone does not match --model resnet18"),
])
def test_bad_input_one_line_error(colordigits_ckpt, tmp_path, capsys, extra, pattern):
    expect_one_line_error(transfer_few_shot.main, ["--pretrain-data", "colordigits", "--ckpt", colordigits_ckpt,
                                                   "--model", "mini_resnet", "--dataset", "plant_disease",
                                                   "--datadir", tmp_path, "--device", "cpu", *extra],
                          capsys, pattern)
