"""Resume at an epoch boundary is exact for every framework and for a JPEG folder: a run continued
from its epoch-1 checkpoint ends bit for bit where the uninterrupted run ends (weights, targets,
queue, prototypes, BN statistics, optimiser state)."""
import pytest
import torch

import pretrain_cond
from models import FRAMEWORKS
from utils.checkpoint import load_checkpoint

TINY = ["--model", "mini_resnet", "--batch-size", "16", "--max-epochs", "2", "--proj-hidden", "16", "--eval-freq", "0",
        "--ckpt-freq", "1", "--device", "cpu", "--print-freq", "100", "--aug-treatment", "mlp", "--aug-nn-width", "8",
        "--aug-inj-type", "proj-cat", "--aug-cond", "crop", "color", "--ss-crop", "0.5"]


@pytest.fixture(scope="module")
def cifar(tmp_path_factory):
    from tests.data_formats import write_cifar
    mp = pytest.MonkeyPatch()
    root = write_cifar(str(tmp_path_factory.mktemp("cifar") / "c"), mp, "cifar10", n_train=32, n_test=8)
    yield ["--dataset", "cifar10", "--datadir", root]  # 2 steps an epoch
    mp.undo()


def _resumes_exactly(tmp_path, common: list) -> None:
    """Two epochs in one go, then epoch 2 again from the first run's epoch-1 checkpoint in a fresh folder."""
    pretrain_cond.main([str(a) for a in ["--logdir", tmp_path / "a", *common]])
    pretrain_cond.main([str(a) for a in ["--logdir", tmp_path / "b", *common, "--resume", tmp_path / "a" / "ckpt-1.pth"]])
    a, b = (load_checkpoint(str(tmp_path / r / "ckpt-last.pth")) for r in "ab")
    assert a["epoch"] == b["epoch"] == 2 and a["engine"]["iteration"] == b["engine"]["iteration"]
    first = load_checkpoint(str(tmp_path / "a" / "ckpt-1.pth"))["model"]
    assert any(not torch.equal(first[k], a["model"][k]) for k in first)  # epoch 2 changed the weights
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and sa
    for i in sa:
        for name, value in sa[i].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb[i][name])), (i, name)


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_every_framework_resumes_exactly_at_an_epoch_boundary(tmp_path, cifar, framework):
    _resumes_exactly(tmp_path, ["--framework", framework, *cifar, *TINY])


def test_a_jpeg_folder_run_resumes_exactly_at_an_epoch_boundary(tmp_path):
    """Decoded and cropped in a loader worker process, whose draws are seeded per epoch too (one 224 px
    step an epoch)."""
    from tests.data_formats import write_jpeg
    for i in range(8):
        write_jpeg(str(tmp_path / "data" / f"c{i % 2}" / f"{i}.jpg"), (44 + i, 40), i)
    _resumes_exactly(tmp_path, ["--framework", "moco", "--dataset", "folder", "--datadir", tmp_path / "data",
                                "--jpeg-decode", "workers", "--num-workers", "1", *TINY, "--batch-size", "8"])
