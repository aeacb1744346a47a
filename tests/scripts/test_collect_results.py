"""collect_results.py --over-seeds and --reference, on result files from a real evaluation."""
import csv
import json
import os
import shutil
import statistics

import pytest

import transfer_linear_eval
from tests.scripts.test_sweeps import collect


def _read(path):
    with open(path) as f:
        return json.load(f)


def _write(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)


@pytest.fixture(scope="module")
def evaluated_run(colordigits_ckpt, tmp_path_factory):
    """A copy of the one-epoch CASSLE run with a real linear evaluation on colordigits-digit."""
    run_dir = str(tmp_path_factory.mktemp("collect") / "run")
    os.makedirs(run_dir)
    for name in ("ckpt-last.pth", "args.json"):
        shutil.copy(os.path.join(os.path.dirname(colordigits_ckpt), name), run_dir)
    transfer_linear_eval.main(["--pretrain-data", "colordigits", "--ckpt", os.path.join(run_dir, "ckpt-last.pth"),
                               "--model", "mini_resnet", "--dataset", "colordigits-digit", "--num-workers", "0",
                               "--max-iter", "10"])
    res = _read(os.path.join(run_dir, "linear-colordigits-digit-top1-ckpt-last.json"))
    return run_dir, 100 * res["test"]


def _copy_run(run_dir, dest, test=None, **args):
    """A copy of the run's args.json and results; ``test`` replaces the result, ``args`` the flags."""
    os.makedirs(dest)
    _write(os.path.join(dest, "args.json"), {**_read(os.path.join(run_dir, "args.json")), **args})
    name = "linear-colordigits-digit-top1-ckpt-last.json"
    res = _read(os.path.join(run_dir, name))
    if test is not None:
        res["test"] = test
    _write(os.path.join(dest, name), res)
    return str(dest)


def test_reference_rows_beside_a_real_evaluation(evaluated_run, tmp_path):
    run_dir, ours = evaluated_run
    ref = tmp_path / "ref.csv"
    ref.write_text("source,framework,method,pretrain,backbone,colordigits-digit,cifar10\n"
                   "paper,simclr,cassle (the recipe),colordigits,mini_resnet,50.00,90.0\n"
                   "paper,simclr,baseline,colordigits,mini_resnet,40.00,80.0\n"
                   "paper,moco,cassle,colordigits,mini_resnet,10.00,\n"
                   "other,simclr,cassle,colordigits,mini_resnet,,70.0\n")
    base = _copy_run(run_dir, tmp_path / "base", aug_inj_type="proj-none")
    out = collect(run_dir, base, "--reference", ref).stdout
    table = out[out.index("Reference"):]
    assert f"| ours (run) | {ours:.2f} |" in table
    assert "| paper: cassle (the recipe) | 50.00 |" in table and f"| ours - paper | {ours - 50:+.2f} |" in table
    assert "| other: cassle | - |" in table and "| ours - other | - |" in table  # an empty reference cell
    assert "moco" not in table and "cifar10" not in table  # other framework; a column the run lacks
    base_block = table[table.index("base: simclr, baseline"):]
    assert f"| ours - paper | {ours - 40:+.2f} |" in base_block  # method read from args.json


def test_shipped_reference_matches_moco_imagenet100_runs(evaluated_run, tmp_path):
    """docs/reference's rows are matched by framework, data, backbone and method (here: synthetic runs)."""
    run_dir = evaluated_run[0]
    common = {"framework": "moco", "dataset": "imagenet100", "model": "resnet50"}
    cassle = _copy_run(run_dir, tmp_path / "moco-cassle", **common)
    augself = _copy_run(run_dir, tmp_path / "moco-augself", aug_inj_type="proj-none", ss_crop=0.5, ss_color=0.5,
                        **common)
    for d, value in ((cassle, 0.8), (augself, 0.85)):
        shutil.move(os.path.join(d, "linear-colordigits-digit-top1-ckpt-last.json"),
                    os.path.join(d, "linear-cifar10-top1-ckpt-last.json"))
        path = os.path.join(d, "linear-cifar10-top1-ckpt-last.json")
        _write(path, {**_read(path), "test": value})
    out = collect(cassle, augself, "--reference").stdout
    with open(os.path.join(os.path.dirname(transfer_linear_eval.__file__), "docs", "reference",
                           "linear_transfer.csv")) as f:
        rows = list(csv.DictReader(f))
    theirs = next(float(r["cifar10"]) for r in rows if r["method"].startswith("cassle"))
    assert f"| ours - cassle_authors_unpublished_run | {80 - theirs:+.2f} |" in out
    augself_block = out[out.index("moco-augself: moco, augself"):]
    assert "| augself_paper: augself | 85.26 |" in augself_block and "| ours - augself_paper | -0.26 |" in augself_block


