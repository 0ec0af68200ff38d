"""Every evaluated user's metric values, computed by RecBole's own metric classes, for paired statistics."""

from __future__ import annotations

import contextlib
import inspect

import numpy as np
import pandas as pd
import torch

USER_COLUMN = "user"


class PerUserMetrics:
    """Records one evaluation and returns each user's value of every top-k metric.

    RecBole averages its metrics over users inside ``Evaluator.evaluate``; the per-user values exist there only
    for a moment. This taps the collector (to learn which user each score row belongs to) and the evaluator (to
    keep the collected data), then asks each metric for its per-user values with the metric's own
    ``metric_info``, so the means equal RecBole's results.
    """

    def __init__(self, dataset):
        self.dataset = dataset
        self.users: list[str] = []
        self.struct = None

    @contextlib.contextmanager
    def recording(self, trainer):
        """Within the block, every batch that ``trainer`` evaluates is recorded."""
        collector, evaluator = trainer.eval_collector, trainer.evaluator
        collect, evaluate = collector.eval_batch_collect, evaluator.evaluate

        def recording_collect(scores, interaction, positive_u, positive_i):
            users = torch.unique_consecutive(interaction[self.dataset.uid_field].cpu()).numpy()
            self.users += [str(token) for token in self.dataset.id2token(self.dataset.uid_field, users)]
            return collect(scores, interaction, positive_u, positive_i)

        def recording_evaluate(struct):
            self.struct = struct
            return evaluate(struct)

        collector.eval_batch_collect, evaluator.evaluate = recording_collect, recording_evaluate
        try:
            yield self
        finally:
            collector.eval_batch_collect, evaluator.evaluate = collect, evaluate

    def frame(self, evaluator) -> pd.DataFrame:
        """One row per evaluated user (column ``user``), one column per top-k metric, e.g. ``ndcg@10``."""
        columns = {}
        for name, metric in evaluator.metric_class.items():
            if getattr(metric, "metric_need", None) != ["rec.topk"]:
                continue  # not a per-user ranking metric (e.g. item coverage)
            pos_index, pos_len = metric.used_info(self.struct)
            takes_length = len(inspect.signature(metric.metric_info).parameters) > 1  # Recall, NDCG, MAP do
            values = metric.metric_info(pos_index, pos_len) if takes_length else metric.metric_info(pos_index)
            for k in metric.topk:
                # Rounded so that users at the same rank tie exactly (the rank tests count ties), as in the CSV.
                columns[f"{name}@{k}"] = np.round(values[:, k - 1].astype(float), 12)
        for values in columns.values():
            if len(values) != len(self.users):
                raise RuntimeError(f"{len(values)} metric rows for {len(self.users)} users: a user's rows were split")
        return pd.DataFrame({USER_COLUMN: self.users, **columns})
