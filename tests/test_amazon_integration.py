"""The real Amazon Beauty data from ../shared/data through the whole pipeline (no training: RandomRank)."""

from __future__ import annotations

import pytest

from recbole_trsr.runner import run_comparison
from tests.conftest import SHARED_DATA

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (SHARED_DATA / "amazon").is_dir(), reason="../shared/data/amazon is not there"),
]


def test_amazon_under_the_paper_protocol(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    overrides = {
        "data_path": str(SHARED_DATA),
        "checkpoint_dir": str(tmp_path / "saved"),
        "show_progress": "False",
        "state": "WARNING",
    }
    [run] = run_comparison(["RandomRank"], "amazon", overrides=overrides)
    dataset = run.candidates.dataset
    assert dataset.user_num - 1 == 22363 and dataset.item_num - 1 == 12101  # id 0 is padding
    assert run.test_users == 22363  # leave-one-out: one test example per user
    sizes = [len(items) for items in run.candidates.candidates.values()]
    assert len(sizes) == 22363 and max(sizes) == 21 and min(sizes) >= 19
    # Chance level of 1 positive among ~21 candidates: Recall@10 about 10/21.
    assert run.test_result["recall@10"] == pytest.approx(10 / 21, abs=0.02)
    assert run.test_result["mrr@10"] < run.test_result["recall@10"]
