"""Several models in one run: one table, identical test candidates, a random row, files written."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from recbole_trsr.cli import main
from recbole_trsr.comparison import same_candidates
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
    assert same_candidates([run.row() for run in runs])


def test_a_different_seed_draws_different_candidates(tiny_overrides):
    # The check above can fail: the log sees the difference when the draws differ.
    first = run_comparison(["RandomRank"], "tiny", overrides=tiny_overrides)
    second = run_comparison(["RandomRank"], "tiny", overrides={**tiny_overrides, "seed": "7"})
    assert first[0].candidates.candidates != second[0].candidates.candidates
    assert not same_candidates([run.row() for run in first + second])


def test_results_repeat_under_the_same_seed(tiny_overrides):
    first = run_comparison(["GRU4Rec"], "tiny", overrides=tiny_overrides)
    second = run_comparison(["GRU4Rec"], "tiny", overrides=tiny_overrides)
    for one, two in zip(first, second, strict=True):
        assert one.test_result == two.test_result


@pytest.mark.parametrize(
    ("device", "reproducibility", "deterministic"), [("cuda", True, True), ("cuda", False, False), ("cpu", True, False)]
)
def test_reproducibility_takes_deterministic_kernels_on_a_gpu(monkeypatch, device, reproducibility, deterministic):
    # RecBole's cuDNN flags left the atomic adds of gather's backward in place: the same seed gave GRU4Rec other
    # metrics on an H100. The CPU keeps torch's default kernels (and speed).
    import torch

    from recbole_trsr.seeding import seed_everything

    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        seed_everything({"seed": 3, "reproducibility": reproducibility, "device": torch.device(device)})
        assert torch.are_deterministic_algorithms_enabled() == deterministic
        assert ("CUBLAS_WORKSPACE_CONFIG" in os.environ) == deterministic
    finally:
        torch.use_deterministic_algorithms(False)


def test_command_prints_and_writes_the_table(capsys, tiny_overrides):
    code = main(["--model=SASRec,GRU4Rec", "--dataset=tiny", *as_arguments(tiny_overrides)])
    assert code == 0
    output = capsys.readouterr().out
    written = sorted(Path(tiny_overrides["output_dir"]).glob("comparison-tiny-*"))
    assert [path.name[len("comparison-tiny-20261124-120000") :] for path in written] == [
        "-users.csv",
        ".csv",
        ".md",
        ".png",
    ]
    users, table = pd.read_csv(written[0]), pd.read_csv(written[1])
    assert table["model"].tolist() == ["SASRec", "GRU4Rec", "RandomRank"]
    for column in [*METRIC_COLUMNS, "train_users", "train_examples", "train_s", "test_s", "peak_rss_mb", "candidates"]:
        assert column in table.columns
    for metric in METRIC_COLUMNS:
        assert (table[f"{metric}_low"] <= table[metric]).all() and (table[metric] <= table[f"{metric}_high"]).all()
    assert table["candidates"].nunique() == 1
    assert (table[METRIC_COLUMNS].to_numpy() >= 0).all() and (table[METRIC_COLUMNS].to_numpy() <= 1).all()
    assert (table["peak_rss_mb"] > 0).all()
    random_row = table.set_index("model").loc["RandomRank"]
    assert random_row["epochs"] == 0 and random_row["train_examples"] == 0
    assert table["train_users"].tolist()[:2] == [40, 40]
    best = table["best_baseline"].iloc[0]
    assert best in ("SASRec", "GRU4Rec") and table.set_index("model").loc[best, "ndcg@10"] == table["ndcg@10"][:2].max()
    assert table.set_index("model")["ndcg@10_p"].drop(best).between(0, 1).all()
    assert sorted(users.columns) == sorted(["model", "user", *METRIC_COLUMNS]) and len(users) == 3 * 40
    per_user_means = users.groupby("model")[METRIC_COLUMNS].mean()
    assert (per_user_means.loc[table["model"]].to_numpy() - table[METRIC_COLUMNS].to_numpy() < 1e-4).all()
    assert written[2].read_text().strip() in output
    for model in ["SASRec", "GRU4Rec", "RandomRank"]:
        assert f"| {model}" in output


def test_the_picture_is_written_at_its_size(tiny_overrides):
    from matplotlib.image import imread

    from recbole_trsr.comparison_plot import DPI, figure_size

    assert main(["--model=GRU4Rec", "--dataset=tiny", *as_arguments(tiny_overrides)]) == 0
    (picture,) = Path(tiny_overrides["output_dir"]).glob("comparison-tiny-*.png")
    pixels = imread(picture)
    width, height = figure_size(METRIC_COLUMNS, models=2)
    assert pixels.shape[:2] == (round(height * DPI), round(width * DPI))
    assert pixels[..., :3].std() > 0.05  # not a blank canvas


@pytest.mark.parametrize("models", [3, 14, 25])
def test_every_model_of_the_picture_has_a_color_of_its_own(models):
    """A joined ablation table easily holds more than tab10's 10 colors; the legend must still tell rows apart."""
    from matplotlib.colors import to_hex

    from recbole_trsr.comparison_plot import model_colors

    assert len({to_hex(color) for color in model_colors(models)}) == models


