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
from tests.helpers import ROOT, load_script


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


@pytest.mark.parametrize("size,model,max_iter", [("cpu", "mini_resnet", 100), ("gpu", "cifar_resnet18", 5000)])
def test_colordigits_compare_dry_run_parses(size, model, max_iter):
    probes = load_script("colordigits_probes")
    out = sh("colordigits_compare.sh", "/tmp/x", DRY_RUN="1", SIZE=size)
    runs = [pretrain_cond.build_parser().parse_args(argv) for argv in commands(out, "pretrain_cond.py")]
    assert len(runs) == 9 and {(a.seed, a.model, a.max_epochs > 10) for a in runs} == {
        (s, model, True) for s in (0, 1, 2)}
    assert {a.aug_inj_type for a in runs} == {"proj-none", "proj-cat"} and sum(a.ss_crop > 0 for a in runs) == 3
    evals = [probes.build_parser().parse_args(argv) for argv in commands(out, "scripts/colordigits_probes.py")]
    assert len(evals) == 12 and {a.max_iter for a in evals} == {max_iter}
    assert {a.ckpt[0].split("/")[3] for a in evals} == {"random-init", "baseline", "augself", "cassle"}
    assert out.count("analyze.py predict-aug") == 9 and "--over-seeds" in out and "--analysis" in out
    (share,) = [load_script("colordigits_colour_share").build_parser().parse_args(argv)
                for argv in commands(out, "scripts/colordigits_colour_share.py")]
    assert share.model == model and [c.split("/")[3] for c in share.ckpt] == ["random-init", "baseline", "augself",
                                                                            "cassle"]


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


def test_eval_sweep_takes_each_metric_from_the_catalog_and_names_an_unknown_dataset(tmp_path):
    """A landmark set gets r2 (the shell once kept its own copy of the metrics, without it)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "args.json").write_text(json.dumps({"model": "mini_resnet", "dataset": "colordigits"}))
    (run_dir / "ckpt-last.pth").write_bytes(b"x")
    out = sh("sweep_eval.sh", run_dir, DRY_RUN="1", DATASETS="celeba pets cifar10")
    metrics = [transfer_linear_eval.build_parser().parse_args(a).metric
               for a in commands(out, "transfer_linear_eval.py")]
    assert metrics == ["r2", "class-avg", "top1"]
    bad = subprocess.run(["bash", os.path.join(ROOT, "scripts", "sweep_eval.sh"), str(run_dir)], capture_output=True,
                         text=True, env={**os.environ, "PY": sys.executable, "DATASETS": "cifar11", "DRY_RUN": "1"})
    assert bad.returncode != 0 and bad.stderr.startswith("DATASETS: cifar11 is not a downstream dataset")
    assert "transfer_linear_eval.py" not in bad.stdout


def test_real_eval_sweep_then_collector(colordigits_ckpt, tmp_path):
    run_dir = os.path.dirname(colordigits_ckpt)
    sh("sweep_eval.sh", run_dir, DATASETS="colordigits-digit colordigits-hue",
       EXTRA="--max-iter 30 --num-workers 0 --device cpu")
    # A second "run": the same results under another name, one value changed, to check the differences.
    other = tmp_path / "other"
    other.mkdir()
    for ds in ("colordigits-digit", "colordigits-hue"):
        res = json.load(open(os.path.join(run_dir, f"linear-{ds}-top1-ckpt-last.json")))
        res["test"] += 0.01 if ds == "colordigits-digit" else 0.0
        json.dump(res, open(other / f"linear-{ds}-top1-ckpt-last.json", "w"))
    (other / "analysis-ckpt-last").mkdir()
    json.dump({"color": {"r2": 0.5}, "blur": {"r2": None}}, open(other / "analysis-ckpt-last" / "predict-aug.json", "w"))
    md, csv_path = tmp_path / "t.md", tmp_path / "t.csv"
    out = collect(run_dir, other, "--baseline", "run", "--md", md, "--csv", csv_path).stdout
    lines = out.splitlines()
    assert lines[0] == "| run | colordigits-digit | colordigits-hue |"
    base = json.load(open(os.path.join(run_dir, "linear-colordigits-digit-top1-ckpt-last.json")))["test"]
    assert f"| run | {100 * base:.2f} |" in out
    assert "| other | +1.00 | +0.00 |" in out
    assert md.read_text().strip() == out.strip() and csv_path.read_text().startswith("run,colordigits-digit,")
    with_r2 = collect(other, "--analysis").stdout
    assert with_r2.splitlines()[0] == "| run | colordigits-digit | colordigits-hue | R2 color |"
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


@pytest.mark.parametrize("kept", ["ckpt-last.pth", "ckpt-3.pth"])
def test_slurm_template_runs_torchrun_without_slurm_ranks_and_resumes(tmp_path, kept):
    """srun / scontrol / torchrun replaced by stubs that record what they receive. A folder holding only
    a kept ckpt-N.pth (a job killed between an epoch's two checkpoint writes) resumes too."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"
    _stub(bin_dir, "scontrol", 'echo "scontrol $*" >> ' + str(log) + '; [ "$1" = show ] && printf "node1\\nnode2\\n"')
    _stub(bin_dir, "srun", 'echo "srun $*" >> ' + str(log) + '; while [ "${1#--}" != "$1" ]; do shift; done; exec "$@"')
    _stub(bin_dir, "torchrun", 'echo "torchrun $* SLURM_JOB_ID=${SLURM_JOB_ID:-unset}" >> ' + str(log))
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / kept).write_bytes(b"x")
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "77", "SLURM_NNODES": "2",
           "SLURM_JOB_NODELIST": "node[1-2]", "SLURM_GPUS_PER_NODE": "h100:4", "SLURM_SUBMIT_DIR": ROOT}
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "slurm_pretrain.sbatch"), "pretrain_cond.py",
                    "--logdir", str(logdir), "--distributed"], env=env, check=True)
    calls = log.read_text().splitlines()
    tr = next(c for c in calls if c.startswith("torchrun"))
    assert "--nnodes 2 --nproc_per_node 4" in tr and "--rdzv_endpoint node1:29500 --rdzv_id 77" in tr
    assert tr.endswith("--distributed --resume last SLURM_JOB_ID=unset")


