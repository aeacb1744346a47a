"""Few-shot episodes: known answers on separable and random features, seeding, episode shape."""
import numpy as np
import pytest

from utils.evaluation.few_shot import few_shot_eval, sample_episode


def _features(separable: bool, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(8), 20)
    centres = rng.normal(size=(8, 16)) * (10 if separable else 0)
    return centres[y] + rng.normal(size=(160, 16)), y


def test_separable_features_give_full_accuracy_and_random_give_chance():
    f, y = _features(True)
    mean, ci = few_shot_eval(f, y, 5, 1, 5, num_tasks=50)
    assert mean == 1.0 and ci == 0.0
    f, y = _features(False)
    mean, ci = few_shot_eval(f, y, 5, 5, 10, num_tasks=200)
    assert abs(mean - 0.2) < 0.05 and 0 < ci < 0.05


def test_episodes_are_seeded_and_well_formed():
    f, y = _features(False)
    rng = np.random.default_rng(3)
    s, sy, q, qy = sample_episode(y, 5, 2, 3, rng, np.arange(8))
    assert len(s) == 10 and len(q) == 15 and not set(s) & set(q)
    for j in range(5):  # each episode label is one real class
        assert len(set(y[s[sy == j]]) | set(y[q[qy == j]])) == 1
    assert few_shot_eval(f, y, num_tasks=20, n_query=4, seed=1) == few_shot_eval(f, y, num_tasks=20, n_query=4, seed=1)
    assert few_shot_eval(f, y, num_tasks=20, n_query=4, seed=1) != few_shot_eval(f, y, num_tasks=20, n_query=4, seed=2)


def test_too_few_images_per_class_is_refused():
    f, y = _features(True)
    with pytest.raises(ValueError, match="only 0 classes have 31 images"):
        few_shot_eval(f, y, 5, 15, 16)


def test_mean_and_interval_equal_the_published_formula_on_the_same_episodes(monkeypatch):
    """Upstream (A/C transfer_few_shot.py): liblinear logistic regression at C = 1 per episode, mean accuracy
    and 1.96 x np.std (population) / sqrt(tasks), recomputed here with scikit-learn on the very episodes drawn."""
    import math

    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    import utils.evaluation.few_shot
    episodes = []
    draw = utils.evaluation.few_shot.sample_episode
    monkeypatch.setattr(utils.evaluation.few_shot, "sample_episode", lambda *a: episodes.append(draw(*a)) or episodes[-1])
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(8), 20)
    f = rng.normal(size=(8, 16))[y] * 1.2 + rng.normal(size=(160, 16))  # some episodes err, some do not
    mean, ci = few_shot_eval(f, y, 5, 1, 4, num_tasks=30, seed=3)
    accs = []
    for s, sy, q, qy in episodes:
        clf = OneVsRestClassifier(LogisticRegression(solver="liblinear", C=1.0)).fit(f[s], sy)
        accs.append(float((clf.predict(f[q]) == qy).mean()))
    assert len(accs) == 30 and len(set(accs)) > 2
    assert mean == pytest.approx(sum(accs) / 30, rel=1e-12)
    assert ci == pytest.approx(1.96 * np.std(accs) / math.sqrt(30), rel=1e-12)
