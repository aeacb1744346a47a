"""scripts/sweep_eval.sh with PROTOCOL=looc: its commands parse as transfer_looc_probe.py's (the probe itself runs in
tests/test_transfer_looc_probe.py), with --resume, and finished probes are skipped."""
import json
import os
import subprocess
import sys

import torch

import transfer_looc_probe
from tests.helpers import ROOT
from tests.scripts.test_sweeps import commands


def sweep(*args, **env) -> str:
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "sweep_eval.sh"), *map(str, args)], capture_output=True,
                         text=True, env={**os.environ, "PY": sys.executable, "PROTOCOL": "looc", **env}, check=True)
    return out.stdout


def test_looc_sweep_resumes_probes_and_skips_finished_ones(tmp_path):
    from models import build_backbone
    run = tmp_path / "run"
    run.mkdir()
    (run / "args.json").write_text(json.dumps({"model": "mini_resnet", "dataset": "colordigits"}))
    torch.save({"backbone": build_backbone("mini_resnet", 32)[0].state_dict()}, run / "ckpt-last.pth")
    dry = sweep(run, DRY_RUN="1", DATA_ROOT="/dl", DATASETS="cub200 imagenet100")
    cmds = commands(dry, "transfer_looc_probe.py")
    assert len(cmds) == 2
    for argv, ds in zip(cmds, ("cub200", "imagenet100")):
        a = transfer_looc_probe.build_parser().parse_args(argv)
        assert (a.dataset, a.datadir, a.model, a.pretrain_data, a.resume) == (
            ds, f"/dl/{ds}", "mini_resnet", "colordigits", True)
        assert (a.epochs, a.milestones, a.lr) == (200, [120, 160], 30.0)
    (run / "looc-cub200-top1-ckpt-last.json").write_text("{}")  # a finished probe
    again = sweep(run, DRY_RUN="1", DATASETS="cub200 imagenet100")
    assert "# skip" in again and [a[a.index("--dataset") + 1] for a in commands(again, "transfer_looc_probe.py")] == [
        "imagenet100"]
