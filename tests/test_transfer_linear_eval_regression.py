"""transfer_linear_eval.py on the landmark regressions (--metric r2) end to end on CPU, and its flag errors."""
import json
import re

import pytest
import torch

import transfer_linear_eval
from tests.data_formats_landmarks import write_lsp
from tests.helpers import expect_one_line_error


@pytest.fixture(scope="module")
def bare_ckpt(tmp_path_factory):
    """A mini_resnet backbone-only checkpoint (no pretraining arguments)."""
    from models import build_backbone
    path = tmp_path_factory.mktemp("reg") / "backbone.pth"
    torch.save({"backbone": build_backbone("mini_resnet", 32)[0].state_dict()}, path)
    return path


def test_lspose_r2_end_to_end(bare_ckpt, tmp_path, monkeypatch, capsys):
    import utils.evaluation.regression_eval
    seen = {}
    real = utils.evaluation.regression_eval.regression_eval

    def spy(*args, **kwargs):
        seen["refit_is_train"] = kwargs["refit"] is args[0]
        return real(*args, **kwargs)
    monkeypatch.setattr(utils.evaluation.regression_eval, "regression_eval", spy)
    data = write_lsp(str(tmp_path / "lsp"), n=10)
    transfer_linear_eval.main(["--pretrain-data", "colordigits", "--ckpt", str(bare_ckpt), "--model", "mini_resnet",
                               "--dataset", "lspose", "--datadir", data, "--num-workers", "0", "--max-iter", "5"])
    out = capsys.readouterr().out
    assert len(re.findall(r"^wd=.* val r2=", out, re.M)) == 45
    res = json.loads((bare_ckpt.parent / "linear-lspose-r2-backbone.json").read_text())
    assert res["metric"] == "r2" and res["sizes"] == {"train": 6, "val": 6, "test": 6, "refit": 6}
    assert float(re.search(r"^test r2=([0-9.naninf-]+)$", out, re.M).group(1)) == pytest.approx(res["test"], abs=1e-4)
    assert seen["refit_is_train"]  # as published: LSP refits on its training part alone


@pytest.mark.parametrize("extra,pattern", [
    (["--dataset", "celeba", "--metric", "top1"], r"--metric must be r2 for the landmark regression --dataset celeba"),
    (["--dataset", "cifar10", "--metric", "r2"], r"--metric must be top1 or class-avg, got 'r2' \(r2 is for the "),
    (["--dataset", "lspose", "--pretrain-data", "folder", "--ten-crop"],
     r"--ten-crop: the landmark regression --dataset lspose takes one centre crop$"),
])
def test_metric_and_ten_crop_errors(bare_ckpt, capsys, extra, pattern):
    argv = ["--ckpt", bare_ckpt, "--model", "mini_resnet", "--device", "cpu", *extra]
    if "--pretrain-data" not in extra:
        argv += ["--pretrain-data", "colordigits"]
    expect_one_line_error(transfer_linear_eval.main, argv, capsys, pattern)