def _slurm_bin(tmp_path, torchrun_body: str):
    """srun and scontrol stubs that record their calls, and a torchrun stub running ``torchrun_body``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.txt"
    _stub(bin_dir, "scontrol", f'echo "scontrol $*" >> {log}; if [ "$1" = show ]; then printf "node1\\n"; fi')
    # as srun does, the signals srun receives reach the task: here the task is srun's own process
    _stub(bin_dir, "srun", f'echo "srun $*" >> {log}; while [ "${{1#--}}" != "$1" ]; do shift; done; exec "$@"')
    _stub(bin_dir, "torchrun", f'echo "torchrun $*" >> {log}\n{torchrun_body}')
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SLURM_JOB_ID": "77", "SLURM_NNODES": "1",
           "SLURM_JOB_NODELIST": "node1", "SLURM_GPUS_PER_NODE": "2", "SLURM_SUBMIT_DIR": ROOT, "CALLS": str(log)}
    return env, log


# A training process as torchrun runs it, for the template: it checkpoints on USR1 (or dies without
# writing, with WRITES=0), then exits 1 as torchrun does after a signal; without a signal it crashes.
TRAINING = """logdir=$(for a in "$@"; do [ "$prev" = --logdir ] && echo "$a"; prev=$a; done)
trap 'echo "training got USR1" >> "$CALLS"; sleep 0.3; [ "$WRITES" = 1 ] && echo x > "$logdir/ckpt-last.pth" \\
  && echo "checkpoint written" >> "$CALLS"; exit 1' USR1
