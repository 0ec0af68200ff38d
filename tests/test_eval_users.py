"""eval_users and train_users: every model is tested on the same seeded users and trains on all it may use."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recbole_trsr.runner import run_comparison
from tests.conftest import as_arguments
from tests.test_cli import assert_one_line_error, run_cli
from tests.test_summary_dataset import build_dataset, recording  # noqa: F401 (fixture)


def test_every_model_and_every_rerun_tests_the_same_users(tiny_overrides):
    overrides = {**tiny_overrides, "eval_users": "12"}
    runs = run_comparison(["SASRec", "GRU4Rec"], "tiny", overrides=overrides)
    users = set(runs[0].candidates.candidates)
    assert len(users) == 12
    for run in runs:
        assert set(run.candidates.candidates) == users and set(run.per_user["user"]) == users
        assert run.candidates.candidates == runs[0].candidates.candidates
        assert run.test_users == 12
    again = run_comparison(["RandomRank"], "tiny", overrides=overrides)
    assert again[0].candidates.candidates == runs[0].candidates.candidates
    other = run_comparison(["RandomRank"], "tiny", overrides={**overrides, "seed": "3"})
    assert set(other[0].candidates.candidates) != users


def test_eval_users_leave_the_baselines_training_data_untouched(tiny_overrides):
    inter = pd.read_csv(f"{tiny_overrides['data_path']}/tiny/tiny.inter", sep="\t")
    users = inter["user_id:token"].nunique()
    # Leave-one-out: each user's last interaction is tested, the one before validated, the first has no history.
    expected = len(inter) - 3 * users
    (full,) = (run for run in run_comparison(["SASRec"], "tiny", overrides=tiny_overrides) if run.model == "SASRec")
    (some,) = (
        run
        for run in run_comparison(["SASRec"], "tiny", overrides={**tiny_overrides, "eval_users": "5"})
        if run.model == "SASRec"
    )
    assert (full.train_users, full.train_examples) == (users, expected)
    assert (some.train_users, some.train_examples) == (users, expected)
    assert (full.test_users, some.test_users) == (users, 5)


def test_per_user_values_average_to_recboles_metrics(tiny_overrides):
    run = run_comparison(["GRU4Rec"], "tiny", overrides={**tiny_overrides, "eval_users": "20"})[0]
    assert len(run.per_user) == 20 and run.per_user["user"].is_unique
    for metric, value in run.test_result.items():
        assert run.per_user[metric].mean() == pytest.approx(value, abs=1e-4)


def test_llmtrsr_trains_on_its_budget_and_summarizes_only_the_users_it_needs(tiny_overrides, recording):  # noqa: F811
    dataset, (train, valid, test) = build_dataset(
        tiny_overrides, summary_mode="hierarchical", eval_users=6, train_users=10, max_train_prefixes=2
    )
    train_users = set(train.inter_feat["user_id"].tolist())
    test_users = set(test.inter_feat["user_id"].tolist())
    assert len(train_users) == 10 and len(test_users) == 6
    assert test_users <= train_users  # both are heads of one seeded ranking
    assert set(valid.inter_feat["user_id"].tolist()) == test_users
    assert len(train) <= 2 * 10
    assert set(recording.requests) <= train_users  # no summary for a user this run neither trains nor tests


@pytest.mark.parametrize("key", ["eval_users", "train_users"])
@pytest.mark.parametrize("value", ["0", "-3", "2.5", "many", "41"])
def test_bad_user_counts_are_refused_before_training(capsys, tiny_overrides, key, value):
    arguments = ["--model=SASRec,LLMTRSR", "--dataset=tiny", *as_arguments({**tiny_overrides, key: value})]
    code, error = run_cli(capsys, arguments)
    if value == "41":  # tiny has 40 users
        assert_one_line_error(code, error, f"{key}=41 is larger than the 40 users of tiny")
    else:
        assert_one_line_error(code, error, f"{key} must be a positive whole number", value)
    assert not list(Path(tiny_overrides["checkpoint_dir"]).glob("**/*.pth"))  # nothing trained


def test_max_users_zero_is_refused(capsys, tiny_overrides):
    code, error = run_cli(
        capsys, ["--model=SASRec", "--dataset=tiny", *as_arguments({**tiny_overrides, "max_users": "0"})]
    )
    assert_one_line_error(code, error, "max_users must be a positive whole number, not 0")
