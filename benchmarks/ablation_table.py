"""An ablation table from a comparison's per-user CSV: every row against one reference row, paired per user.

    python benchmarks/ablation_table.py outputs/comparison-<dataset>-<time>-users.csv "LLMTRSR[summary_mode=none]" \
        [--metrics ndcg@10 mrr@10] [--rows "A" "B" ...] [--resamples 10000] [--seed 2020]

The comparison table tests each row against the best baseline; an ablation asks what one setting changes, so
here each row is tested against the reference: its mean with a 95% bootstrap interval, its difference to the
reference with a paired bootstrap interval, and the two-sided Wilcoxon signed-rank p of the per-user
differences. All rows must come from one comparison (the same users and candidates).
"""

from __future__ import annotations

import argparse

import pandas as pd

from recbole_trsr.comparison import Row, aligned_values
from recbole_trsr.errors import UserInputError
from recbole_trsr.statistics import bootstrap_means, percentile_interval, wilcoxon_p


def ablation_frame(
    per_user: pd.DataFrame, reference: str, metrics: list[str], rows: list[str] | None, resamples: int, seed: int
) -> pd.DataFrame:
    models = rows or [model for model in dict.fromkeys(per_user["model"])]
    if reference not in models:
        models = [reference, *models]
    unknown = [model for model in models if model not in set(per_user["model"])]
    if unknown:
        raise SystemExit(f"no rows of {', '.join(unknown)} in the per-user file")
    # Users in the comparison's order, as its bootstrap draws them; a user missing from one row is refused there.
    table_rows = [Row(model, False, per_user[per_user["model"] == model].drop(columns="model"), {}) for model in models]
    lines = []
    for metric in metrics:
        try:
            values = aligned_values(table_rows, [metric])
        except UserInputError as error:
            raise SystemExit(str(error)) from None
        samples = bootstrap_means(values, resamples, seed)
        low, high = percentile_interval(samples)
        ref = models.index(reference)
        diff_low, diff_high = percentile_interval(samples - samples[:, [ref]])
        for index, model in enumerate(models):
            line = next((item for item in lines if item["model"] == model), None)
            if line is None:
                line = {"model": model}
                lines.append(line)
            mean = values[:, index].mean()
            line[metric] = f"{mean:.4f} [{low[index]:.3f}, {high[index]:.3f}]"
            if index == ref:
                line[f"{metric} - reference"] = "-"
                line[f"p {metric}"] = "-"
            else:
                difference = mean - values[:, ref].mean()
                line[f"{metric} - reference"] = f"{difference:+.4f} [{diff_low[index]:+.3f}, {diff_high[index]:+.3f}]"
                line[f"p {metric}"] = f"{wilcoxon_p(values[:, index], values[:, ref]):.3g}"
    return pd.DataFrame(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("users_csv")
    parser.add_argument("reference")
    parser.add_argument("--metrics", nargs="+", default=["ndcg@10", "mrr@10"])
    parser.add_argument("--rows", nargs="+")
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    per_user = pd.read_csv(args.users_csv, dtype={"user": str}, keep_default_na=False)
    frame = ablation_frame(per_user, args.reference, args.metrics, args.rows, args.resamples, args.seed)
    print(frame.to_markdown(index=False))
    print(f"\n{per_user['user'].nunique()} users; reference: {args.reference}")


if __name__ == "__main__":
    main()
