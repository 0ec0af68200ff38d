"""Confidence intervals over users and paired tests between models scored on the same users and candidates."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

LEVEL = 0.95
CHUNK = 64  # resamples drawn at a time: keeps the weight matrix small for tens of thousands of users


def bootstrap_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Means of ``values`` (users x series) over ``resamples`` bootstrap resamples of the users.

    Every series is resampled with the same users, so differences between series are paired.
    Returns an array of shape (resamples, series).
    """
    values = np.asarray(values, dtype=float)
    users = values.shape[0]
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, resamples, CHUNK):
        draws = rng.integers(0, users, size=(min(CHUNK, resamples - start), users))
        weights = np.stack([np.bincount(row, minlength=users) for row in draws])
        means.append(weights @ values / users)
    return np.concatenate(means)


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The (low, high) percentile interval of bootstrap samples, per column."""
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail], axis=0)
    return low, high


def wilcoxon_p(first: np.ndarray, second: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired per-user values; 1.0 when no pair differs."""
    differences = np.asarray(first, dtype=float) - np.asarray(second, dtype=float)
    if not np.any(differences):
        return 1.0
    with (
        warnings.catch_warnings()
    ):  # scipy warns that ties make its exact test inexact; it then uses the normal approximation
        warnings.simplefilter("ignore", UserWarning)
        return float(stats.wilcoxon(differences).pvalue)
