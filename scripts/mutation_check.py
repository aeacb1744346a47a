"""Mutation check: do the tests catch the small bugs that would change published numbers?

Each mutation below is a one-line change to a module that decides results (a loss, a framework's
wiring, the projector, the descriptor, the augmentation recipe, the lr schedule, the EMA, an
evaluation protocol). For each, the tree is copied to a scratch folder, the line is changed there
(never here), and only the test files named with it run (``pytest -x``). A mutation the tests still
pass on *survives*: a bug of that kind would go unnoticed. The script lists every mutation as killed
or SURVIVED and exits 1 if any survived (2 if the unchanged copy fails those tests, if pytest could
not run them, or if a mutation's text is no longer in its file: the list must follow the code).

    python scripts/mutation_check.py               # all, sequentially (tens of minutes on 2 cores)
    python scripts/mutation_check.py --only moco   # the mutations whose name contains "moco"
    python scripts/mutation_check.py --list

Run before each release (docs/testing.md); it is too slow for CI.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "runs", "*.pth")

REF = ("tests/models/test_reference_contrastive.py", "tests/models/test_reference_siamese.py")
CONTRASTIVE, SIAMESE = REF
RECIPE = "tests/test_pretrain_recipe.py"
LOOP = "tests/utils/training/test_training_loop.py"
GLOO = "tests/utils/test_distributed_frameworks.py"
RESUME = "tests/test_pretrain_resume.py"


class Mutation(NamedTuple):
    """Replace ``old`` (which must occur exactly once in ``path``) by ``new``; ``tests`` should fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


