"""scripts/colordigits_colour_share.py: the colour regression and the 1-NN against scikit-learn."""
import re

import pytest
import torch
from sklearn.metrics import r2_score
from sklearn.neighbors import KNeighborsClassifier

from tests.helpers import expect_one_line_error, load_script


@pytest.fixture(scope="module")
def share():
    return load_script("colordigits_colour_share")


def test_regressors_read_the_ink_and_background_colour(share):
    img = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    img[:, :, :, :] = torch.tensor([10, 20, 30], dtype=torch.uint8).view(1, 3, 1, 1)  # background
    img[0, :, 8:24, 9:23] = torch.tensor([200, 100, 50], dtype=torch.uint8).view(3, 1, 1)  # ink: 224 of 1024 px
    img[1, :, 4:20, 4:20] = torch.tensor([40, 220, 90], dtype=torch.uint8).view(3, 1, 1)  # 256 px
    a = share.colour_regressors(img)
    assert a.shape == (2, 28) and torch.all(a[:, -1] == 1)
    torch.testing.assert_close(a[0, :6], torch.tensor([200, 100, 50, 10, 20, 30]) / 255)
    torch.testing.assert_close(a[1, :6], torch.tensor([40, 220, 90, 10, 20, 30]) / 255)
    torch.testing.assert_close(a[0, 6], a[0, 0] ** 2)  # the products follow the colours


def test_share_is_scikit_learns_variance_weighted_r2(share):
    g = torch.Generator().manual_seed(0)
    a = torch.cat([torch.rand(300, 5, generator=g), torch.ones(300, 1)], 1)
    f = a @ torch.randn(6, 8, generator=g) + 0.5 * torch.randn(300, 8, generator=g)
    got, coef = share.colour_share(f, a)
    want = r2_score(f.numpy(), (a.double() @ coef).numpy(), multioutput="variance_weighted")
    assert got == pytest.approx(want, abs=1e-9) and 0.3 < got < 0.99
    assert share.colour_share(a[:, :3] @ torch.randn(3, 4, generator=g), a)[0] == pytest.approx(1.0, abs=1e-9)


def test_nn1_is_scikit_learns_cosine_1nn(share):
    g = torch.Generator().manual_seed(1)
    bank, queries = torch.randn(200, 16, generator=g), torch.randn(50, 16, generator=g)
    yb, yq = torch.randint(0, 4, (200,), generator=g), torch.randint(0, 4, (50,), generator=g)
    knn = KNeighborsClassifier(n_neighbors=1, metric="cosine").fit(bank.numpy(), yb.numpy())
    assert share.nn1_accuracy(bank, yb, queries, yq) == pytest.approx(knn.score(queries.numpy(), yq.numpy()))


def test_runs_on_a_checkpoint(colordigits_ckpt, share, capsys):
    share.main(["--ckpt", colordigits_ckpt, "--device", "cpu"])
    line = capsys.readouterr().out.strip()
    m = re.search(r"colour explains ([\d.]+)% .* digit 1-NN ([\d.]+), without the colour-explained part ([\d.]+)",
                  line)
    assert m and 0 <= float(m[1]) <= 100 and all(0 <= float(m[i]) <= 1 for i in (2, 3)), line


def test_missing_checkpoint_one_line(share, capsys, tmp_path):
    expect_one_line_error(share.main, ["--ckpt", tmp_path / "nope.pth"], capsys, r"--ckpt .*nope.pth: no such file")
