"""The comparison as a picture: every metric of every model, with its 95% interval."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

PANEL_INCHES = (4.8, 4.0)
LEGEND_INCHES_PER_MODEL = 0.28
DPI = 100


def metric_families(metrics: list[str]) -> dict[str, list[str]]:
    """'ndcg@3', 'ndcg@10', 'mrr@3' -> {'ndcg': ['ndcg@3', 'ndcg@10'], 'mrr': ['mrr@3']}, in the table's order."""
    families: dict[str, list[str]] = {}
    for metric in metrics:
        families.setdefault(metric.split("@")[0], []).append(metric)
    return families


def figure_size(metrics: list[str], models: int) -> tuple[float, float]:
    """Inches: one panel per metric family side by side, and room below them for the legend (one model a line)."""
    width, height = PANEL_INCHES
    return width * len(metric_families(metrics)), height + LEGEND_INCHES_PER_MODEL * models


def model_colors(count: int) -> list:
    """A distinct color per model: tab10's for up to 10 (matplotlib's default cycle), tab20's for up to 20, then
    evenly spaced along a continuous map, so that a legend never gives two models one color."""
    if count <= 10:
        return list(plt.get_cmap("tab10").colors)[:count]
    if count <= 20:
        return list(plt.get_cmap("tab20").colors)[:count]
    return [plt.get_cmap("turbo")(value) for value in np.linspace(0.0, 1.0, count)]


def plot_comparison(frame: pd.DataFrame, metrics: list[str], path: str, title: str) -> None:
    """One panel per metric family (Recall, MRR, NDCG, ...), the cut-offs on the x axis, one bar per model with
    its interval; written to ``path`` at a size that follows from the number of families and models."""
    families = metric_families(metrics)
    models = frame["model"].tolist()
    figure = plt.figure(figsize=figure_size(metrics, len(models)), dpi=DPI)
    legend_share = LEGEND_INCHES_PER_MODEL * len(models) / figure.get_figheight()
    grid = figure.add_gridspec(
        1, len(families), left=0.06, right=0.98, top=0.88, bottom=legend_share + 0.1, wspace=0.25
    )
    colors = model_colors(len(models))
    width = 0.8 / len(models)
    for panel, (family, columns) in enumerate(families.items()):
        axes = figure.add_subplot(grid[0, panel])
        positions = np.arange(len(columns))
        for index, model in enumerate(models):
            line = frame.iloc[index]
            means = line[columns].to_numpy(dtype=float)
            errors = np.stack(
                [
                    means - line[[f"{c}_low" for c in columns]].to_numpy(dtype=float),
                    line[[f"{c}_high" for c in columns]].to_numpy(dtype=float) - means,
                ]
            )
            axes.bar(
                positions + (index - (len(models) - 1) / 2) * width,
                means,
                width,
                yerr=errors,
                capsize=2,
                color=colors[index],
                label=model,
            )
        axes.set_xticks(positions, [c.split("@")[1] for c in columns])
        axes.set_xlabel("cut-off k")
        axes.set_title(family.upper() if len(family) <= 4 else family.capitalize())
        axes.set_ylim(0, 1)
        axes.grid(axis="y", alpha=0.3)
    handles, labels = figure.axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=1, frameon=False, fontsize="small")
    figure.suptitle(title, fontsize="medium")
    try:
        figure.savefig(path, dpi=DPI, format="png")  # png whatever the name ends in: it is written beside it first
    finally:
        plt.close(figure)