def test_a_later_run_adds_its_rows_to_an_earlier_table(capsys, tiny_overrides):
    arguments = ["--dataset=tiny", *as_arguments({**tiny_overrides, "eval_users": "10"})]
    assert main(["--model=SASRec", *arguments]) == 0
    (first,) = Path(tiny_overrides["output_dir"]).glob("comparison-tiny-*[0-9].csv")
    assert main(["--model=GRU4Rec", f"--add_to={first}", *arguments]) == 0
    capsys.readouterr()
    tables = sorted(Path(tiny_overrides["output_dir"]).glob("comparison-tiny-*[0-9].csv"))
    joined = pd.read_csv(tables[-1])
    assert joined["model"].tolist() == ["SASRec", "RandomRank", "GRU4Rec"]
    assert joined["candidates"].nunique() == 1
    # Other users or candidates cannot join: one line, exit 2.
    code = main(["--model=GRU4Rec", f"--add_to={first}", *arguments[:-1], "--seed=5"])
    error = capsys.readouterr().err
    assert code == 2 and "candidates" in error and len(error.strip().splitlines()) == 1
    code = main(["--model=GRU4Rec", f"--add_to={first.with_name('missing.csv')}", *arguments])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    # Other metrics cannot join either (a KeyError traceback, or the new metric left out of the table).
    for topk in ("[5,10]", "[3,5,10,20]"):
        assert main(["--model=GRU4Rec", f"--add_to={first}", *arguments, f"--topk={topk}"]) == 2
        error = capsys.readouterr().err
        assert "the earlier table's metrics (recall@3, recall@5, recall@10, mrr@3" in error
        assert "use the same metrics and topk" in error and len(error.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("files", "given", "fragment"),
    [
        ({"notes.md": "# notes"}, "notes.md", "'{}' is not a comparison-<dataset>-<time>.csv"),
        ({"t.csv": "model,best_baseline,candidates\n"}, "t.csv", "the per-user values of '{}', does not exist"),
        ({"t.csv": "", "t-users.csv": ""}, "t.csv", "'{}' is not a comparison table written by run_recbole_trsr.py ("),
        ({"t.csv": "a,b\n1,2\n", "t-users.csv": "c\n3\n"}, "t.csv", "'{}' is not a comparison table written by"),
    ],
)
def test_add_to_names_a_file_that_is_not_a_table(tmp_path, files, given, fragment):
    # A file that exists was reported as missing, and an empty table was a pandas traceback.
    from recbole_trsr.comparison import earlier_rows
    from recbole_trsr.errors import UserInputError

    for name, text in files.items():
        (tmp_path / name).write_text(text)
    path = str(tmp_path / given)
    with pytest.raises(UserInputError) as error:
        earlier_rows(path)
    assert fragment.format(path) in str(error.value) and len(str(error.value).splitlines()) == 1


