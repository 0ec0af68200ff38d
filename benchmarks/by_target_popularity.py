"""A comparison's rows per quartile of the test target's popularity: where does each model win or lose?

    python benchmarks/by_target_popularity.py outputs/comparison-<dataset>-<time>-users.csv <data_path> <dataset> \
        [--reference SASRec] [--metric ndcg@10] [--rows "A" "B" ...] [--resamples 10000] [--seed 2020]

A target's popularity is its number of interactions in the training part of RecBole's leave-one-out split (each
user's history without their last two items, ordered by timestamp): how often a model trained on interactions
has seen the item it must rank first. The test users are cut into quartiles of that count; in each quartile every
row is compared with the reference as in ``ablation_table.py`` (paired bootstrap interval, Wilcoxon p). The
quartiles are chosen after the fact and their p-values are not corrected for the four looks.
"""

from __future__ import annotations

import argparse
import os

import pandas as pd
from ablation_table import ablation_frame  # the script's own folder is on sys.path

from recbole_trsr.atomic_files import read_atomic


def target_popularity(inter_file: str) -> pd.Series:
    """Each user's test target's count of training interactions, indexed by user token."""
    inter = read_atomic(inter_file, "\t")
    inter.columns = [column.split(":")[0] for column in inter.columns]
    inter["timestamp"] = inter["timestamp"].astype(float)
    # a stable sort keeps the file's order among equal timestamps, as RecBole's does
    inter = inter.sort_values(["user_id", "timestamp"], kind="stable")
    from_end = inter.groupby("user_id").cumcount(ascending=False)
    counts = inter.loc[from_end >= 2, "item_id"].value_counts()
    targets = inter.loc[from_end == 0].set_index("user_id")["item_id"]
    return targets.map(counts).fillna(0).astype(int)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("users_csv")
    parser.add_argument("data_path")
    parser.add_argument("dataset")
    parser.add_argument("--reference", default="SASRec")
    parser.add_argument("--metric", default="ndcg@10")
    parser.add_argument("--rows", nargs="+")
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    per_user = pd.read_csv(args.users_csv, dtype={"user": str})
    popularity = target_popularity(os.path.join(args.data_path, args.dataset, f"{args.dataset}.inter"))
    per_user["popularity"] = per_user["user"].map(popularity)
    users = per_user.drop_duplicates("user").set_index("user")["popularity"]
    quartile = pd.qcut(users, 4, duplicates="drop")
    tables = []
    for _, members in users.groupby(quartile, observed=True):
        group = per_user[per_user["user"].isin(members.index)]
        frame = ablation_frame(group, args.reference, [args.metric], args.rows, args.resamples, args.seed)
        low, high = int(members.min()), int(members.max())
        frame.insert(0, "target's training interactions", f"{low}-{high} ({len(members)} users)")
        tables.append(frame)
    print(pd.concat(tables).to_markdown(index=False))
    print(f"\nreference: {args.reference}; quartiles of {users.size} users; p uncorrected for the four quartiles")


if __name__ == "__main__":
    main()
