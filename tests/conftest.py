import itertools
import os
import socket
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _threads_per_process() -> int:
    """Two threads for the suite in one process; under pytest-xdist the usable CPUs split evenly
    between the workers, so that ``-n 2`` on two cores runs one thread each instead of four."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, min(2, cpus // workers))
    asked = os.environ.get("OMP_NUM_THREADS", "")
    return min(threads, int(asked)) if asked.isdigit() and int(asked) > 0 else threads


THREADS = _threads_per_process()
torch.set_num_threads(THREADS)
# subprocesses and spawned ranks start torch afresh: without this each takes every core
os.environ["OMP_NUM_THREADS"] = str(THREADS)

# Each xdist worker (gw0, gw1, ...) draws ignite's MASTER_PORT from a range of its own, below Linux's
# ephemeral ports, so that two workers' gloo rendezvous never meet and no port is reused back to back.
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0) % 30
_PORT_SPAN = 400
_PORTS = itertools.cycle(range(20000 + _PORT_SPAN * _WORKER, 20000 + _PORT_SPAN * (_WORKER + 1)))


def free_port() -> int:
    """The next port of this worker's range that nothing listens on now."""
    for _ in range(_PORT_SPAN):
        port = next(_PORTS)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in this worker's range of {_PORT_SPAN}")


os.environ["MASTER_PORT"] = str(free_port())  # for fixtures shared by many tests; each test gets its own below


@pytest.fixture(autouse=True)
def master_port(monkeypatch) -> int:
    """A free MASTER_PORT for every test: ignite.distributed.Parallel's spawned ranks rendezvous there
    (its default, 2222, would be shared by every xdist worker)."""
    port = free_port()
    monkeypatch.setenv("MASTER_PORT", str(port))
    return port


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


SEED_PRETRAIN = ["--framework", "moco", "--dataset", "imagenet100", "--model", "resnet18", "--batch-size", "50",
                 "--max-epochs", "1", "--aug-treatment", "mlp", "--aug-nn-depth", "6", "--aug-nn-width", "64",
                 "--aug-inj-type", "proj-cat", "--aug-cond", "crop", "color", "color_diff", "blur", "grayscale",
                 "--base-lr", "0.03", "--wd", "1e-4", "--ckpt-freq", "50", "--eval-freq", "50",
                 "--num-workers", "2", "--seed", "1", "--distributed"]


@pytest.fixture(scope="session")
def seed_pretrain_run(tmp_path_factory):
    """The README's seed pretraining command at tiny sizes (100-class ImageNet-100 folder, 2 steps)."""
    import pretrain_cond
    from tests.data_formats import write_imagenet100
    root = tmp_path_factory.mktemp("seed")
    data = write_imagenet100(str(root / "in100"), per_class=1, val_per_class=1, size=(48, 40))
    logdir = root / "run"
    pretrain_cond.main(["--logdir", str(logdir), "--datadir", data, *SEED_PRETRAIN])
    return logdir


@pytest.fixture(scope="session")
def colordigits_ckpt(tmp_path_factory):
    """A mini_resnet CASSLE checkpoint pretrained for one epoch on colordigits."""
    import pretrain_cond
    logdir = tmp_path_factory.mktemp("cd") / "run"
    pretrain_cond.main(["--logdir", str(logdir), "--dataset", "colordigits", "--model", "mini_resnet",
                        "--framework", "simclr", "--batch-size", "256", "--max-epochs", "1", "--eval-freq", "0",
                        "--device", "cpu", "--aug-treatment", "mlp", "--aug-inj-type", "proj-cat",
                        "--aug-cond", "crop", "color", "color_diff", "flip", "blur", "grayscale"])
    return str(logdir / "ckpt-last.pth")


@pytest.fixture
def no_network(monkeypatch):
    """Every URL a download opens fails as it does on a machine without network."""
    import urllib.error
    import urllib.request

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(urllib.request, "urlopen", offline)


# Fixtures that each cost a pretraining run or a spawn of processes: under ``pytest -n N --dist
# loadgroup`` the tests that use one run on one worker, so it is made once, not once per worker.
SHARED_RUNS = ("seed_pretrain_run", "colordigits_ckpt", "two_ranks")


def pytest_configure(config):
    # registered by pytest-xdist too; here so that the suite runs without it, warning-free
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one pytest-xdist worker")
    if config.pluginmanager.hasplugin("xdist"):
        from tests.xdist_groups import SharedFixtureGroups
        config.pluginmanager.register(SharedFixtureGroups(config, SHARED_RUNS), "shared-fixture-groups")