def test_over_seeds_mean_and_std(evaluated_run, tmp_path):
    run_dir = evaluated_run[0]
    vals = {"baseline": [0.40, 0.44, 0.45], "cassle": [0.50, 0.52, 0.60]}
    runs = [_copy_run(run_dir, tmp_path / m / f"seed{i}", test=v) for m, vs in vals.items() for i, v in enumerate(vs)]
    md, csv_path = tmp_path / "t.md", tmp_path / "t.csv"
    out = collect(*runs, "--over-seeds", "--baseline", "baseline", "--md", md, "--csv", csv_path).stdout
    for m, vs in vals.items():
        pct = [100 * v for v in vs]
        assert f"| {m} | 3 | {statistics.mean(pct):.2f} ± {statistics.stdev(pct):.2f} |" in out
    diff = 100 * (statistics.mean(vals["cassle"]) - statistics.mean(vals["baseline"]))
    assert f"| cassle | {diff:+.2f} |" in out and md.read_text().strip() == out.strip()
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["run"] == "cassle" and rows[1]["colordigits-digit seeds"] == "3"
    assert float(rows[1]["colordigits-digit std"]) == pytest.approx(statistics.stdev([50, 52, 60]), abs=0.01)


def test_missing_reference_file_one_line(evaluated_run, tmp_path):
    res = collect(evaluated_run[0], "--reference", tmp_path / "nope.csv", check=False)
    assert res.returncode != 0 and res.stderr.strip().splitlines() == [
        f"error: --reference {tmp_path / 'nope.csv'}: no such file"]


def test_readme_reference_table_is_the_shipped_csv():
    """README's published rows are docs/reference/linear_transfer.csv's MoCo v2 ImageNet-100 rows, and the
    CASSLE paper's own cells are left empty."""
    root = os.path.dirname(transfer_linear_eval.__file__)
    with open(os.path.join(root, "docs", "reference", "linear_transfer.csv")) as f:
        rows = [r for r in csv.DictReader(f) if (r["framework"], r["pretrain"]) == ("moco", "imagenet100")]
    with open(os.path.join(root, "README.md")) as f:
        readme = f.read()
    cols = ["cifar10", "cifar100", "food101", "mit67", "pets", "flowers", "caltech101", "cars", "aircraft", "dtd",
            "sun397"]
    for source, method, label in (("augself_paper", "baseline", "AugSelf paper¹ | baseline"),
                                  ("augself_paper", "augself", "AugSelf paper¹ | AugSelf"),
                                  ("cassle_authors_unpublished_run", "cassle", "CASSLE authors' run³ | CASSLE")):
        row = next(r for r in rows if r["source"] == source and r["method"].startswith(method))
        assert f"| {label} | " + " | ".join(row[c] for c in cols) + " |" in readme
    assert "| CASSLE paper² | CASSLE |" + " |" * len(cols) in readme


def test_regression_and_looc_results_have_their_columns(tmp_path):
    """linear-<ds>-r2-*.json (landmark probes) and looc-<ds>-top1-*.json (LooC probe) are collected;
    the LooC column stands apart from the same dataset's linear evaluation."""
    run = tmp_path / "run"
    run.mkdir()
    for name, value in (("linear-celeba-r2-ckpt-last.json", 0.5), ("linear-cub200-top1-ckpt-last.json", 0.25),
                        ("looc-cub200-top1-ckpt-last.json", 0.375), ("looc-cub200-top1-ckpt-9.json", 0.9)):
        _write(run / name, {"test": value})
    res = collect(run, "--csv", tmp_path / "t.csv")
    with open(tmp_path / "t.csv") as f:
        (row,) = list(csv.DictReader(f))
    got = {k: float(row[k]) for k in ("celeba", "cub200", "looc cub200")}
    assert got == {"celeba": 50.0, "cub200": 25.0, "looc cub200": 37.5}, res.stdout
