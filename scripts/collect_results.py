"""Gather linear-evaluation result JSONs into one table: rows = runs, columns = datasets.

    python scripts/collect_results.py RUN_DIR [RUN_DIR ...] [--ckpt ckpt-last] [--baseline NAME]
                                      [--md table.md] [--csv table.csv]

Each RUN_DIR holds linear-<dataset>-<metric>-<ckpt>.json files (written by transfer_linear_eval.py
next to the checkpoint) and looc-<dataset>-top1-<ckpt>.json files (transfer_looc_probe.py). Values
are percentages; --analysis adds the predict-aug R^2 (x 100). With --baseline, a second block gives
each run's difference from the baseline run (rows named by the run folder's name).
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets.catalog import DOWNSTREAM_DATASETS  # noqa: E402  (the paper's column order; no torch)
from scripts.result_tables import (  # noqa: E402  (the seeds and reference tables)
    REFERENCE_CSV,
    csv_over_seeds,
    load_reference,
    markdown_over_seeds,
    over_seeds,
    reference_table,
)

# linear evaluation (transfer_linear_eval.py) and LooC probe (transfer_looc_probe.py) results; a LooC
# column is named "looc <dataset>" so it stands apart from the same dataset's linear evaluation
PATTERN = re.compile(r"(?P<protocol>linear|looc)-(?P<dataset>.+)-(?P<metric>top1|class-avg|r2)-(?P<ckpt>.+)\.json$")


def collect(run_dirs: list[str], ckpt: str, analysis: bool = False
            ) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    """Percentages by (run, column); with ``analysis``, also predict-aug R^2 x 100 as 'R2 <piece>'."""
    rows, cols, values = [], [], {}
    names = [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    if len(set(names)) < len(names):  # runs of one name in different folders: name each by its path
        names = [os.path.normpath(d) for d in run_dirs]
    for d, name in zip(run_dirs, names):
        rows.append(name)
        for path in sorted(glob.glob(os.path.join(d, "linear-*.json")) + glob.glob(os.path.join(d, "looc-*.json"))):
            m = PATTERN.search(os.path.basename(path))
            if not m or m["ckpt"] != ckpt:
                continue
            col = m["dataset"] if m["protocol"] == "linear" else f"looc {m['dataset']}"
            if col not in cols:
                cols.append(col)
            values[name, col] = 100 * read_value(path, "test")
    order = {d: i for i, d in enumerate(DOWNSTREAM_DATASETS)}
    cols.sort(key=lambda c: order.get(c, len(order)))
    if analysis:
        for d, name in zip(run_dirs, rows):
            path = os.path.join(d, f"analysis-{ckpt}", "predict-aug.json")
            if not os.path.isfile(path):
                continue
            for piece, res in read_value(path).items():
                if res.get("r2") is not None:
                    if f"R2 {piece}" not in cols:
                        cols.append(f"R2 {piece}")
                    values[name, f"R2 {piece}"] = 100 * res["r2"]
    return rows, cols, values


class ResultError(ValueError):
    """A result file that cannot be read; its message names the file."""


def read_value(path: str, key: str | None = None):
    """The JSON object in ``path`` (its ``key`` entry, a number, when given); ResultError naming the file
    for one cut short, damaged or of another kind."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ResultError(f"{path}: not a result JSON ({getattr(e, 'strerror', None) or e})") from None
    if not isinstance(obj, dict):
        raise ResultError(f"{path}: not a result JSON (a {type(obj).__name__}, not an object)")
    if key is None:
        return obj
    if not isinstance(obj.get(key), (int, float)):
        raise ResultError(f"{path}: not a result JSON (no {key!r} value)")
    return obj[key]


def markdown(rows, cols, values, baseline: str | None = None) -> str:
    def line(cells):
        return "| " + " | ".join(cells) + " |"
    out = [line(["run", *cols]), line(["---"] * (len(cols) + 1))]
    for r in rows:
        out.append(line([r, *(f"{values[r, c]:.2f}" if (r, c) in values else "-" for c in cols)]))
    if baseline:
        out += ["", f"Difference from {baseline} (points):", "", line(["run", *cols]), line(["---"] * (len(cols) + 1))]
        for r in rows:
            if r != baseline:
                out.append(line([r, *(f"{values[r, c] - values[baseline, c]:+.2f}"
                                      if (r, c) in values and (baseline, c) in values else "-" for c in cols)]))
    return "\n".join(out)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run directories holding linear-*.json results; rows are named by "
                   "folder name, or by the path as given when two runs share a folder name")
    p.add_argument("--ckpt", default="ckpt-last", help="which checkpoint's results (file name without .pth)")
    p.add_argument("--baseline", default=None, help="run folder name to subtract in the difference table")
    p.add_argument("--analysis", action="store_true",
                   help="add columns 'R2 <piece>' from analysis-<ckpt>/predict-aug.json (scripts/analyze.py)")
    p.add_argument("--over-seeds", action="store_true",
                   help="one row per method: runs in folders named seed<N> are grouped by their parent folder "
                   "(baseline/seed0, baseline/seed1 -> baseline) and shown as mean ± sample std over the seeds")
    p.add_argument("--reference", nargs="?", const=REFERENCE_CSV, default=None, metavar="CSV",
                   help="also print each run beside the published rows of its setting (framework, pretraining "
                   "data, backbone, method from its args.json) with the differences (default CSV: "
                   "docs/reference/linear_transfer.csv)")
    p.add_argument("--md", default=None, help="write the Markdown table here")
    p.add_argument("--csv", default=None, help="write the CSV table here")
    args = p.parse_args(argv)
    missing = [d for d in args.runs if not os.path.isdir(d)]
    if missing:
        sys.exit(f"error: run directory {missing[0]}: no such directory")
    for flag, out in (("--md", args.md), ("--csv", args.csv)):  # before the table is printed
        folder = os.path.dirname(os.path.abspath(out)) if out else None
        if folder and not os.path.isdir(folder):
            sys.exit(f"error: {flag} {out}: no such folder {folder}")
    try:
        rows, cols, values = collect(args.runs, args.ckpt, args.analysis)
    except ResultError as e:
        sys.exit(f"error: {e}")
    groups, stats = over_seeds(args.runs, rows, cols, values) if args.over_seeds else (rows, None)
    if args.baseline and args.baseline not in groups:
        sys.exit(f"error: --baseline {args.baseline} is not one of the runs {groups}")
    if args.reference and not os.path.isfile(args.reference):
        sys.exit(f"error: --reference {args.reference}: no such file")
    table = (markdown_over_seeds(groups, cols, stats, args.baseline) if args.over_seeds
             else markdown(rows, cols, values, args.baseline))
    if args.reference:
        table += "\n\n" + reference_table(args.runs, rows, cols, values, load_reference(args.reference))
    print(table)
    try:
        if args.md:
            with open(args.md, "w") as f:
                f.write(table + "\n")
        if args.csv and args.over_seeds:
            csv_over_seeds(args.csv, groups, cols, stats)
        elif args.csv:
            with open(args.csv, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["run", *cols])
                for r in rows:
                    w.writerow([r, *(f"{values[r, c]:.2f}" if (r, c) in values else "" for c in cols)])
    except OSError as e:  # a folder not writable, a full disk
        sys.exit(f"error: cannot write {e.filename} ({e.strerror})")


if __name__ == "__main__":
    main()
