"""collect_results.py's extra tables: runs of several seeds as mean +- std, and published numbers beside ours.

Plain Python (no torch), so the collector stays quick to start.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE_CSV = os.path.join(ROOT, "docs", "reference", "linear_transfer.csv")
SEED_DIR = re.compile(r"seed\d+$")


def group_of(run_dir: str) -> str:
    """A run's group: the parent folder's name for a folder named seed<N> (method/seed0), else its own name."""
    d = os.path.normpath(run_dir)
    return os.path.basename(os.path.dirname(d)) if SEED_DIR.match(os.path.basename(d)) else os.path.basename(d)


def over_seeds(run_dirs: list[str], rows: list[str], cols: list[str], values: dict[tuple[str, str], float]
               ) -> tuple[list[str], dict[tuple[str, str], tuple[float, float, int]]]:
    """Groups in first-seen order and {(group, column): (mean, sample std, seeds)} over their runs."""
    groups: dict[str, list[str]] = {}
    for d, r in zip(run_dirs, rows):
        groups.setdefault(group_of(d), []).append(r)
    stats = {}
    for g, members in groups.items():
        for c in cols:
            xs = [values[r, c] for r in members if (r, c) in values]
            if xs:
                mean = sum(xs) / len(xs)
                std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
                stats[g, c] = (mean, std, len(xs))
    return list(groups), stats


def markdown_over_seeds(groups: list[str], cols: list[str], stats: dict, baseline: str | None = None) -> str:
    """One row per group: 'mean ± std' per column and the number of seeds; differences of means from ``baseline``."""
    def line(cells):
        return "| " + " | ".join(cells) + " |"
    seeds = {g: max((stats[g, c][2] for c in cols if (g, c) in stats), default=0) for g in groups}
    out = [line(["run", "seeds", *cols]), line(["---"] * (len(cols) + 2))]
    for g in groups:
        out.append(line([g, str(seeds[g]), *(f"{stats[g, c][0]:.2f} ± {stats[g, c][1]:.2f}" if (g, c) in stats
                                             else "-" for c in cols)]))
    if baseline:
        out += ["", f"Difference of means from {baseline} (points):", "", line(["run", *cols]),
                line(["---"] * (len(cols) + 1))]
        for g in groups:
            if g != baseline:
                out.append(line([g, *(f"{stats[g, c][0] - stats[baseline, c][0]:+.2f}"
                                      if (g, c) in stats and (baseline, c) in stats else "-" for c in cols)]))
    return "\n".join(out)


def csv_over_seeds(path: str, groups: list[str], cols: list[str], stats: dict) -> None:
    """Columns: run, then '<column>' (mean), '<column> std' and '<column> seeds' for each column."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", *(f"{c}{s}" for c in cols for s in ("", " std", " seeds"))])
        for g in groups:
            w.writerow([g, *(x for c in cols for x in ((f"{stats[g, c][0]:.2f}", f"{stats[g, c][1]:.2f}",
                                                          stats[g, c][2]) if (g, c) in stats else ("", "", "")))])


def method_of(args: dict) -> str:
    """baseline, augself or cassle, from a run's args.json (pretrain_cond.py's flags)."""
    if args.get("aug_inj_type", "proj-none") != "proj-none":
        return "cassle"
    if any((args.get(k) or 0) > 0 for k in ("ss_crop", "ss_color", "ss_blur", "ss_rot", "ss_sol")):
        return "augself"
    return "baseline"


def load_reference(path: str = REFERENCE_CSV) -> list[dict[str, str]]:
    """The reference rows (source, framework, method, pretrain, backbone, then one column per dataset)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def reference_table(run_dirs: list[str], rows: list[str], cols: list[str], values: dict[tuple[str, str], float],
                    reference: list[dict[str, str]]) -> str:
    """Each run beside the reference rows of its setting (framework, pretraining data, backbone, method, read
    from the run's args.json), with our value minus each reference value; runs without a match are listed."""
    def line(cells):
        return "| " + " | ".join(cells) + " |"
    out, unmatched = [], []
    for d, r in zip(run_dirs, rows):
        path = os.path.join(d, "args.json")
        if not os.path.isfile(path):
            unmatched.append(f"{r} (no args.json)")
            continue
        with open(path) as f:
            args = json.load(f)
        key = (args.get("framework"), args.get("dataset"), args.get("model"), method_of(args))
        refs = [x for x in reference if (x["framework"], x["pretrain"], x["backbone"]) == key[:3]
                and x["method"].split(" ")[0] == key[3]]
        shown = [c for c in cols if refs and c in refs[0] and (r, c) in values]
        if not refs or not shown:
            unmatched.append(f"{r} ({'/'.join(map(str, key))})")
            continue
        out += ["", f"{r}: {key[0]}, {key[3]}, {key[2]} pretrained on {key[1]}", "",
                line(["row", *shown]), line(["---"] * (len(shown) + 1)),
                line([f"ours ({r})", *(f"{values[r, c]:.2f}" for c in shown)])]
        for x in refs:
            label = f"{x['source']}: {x['method']}"
            out.append(line([label, *(x[c] or "-" for c in shown)]))
            out.append(line([f"ours - {x['source']}", *(f"{values[r, c] - float(x[c]):+.2f}" if x[c] else "-"
                                                         for c in shown)]))
    if unmatched:
        out += ["", "No reference row for: " + ", ".join(unmatched)]
    return "\n".join(["Reference (docs/reference/README.md gives the sources):", *out])