def newest_table(overrides: dict) -> Path:
    return max(
        Path(overrides["output_dir"]).glob("comparison-tiny-*[0-9].csv"), key=lambda path: path.stat().st_mtime_ns
    )


def test_comparisons_run_apart_join_into_one_table(capsys, tiny_overrides):
    arguments = ["--dataset=tiny", *as_arguments({**tiny_overrides, "eval_users": "10"})]
    tables = []
    for model in ("SASRec", "GRU4Rec"):  # two runs that know nothing of each other, as if run in parallel
        assert main([f"--model={model}", *arguments]) == 0
        tables.append(newest_table(tiny_overrides))
    assert main(["--model=RandomRank", f"--add_to={tables[0]},{tables[1]}", *arguments]) == 0
    capsys.readouterr()
    joined = newest_table(tiny_overrides)
    frame = pd.read_csv(joined)
    assert frame["model"].tolist() == ["SASRec", "RandomRank", "GRU4Rec"]
    assert frame["best_baseline"].nunique() == 1 and frame["ndcg@10_p"].notna().sum() == 2
    users = pd.read_csv(str(joined)[: -len(".csv")] + "-users.csv")
    assert users.groupby("model")["user"].nunique().tolist() == [10, 10, 10]
    # A table of other candidates cannot join: one line naming it, exit 2.
    assert main(["--model=SASRec", *arguments[:-1], "--seed=5"]) == 0
    other = newest_table(tiny_overrides)
    capsys.readouterr()
    code = main(["--model=RandomRank", f"--add_to={tables[0]},{other}", *arguments])
    error = capsys.readouterr().err
    assert code == 2 and str(other) in error and len(error.strip().splitlines()) == 1


def test_an_interrupted_comparison_keeps_its_finished_rows(capsys, tiny_overrides, monkeypatch):
    from recbole_trsr import runner

    run_model = runner.run_model

    def failing_run_model(config, label=None):
        if label == "GRU4Rec":
            raise KeyboardInterrupt
        return run_model(config, label)

    monkeypatch.setattr(runner, "run_model", failing_run_model)
    assert main(["--model=SASRec,GRU4Rec", "--dataset=tiny", *as_arguments(tiny_overrides)]) == 130
    (table,) = Path(tiny_overrides["output_dir"]).glob("comparison-tiny-*[0-9].csv")
    assert pd.read_csv(table)["model"].tolist() == ["SASRec", "RandomRank"]
    # one line: where the rows are, and how to go on (GRU4Rec had saved nothing, so it starts afresh)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (
        f'run_recbole_trsr.py: interrupted; rows so far in {table}; to go on, run it again with --model="GRU4Rec" '
        f"--add_to={table}"
    )


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec"])
def test_baselines_under_full_ranking(tiny_overrides, model):
    overrides = {**tiny_overrides, "eval_args": "{'mode': 'full'}"}
    runs = run_comparison([model], "tiny", overrides=overrides)
    assert [run.row().facts["candidates"] for run in runs] == ["full", "full"]
    assert 0.0 <= runs[0].test_result["ndcg@10"] <= 1.0
    assert runs[0].per_user["ndcg@10"].mean() == pytest.approx(runs[0].test_result["ndcg@10"], abs=1e-4)


def test_user_subset_is_the_same_for_every_model(tiny_overrides):
    overrides = {**tiny_overrides, "max_users": "12"}
    runs = run_comparison(["SASRec", "GRU4Rec"], "tiny", overrides=overrides)
    users = set(runs[0].candidates.candidates)
    assert len(users) == 12
    assert all(set(run.candidates.candidates) == users for run in runs)
    assert same_candidates([run.row() for run in runs])
    again = run_comparison(["RandomRank"], "tiny", overrides=overrides)
    assert set(again[0].candidates.candidates) == users  # the same subset on the next run
    other = run_comparison(["RandomRank"], "tiny", overrides={**overrides, "seed": "3"})
    assert set(other[0].candidates.candidates) != users


