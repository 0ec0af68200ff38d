"""The comparison: every model's test metrics with 95% intervals, paired tests against the best baseline, what
each model trained on, its cost and its candidate fingerprint, written as markdown, CSV, per-user CSV and PNG.

All rows of a comparison are scored on the same users and candidates (the fingerprint shows it), so the
per-user values pair up: intervals come from one bootstrap over users shared by all rows, and each row is
tested against the best baseline (the RecBole model, or CountRank, with the highest mean of the first significance
metric) with a Wilcoxon signed-rank test on the per-user differences.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from recbole_trsr.config import positive_count
from recbole_trsr.errors import UserInputError
from recbole_trsr.per_user import USER_COLUMN
from recbole_trsr.statistics import bootstrap_means, percentile_interval, wilcoxon_p
from recbole_trsr.whole_files import replaced, writable_folder

MODEL_COLUMN = "model"
FEW_USERS = 20
BASELINE_COLUMN = "baseline"
FACT_COLUMNS = [
    "train_users",
    "train_examples",
    "train_s",
    "epochs",
    "s_per_epoch",
    "test_users",
    "test_s",
    "test_ms_per_user",
    "peak_rss_mb",
    "peak_cuda_mb",
    "candidates",
]


@dataclass
class Row:
    """One model's line in a comparison: its per-user test values and the facts about its run."""

    model: str
    baseline: bool  # a RecBole model or CountRank: a candidate reference for the paired tests
    per_user: pd.DataFrame  # column 'user', then one column per metric, e.g. 'ndcg@10'
    facts: dict


@dataclass
class Settings:
    seed: int
    resamples: int
    tested_metrics: list[str]  # lower case, e.g. ['ndcg@10', 'mrr@10']; the first picks the best baseline


def check_per_user_metrics(config) -> None:
    """Every metric gives each test user a value: the table's intervals and paired tests are over users. Item
    coverage and the like failed in the random ranking's test with a traceback, and GAUC was left out of the table
    without a word."""
    from recbole.evaluator.register import metrics_dict

    per_user = [metric.__name__ for metric in metrics_dict.values() if metric.metric_need == ["rec.topk"]]
    for metric in config["metrics"]:
        if metrics_dict[metric.lower()].metric_need != ["rec.topk"]:
            raise UserInputError(
                f"metrics: {metric} gives no value per test user, which the comparison's intervals and paired tests "
                f"need; metrics that do: {', '.join(sorted(per_user))}"
            )


def comparison_settings(config) -> Settings:
    """The statistics keys of a config, checked: tested metrics must be among ``metrics`` x ``topk``."""
    check_per_user_metrics(config)
    resamples = positive_count(config, "bootstrap_resamples")
    tested = config["significance_metrics"]
    if isinstance(tested, str):
        tested = [tested]
    if not isinstance(tested, list) or not tested:
        raise UserInputError(f"significance_metrics must be a list such as [NDCG@10, MRR@10], not {tested!r}")
    measured = {f"{name.lower()}@{k}" for name in config["metrics"] for k in config["topk"]}
    tested = [str(metric).lower() for metric in tested]
    for metric in tested:
        if metric not in measured:
            raise UserInputError(
                f"significance_metrics names {metric}, which this run does not measure (metrics x topk: "
                f"{', '.join(sorted(measured))})"
            )
    return Settings(seed=config["seed"], resamples=resamples, tested_metrics=tested)


def metric_columns(rows: list[Row]) -> list[str]:
    return [column for column in rows[0].per_user.columns if column != USER_COLUMN]


def aligned_values(rows: list[Row], metrics: list[str]) -> np.ndarray:
    """users x (rows * metrics), rows in order, every row's users in the first row's order."""
    users = rows[0].per_user[USER_COLUMN]
    blocks = []
    for row in rows:
        indexed = row.per_user.set_index(USER_COLUMN)
        if len(indexed) != len(users) or set(indexed.index) != set(users):
            raise UserInputError(
                f"'{row.model}' was tested on other users than '{rows[0].model}': no paired comparison"
            )
        blocks.append(indexed.loc[users, metrics].to_numpy(dtype=float))
    return np.concatenate(blocks, axis=1)


def best_baseline(rows: list[Row], metric: str) -> Row:
    """The baseline with the highest mean ``metric``; the chance row when the comparison has no baseline."""
    candidates = [row for row in rows if row.baseline] or [row for row in rows if row.model == "RandomRank"]
    candidates = candidates or rows
    return max(candidates, key=lambda row: row.per_user[metric].mean())