M = Mutation
MUTATIONS: list[Mutation] = [
    # losses
    M("info_nce-positive-index", "models/losses.py", "torch.zeros(q.shape[0], dtype=torch.long",
      "torch.ones(q.shape[0], dtype=torch.long", (CONTRASTIVE,)),
    M("info_nce-temperature", "models/losses.py", "neg], dim=1) / temperature", "neg], dim=1) * temperature",
      (CONTRASTIVE,)),
    M("nt_xent-view-paired-with-itself", "models/losses.py", "pos_idx = torch.cat([idx + n_all, idx])",
      "pos_idx = torch.cat([idx, idx + n_all])", (CONTRASTIVE,)),
    M("simsiam-no-stop-gradient", "models/losses.py", "-F.cosine_similarity(p, z.detach(), dim=1)",
      "-F.cosine_similarity(p, z, dim=1)", (SIAMESE,)),
    M("barlow-on-diagonal-sign", "models/losses.py", "(torch.diagonal(c) - 1).pow(2)", "(torch.diagonal(c) + 1).pow(2)",
      (SIAMESE,)),
    M("mocov3-scale", "models/losses.py", "* (2 * temperature)", "* temperature", (CONTRASTIVE,)),
    M("sinkhorn-eps", "models/losses.py", "torch.exp(scores.float() / eps)", "torch.exp(scores.float() * eps)",
      (CONTRASTIVE,)),
    M("swav-codes-not-swapped", "models/losses.py", "(q1 * F.log_softmax(scores2 / temperature",
      "(q1 * F.log_softmax(scores1 / temperature", (CONTRASTIVE,)),
    # frameworks
    M("moco-key-from-view-1", "models/frameworks/moco.py", "self.target_backbone(x2)", "self.target_backbone(x1)",
      (CONTRASTIVE,)),
    M("mocov3-missing-swap", "models/frameworks/mocov3.py", "mocov3_contrastive(q1, gather_no_grad(k2)",
      "mocov3_contrastive(q1, gather_no_grad(k1)", (CONTRASTIVE,)),
    M("simclr-view-2-gets-view-1-descriptor", "models/frameworks/simclr.py", "self.projector(y2, d2)",
      "self.projector(y2, d1)", (CONTRASTIVE,)),
    M("simsiam-own-view-target", "models/frameworks/simsiam.py", "negative_cosine(p1.float(), z2.float())",
      "negative_cosine(p1.float(), z1.float())", (SIAMESE,)),
    M("byol-own-view-target", "models/frameworks/byol.py", "byol_loss(p1, t2)", "byol_loss(p1, t1)", (SIAMESE,)),
    M("byol-target-view-descriptor", "models/frameworks/byol.py", "self.target_backbone(x2), d2)",
      "self.target_backbone(x2), d1)", (SIAMESE, LOOP)),
    M("barlow-bias-lr-scale", "models/frameworks/barlow_twins.py", "BIAS_LR_SCALE = 0.024", "BIAS_LR_SCALE = 0.24",
      (RECIPE, SIAMESE)),
    M("swav-prototypes-not-normalised", "models/frameworks/swav.py",
      "self.prototypes.weight.copy_(F.normalize(self.prototypes.weight, dim=1))",
      "self.prototypes.weight.copy_(self.prototypes.weight)", (CONTRASTIVE,)),
    M("swav-freeze-boundary", "models/frameworks/swav.py", "if step + 1 < self.opts.freeze_iters:",
      "if step < self.opts.freeze_iters:", (CONTRASTIVE,)),
    M("moco-queue-size", "models/frameworks/moco.py", "queue: int = option(65536)", "queue: int = option(16384)",
      (RECIPE,)),
    M("moco-temperature", "models/frameworks/moco.py", "temperature: float = option(0.2)",
      "temperature: float = option(0.07)", (RECIPE, CONTRASTIVE)),
    M("barlow-lambda", "models/frameworks/barlow_twins.py", "lambd: float = option(0.0051)",
      "lambd: float = option(0.005)", (RECIPE, SIAMESE)),
    M("swav-prototype-count", "models/frameworks/swav.py", "prototypes: int = option(100)",
      "prototypes: int = option(3000)", (RECIPE,)),
    M("ema-weight", "models/frameworks/base.py", "torch._foreach_lerp_(target, online, 1.0 - m)",
      "torch._foreach_lerp_(target, online, m)", REF),
    M("byol-momentum-ramp", "models/frameworks/base.py", "math.cos(math.pi * step / max(1, total))",
      "math.cos(math.pi * step / max(1, 2 * total))", (SIAMESE, LOOP)),
    # two processes, and resume
    M("barlow-local-batch-norm", "models/frameworks/barlow_twins.py", "z1.t() @ z2 / (z1.shape[0] * world_size())",
      "z1.t() @ z2 / z1.shape[0]", (GLOO,)),
    M("mocov3-no-rank-offset", "models/frameworks/mocov3.py", "off = self.opts.temperature, rank() * q1.shape[0]",
      "off = self.opts.temperature, 0", (GLOO,)),
    M("swav-sinkhorn-local-batch", "models/frameworks/swav.py", "all_reduce_sum_no_grad, scores.shape[0] * world_size())",
      "lambda t: t, scores.shape[0])", (GLOO,)),
    M("resume-without-optimiser-state", "utils/training/trainer.py", 'run.optimizer.load_state_dict(ckpt["optimizer"])', "pass",
      (RESUME,)),
    # projector, heads, MLPs
    M("proj-mul-offset", "models/projector.py", "            x = x * e", "            x = x * (1 + e)", (SIAMESE,)),
    M("embedding-without-last-bn", "models/projector.py",
      "mlp_block(cond.desc_dim, cond.width, emb_dim, cond.depth, last_bn=True)",
      "mlp_block(cond.desc_dim, cond.width, emb_dim, cond.depth, last_bn=False)", (SIAMESE, RECIPE)),
    M("mlp-activation", "models/mlp.py", "nn.ReLU(inplace=True)", "nn.LeakyReLU(0.1, inplace=True)", REF),
    M("augself-regression-without-tanh", "models/augself.py", "F.mse_loss(torch.tanh(pred), target.float())",
      "F.mse_loss(pred, target.float())", REF),
    # descriptor and augmentation recipe
    M("descriptor-crop-centre", "augmentations/descriptor.py", "cy, cx = top / hs + h / hs / 2, left / ws + w / ws / 2",
      "cy, cx = top / hs, left / ws", ("tests/augmentations/test_descriptor.py",)),
    M("jitter-probability", "augmentations/pipeline.py", "p_jitter: float = 0.8", "p_jitter: float = 1.0", (RECIPE,)),
    M("crop-scale", "augmentations/pipeline.py", "crop_scale: tuple[float, float] = (0.2, 1.0)",
      "crop_scale: tuple[float, float] = (0.08, 1.0)", (RECIPE,)),
    # the step, the optimiser and the schedule
    M("step-view-2-descriptor", "utils/training/step.py", "d2 = descriptor_of(p2, run.args.aug_cond, ranges)",
      "d2 = descriptor_of(p1, run.args.aug_cond, ranges)", (LOOP,)),
    M("lr-not-scaled-by-batch", "utils/training/run.py", "return args.base_lr * args.batch_size / 256",
      "return args.base_lr", (RECIPE, LOOP)),
    M("weight-decay-dropped", "utils/training/run.py",
      "return torch.optim.SGD(groups, lr=lr, momentum=args.momentum, weight_decay=args.wd)",
      "return torch.optim.SGD(groups, lr=lr, momentum=args.momentum)", (RECIPE, LOOP)),
    M("cosine-span", "utils/schedule.py", "span = max(1, max_epochs - warmup_epochs)",
      "span = max(1, max_epochs - warmup_epochs + 1)", (LOOP,)),
    M("fixed-lr-ignored", "utils/schedule.py", '(1.0 if g.get("fixed_lr") else factor)', "factor", (LOOP,)),
    # evaluation
    M("knn-temperature-dropped", "utils/evaluation/knn.py", "torch.exp(top_sim / temperature)", "torch.exp(top_sim)",
      ("tests/utils/evaluation/test_knn.py::test_weighted_knn_follows_the_temperature",)),
    M("linear-eval-refit-on-train-only", "utils/evaluation/linear_eval.py",
      "fit_logistic(clf, xre, yre, best_wd, max_iter)",
      "fit_logistic(clf, xtr, ytr, best_wd, max_iter)", ("tests/utils/evaluation/test_linear_eval.py",)),
    M("linear-eval-last-best", "utils/evaluation/linear_eval.py", "if s > best[0]:", "if s >= best[0]:",
      ("tests/utils/evaluation/test_linear_eval.py",)),
    M("few-shot-interval", "utils/evaluation/few_shot.py", "1.96 * accs.std() / math.sqrt(num_tasks)",
      "1.96 * accs.std(ddof=1) / math.sqrt(num_tasks)", ("tests/utils/evaluation/test_few_shot.py",)),
]


