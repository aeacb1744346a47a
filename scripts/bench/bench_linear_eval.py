"""Speed of the 45-point L-BFGS logistic-regression sweep, against scikit-learn on the CPU.

    python scripts/bench/bench_linear_eval.py --device cuda                 # 50,000 x 2048, 100 classes
    python scripts/bench/bench_linear_eval.py --device cpu --n 2000 --dim 64 --sklearn-points 2

Synthetic Gaussian-blob features (train 80% / val 10% / test 10%). Times the full sweep + refit of
utils.evaluation.linear_eval on --device, and scikit-learn's LogisticRegression (lbfgs, same objective with
C = 1/(2w), the same stopping rule: max |gradient| <= 1e-10 or 5,000 iterations) for
--sklearn-points penalties on the CPU; the sklearn 45-point time is reported as the
measured per-fit mean x 46 fits, marked as extrapolated.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main(argv=None):
    from utils.evaluation.linear_eval import WD_GRID, linear_eval
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda or cpu: where the L-BFGS sweep runs")
    p.add_argument("--n", type=int, default=50000, help="feature rows")
    p.add_argument("--dim", type=int, default=2048, help="feature width")
    p.add_argument("--classes", type=int, default=100, help="label classes (ImageNet-100: 100)")
    p.add_argument("--sklearn-points", type=int, default=3, help="penalties timed with scikit-learn (0: skip)")
    p.add_argument("--out", default="bench_linear_eval.json", help="JSON output")
    a = p.parse_args(argv)
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, a.classes, (a.n,), generator=g)
    x = torch.randn(a.classes, a.dim, generator=g)[y] * 0.5 + torch.randn(a.n, a.dim, generator=g)
    n_tr, n_va = int(0.8 * a.n), int(0.1 * a.n)
    dev = torch.device(a.device)
    parts = [(x[s].to(dev), y[s].to(dev)) for s in (slice(0, n_tr), slice(n_tr, n_tr + n_va), slice(n_tr + n_va, None))]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    res = linear_eval(*parts, a.classes, "top1", log=lambda s: None)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    ours = time.perf_counter() - t
    out = {"device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu", "n": a.n, "dim": a.dim,
           "classes": a.classes, "sweep_seconds": ours, "test_top1": res.test, "best_wd": res.best_wd}
    print(f"{out['device']}: 45-point sweep + refit on {a.n} x {a.dim}: {ours:.1f} s (test top1 {res.test:.4f})")
    if a.sklearn_points > 0:
        from sklearn.linear_model import LogisticRegression
        xs = np.hstack([parts[0][0].cpu().numpy(), np.ones((n_tr, 1), dtype=np.float32)])
        per = []
        for wd in WD_GRID[:: max(1, len(WD_GRID) // a.sklearn_points)][: a.sklearn_points]:
            t = time.perf_counter()
            LogisticRegression(C=1 / (2 * wd), fit_intercept=False, max_iter=5000, tol=1e-10).fit(xs, parts[0][1].cpu().numpy())
            per.append(time.perf_counter() - t)
        out.update(sklearn_fit_seconds=per, sklearn_sweep_seconds_extrapolated=float(np.mean(per)) * 46)
        print(f"scikit-learn (CPU, {os.cpu_count()} cores): {np.mean(per):.1f} s per fit over {len(per)} penalties; "
              f"45-point sweep + refit extrapolated: {out['sklearn_sweep_seconds_extrapolated']:.0f} s")
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