def summary_frame(rows: list[Row], settings: Settings) -> pd.DataFrame:
    """One line per row: each metric's mean and 95% interval, the paired comparison with the best baseline,
    then the facts. Column names: '<metric>', '<metric>_low', '<metric>_high', '<metric>_diff' (row minus best
    baseline) with its own interval, '<metric>_p' (Wilcoxon), 'best_baseline'."""
    metrics = metric_columns(rows)
    values = aligned_values(rows, metrics)
    samples = bootstrap_means(values, settings.resamples, settings.seed).reshape(-1, len(rows), len(metrics))
    means = values.mean(axis=0).reshape(len(rows), len(metrics))
    low, high = percentile_interval(samples)
    reference = best_baseline(rows, settings.tested_metrics[0])
    ref = rows.index(reference)
    lines = []
    for index, row in enumerate(rows):
        line = {MODEL_COLUMN: row.model, BASELINE_COLUMN: row.baseline}
        for column, metric in enumerate(metrics):
            line[metric] = round(means[index, column], 4)
            line[f"{metric}_low"] = round(low[index, column], 4)
            line[f"{metric}_high"] = round(high[index, column], 4)
        line["best_baseline"] = reference.model
        for metric in settings.tested_metrics:
            column = metrics.index(metric)
            same = index == ref
            difference = samples[:, index, column] - samples[:, ref, column]
            diff_low, diff_high = percentile_interval(difference)
            line[f"{metric}_diff"] = None if same else round(means[index, column] - means[ref, column], 4)
            line[f"{metric}_diff_low"] = None if same else round(float(diff_low), 4)
            line[f"{metric}_diff_high"] = None if same else round(float(diff_high), 4)
            user_values = values[:, [index * len(metrics) + column, ref * len(metrics) + column]]
            line[f"{metric}_p"] = None if same else float(f"{wilcoxon_p(*user_values.T):.3g}")
        line.update({key: row.facts.get(key) for key in FACT_COLUMNS})
        lines.append(line)
    frame = pd.DataFrame(lines)
    if frame["peak_cuda_mb"].isna().all():
        frame = frame.drop(columns="peak_cuda_mb")
    return frame


def per_user_frame(rows: list[Row]) -> pd.DataFrame:
    """Long format: one line per (model, user) with every metric, for users' own tests."""
    return pd.concat([row.per_user.assign(**{MODEL_COLUMN: row.model}) for row in rows], ignore_index=True)[
        [MODEL_COLUMN, USER_COLUMN, *metric_columns(rows)]
    ]


def with_interval(mean, low, high) -> str:
    return f"{mean:.4f} [{low:.3f}, {high:.3f}]"


def signed_interval(diff, low, high) -> str:
    return "-" if pd.isna(diff) else f"{diff:+.4f} [{low:+.3f}, {high:+.3f}]"


def markdown_table(frame: pd.DataFrame, metrics: list[str], tested: list[str]) -> str:
    """The summary as markdown: metrics with their intervals, the tests, then what each row trained on and cost."""
    table = pd.DataFrame({"model": frame[MODEL_COLUMN]})
    for metric in metrics:
        table[metric] = [with_interval(*line) for line in frame[[metric, f"{metric}_low", f"{metric}_high"]].to_numpy()]
    reference = frame["best_baseline"].iloc[0]
    for metric in tested:
        columns = [f"{metric}_diff", f"{metric}_diff_low", f"{metric}_diff_high"]
        table[f"{metric} - {reference}"] = [signed_interval(*line) for line in frame[columns].to_numpy()]
        table[f"p {metric}"] = frame[f"{metric}_p"]
    for column in [
        "train_users",
        "train_examples",
        "epochs",
        "s_per_epoch",
        "test_users",
        "test_ms_per_user",
        "peak_rss_mb",
        "peak_cuda_mb",
        "candidates",
    ]:
        if column in frame:
            table[column] = frame[column]
    return table.astype(object).where(table.notna(), "-").to_markdown(index=False, floatfmt="g")


def same_candidates(rows: list[Row]) -> bool:
    return len({row.facts["candidates"] for row in rows}) <= 1