echo started >> "$CALLS"
[ "$CRASH" = 1 ] && exit 1
for i in $(seq 200); do sleep 0.05; done"""


@pytest.mark.parametrize("case", ["checkpoint-written", "died-without-one", "crash-without-signal"])
def test_slurm_template_passes_the_warning_to_training_and_requeues_once_it_has_the_checkpoint(tmp_path, case):
    """SLURM's warning (USR1 to the batch shell, --signal=B:USR1@180) goes on to the training processes
    through srun and torchrun; the job is requeued after they end, only if ckpt-last.pth was written
    after the signal (an older one, as a previous epoch left it, does not count)."""
    import signal
    import time
    env, log = _slurm_bin(tmp_path, TRAINING)
    logdir = tmp_path / "run"
    logdir.mkdir()
    (logdir / "ckpt-last.pth").write_bytes(b"old")
    os.utime(logdir / "ckpt-last.pth", (time.time() - 3600,) * 2)
    env.update(WRITES="1" if case == "checkpoint-written" else "0", CRASH="1" if case.startswith("crash") else "0")
    proc = subprocess.Popen(["bash", os.path.join(ROOT, "scripts", "slurm_pretrain.sbatch"), "pretrain_cond.py",
                             "--logdir", str(logdir), "--distributed"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while "started" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.05)
        if not case.startswith("crash"):
            proc.send_signal(signal.SIGUSR1)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    calls = log.read_text().splitlines()
    tr = next(c for c in calls if c.startswith("torchrun"))
    assert "--signals-to-handle SIGTERM,SIGINT,SIGHUP,SIGQUIT,SIGUSR1 --shutdown-timeout 170" in tr
    requeued = "scontrol requeue 77" in calls
    if case == "checkpoint-written":
        assert calls.index("training got USR1") < calls.index("checkpoint written") < calls.index("scontrol requeue 77")
        assert proc.returncode == 0 and "checkpoint written: requeueing 77" in out
    elif case == "died-without-one":
        assert "training got USR1" in calls and not requeued and proc.returncode == 1
        assert "no checkpoint was written after it (exit status 1): not requeued" in out
    else:
        assert not requeued and proc.returncode == 1


def test_launch_single_node_passes_sigusr1_to_two_gloo_ranks_which_resume_bit_exact(tmp_path, monkeypatch):
    """scripts/launch_single_node.sh for real: torchrun, two CPU processes (gloo). SIGUSR1 sent to the
    script mid-epoch reaches both ranks through torchrun; they agree on the step to stop after, rank 0
    writes ckpt-last.pth there and the script exits 75. --resume last, with ranks spawned by the entry
    point this time, is stopped in epoch 2 by SIGUSR1 sent to that launcher, which passes it on and
    exits 75 too. A last --resume last gives the losses and final weights of the same run never
    stopped, bit for bit."""
    import torch

    from tests.data_formats import write_cifar
    from utils.checkpoint import load_checkpoint
    data = write_cifar(str(tmp_path / "cifar"), monkeypatch, "cifar10", n_train=64, n_test=8)
    argv = ["--datadir", data, "--framework", "simclr", "--dataset", "cifar10", "--model", "mini_resnet",
            "--batch-size", "16", "--max-epochs", "2", "--proj-hidden", "16", "--eval-freq", "0", "--device", "cpu",
            "--aug-inj-type", "proj-none", "--print-freq", "1", "--distributed"]  # 4 steps an epoch, 8 images a rank
    inject = os.path.join(ROOT, "tests", "inject.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PATH": f"{os.path.dirname(sys.executable)}:{os.environ['PATH']}"}

    def spawned(logdir, *extra, status=0, **fault):
        done = subprocess.run([sys.executable, inject, "--logdir", str(logdir), *argv, "--nproc-per-node", "2", *extra],
                              env={**env, "LOSSES": str(logdir) + ".losses", **fault}, capture_output=True, text=True,
                              timeout=300, check=False)
        assert done.returncode == status, done.stderr[-3000:]

    spawned(tmp_path / "ref")
    run = tmp_path / "run"
    stopped = subprocess.run(["bash", os.path.join(ROOT, "scripts", "launch_single_node.sh"), inject, "--logdir",
                              str(run), *argv], capture_output=True, text=True, timeout=300, check=False,
                             env={**env, "NGPU": "2", "TORCHRUN_ARGS": "--local-addr 127.0.0.1", "LOSSES": f"{run}.losses",
                                  # rank 0 signals the script as step 2 starts, then waits for it to arrive
                                  "FAULT": "launcher:SIGUSR1", "FAULT_AT": "2", "FAULT_SLEEP": "1"})
    assert stopped.returncode == 75, stopped.stderr[-3000:]
    assert "stopped on SIGUSR1" in stopped.stderr
    ckpt = load_checkpoint(str(run / "ckpt-last.pth"))
    assert ckpt["epoch"] == 0 and 2 <= ckpt["step"] <= 3, ckpt["step"]  # inside the epoch, after step 2
    assert f"stopped by SIGUSR1 at epoch 1 step {ckpt['step']}/4" in (run / "log.txt").read_text()
    # rank 1 signals the launcher that spawned it as step 6 starts
    spawned(run, "--resume", "last", status=75, FAULT="parent:SIGUSR1", FAULT_AT="6", FAULT_RANK="1", FAULT_SLEEP="1")
    ckpt = load_checkpoint(str(run / "ckpt-last.pth"))
    assert ckpt["epoch"] == 1 and 2 <= ckpt["step"] <= 3 and len(ckpt["draws"]) == 2, ckpt["step"]
    spawned(run, "--resume", "last")
    assert (tmp_path / "run.losses").read_text() == (tmp_path / "ref.losses").read_text()  # rank 0's, step by step
    ref, got = load_checkpoint(str(tmp_path / "ref" / "ckpt-last.pth")), load_checkpoint(str(run / "ckpt-last.pth"))
    for k, v in ref["model"].items():
        assert torch.equal(got["model"][k], v), k


def test_colordigits_compare_one_method_side_by_side_then_collect():
    out = sh("colordigits_compare.sh", "/tmp/x", DRY_RUN="1", SEEDS="1", METHODS="cassle", COLLECT="0")
    (run,) = [pretrain_cond.build_parser().parse_args(argv) for argv in commands(out, "pretrain_cond.py")]
    assert (run.seed, run.aug_inj_type, run.logdir) == (1, "proj-cat", "/tmp/x/cassle/seed1")
    assert "random-init" not in out and "collect_results.py" not in out
    out = sh("colordigits_compare.sh", "/tmp/x", DRY_RUN="1", COLLECT_ONLY="1")
    assert "pretrain_cond.py" not in out and "colordigits_probes.py" not in out
    assert "collect_results.py" in out and "colordigits_colour_share.py" in out
    with pytest.raises(subprocess.CalledProcessError) as bad:  # refused before the valid one runs
        sh("colordigits_compare.sh", "/tmp/x", DRY_RUN="1", METHODS="baseline mocov9")
    assert "METHODS: unknown method 'mocov9'" in bad.value.stderr and "pretrain_cond.py" not in bad.value.stdout