def test_markdown_marks_missing_values():
    from recbole_trsr.comparison import Row, markdown_table, summary_frame
    from tests.test_statistics import Settings

    per_user = pd.DataFrame({"user": ["a", "b"], "ndcg@10": [0.0, 1.0]})
    rows = [Row("RandomRank", False, per_user, {"candidates": "x", "s_per_epoch": None})]
    frame = summary_frame(rows, Settings(0, 100, ["ndcg@10"]))
    markdown = markdown_table(frame, ["ndcg@10"], ["ndcg@10"])
    assert "nan" not in markdown and "| -" in markdown
    assert "0.5000 [0.000, 1.000]" in markdown


def test_a_user_subset_copies_the_lines_of_its_users_and_follows_edits_of_the_item_file(tiny_overrides):
    from recbole_trsr.runner import build_config

    source = Path(tiny_overrides["data_path"]) / "tiny"
    item_lines = (source / "tiny.item").read_text(encoding="utf-8").splitlines()
    item_lines[1:] = [line.replace("deluxe", 'de\\luxe 5" wide') for line in item_lines[1:]]
    (source / "tiny.item").write_text("\n".join(item_lines) + "\n", encoding="utf-8")

    def subset_lines(kind: str) -> tuple[Path, list[str]]:
        folder = Path(build_config("SASRec", "tiny", overrides={**tiny_overrides, "max_users": "12"})["data_path"])
        return folder, (folder / f"tiny.{kind}").read_text(encoding="utf-8").splitlines()

    folder, inter = subset_lines("inter")
    source_inter = (source / "tiny.inter").read_text(encoding="utf-8").splitlines()
    assert inter == [line for line in source_inter if line.split("\t")[0] in {row.split("\t")[0] for row in inter}]
    assert len({line.split("\t")[0] for line in inter[1:]}) == 12
    _, items = subset_lines("item")
    assert items[0] == item_lines[0] and set(items[1:]) <= set(item_lines[1:])  # as written: no doubled backslash
    assert any('de\\luxe 5" wide' in line for line in items)

    edited = [line.replace('de\\luxe 5" wide', "renamed") for line in item_lines]
    (source / "tiny.item").write_text("\n".join(edited) + "\n", encoding="utf-8")
    os.utime(source / "tiny.item", (1, 1))  # an edit within the same second as the first subset
    again, items = subset_lines("item")
    assert (
        again != folder and any("renamed" in line for line in items) and not any("de\\luxe" in line for line in items)
    )


def test_an_earlier_table_reads_back_its_fingerprint_and_users_as_written(tmp_path):
    # A fingerprint of digits only came back as a number (and the join was refused), a user 'NA' as NaN.
    from recbole_trsr.comparison import Comparison, Row, Settings, earlier_rows

    users = ["NA", "null", "u3", "007"]
    rows = [
        Row(model, model == "SASRec", pd.DataFrame({"user": users, "ndcg@10": values}), {"candidates": "012345678901"})
        for model, values in [("SASRec", [1.0, 0.5, 0.0, 0.3]), ("LLMTRSR", [0.5, 0.5, 1.0, 0.0])]
    ]
    comparison = Comparison(str(tmp_path / "comparison-tiny-1"))
    markdown = comparison.write(rows, Settings(seed=0, resamples=100, tested_metrics=["ndcg@10"]), "tiny")
    assert "WARNING: 4 test users are too few for the intervals and p-values to say much" in markdown
    read = earlier_rows(comparison.paths["csv"])
    assert [row.facts["candidates"] for row in read] == ["012345678901", "012345678901"]
    assert read[1].per_user["user"].tolist() == users
