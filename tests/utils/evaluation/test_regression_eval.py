"""The landmark regressions' linear probe: the published R^2 against scikit-learn, the L1 objective,
and the sweep."""
import math

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from torch import nn

from utils.evaluation.linear_eval import fit_logistic
from utils.evaluation.regression_eval import l1_sum, r2_flat, regression_eval


def test_r2_flat_is_the_r2_of_a_line_fitted_to_the_flattened_coordinates():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(40, 6, generator=g)
    pred = 0.5 * y + 0.3 * torch.randn(40, 6, generator=g) + 2.0  # shifted and scaled: the line undoes it
    x, t = pred.flatten().double().numpy()[:, None], y.flatten().double().numpy()
    line = LinearRegression().fit(x, t)
    assert r2_flat(pred, y) == pytest.approx(r2_score(t, line.predict(x)), abs=1e-12)
    assert r2_flat(pred, y) == pytest.approx(np.corrcoef(x[:, 0], t)[0, 1] ** 2, abs=1e-12)
    assert r2_score(y.numpy(), pred.numpy()) < 0 < r2_flat(pred, y)  # not the predictions' own R^2


def test_r2_flat_edge_cases():
    y = torch.arange(8.0).view(4, 2)
    assert r2_flat(3 * y - 1, y) == pytest.approx(1.0)
    assert r2_flat(torch.full((4, 2), 5.0), y) == 0.0  # constant predictions: the line is the mean
    assert math.isnan(r2_flat(y, torch.ones(4, 2)))


def test_the_fit_minimises_the_summed_absolute_error():
    """An intercept-only head (zero features): summed L1 is minimised at the targets' median (0
    here), a squared loss would give their mean (2.5)."""
    head = nn.Linear(1, 1)
    x, y = torch.zeros(4, 1), torch.tensor([[0.0], [0.0], [0.0], [10.0]])
    fit_logistic(head, x, y, 1e-6, 50, loss_fn=l1_sum)
    assert abs(head.bias.item()) < 1e-3
    assert l1_sum(head(x), y).item() == pytest.approx(10.0, abs=1e-2)


def test_sweep_recovers_a_linear_target_and_refits_where_told():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(5, 4, generator=g)
    feats = [torch.randn(n, 5, generator=g) for n in (60, 20, 30)]
    splits = [(f, f @ w + 0.5 + 0.05 * torch.randn(len(f), 4, generator=g)) for f in feats]
    grid = [1e-6, 1e-2, 1e3]
    res = regression_eval(*splits, out_dim=4, grid=grid, max_iter=200, log=lambda *_: None)
    assert res.grid == grid and len(res.val) == 3 and res.best_wd == grid[int(np.argmax(res.val))]
    assert res.test > 0.99 and res.val[2] < res.val[0]  # a huge penalty shrinks the head
    only_train = regression_eval(*splits, out_dim=4, grid=grid, max_iter=200, log=lambda *_: None,
                                 refit=splits[0])
    assert not torch.equal(only_train.state["weight"], res.state["weight"])
    with pytest.raises(ValueError, match="targets have 4 coordinates, the regression head 3"):
        regression_eval(*splits, out_dim=3, grid=grid, log=lambda *_: None)


def test_sharded_extraction_keeps_coordinate_targets(monkeypatch):
    """Two ranks simulated in turn (their all_gather replayed): 2-d float targets, negative ones
    included, come back whole and in dataset order, as one process extracts them."""
    import utils.evaluation.features
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    data = torch.utils.data.TensorDataset(torch.randn(7, 3, 2, 2), torch.randn(7, 4) - 1)
    one = utils.evaluation.features.sharded_features(net, data, torch.device("cpu"), 4, 0)
    sent: dict = {}
    for replay in (False, True):
        for r in (0, 1):
            calls = iter(range(2))
            monkeypatch.setattr(utils.evaluation.features, "world_size", lambda: 2)
            monkeypatch.setattr(utils.evaluation.features, "rank", lambda r=r: r)

            def gather(t, r=r, calls=calls, replay=replay):
                k = next(calls)
                sent[r, k] = t
                return torch.cat([sent[0, k], sent[1, k]]) if replay else torch.cat([t, t])
            monkeypatch.setattr(utils.evaluation.features, "gather_no_grad", gather)
            two = utils.evaluation.features.sharded_features(net, data, torch.device("cpu"), 4, 0)
    torch.testing.assert_close(two[0], one[0])
    assert torch.equal(two[1], one[1]) and two[1].shape == (7, 4)
