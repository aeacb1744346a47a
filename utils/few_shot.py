"""N-way K-shot episodes on frozen features with scikit-learn's logistic regression (as published:
liblinear, C=1, raw features); reports mean accuracy and the 95% interval 1.96 std / sqrt(tasks)."""
from __future__ import annotations

import math

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier


def sample_episode(labels: np.ndarray, n_way: int, k_shot: int, n_query: int, rng: np.random.Generator,
                   eligible: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(support idx, support labels 0..N-1, query idx, query labels) for one task."""
    classes = rng.choice(eligible, n_way, replace=False)
    s_idx, s_y, q_idx, q_y = [], [], [], []
    for j, c in enumerate(classes):
        members = rng.choice(np.flatnonzero(labels == c), k_shot + n_query, replace=False)
        s_idx.append(members[:k_shot]), q_idx.append(members[k_shot:])
        s_y.append(np.full(k_shot, j)), q_y.append(np.full(n_query, j))
    return np.concatenate(s_idx), np.concatenate(s_y), np.concatenate(q_idx), np.concatenate(q_y)


def few_shot_eval(features: np.ndarray, labels: np.ndarray, n_way: int = 5, k_shot: int = 1, n_query: int = 16,
                  num_tasks: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Mean accuracy over ``num_tasks`` seeded episodes and its 95% half-interval (fractions)."""
    counts = np.bincount(labels[labels >= 0])
    eligible = np.flatnonzero(counts >= k_shot + n_query)
    if len(eligible) < n_way:
        raise ValueError(f"--N {n_way} --K {k_shot} --Q {n_query}: only {len(eligible)} classes have "
                         f"{k_shot + n_query} images or more")
    rng = np.random.default_rng(seed)
    accs = np.empty(num_tasks)
    for t in range(num_tasks):
        s, sy, q, qy = sample_episode(labels, n_way, k_shot, n_query, rng, eligible)
        # liblinear was one-vs-rest implicitly in the scikit-learn of the published runs; newer releases
        # refuse multiclass liblinear, so the same scheme is spelled out.
        clf = OneVsRestClassifier(LogisticRegression(solver="liblinear", C=1.0)).fit(features[s], sy)
        accs[t] = (clf.predict(features[q]) == qy).mean()
    return float(accs.mean()), float(1.96 * accs.std() / math.sqrt(num_tasks))
