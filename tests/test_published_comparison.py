"""The README's fair comparison ships with its per-user values (benchmarks/published/). A variant tested today must
pair with it: the same users and candidates, and a model that trains nothing gives back its published values, user
by user. If the split, the candidate sampling or the user hash changes, this fails and the table must be re-run.
Its summaries ship too: LLMTRSR's row under today's defaults must find every one of them in the published store."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from recbole.data import create_dataset

from recbole_trsr.cli import main
from recbole_trsr.comparison import earlier_rows
from recbole_trsr.runner import build_config, prepare_data
from tests.conftest import SHARED_DATA

PUBLISHED = Path(__file__).resolve().parents[1] / "benchmarks" / "published" / "comparison-amazon-scientific-300.csv"
PUBLISHED_SUMMARIES = PUBLISHED.with_name("summaries-amazon-scientific-300.sqlite")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not (SHARED_DATA / "amazon-scientific").is_dir(), reason="../shared/data/amazon-scientific is not there"
    ),
]


def per_user(table: Path, model: str) -> pd.DataFrame:
    (row,) = [row for row in earlier_rows(str(table)) if row.model == model]
    return row.per_user.sort_values("user").reset_index(drop=True)


def test_a_run_of_today_pairs_with_the_published_comparison(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    arguments = [
        "--model=CountRank",
        f"--add_to={PUBLISHED}",
        "--dataset=amazon-scientific",
        f"--data_path={SHARED_DATA}",
        "--eval_users=300",
        f"--output_dir={tmp_path / 'outputs'}",
        f"--checkpoint_dir={tmp_path / 'saved'}",
        "--show_progress=False",
        "--state=WARNING",
    ]
    assert main(arguments) == 0, capsys.readouterr().err
    (joined,) = (tmp_path / "outputs").glob("comparison-amazon-scientific-*[0-9].csv")
    published_rows = pd.read_csv(PUBLISHED)
    joined_rows = pd.read_csv(joined)
    assert joined_rows["model"].tolist() == published_rows["model"].tolist()  # rerun rows replace theirs in place
    assert joined_rows["candidates"].nunique() == 1
    assert {"SASRec", "GRU4Rec", "LLMTRSR"} <= set(published_rows["model"])
    # CountRank reads the training split and RandomRank only the candidates: both repeat exactly.
    for model in ("CountRank", "RandomRank"):
        published, today = per_user(PUBLISHED, model), per_user(joined, model)
        assert len(today) == 300
        pd.testing.assert_frame_equal(today, published, check_exact=False, rtol=0, atol=1e-9)


def test_the_published_summaries_serve_the_published_llmtrsr_row(tmp_path):
    """The README's command for a variant row makes no LLM call before training when it starts from the published
    store. If the summary prompts, the item texts or the default model change, this fails: make the summaries again
    and publish the new store."""
    store = tmp_path / "summaries.sqlite"
    shutil.copy(PUBLISHED_SUMMARIES, store)  # a run may write to its store
    settings = {
        "data_path": str(SHARED_DATA),
        "eval_users": 300,
        "train_users": 300,
        "max_train_prefixes": 1,
        "summary_store": str(store),
        "checkpoint_dir": str(tmp_path / "saved"),
        "show_progress": False,
    }
    config = build_config("LLMTRSR", "amazon-scientific", [], settings)
    dataset = create_dataset(config)
    prepare_data(config, dataset)
    assert dataset.summary_stats.calls == 0
    assert dataset.summary_stats.reused > 200
    assert len(dataset.summary_stats.users) == 300
