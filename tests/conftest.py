import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
torch.set_num_threads(2)


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
