"""L-BFGS logistic regression against scikit-learn, metrics, and the sweep's selection rule."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score

from utils.evaluation.linear_eval import WD_GRID, accuracy, fit_logistic, linear_eval


def _blobs(n=120, d=6, c=3, seed=0, spread=1.0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=g) * 3
    y = torch.arange(n) % c
    return (centres[y] + spread * torch.randn(n, d, generator=g)).double(), y


@pytest.mark.parametrize("wd", [1e-2, 1e-1, 1.0, 10.0])
def test_lbfgs_matches_sklearn_with_penalised_bias(wd):
    x, y = _blobs()
    clf = torch.nn.Linear(6, 3).double()
    torch.nn.init.zeros_(clf.weight), torch.nn.init.zeros_(clf.bias)
    fit_logistic(clf, x, y, wd, max_iter=5000)
    # sklearn: 0.5 ||theta||^2 + C sum CE; with C = 1/(2 wd) this is our objective / (2 wd). A constant
    # column with fit_intercept=False makes sklearn penalise the bias exactly as we do.
    xs = np.hstack([x.numpy(), np.ones((len(x), 1))])
    ref = LogisticRegression(C=1 / (2 * wd), fit_intercept=False, tol=1e-12, max_iter=10000).fit(xs, y.numpy())
    ours = torch.cat([clf.weight, clf.bias[:, None]], 1).detach().numpy()
    np.testing.assert_allclose(ours, ref.coef_, rtol=1e-3, atol=1e-4)
    assert (clf(x).argmax(1).numpy() == ref.predict(xs)).all()


def test_class_avg_matches_balanced_accuracy_and_top1():
    g = torch.Generator().manual_seed(1)
    y = torch.cat([torch.zeros(50), torch.ones(10), torch.full((5,), 3)]).long()
    logits = torch.randn(65, 4, generator=g)
    pred = logits.argmax(1).numpy()
    with pytest.warns(UserWarning, match="classes not in y_true"):  # class 2 is predicted but has no samples
        reference = balanced_accuracy_score(y.numpy(), pred)
    assert accuracy(logits, y, "class-avg", 4) == pytest.approx(reference)
    assert accuracy(logits, y, "top1", 4) == pytest.approx((pred == y.numpy()).mean())
    with pytest.raises(ValueError, match="--metric"):
        accuracy(logits, y, "top5", 4)


def test_grid_is_published_logspace():
    assert len(WD_GRID) == 45 and WD_GRID[0] == pytest.approx(1e-6) and WD_GRID[-1] == pytest.approx(1e5)
    assert all(a < b for a, b in zip(WD_GRID, WD_GRID[1:]))


def test_sweep_picks_first_best_and_refits_on_train_plus_val():
    x, y = _blobs(300, spread=2.5, seed=2)
    tr, va, te = (x[:150], y[:150]), (x[150:220], y[150:220]), (x[220:], y[220:])
    lines = []
    res = linear_eval(tr, va, te, 3, "top1", grid=[1e-3, 1e-1, 1e1, 1e3, 1e5], log=lines.append)
    assert res.val.index(max(res.val)) == res.grid.index(res.best_wd)  # first maximum
    assert res.val[-1] < max(res.val)  # huge penalty underfits
    assert len(lines) == 6 and lines[-1].startswith("best wd=")
    assert res.test > 0.8


@pytest.mark.parametrize("own_refit_set", [False, True])
def test_refit_runs_on_train_plus_val_or_on_the_dataset_s_refit_set(own_refit_set):
    """Upstream refits on its ``trainval`` set, which for flowers N-shot and CUB-200 is not train + val."""
    x, y = _blobs(200, spread=2.0, seed=3)
    tr, va, te, re = (x[:60], y[:60]), (x[60:100], y[60:100]), (x[100:150], y[100:150]), (x[150:], y[150:])
    res = linear_eval(tr, va, te, 3, "top1", grid=[1e-1], max_iter=30, log=lambda _: None,
                      refit=re if own_refit_set else None)
    torch.manual_seed(0)  # the sweep's initialisation, fitted on train, then refit on the expected set
    clf = torch.nn.Linear(6, 3)
    fit_logistic(clf, tr[0].float(), tr[1], 1e-1, max_iter=30)
    xre, yre = re if own_refit_set else (torch.cat([tr[0], va[0]]), torch.cat([tr[1], va[1]]))
    fit_logistic(clf, xre.float(), yre, 1e-1, max_iter=30)
    for k, v in clf.state_dict().items():
        torch.testing.assert_close(res.state[k], v, atol=1e-6, rtol=0)


def test_lbfgs_settings_are_upstream_s(monkeypatch):
    """C transfer_linear_eval.py:184-190: lr 1, 5000 iterations, strong Wolfe, tolerance_grad 1e-10, tolerance_change 0."""
    seen = {}
    real = torch.optim.LBFGS

    def spy(params, **kw):
        seen.update(kw)
        return real(params, **kw)
    monkeypatch.setattr(torch.optim, "LBFGS", spy)
    x, y = _blobs(30)
    fit_logistic(torch.nn.Linear(6, 3).double(), x, y, 1.0)
    assert seen == {"lr": 1, "max_iter": 5000, "tolerance_grad": 1e-10, "tolerance_change": 0,
                    "line_search_fn": "strong_wolfe"}


def test_sweep_end_to_end_equals_scikit_learn_pick_refit_and_test_metric():
    """The whole protocol against scikit-learn: each grid value's validation accuracy, the first best
    penalty, the refit on train + val at that penalty, and the test accuracy of the refit model."""
    x, y = _blobs(240, d=4, spread=3.0, seed=5)  # overlapping classes: every penalty has one optimum
    tr, va, te = (x[:90], y[:90]), (x[90:150], y[90:150]), (x[150:], y[150:])
    grid = [1e-2, 1e0, 3e1, 1e2, 3e2, 1e3]
    res = linear_eval(tr, va, te, 3, "top1", grid=grid, log=lambda s: None)

    def fit(xs, ys, wd):  # sklearn's objective x 2 wd is ours; the constant column is the penalised bias
        ones = np.hstack([xs.numpy(), np.ones((len(xs), 1))])
        return LogisticRegression(C=1 / (2 * wd), fit_intercept=False, tol=1e-12, max_iter=10000).fit(ones, ys.numpy())

    def acc(model, xs, ys):
        return float((model.predict(np.hstack([xs.numpy(), np.ones((len(xs), 1))])) == ys.numpy()).mean())

    val = [acc(fit(*tr, wd), *va) for wd in grid]
    assert res.val == pytest.approx(val, abs=1e-6)  # accuracies counted in float32
    best = grid[val.index(max(val))]
    assert res.best_wd == best and len(set(val)) > 1  # the pick matters on this problem
    refit = fit(torch.cat([tr[0], va[0]]), torch.cat([tr[1], va[1]]), best)
    ours = torch.cat([res.state["weight"], res.state["bias"][:, None]], 1).numpy()
    np.testing.assert_allclose(ours, refit.coef_, rtol=1e-3, atol=1e-4)
    train_only = fit(*tr, best).coef_
    assert np.abs(train_only - refit.coef_).max() > 100 * 1e-4  # refitting on train alone would show
    assert res.test == pytest.approx(acc(refit, *te), abs=1e-6)