@dataclass
class Comparison:
    """Where one comparison's files go: <output_dir>/comparison-<dataset>-<time>{.md,.csv,-users.csv,.png}."""

    stem: str

    @classmethod
    def start(cls, output_dir: str, dataset: str) -> Comparison:
        # before any model trains, not when the first row is written
        writable_folder(output_dir, f"output_dir '{output_dir}' cannot be made a writable folder")
        stem = os.path.join(output_dir, f"comparison-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
        taken = 1
        while os.path.exists(f"{stem}.csv" if taken == 1 else f"{stem}-{taken}.csv"):  # two runs in one second
            taken += 1
        return cls(stem if taken == 1 else f"{stem}-{taken}")

    @property
    def paths(self) -> dict[str, str]:
        return {
            "md": f"{self.stem}.md",
            "csv": f"{self.stem}.csv",
            "users": f"{self.stem}-users.csv",
            "png": f"{self.stem}.png",
        }

    def write(self, rows: list[Row], settings: Settings, title: str) -> str:
        """Write all four files (again, as rows arrive); returns the markdown."""
        from recbole_trsr.comparison_plot import plot_comparison

        frame = summary_frame(rows, settings)
        metrics = metric_columns(rows)
        markdown = markdown_table(frame, metrics, settings.tested_metrics)
        markdown += (
            f"\n\nMeans over {len(rows[0].per_user)} test users with 95% bootstrap intervals ({settings.resamples} "
            f"resamples of the users). '- {frame['best_baseline'].iloc[0]}': each row minus the best baseline, "
            "paired per user; p: two-sided Wilcoxon signed-rank test on those per-user differences."
        )
        if len(rows[0].per_user) < FEW_USERS:
            markdown += (
                f"\n\nWARNING: {len(rows[0].per_user)} test users are too few for the intervals and p-values to say "
                "much (a bootstrap over a handful of users gives narrow intervals, and the smallest p is large)."
            )
        if not same_candidates(rows):
            markdown += "\n\nWARNING: the models were not scored on identical test candidates (see 'candidates')."
        paths = self.paths
        # Each file beside its name, then renamed: a run stopped while writing (Ctrl-C) keeps its last whole table,
        # which its line of how to go on names for --add_to.
        with replaced(paths["md"]) as staging, open(staging, "w", encoding="utf-8") as stream:
            stream.write(markdown + "\n")
        with replaced(paths["csv"]) as staging:
            frame.to_csv(staging, index=False)
        with replaced(paths["users"]) as staging:
            per_user_frame(rows).to_csv(staging, index=False)
        with replaced(paths["png"]) as staging:
            plot_comparison(frame, metrics, staging, title)
        return markdown


def earlier_rows(csv_path: str) -> list[Row]:
    """The rows of an earlier comparison (its .csv and -users.csv), to be joined by a later run."""
    if not csv_path.endswith(".csv"):
        raise UserInputError(f"--add_to: '{csv_path}' is not a comparison-<dataset>-<time>.csv")
    users_path = csv_path[: -len(".csv")] + "-users.csv"
    if not os.path.isfile(csv_path):
        raise UserInputError(f"--add_to: '{csv_path}' does not exist (give a comparison-<dataset>-<time>.csv)")
    if not os.path.isfile(users_path):
        raise UserInputError(f"--add_to: '{users_path}', the per-user values of '{csv_path}', does not exist")
    not_a_table = f"--add_to: '{csv_path}' is not a comparison table written by run_recbole_trsr.py"
    try:
        # As written: a fingerprint of digits only is not a number, nor a user named NA a missing value.
        summary = pd.read_csv(csv_path, dtype={"candidates": str})
        per_user = pd.read_csv(users_path, dtype={USER_COLUMN: str}, keep_default_na=False)
    except ValueError as error:  # pandas' ParserError and EmptyDataError, and undecodable bytes
        raise UserInputError(f"{not_a_table} ({' '.join(str(error).split())})") from None
    missing = {MODEL_COLUMN, BASELINE_COLUMN, "candidates"} - set(summary.columns)
    if missing or {MODEL_COLUMN, USER_COLUMN} - set(per_user.columns):
        raise UserInputError(not_a_table)
    rows = []
    for line in summary.to_dict("records"):
        values = per_user[per_user[MODEL_COLUMN] == line[MODEL_COLUMN]].drop(columns=MODEL_COLUMN)
        facts = {key: (None if pd.isna(line.get(key)) else line.get(key)) for key in FACT_COLUMNS}
        rows.append(Row(line[MODEL_COLUMN], bool(line[BASELINE_COLUMN]), values.reset_index(drop=True), facts))
    return rows


def earlier_tables(csv_paths: list[str]) -> list[Row]:
    """The rows of several earlier comparisons on the same candidates, joined in order (a later row of a model
    replaces an earlier one): comparisons run apart, in parallel or one model at a time, make one table."""
    rows: list[Row] = []
    for path in csv_paths:
        rows = joined_rows(rows, earlier_rows(path), joining=path) if rows else earlier_rows(path)
    return rows


def joined_rows(earlier: list[Row], new: list[Row], joining: str = "this run") -> list[Row]:
    """Earlier rows first, then the new ones; refused unless all were scored on the same candidates."""
    fingerprints = {row.facts["candidates"] for row in earlier + new}
    if len(fingerprints) > 1:
        raise UserInputError(
            f"--add_to: the earlier table's candidates ({earlier[0].facts['candidates']}) differ from those of "
            f"{joining} ({new[0].facts['candidates']}); use the same dataset, split, seed, max_users and eval_users"
        )
    earlier_metrics, new_metrics = metric_columns(earlier), metric_columns(new)
    if set(earlier_metrics) != set(new_metrics):  # a KeyError once the first row was written, or a metric dropped
        raise UserInputError(
            f"--add_to: the earlier table's metrics ({', '.join(earlier_metrics)}) differ from those of {joining} "
            f"({', '.join(new_metrics)}); use the same metrics and topk"
        )
    latest = {row.model: row for row in new}  # a model run again replaces its earlier row
    return [latest.pop(row.model, row) for row in earlier] + list(latest.values())
