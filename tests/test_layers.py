"""The import graph runs one way, downwards (docs/architecture.md): every import of every module of
the packages, parsed (lazy ones inside functions included), is checked against the layer table."""
import ast
import pathlib

from tests.helpers import ROOT

# layer -> the layers its modules may import (its own included); entry scripts and scripts/ may import all
LAYERS = {
    "leaf": {"leaf"},                                      # utils/*.py: collectives, checkpoints, logging, schedules
    "augmentations": {"augmentations"},                    # views + parameter records, descriptor
    "models": {"models", "augmentations", "leaf"},         # backbones, projector, frameworks, losses
    "datasets": {"datasets", "augmentations", "leaf"},     # datasets, loaders, decoding
    "evaluation": {"evaluation", "models", "datasets", "augmentations", "leaf"},  # utils/evaluation/
    "training": {"training", "evaluation", "models", "datasets", "augmentations", "leaf"},  # utils/training/
}
PACKAGES = ("augmentations", "models", "datasets", "utils")


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name of this project; None for anything else (torch, ...)."""
    parts = module.split(".")
    if parts[0] == "utils":
        return parts[1] if len(parts) > 1 and parts[1] in ("training", "evaluation") else "leaf"
    return parts[0] if parts[0] in PACKAGES else None


def imports_of(path: pathlib.Path, root: pathlib.Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in ``path``, relative ones resolved."""
    package = list(path.relative_to(root).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            found += [(node.lineno, mod)] if node.module else [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return found


def violations(root: pathlib.Path) -> list[str]:
    """Each import that runs from a layer to one it may not use, as 'file:line (layer) imports ...'."""
    bad = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            here = layer_of(".".join(path.relative_to(root).with_suffix("").parts))
            for line, module in imports_of(path, root):
                there = layer_of(module)
                if there is not None and there not in LAYERS[here]:
                    bad.append(f"{path.relative_to(root)}:{line} ({here}) imports {module} ({there})")
    return bad


def test_no_import_runs_back_up():
    bad = violations(pathlib.Path(ROOT))
    assert not bad, "imports that run back up:\n" + "\n".join(bad)


def test_the_check_sees_lazy_and_relative_arrows_back_up(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "bad.py").write_text(
        "import torch\nfrom .ok import g\n\ndef f():\n    from utils.training.run import build_run\n")
    (tmp_path / "utils" / "evaluation").mkdir(parents=True)
    (tmp_path / "utils" / "evaluation" / "knn.py").write_text("from ..training import step\nfrom .. import logging\n")
    assert violations(tmp_path) == [
        "models/bad.py:5 (models) imports utils.training.run (training)",
        "utils/evaluation/knn.py:1 (evaluation) imports utils.training (training)"]
