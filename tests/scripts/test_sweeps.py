"""Sweep scripts: dry runs print commands the entry points accept; a real tiny evaluation sweep
feeds the collector."""
import json
import os
import shlex
import subprocess
import sys

import pytest

import pretrain_cond
import transfer_linear_eval
from augmentations import check_keys
from tests.helpers import ROOT


def sh(script, *args, **env):
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", script), *map(str, args)], capture_output=True,
                         text=True, env={**os.environ, "PY": sys.executable, **env}, check=True)
    return out.stdout


def collect(*args, cwd=None, check=True) -> subprocess.CompletedProcess:
    """scripts/collect_results.py run as a user runs it."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "collect_results.py"), *map(str, args)],
                          cwd=cwd, capture_output=True, text=True, check=check)


def commands(stdout, entry):
    """argv lists of the printed commands that run ``entry``."""
    out = []
    for line in stdout.splitlines():
        words = shlex.split(line.lstrip("+ "))
        if entry in words:
            out.append(words[words.index(entry) + 1:])
    return out


def test_pretrain_sweep_dry_run_has_published_settings():
    out = sh("sweep_pretrain.sh", DRY_RUN="1", IMAGENET_100_FOLDER="/in100", OUT_ROOT="/runs")
    cmds = commands(out, "pretrain_cond.py")
    assert len(cmds) == 15
    parser = pretrain_cond.build_parser()
    for argv in cmds:
        a = parser.parse_args(argv)  # a renamed or removed flag fails here
        assert (a.dataset, a.model, a.batch_size, a.wd, a.datadir) == ("imagenet100", "resnet50", 256, 1e-4, "/in100")
        assert a.base_lr == (0.03 if a.framework == "moco" else 0.05)
        assert a.max_epochs == (300 if a.framework == "barlow_twins" else 500)
        method = a.logdir.rsplit("-", 1)[1]
        if method == "cassle":
            assert (a.aug_treatment, a.aug_nn_depth, a.aug_nn_width, a.aug_inj_type) == ("mlp", 6, 64, "proj-cat")
            assert check_keys(a.aug_cond) == ["blur", "color", "color_diff", "crop", "flip", "grayscale"]
        else:
            assert a.aug_inj_type == "proj-none"
            assert (a.ss_crop, a.ss_color) == ((0.5, 0.5) if method == "augself" else (-1, -1))
    assert {a.split("--framework ")[1].split()[0] for a in out.splitlines()} == {
        "moco", "simclr", "byol", "simsiam", "barlow_twins"}


def test_colordigits_compare_dry_run_parses():
    out = sh("colordigits_compare.sh", "/tmp/x", DRY_RUN="1")
    for argv in commands(out, "pretrain_cond.py"):
        pretrain_cond.build_parser().parse_args(argv)
    for argv in commands(out, "transfer_linear_eval.py"):
        transfer_linear_eval.build_parser().parse_args(argv)
    assert len(commands(out, "transfer_linear_eval.py")) == 6
    assert out.count("analyze.py predict-aug") == 3 and "--analysis" in out


def test_eval_sweep_dry_run_metrics_and_skip(colordigits_ckpt):
    run_dir = os.path.dirname(colordigits_ckpt)
    out = sh("sweep_eval.sh", run_dir, DRY_RUN="1", DATA_ROOT="/dl")
    cmds = commands(out, "transfer_linear_eval.py")
    assert len(cmds) == 11
    parser = transfer_linear_eval.build_parser()
    for argv in cmds:
        a = parser.parse_args(argv)
        assert a.metric == ("class-avg" if a.dataset in ("pets", "flowers", "caltech101", "aircraft") else "top1")
        assert a.datadir == f"/dl/{a.dataset}" and a.model == "mini_resnet" and a.pretrain_data == "colordigits"
    open(os.path.join(run_dir, "linear-dtd-top1-ckpt-last.json"), "w").write("{}")
    out = sh("sweep_eval.sh", run_dir, DRY_RUN="1")
    assert "# skip" in out and len(commands(out, "transfer_linear_eval.py")) == 10
    os.remove(os.path.join(run_dir, "linear-dtd-top1-ckpt-last.json"))


def test_real_eval_sweep_then_collector(colordigits_ckpt, tmp_path):
    run_dir = os.path.dirname(colordigits_ckpt)
    sh("sweep_eval.sh", run_dir, DATASETS="colordigits colordigits-color",
       EXTRA="--max-iter 30 --num-workers 0 --device cpu")
    # A second "run": the same results under another name, one value changed, to check the differences.
    other = tmp_path / "other"
    other.mkdir()
    for ds in ("colordigits", "colordigits-color"):
        res = json.load(open(os.path.join(run_dir, f"linear-{ds}-top1-ckpt-last.json")))
        res["test"] += 0.01 if ds == "colordigits" else 0.0
        json.dump(res, open(other / f"linear-{ds}-top1-ckpt-last.json", "w"))
    (other / "analysis-ckpt-last").mkdir()
    json.dump({"color": {"r2": 0.5}, "blur": {"r2": None}}, open(other / "analysis-ckpt-last" / "predict-aug.json", "w"))
    md, csv_path = tmp_path / "t.md", tmp_path / "t.csv"
    out = collect(run_dir, other, "--baseline", "run", "--md", md, "--csv", csv_path).stdout
    lines = out.splitlines()
    assert lines[0] == "| run | colordigits | colordigits-color |"
    base = json.load(open(os.path.join(run_dir, "linear-colordigits-top1-ckpt-last.json")))["test"]
    assert f"| run | {100 * base:.2f} |" in out
    assert "| other | +1.00 | +0.00 |" in out
    assert md.read_text().strip() == out.strip() and csv_path.read_text().startswith("run,colordigits,")
    with_r2 = collect(other, "--analysis").stdout
    assert with_r2.splitlines()[0] == "| run | colordigits | colordigits-color | R2 color |"
    assert with_r2.splitlines()[2].endswith("| 50.00 |")


def test_collector_keeps_apart_runs_that_share_a_folder_name(tmp_path):
    for sweep, acc in (("sweep-a", 0.25), ("sweep-b", 0.75)):
        (tmp_path / sweep / "cassle").mkdir(parents=True)
        json.dump({"test": acc}, open(tmp_path / sweep / "cassle" / "linear-cifar10-top1-ckpt-last.json", "w"))
    out = collect("sweep-a/cassle", "sweep-b/cassle/", cwd=tmp_path).stdout
    assert "| sweep-a/cassle | 25.00 |" in out and "| sweep-b/cassle | 75.00 |" in out


def test_collector_rejects_missing_run(tmp_path):
    r = collect(tmp_path / "x", check=False)
    assert r.returncode != 0 and "no such directory" in r.stderr


@pytest.mark.parametrize("script", ["launch_single_node.sh", "slurm_pretrain.sbatch"])
def test_launchers_are_valid_bash(script):
    subprocess.run(["bash", "-n", os.path.join(ROOT, "scripts", script)], check=True)


def _stub(bin_dir, name, body):
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body + "\n")
    path.chmod(0o755)


def test_slurm_template_runs_torchrun_without_slurm_ranks_and_resumes(tmp_path):
    """srun / scontrol / torchrun replaced by stubs that record what they receive."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"
    _stub(bin_dir, "scontrol", 'echo "scontrol $*" >> ' + str(log) + '; [ "$1" = show ] && printf "node1\\nnode2\\n"')
    _stub(bin_dir, "srun", 'echo "srun $*" >> ' + str(log) + '; while [ "${1#--}" != "$1" ]; do shift; done; exec "$@"')
    _stub(bin_dir, "torchrun", 'echo "torchrun $* SLURM_JOB_ID=${SLURM_JOB_ID:-unset}" >> ' + str(log))
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "ckpt-last.pth").write_bytes(b"x")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "77", "SLURM_NNODES": "2",
           "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_GPUS_PER_NODE": "h100:4", "SLURM_SUBMIT_DIR": ROOT}
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "slurm_pretrain.sbatch"), "pretrain_cond.py",
                    "--logdir", str(logdir), "--distributed"], env=env, check=True)
    calls = log.read_text().splitlines()
    tr = next(c for c in calls if c.startswith("torchrun"))
    assert "--nnodes 2 --nproc_per_node 4" in tr and "--rdzv_endpoint node1:29500 --rdzv_id 77" in tr
    assert tr.endswith("--distributed --resume last SLURM_JOB_ID=unset")
