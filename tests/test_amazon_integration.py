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


def test_the_paper_preset_end_to_end_on_amazon(tmp_path, monkeypatch, tiny_lm):
    """The paper's setup (full fine-tuning, whole-text loss, partial blocks, '### User:' prompts) on real data,
    with the tiny model so that it takes seconds; the same users and candidates as the default settings."""
    model, tokenizer = tiny_lm
    monkeypatch.chdir(tmp_path)
    model.save_pretrained(tmp_path / "tiny-llm")
    tokenizer.save_pretrained(tmp_path / "tiny-llm")
    overrides = {
        "data_path": str(SHARED_DATA),
        "checkpoint_dir": str(tmp_path / "saved"),
        "output_dir": str(tmp_path / "outputs"),
        "llm_path": str(tmp_path / "tiny-llm"),
        "max_users": "30",
        "eval_users": "12",
        "train_users": "12",
        "max_train_prefixes": "2",
        "summary_max_new_tokens": "4",
        "show_progress": "False",
        "state": "WARNING",
    }
    paper_variant = "LLMTRSR[preset=paper;epochs=1;gradient_accumulation_steps=2;summary_max_new_tokens=4]"
    runs = run_comparison([paper_variant, "LLMTRSR[epochs=1]"], "amazon", overrides=overrides)
    paper, default = runs[0], runs[1]
    assert paper.config["finetune"] == "full" and paper.config["summary_partial_block"] is True
    assert paper.row().facts["candidates"] == default.row().facts["candidates"]
    assert len(paper.per_user) == 12 and paper.train_users == 12 and paper.epochs == 1
    assert 0.0 <= paper.test_result["ndcg@10"] <= 1.0
