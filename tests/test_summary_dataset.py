"""LLMTRSRDataset: full histories per example, summaries made before training, no target leakage."""

from __future__ import annotations

import pandas as pd
import pytest

from recbole_trsr.config import TRSRConfig
from recbole_trsr.model import RandomRank
from recbole_trsr.property_files import properties_dir
from recbole_trsr.summary import factory
from recbole_trsr.summary.dataset import HISTORY_END, LLMTRSRDataset
from recbole_trsr.summary.store import SummaryStore
from recbole_trsr.summary.summarizer import Summarizer
from tests.test_summary import RecordingBackend


@pytest.fixture
def recording(monkeypatch, tmp_path):
    """The dataset's summarizer, with a backend that records every prompt."""
    backend = RecordingBackend()
    backend.requests = {}

    class RecordingSummarizer(Summarizer):
        def summarize(self, requests):
            backend.requests.update(requests)
            return super().summarize(requests)

    def build(config, item_texts):
        return RecordingSummarizer(
            backend,
            SummaryStore(tmp_path / "store.db"),
            item_texts.text,
            config["summary_mode"],
            block_size=config["block_size"],
            max_blocks=config["max_blocks"],
            progress=False,
        )

    monkeypatch.setattr(factory, "build_summarizer", build)
    return backend


def build_dataset(overrides, **more):
    config = TRSRConfig(
        RandomRank,
        "tiny",
        [str(properties_dir() / "model" / "LLMTRSR.yaml")],
        {**overrides, "block_size": "3", **{k: str(v) for k, v in more.items()}},
    )
    dataset = LLMTRSRDataset(config)
    return dataset, dataset.build()


def sequences(tiny_overrides):
    frame = pd.read_csv(f"{tiny_overrides['data_path']}/tiny/tiny.inter", sep="\t")
    frame.columns = ["user", "item", "time"]
    return {user: group.sort_values("time")["item"].tolist() for user, group in frame.groupby("user")}


@pytest.mark.parametrize("mode", ["hierarchical", "recurrent"])
def test_examples_know_their_full_history_and_never_see_the_target(tiny_overrides, recording, mode):
    dataset, (train, valid, test) = build_dataset(tiny_overrides, summary_mode=mode)
    histories = sequences(tiny_overrides)
    tokens = dataset.field2id_token
    for split, offset in ((test, 1), (valid, 2)):
        users = [str(tokens["user_id"][u]) for u in split.inter_feat["user_id"].tolist()]
        ends = split.inter_feat[HISTORY_END].long().tolist()
        assert ends == [len(histories[user]) - offset for user in users]
    for user_id, (history, counts) in recording.requests.items():
        items = histories[str(tokens["user_id"][user_id])]
        assert list(history) == items[:-1]  # the summarizer never gets the test target, nor anything after
        assert max(counts) == (len(items) - 1) // 3
    assert recording.prompts
    for row in range(len(test)):
        user, end = int(test.inter_feat["user_id"][row]), int(test.inter_feat[HISTORY_END][row])
        summary, recent = test.prompt_parts(user, end)
        assert test.inter_feat["item_id"][row].item() not in recent
        assert recent == dataset.user_sequences[user][max(0, end - len(recent)) : end].tolist()
        assert (summary != "") == (end >= 3)
    assert dataset.summary_stats.calls <= 2 * sum(len(h) // 3 for h in histories.values())


def test_training_prefixes_per_user_are_bounded(tiny_overrides, recording):
    _, (train, _, _) = build_dataset(tiny_overrides, summary_mode="none", max_train_prefixes=2)
    users = train.inter_feat["user_id"].tolist()
    assert max(users.count(user) for user in set(users)) == 2
    assert recording.prompts == []  # summary_mode none asks the LLM for nothing


def test_second_build_makes_no_call(tiny_overrides, recording):
    build_dataset(tiny_overrides, summary_mode="recurrent")
    calls = len(recording.prompts)
    dataset, _ = build_dataset(tiny_overrides, summary_mode="recurrent")
    assert len(recording.prompts) == calls and dataset.summary_stats.calls == 0
    assert dataset.summary_stats.reused > 0
