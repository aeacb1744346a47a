"""transfer_few_shot.py end to end on CPU, and its one-line errors before any feature is extracted."""
import json
import os
import re

import pytest

import transfer_few_shot
from tests.data_formats import write_class_folders
from tests.helpers import expect_one_line_error


def test_episodes_on_a_class_folder(colordigits_ckpt, tmp_path, capsys):
    write_class_folders(str(tmp_path / "plant"), [f"leaf{i}" for i in range(6)], 6, size=(32, 32))
    transfer_few_shot.main(["--pretrain-data", "colordigits", "--ckpt", colordigits_ckpt, "--model", "mini_resnet",
                            "--dataset", "plant_disease", "--datadir", str(tmp_path / "plant"), "--N", "5", "--K", "1",
                            "--Q", "4", "--num-tasks", "20", "--num-workers", "0", "--device", "cpu"])
    assert re.search(r"plant_disease 5-way 1-shot: acc=\d+\.\d\d \+- \d+\.\d\d", capsys.readouterr().out)
    out = os.path.join(os.path.dirname(colordigits_ckpt), "fewshot-plant_disease-5way1shot-ckpt-last.json")
    res = json.load(open(out))
    assert 0 <= res["acc"] <= 1 and res["args"]["num_tasks"] == 20


@pytest.mark.parametrize("extra,pattern", [
    (["--dataset", "miniimagenet"], r"--dataset must be one of \('cub200', 'fc100', 'plant_disease'\)"),
    (["--N", "0"], r"--N must be positive, got 0$"),
    (["--num-tasks", "-5"], r"--num-tasks must be positive, got -5$"),
    (["--pretrain-data", "imagenet"], r"--pretrain-data must be one of \('cifar10', 'cifar100'"),
    (["--model", "resnet99"], r"--model must be one of"),
    (["--batch-size", "0"], r"--batch-size must be positive, got 0$"),
    (["--num-workers", "-1"], r"--num-workers must be >= 0, got -1$"),
    (["--model", "resnet18"], r"backbone does not match --model resnet18"),
    (["--pretrain-data", "imagenet100"], r"was pretrained on --dataset colordigits, whose images --pretrain-data "
                                         r"imagenet100 would resize or normalise otherwise"),
])
def test_bad_input_one_line_error(colordigits_ckpt, tmp_path, capsys, extra, pattern):
    expect_one_line_error(transfer_few_shot.main, ["--pretrain-data", "colordigits", "--ckpt", colordigits_ckpt,
                                                   "--model", "mini_resnet", "--dataset", "plant_disease",
                                                   "--datadir", tmp_path, "--device", "cpu", *extra],
                          capsys, pattern)


def test_checkpoint_without_arguments_takes_upstream_s_defaults(tmp_path, capsys):
    """Upstream's few-shot script defaults to stl10 and resnet18, as the linear one does."""
    import torch

    from models import build_backbone
    bare = str(tmp_path / "backbone-only.pth")  # e.g. a converted checkpoint: no pretraining arguments
    torch.save({"backbone": build_backbone("mini_resnet", 96)[0].state_dict()}, bare)
    common = ["--ckpt", bare, "--datadir", str(tmp_path / "absent"), "--device", "cpu"]
    with pytest.raises(SystemExit):
        transfer_few_shot.main([*common, "--model", "mini_resnet"])
    out, err = capsys.readouterr()
    assert out == f"using --pretrain-data stl10 (the default: {bare} stores none)\n"
    assert "absent" in err  # it got as far as the data, with stl10's 96 px view
    expect_one_line_error(transfer_few_shot.main, common, capsys, r"backbone does not match --model resnet18")
    a = transfer_few_shot.build_parser().parse_args(common)
    assert (a.dataset, a.N, a.K, a.Q, a.num_tasks) == ("cub200", 5, 1, 16, 2000)  # C transfer_few_shot.py:132-139


def test_ctrl_c_says_what_is_kept_in_one_line(colordigits_ckpt, tmp_path, monkeypatch, capsys):
    import datasets.downstream

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(datasets.downstream, "few_shot_pool", interrupt)
    with pytest.raises(SystemExit) as stop:
        transfer_few_shot.main(["--pretrain-data", "colordigits", "--ckpt", colordigits_ckpt, "--model", "mini_resnet",
                                "--dataset", "plant_disease", "--datadir", str(tmp_path), "--device", "cpu"])
    assert stop.value.code == 130
    assert capsys.readouterr().err.startswith("interrupted: the results printed above are in their JSON files")
