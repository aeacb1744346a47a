"""The torch-free dataset catalog, and the package's names loaded on first use."""
import subprocess
import sys

import pytest

import datasets
from datasets.catalog import DOWNSTREAM_DATASETS, METRICS, NUM_CLASSES
from tests.helpers import ROOT


def test_catalog_and_collector_load_without_torch(tmp_path):
    code = ("import sys, runpy; sys.argv = ['collect_results.py', sys.argv[1]]; "
            "runpy.run_path('scripts/collect_results.py', run_name='__main__'); "
            "import datasets.catalog; assert 'torch' not in sys.modules, 'torch was imported'")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("| run |")


def test_package_names_resolve_on_first_use():
    assert set(datasets.__all__) == set(datasets._HOME)
    for name in datasets.__all__:
        obj = getattr(datasets, name)
        assert getattr(sys.modules[f"datasets.{datasets._HOME[name]}"], name) is obj
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        datasets.nope


def test_catalog_agrees_with_the_datasets():
    from datasets.colordigits import LABELS, make_colordigits
    labels = make_colordigits("test")[1]
    assert {f"colordigits-{k}" for k in LABELS} == {n for n in NUM_CLASSES if n.startswith("colordigits")}
    assert all(int(labels[k].max()) == NUM_CLASSES[f"colordigits-{k}"] - 1 for k in LABELS)
    assert DOWNSTREAM_DATASETS[:3] == ("cifar10", "cifar100", "food101") and set(METRICS) == set(NUM_CLASSES)
