"""Intervals and paired tests against examples whose answers are known, and the table they go into."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from recbole_trsr.comparison import Row, Settings, best_baseline, summary_frame
from recbole_trsr.statistics import bootstrap_means, percentile_interval, wilcoxon_p


def test_bootstrap_interval_of_a_proportion_matches_the_normal_interval():
    # 400 users, 30% hits: the 95% interval of the mean is 0.3 +- 1.96 * sqrt(0.3 * 0.7 / 400) = 0.3 +- 0.0449.
    values = np.zeros((400, 1))
    values[:120] = 1.0
    low, high = percentile_interval(bootstrap_means(values, 10000, seed=0))
    half_width = 1.96 * math.sqrt(0.3 * 0.7 / 400)
    assert low[0] == pytest.approx(0.3 - half_width, abs=0.006)
    assert high[0] == pytest.approx(0.3 + half_width, abs=0.006)


def test_bootstrap_is_paired_and_seeded():
    rng = np.random.default_rng(1)
    first = rng.random(50)
    values = np.stack([first, first + 0.1], axis=1)
    samples = bootstrap_means(values, 500, seed=3)
    assert np.allclose(samples[:, 1] - samples[:, 0], 0.1)  # the same users in both columns of every resample
    assert np.array_equal(samples, bootstrap_means(values, 500, seed=3))
    assert not np.array_equal(samples, bootstrap_means(values, 500, seed=4))


def test_wilcoxon_p_of_known_cases():
    better = np.arange(1, 11) / 10.0
    # All 10 differences positive: the exact two-sided p is 2 / 2**10.
    assert wilcoxon_p(better + 1.0, better) == pytest.approx(2 / 2**10)
    assert wilcoxon_p(better, better + 1.0) == pytest.approx(2 / 2**10)
    assert wilcoxon_p(better, better) == 1.0
    # Differences +1..+5 and -1..-5: perfectly balanced ranks, p = 1.
    assert wilcoxon_p(np.r_[1:6, -1:-6:-1].astype(float), np.zeros(10)) == pytest.approx(1.0)


def row(model, values, baseline=True):
    users = [f"u{i}" for i in range(len(values))]
    per_user = pd.DataFrame({"user": users, "ndcg@10": values, "mrr@10": values})
    return Row(model, baseline, per_user, {"candidates": "abc"})


def test_table_tests_every_row_against_the_best_baseline():
    base = np.linspace(0.1, 0.5, 20)
    rows = [
        row("LLM", base + 0.1 + np.arange(20) / 100, baseline=False),  # better than GoodBaseline by 0.06..0.24
        row("GoodBaseline", base + 0.05),
        row("WeakBaseline", base),
        row("RandomRank", base * 0, baseline=False),
    ]
    assert best_baseline(rows, "ndcg@10").model == "GoodBaseline"
    frame = summary_frame(rows, Settings(seed=0, resamples=2000, tested_metrics=["ndcg@10", "mrr@10"])).set_index(
        "model"
    )
    assert (frame["best_baseline"] == "GoodBaseline").all()
    assert frame.loc["LLM", "ndcg@10_diff"] == pytest.approx(0.145)
    assert 0.05 < frame.loc["LLM", "ndcg@10_diff_low"] < 0.145 < frame.loc["LLM", "ndcg@10_diff_high"] < 0.25
    assert frame.loc["LLM", "ndcg@10_p"] == pytest.approx(2 / 2**20, rel=1e-2)  # 20 positive, distinct differences
    assert frame.loc["WeakBaseline", "ndcg@10_diff"] == pytest.approx(-0.05)
    assert frame.loc["WeakBaseline", "ndcg@10_diff_low"] == pytest.approx(-0.05)  # a constant difference
    assert pd.isna(frame.loc["GoodBaseline", "ndcg@10_p"])  # the reference itself
    assert frame.loc["LLM", "ndcg@10_low"] < frame.loc["LLM", "ndcg@10"] < frame.loc["LLM", "ndcg@10_high"]


def test_rows_on_different_users_are_not_compared():
    from recbole_trsr.errors import UserInputError

    with pytest.raises(UserInputError, match="other users"):
        summary_frame([row("A", [0.1, 0.2]), row("B", [0.1, 0.2, 0.3])], Settings(0, 100, ["ndcg@10"]))