def pytest_command(python: str, tests: tuple[str, ...], threads: int | None) -> list[str]:
    """``python -m pytest -x -q`` on ``tests``; with ``threads``, torch's thread count pinned (the tests'
    conftest sets 2, which crawls on a machine whose cores other jobs hold)."""
    args = ["-x", "-q", "-p", "no:cacheprovider", *tests]
    if threads is None:
        return [python, "-m", "pytest", *args]
    code = (f"import sys, torch, pytest; torch.set_num_threads({threads}); "
            "torch.set_num_threads = lambda n: None; sys.exit(pytest.main(sys.argv[1:]))")
    return [python, "-c", code, *args]


def run_tests(tree: str, tests: tuple[str, ...], python: str, timeout: float, threads: int | None) -> str:
    """The tests' verdict in ``tree``: "passed"; "failed" (a test failed, or they hung past ``timeout``);
    or "error" (pytest could not collect or run them: exit status 2 to 5), which says nothing of a mutation."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    try:
        done = subprocess.run(pytest_command(python, tests, threads), cwd=tree, env=env, timeout=timeout, check=False,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "failed"
    return {0: "passed", 1: "failed"}.get(done.returncode, "error")


def check_applicable(root: str, mutations: list[Mutation]) -> list[str]:
    """Mutations whose text no longer occurs exactly once in their file (the list must follow the code)."""
    bad = []
    for m in mutations:
        with open(os.path.join(root, m.path)) as f:
            n = f.read().count(m.old)
        if n != 1:
            bad.append(f"{m.name}: {m.path} holds its text {n} times, not once")
    return bad


VERDICT = {"failed": "killed", "passed": "SURVIVED", "error": "error"}  # the tests' verdict -> the mutation's


def run_mutations(root: str, mutations: list[Mutation], python: str = sys.executable, timeout: float = 1800,
                  threads: int | None = None, log=print, baseline: bool = True) -> dict[str, str]:
    """name -> "killed", "SURVIVED" or "error", each mutation applied in turn to one scratch copy of
    ``root`` and undone after. Each mutation's text must occur once in the copy, and with ``baseline``
    the copy must first pass every test the mutations use (a test that fails anyway would kill every
    mutation); else RuntimeError."""
    results = {}
    with tempfile.TemporaryDirectory(prefix="mutation-") as scratch:
        tree = os.path.join(scratch, "tree")
        shutil.copytree(root, tree, ignore=IGNORE, symlinks=True)
        if bad := check_applicable(tree, mutations):  # the copy, not the tree, which may change meanwhile
            raise RuntimeError("\n".join(bad))
        tests = tuple(sorted({t for m in mutations for t in m.tests}))
        if baseline and (verdict := run_tests(tree, tests, python, timeout, threads)) != "passed":
            raise RuntimeError(f"the unchanged tree {verdict} in {' '.join(tests)}: fix that first")
        for m in mutations:
            path = os.path.join(tree, m.path)
            with open(path) as f:
                original = f.read()
            with open(path, "w") as f:
                f.write(original.replace(m.old, m.new, 1))
            start = time.time()
            try:
                results[m.name] = VERDICT[run_tests(tree, m.tests, python, timeout, threads)]
            finally:
                with open(path, "w") as f:
                    f.write(original)
            log(f"{results[m.name]:8s} {m.name} ({m.path}; {time.time() - start:.0f} s)")
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=None, help="run the mutations whose name contains this text")
    p.add_argument("--list", action="store_true", help="print the mutations and the tests each runs, and exit")
    p.add_argument("--timeout", type=float, default=1800, help="seconds one mutation's tests may take (then killed)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads in the test processes (default: the tests' own 2; 1 on a shared machine)")
    p.add_argument("--skip-baseline", action="store_true",
                   help="do not first check that the unchanged copy passes the tests the mutations use")
    a = p.parse_args(argv)
    chosen = [m for m in MUTATIONS if a.only is None or a.only in m.name]
    if a.list:
        for m in chosen:
            print(f"{m.name}: {m.path}: {m.old!r} -> {m.new!r}; {' '.join(m.tests)}")
        return 0
    if bad := check_applicable(ROOT, chosen):
        print("\n".join(bad))
        return 2
    try:
        results = run_mutations(ROOT, chosen, timeout=a.timeout, threads=a.threads, baseline=not a.skip_baseline)
    except RuntimeError as e:
        print(e)
        return 2
    survivors = [name for name, r in results.items() if r == "SURVIVED"]
    errors = [name for name, r in results.items() if r == "error"]
    print(f"{list(results.values()).count('killed')} of {len(results)} mutations killed"
          + (f"; survived: {', '.join(survivors)}" if survivors else "")
          + (f"; tests could not run: {', '.join(errors)}" if errors else ""))
    return 1 if survivors else 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
