"""Equal scores are ranked by a seeded hash of user and item, not by item id."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recbole_trsr.model.random_rank import RandomRank
from recbole_trsr.runner import run_comparison
from recbole_trsr.tie_break import untied
from tests.conftest import SHARED_DATA


def test_unequal_scores_keep_their_order_and_non_candidates_stay_out():
    generator = torch.Generator().manual_seed(0)
    scores = torch.rand(6, 50, generator=generator, dtype=torch.float64).round(decimals=1)  # many ties
    scores[scores < 0.5] = -torch.inf
    scores[5] = torch.linspace(0, 1, 50, dtype=torch.float64) * 1e-9  # no tie, and apart by less than float32's step
    ranked = untied(scores, torch.arange(6), seed=2020)
    assert torch.equal(torch.isinf(ranked), torch.isinf(scores))
    for row, ranked_row in zip(scores, ranked, strict=True):
        candidates = torch.isfinite(row)
        lower = row[candidates][:, None] < row[candidates][None, :]
        assert torch.equal(lower, lower & (ranked_row[candidates][:, None] < ranked_row[candidates][None, :]))
        assert len(torch.unique(ranked_row[candidates])) == int(candidates.sum())  # no tie left
    assert torch.equal(ranked[5], scores[5])  # a row without a tie keeps its scores


def test_a_row_with_nan_reaches_the_metrics_as_it_is():
    scores = torch.tensor([[0.1, float("nan"), 0.1], [0.2, 0.2, 0.3]])
    ranked = untied(scores, torch.arange(2), seed=0)
    assert ranked[0][1].isnan() and ranked[0][0] == ranked[0][2]  # untouched, its tie too
    assert ranked[1][0] != ranked[1][1] and ranked[1][2] > ranked[1][0]  # the other row's tie is broken


def test_tied_candidates_are_not_ranked_by_item_id():
    users = 2000
    scores = torch.full((users, 21), -torch.inf)
    scores[:, :20] = 0.5  # every user's 20 candidates tie; item 0 has the lowest id
    first = untied(scores, torch.arange(users), seed=2020).argmax(dim=1)
    share_first = np.bincount(first.numpy(), minlength=20)[:20] / users
    assert share_first.max() < 0.08  # each item about 1 in 20, where RecBole's topk puts item 0 first for all
    assert torch.equal(first, untied(scores, torch.arange(users), seed=2020).argmax(dim=1))  # repeats by seed
    assert not torch.equal(first, untied(scores, torch.arange(users), seed=7).argmax(dim=1))


@pytest.mark.integration
@pytest.mark.skipif(not (SHARED_DATA / "amazon-scientific").is_dir(), reason="../shared/data is not there")
def test_a_model_that_scores_every_candidate_alike_ranks_at_chance(tmp_path, monkeypatch, capsys):
    """On amazon-scientific, RecBole's topk put the test item into a constant model's top 10 for 64 % of the users
    (NDCG@10 0.286): the order it keeps among equal scores favours the test item's id."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(RandomRank, "predict", lambda self, interaction: torch.zeros(len(interaction)))
    overrides = {"data_path": str(SHARED_DATA), "checkpoint_dir": str(tmp_path / "saved"), "state": "INFO"}
    [run] = run_comparison(["RandomRank"], "amazon-scientific", overrides={**overrides, "show_progress": "False"})
    assert run.test_users == 8442
    assert run.test_result["recall@10"] == pytest.approx(10 / 21, abs=0.02)  # 1 positive among 21 candidates
    assert run.test_result["ndcg@10"] == pytest.approx(0.217, abs=0.02)
    assert "8442 of 8442 test items scored the same as another of their user's candidates" in capsys.readouterr().err
