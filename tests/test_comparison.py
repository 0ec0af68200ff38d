"""Several models in one run: one table, identical test candidates, a random row, files written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recbole_trsr.cli import main
from recbole_trsr.comparison import comparison_frame, same_candidates
from recbole_trsr.runner import run_comparison
from tests.conftest import as_arguments

METRIC_COLUMNS = [f"{metric}@{k}" for metric in ("recall", "mrr", "ndcg") for k in (3, 5, 10)]


def last_items(data_path: Path) -> dict[str, str]:
    """Each user's last interaction in tiny.inter: the test target under leave-one-out by time."""
    frame = pd.read_csv(data_path / "tiny" / "tiny.inter", sep="\t")
    frame.columns = ["user", "item", "time"]
    return frame.sort_values("time").groupby("user")["item"].last().to_dict()


def test_all_models_are_scored_on_identical_candidates(tiny_overrides):
    runs = run_comparison(["SASRec", "GRU4Rec"], "tiny", overrides=tiny_overrides)
    assert [run.model for run in runs] == ["SASRec", "GRU4Rec", "RandomRank"]
    reference = runs[0].candidates.candidates
    targets = last_items(Path(tiny_overrides["data_path"]))
    assert set(reference) == set(targets)  # every test user, once
    for user, items in reference.items():
        assert targets[user] in items  # the positive is among the candidates
        assert 10 <= len(items) <= 21  # 1 positive + 20 sampled (repeats collapse)
    for run in runs[1:]:
        assert run.candidates.candidates == reference
    assert same_candidates(runs)


def test_a_different_seed_draws_different_candidates(tiny_overrides):
    # The check above can fail: the log sees the difference when the draws differ.
    first = run_comparison(["RandomRank"], "tiny", overrides=tiny_overrides)
    second = run_comparison(["RandomRank"], "tiny", overrides={**tiny_overrides, "seed": "7"})
    assert first[0].candidates.candidates != second[0].candidates.candidates
    assert not same_candidates(first + second)


def test_results_repeat_under_the_same_seed(tiny_overrides):
    first = run_comparison(["GRU4Rec"], "tiny", overrides=tiny_overrides)
    second = run_comparison(["GRU4Rec"], "tiny", overrides=tiny_overrides)
    for one, two in zip(first, second, strict=True):
        assert one.test_result == two.test_result


def test_command_prints_and_writes_the_table(capsys, tiny_overrides):
    code = main(["--model=SASRec,GRU4Rec", "--dataset=tiny", *as_arguments(tiny_overrides)])
    assert code == 0
    output = capsys.readouterr().out
    written = sorted(Path(tiny_overrides["output_dir"]).glob("comparison-tiny-*"))
    assert [path.suffix for path in written] == [".csv", ".md"]
    table = pd.read_csv(written[0])
    assert table["model"].tolist() == ["SASRec", "GRU4Rec", "RandomRank"]
    for column in [*METRIC_COLUMNS, "train_s", "test_s", "peak_rss_mb", "candidates"]:
        assert column in table.columns
    assert table["candidates"].nunique() == 1
    assert (table[METRIC_COLUMNS].to_numpy() >= 0).all() and (table[METRIC_COLUMNS].to_numpy() <= 1).all()
    assert (table["peak_rss_mb"] > 0).all()
    assert table.loc[table["model"] == "RandomRank", "epochs"].item() == 0
    assert written[1].read_text().strip() in output
    for model in ["SASRec", "GRU4Rec", "RandomRank"]:
        assert f"| {model}" in output


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec"])
def test_baselines_under_full_ranking(tiny_overrides, model):
    overrides = {**tiny_overrides, "eval_args": "{'mode': 'full'}"}
    runs = run_comparison([model], "tiny", overrides=overrides)
    frame = comparison_frame(runs)
    assert frame["candidates"].tolist() == ["full", "full"]
    assert 0.0 <= runs[0].test_result["ndcg@10"] <= 1.0


def test_user_subset_is_the_same_for_every_model(tiny_overrides):
    overrides = {**tiny_overrides, "max_users": "12"}
    runs = run_comparison(["SASRec", "GRU4Rec"], "tiny", overrides=overrides)
    users = set(runs[0].candidates.candidates)
    assert len(users) == 12
    assert all(set(run.candidates.candidates) == users for run in runs)
    assert same_candidates(runs)
    again = run_comparison(["RandomRank"], "tiny", overrides=overrides)
    assert set(again[0].candidates.candidates) == users  # the same subset on the next run
    other = run_comparison(["RandomRank"], "tiny", overrides={**overrides, "seed": "3"})
    assert set(other[0].candidates.candidates) != users


def test_markdown_marks_missing_values(tmp_path):
    from recbole_trsr.candidates import CandidateLog
    from recbole_trsr.comparison import write_comparison
    from recbole_trsr.runner import ModelRun

    run = ModelRun(
        "RandomRank", {"ndcg@10": 0.2}, None, 0.0, 0, 1.0, 10, 100.0, 0.0, "", CandidateLog(None, False), None
    )
    markdown, _, csv_path = write_comparison([run], "tiny", str(tmp_path))
    assert "nan" not in markdown and "| -" in markdown
    assert pd.read_csv(csv_path)["s_per_epoch"].isna().all()
