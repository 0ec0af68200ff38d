"""CountRank: LLMTRSR's two candidate counts ranked without an LLM, on a hand-made log whose counts are known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data import create_dataset
from recbole.data.interaction import Interaction

from recbole_trsr.model.count_rank import CountRank
from recbole_trsr.runner import build_config, prepare_data, run_comparison

# Each user's items in time order; the last two are the validation and test targets, the rest the training part.
# 'a' is bought with 'r' by three users, 'b' with 'q' by four, 'c' once.
HISTORIES = {
    "u1": ["r", "a", "z1", "z2"],
    "u2": ["r", "a", "z1", "z3"],
    "u3": ["a", "r", "z2", "z3"],
    "u4": ["b", "q", "z1", "z2"],
    "u5": ["q", "b", "z2", "z1"],
    "u6": ["b", "q", "z3", "z1"],
    "u7": ["q", "b", "z1", "z3"],
    "u8": ["c", "z2", "z1", "z3"],
    "t": ["q", "r", "z1", "z2"],
}


@pytest.fixture
def hand_log(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "data" / "hand"
    folder.mkdir(parents=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{user}\t{item}\t{time}" for user, items in HISTORIES.items() for time, item in enumerate(items)]
    (folder / "hand.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {
        "data_path": str(tmp_path / "data"),
        "checkpoint_dir": str(tmp_path / "saved"),
        "output_dir": str(tmp_path / "outputs"),
        "show_progress": "False",
        "state": "WARNING",
    }


def count_rank(overrides: dict, recent_k: int):
    config = build_config("CountRank", "hand", overrides={**overrides, "recent_k": str(recent_k)})
    dataset = create_dataset(config)
    train_data, _, _ = prepare_data(config, dataset)
    return CountRank(config, train_data._dataset), dataset


def candidates_of_t(model, dataset, items: list[str]) -> Interaction:
    """The test user 't' with the history before their test target (q, r, z1) and one row per candidate."""
    history = dataset.token2id("item_id", ["q", "r", "z1"])
    rows = len(items)
    sequence = torch.zeros(rows, model.max_seq_length, dtype=torch.long)
    sequence[:, :3] = torch.as_tensor(history)
    return Interaction(
        {
            "user_id": torch.full((rows,), int(dataset.token2id("user_id", "t"))),
            "item_id": torch.as_tensor(dataset.token2id("item_id", items)),
            "item_id_list": sequence,
            "item_length": torch.full((rows,), 3),
        }
    )


def test_the_training_parts_leave_out_each_users_validation_and_test_items(hand_log):
    model, dataset = count_rank(hand_log, recent_k=1)
    parts = {
        dataset.id2token("user_id", user): list(dataset.id2token("item_id", items))
        for user, items in model.counts.training_parts.items()
    }
    assert parts == {user: items[:-2] for user, items in HISTORIES.items()}


def test_candidates_rank_by_the_together_count_then_popularity(hand_log):
    model, dataset = count_rank(hand_log, recent_k=2)  # 'r' and 'z1', the test user's two most recent items
    # together with r: a 3, b 0, c 0; with z1: nobody's training part holds it. Popularity: b 4, c 1.
    scores = model.predict(candidates_of_t(model, dataset, ["c", "b", "a"])).tolist()
    assert scores[2] > scores[1] > scores[0]


def test_the_recent_items_decide_whose_co_purchases_count(hand_log):
    model, dataset = count_rank(hand_log, recent_k=3)  # q joins: b was bought with q by four other users
    scores = model.predict(candidates_of_t(model, dataset, ["c", "b", "a"])).tolist()
    assert scores[1] > scores[2] > scores[0]


def test_full_ranking_orders_every_item_as_the_sampled_candidates_are(hand_log):
    model, dataset = count_rank(hand_log, recent_k=2)
    interaction = candidates_of_t(model, dataset, ["a"])
    every_item = model.full_sort_predict(interaction)[0]
    order = dataset.token2id("item_id", ["a", "b", "c"])
    assert every_item[order[0]] > every_item[order[1]] > every_item[order[2]]
    assert len(np.unique(every_item.numpy())) == model.n_items  # ties broken, not left to the items' order


def test_its_row_is_a_baseline_trained_on_every_users_training_part(tiny_overrides):
    first, _ = run_comparison(["CountRank"], "tiny", overrides=tiny_overrides)
    second, _ = run_comparison(["CountRank"], "tiny", overrides=tiny_overrides)
    row = first.row()
    assert row.baseline
    assert row.facts["train_users"] == 40 and row.facts["train_examples"] > 0
    pd.testing.assert_frame_equal(first.per_user, second.per_user)  # no randomness beyond the seed


def test_its_metrics_do_not_follow_eval_batch_size(tiny_overrides):
    """A batch longer than eval_batch_size is scored in parts by RecBole; CountRank's places compare only within
    the whole of one user's candidates (21 rows here), which a part of 7 rows split."""
    whole, _ = run_comparison(["CountRank"], "tiny", overrides={**tiny_overrides, "eval_batch_size": "256"})
    parts, _ = run_comparison(["CountRank"], "tiny", overrides={**tiny_overrides, "eval_batch_size": "7"})
    pd.testing.assert_frame_equal(whole.per_user, parts.per_user)


@pytest.mark.parametrize("value", ["-3", "'abc'"])
def test_a_recent_k_that_is_not_a_count_is_refused(hand_log, value):
    from recbole_trsr.errors import UserInputError

    with pytest.raises(UserInputError, match="recent_k must be a whole number, 0 or more"):
        build_config("CountRank", "hand", overrides={**hand_log, "recent_k": value})
