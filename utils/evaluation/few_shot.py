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


def check_ways(n_way: int) -> None:
    """ValueError for --N below 2: a task of one class has no negatives, and every query is right."""
    if n_way < 2:
        raise ValueError(f"--N must be at least 2 (a task of one class has nothing to tell apart), got {n_way}")


def check_episodes(labels: np.ndarray, n_way: int, k_shot: int, n_query: int, dataset: str | None = None
                   ) -> np.ndarray:
    """The classes with K + Q images or more; ValueError naming --N/--K/--Q when a task cannot be drawn:
    fewer than N such classes, or N below 2 (``check_ways``)."""
    check_ways(n_way)
    counts = np.bincount(labels[labels >= 0])
    eligible = np.flatnonzero(counts >= k_shot + n_query)
    if len(eligible) < n_way:
        of = f" of --dataset {dataset}" if dataset else ""
        raise ValueError(f"--N {n_way} --K {k_shot} --Q {n_query}: only {len(eligible)} classes{of} have "
                         f"{k_shot + n_query} images or more (the largest has {counts.max(initial=0)})")
    return eligible


def pool_labels(pool) -> np.ndarray | None:
    """The labels of a few-shot pool read from its file lists, no image opened: ImageFolders, alone or
    concatenated (cub200's train + test), through the error-naming wrapper; None for other kinds."""
    from torch.utils.data import ConcatDataset
    pool = getattr(pool, "_wrapped", pool)
    if isinstance(pool, ConcatDataset):
        parts = [pool_labels(d) for d in pool.datasets]
        return None if any(p is None for p in parts) else np.concatenate(parts)
    targets = getattr(pool, "targets", None)
    return None if targets is None else np.asarray(targets)


def few_shot_eval(features: np.ndarray, labels: np.ndarray, n_way: int = 5, k_shot: int = 1, n_query: int = 16,
                  num_tasks: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Mean accuracy over ``num_tasks`` seeded episodes and its 95% half-interval (fractions)."""
    eligible = check_episodes(labels, n_way, k_shot, n_query)
    rng = np.random.default_rng(seed)
    accs = np.empty(num_tasks)
    for t in range(num_tasks):
        s, sy, q, qy = sample_episode(labels, n_way, k_shot, n_query, rng, eligible)
        # liblinear was one-vs-rest implicitly in the scikit-learn of the published runs; newer releases
        # refuse multiclass liblinear, so the same scheme is spelled out.
        clf = OneVsRestClassifier(LogisticRegression(solver="liblinear", C=1.0)).fit(features[s], sy)
        accs[t] = (clf.predict(features[q]) == qy).mean()
    return float(accs.mean()), float(1.96 * accs.std() / math.sqrt(num_tasks))
