"""The comparison table: test metrics, cost and candidate fingerprint of every model, as markdown and CSV."""

from __future__ import annotations

import os
import time

import pandas as pd

from recbole_trsr.runner import ModelRun


def comparison_frame(runs: list[ModelRun]) -> pd.DataFrame:
    rows = []
    for run in runs:
        row = {"model": run.model}
        row.update(run.test_result)
        row.update(
            {
                "train_s": round(run.train_seconds, 1),
                "epochs": run.epochs,
                "s_per_epoch": round(run.train_seconds / run.epochs, 1) if run.epochs else None,
                "test_s": round(run.test_seconds, 1),
                "test_ms_per_user": round(1000 * run.test_seconds / max(run.test_users, 1), 2),
                "peak_rss_mb": round(run.peak_rss_mb),
                "candidates": run.candidates.digest(),
            }
        )
        if run.peak_cuda_mb:
            row["peak_cuda_mb"] = round(run.peak_cuda_mb)
        rows.append(row)
    return pd.DataFrame(rows)


def same_candidates(runs: list[ModelRun]) -> bool:
    return len({run.candidates.digest() for run in runs}) <= 1


def write_comparison(runs: list[ModelRun], dataset: str, output_dir: str) -> tuple[str, str, str]:
    """Write the table as markdown and CSV under ``output_dir``; returns (markdown text, md path, csv path)."""
    frame = comparison_frame(runs)
    markdown = frame.astype(object).where(frame.notna(), "-").to_markdown(index=False, floatfmt="g")
    if not same_candidates(runs):
        markdown += "\n\nWARNING: the models were not scored on identical test candidates (see 'candidates')."
    os.makedirs(output_dir, exist_ok=True)
    stem = os.path.join(output_dir, f"comparison-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}")
    with open(f"{stem}.md", "w", encoding="utf-8") as stream:
        stream.write(markdown + "\n")
    frame.to_csv(f"{stem}.csv", index=False)
    return markdown, f"{stem}.md", f"{stem}.csv"
