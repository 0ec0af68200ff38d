"""LLMTRSRDataset: RecBole's SequentialDataset plus what LLM prompts need, with every summary made up front.

Batches carry ids only: the user, the candidate and ``history_end`` (how many of the user's interactions
precede the target). Texts stay here: each user's full item sequence, the item texts and the summaries,
looked up by (user, number of complete blocks before the target).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType

from recbole_trsr import user_budget
from recbole_trsr.candidate_counts import CandidateCounts
from recbole_trsr.config import positive_count
from recbole_trsr.errors import UserInputError
from recbole_trsr.item_text import ItemTexts, check_item_texts
from recbole_trsr.summary import factory
from recbole_trsr.summary.blocks import plan_history

HISTORY_END = "history_end"

logger = logging.getLogger(__name__)


def run_bounds(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end indices of each run of equal consecutive users."""
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1]
    return starts, np.r_[starts[1:], len(users)]


def running_position(users: np.ndarray) -> np.ndarray:
    """1, 2, 3, ... within each run of equal consecutive users."""
    starts, ends = run_bounds(users)
    return np.arange(len(users)) - np.repeat(starts, ends - starts) + 1


class LLMTRSRDataset(SequentialDataset):
    """Sequential dataset whose examples know their full history, for block-aligned summaries."""

    def __init__(self, config):
        gaps = check_item_texts(config)
        super().__init__(config)
        if gaps:
            logger.warning(gaps)
        self.item_texts = ItemTexts.from_config(config)
        self.summaries: dict[tuple[int, int], str] = {}
        self.summary_stats = None
        self.loaded_llm = None  # (LLMSpec, model, tokenizer) of the summarizer, once its work is done

    def data_augmentation(self):
        self.sort(by=[self.uid_field, self.time_field], ascending=True)
        users = self.inter_feat[self.uid_field].numpy()
        items = self.inter_feat[self.iid_field].numpy()
        starts, ends = run_bounds(users)
        self.user_sequences = {int(users[s]): items[s:e].copy() for s, e in zip(starts, ends, strict=True)}
        super().data_augmentation()
        # RecBole keeps the user's time order and drops each user's first interaction (no history before it).
        position = running_position(self.inter_feat[self.uid_field].numpy())
        self.inter_feat.update(Interaction({HISTORY_END: torch.from_numpy(position)}))
        self.set_field_property(HISTORY_END, FeatureType.FLOAT, FeatureSource.INTERACTION, 1)

    def build(self):
        # The evaluated users and the training budget are cut before the summaries, so that only the users
        # this run trains or evaluates get summaries.
        datasets = user_budget.restrict_evaluation(self.config, super().build())
        self.candidate_counts = CandidateCounts(self.training_parts(datasets[0]), self.item_num)  # before the budget
        user_budget.restrict_training(self.config, datasets[0])
        limit = positive_count(self.config, user_budget.TRAIN_PREFIXES)
        if limit:
            train = datasets[0]
            users = train.inter_feat[self.uid_field].numpy()
            from_end = running_position(users[::-1])[::-1]  # 1 for each user's most recent training example
            train.inter_feat = train.inter_feat[torch.from_numpy(from_end <= limit)]
        if self.config["summary_mode"] != "none":
            self.summaries = self.make_summaries(datasets)
        for dataset in datasets:
            dataset.candidate_counts = self.candidate_counts
            dataset.summaries = self.summaries
            dataset.summary_stats = self.summary_stats
            dataset.loaded_llm = self.loaded_llm
        return datasets

    def training_parts(self, train) -> dict[int, np.ndarray]:
        """Each user's items up to their last training target: what the baselines learn from (validation and
        test items excluded), for every user of the split, whatever LLMTRSR's own training budget."""
        users = train.inter_feat[self.uid_field].numpy()
        ends = train.inter_feat[HISTORY_END].numpy().astype(int)
        last_target: dict[int, int] = {}
        for user, end in zip(users.tolist(), ends.tolist(), strict=True):
            last_target[user] = max(last_target.get(user, 0), end)
        return {user: self.user_sequences[user][: end + 1] for user, end in last_target.items()}

    def plan(self, user: int, history_end: int):
        config = self.config
        history = self.user_sequences[user][:history_end]
        return history, plan_history(
            history,
            config["block_size"],
            config["max_blocks"],
            config["recent_k"],
            config["summary_mode"],
            partial=bool(config["summary_partial_block"]),
        )

    def summary_owner(self, user: int, history_end: int):
        """Whose summaries a history's are: the user's (every prefix shares the complete blocks), or, when the
        partial last block is summarized too, that prefix's own (its last block depends on where it ends)."""
        return (user, history_end) if self.config["summary_partial_block"] else user

    def owner_user(self, owner) -> int:
        """The user of a ``summary_owner``."""
        return owner[0] if self.config["summary_partial_block"] else owner

    def make_summaries(self, datasets) -> dict[tuple[int, int], str]:
        """Every summary that the train, valid and test examples need, from the store or the summarizer."""
        requests = self.summary_requests(datasets)
        summarizer = factory.build_summarizer(self.config, self.item_texts)
        texts = summarizer.summarize(requests)
        summarizer.stats.users = {self.owner_user(owner) for owner in requests}  # users, not prefixes, in the report
        # The summaries are final now: the recommender may take the summarizer's model instead of loading it again.
        self.loaded_llm = factory.loaded_model(summarizer)
        self.summary_stats = stats = summarizer.stats
        logger.info(
            f"summaries: {stats.calls} LLM calls, {stats.reused} reused from {summarizer.store.path}, "
            f"{stats.calls_per_user():.2f} calls per user, {stats.new_tokens} tokens generated, "
            f"{stats.empty} empty, {stats.seconds:.1f} s"
        )
        return texts

    def summary_requests(self, datasets) -> dict:
        """What the summarizer is asked for: {owner: (history as item tokens, numbers of complete blocks)}, every
        count that an example of ``datasets`` reads (see ``summary_owner``)."""
        needed: dict = {}
        deepest: dict = {}
        only = [str(token) for token in self.config["summary_users"] or []]
        for token in only:
            if token not in self.field2token_id[self.uid_field]:
                raise UserInputError(f"summary_users: user '{token}' is not in dataset {self.dataset_name}")
        only = None if not only else {self.token2id(self.uid_field, token) for token in only}
        for dataset in datasets:
            users = dataset.inter_feat[self.uid_field].numpy()
            ends = dataset.inter_feat[HISTORY_END].numpy().astype(int)
            for user, end in zip(users.tolist(), ends.tolist(), strict=True):
                if only is not None and user not in only:
                    continue
                _, plan = self.plan(user, end)
                owner = self.summary_owner(user, end)
                needed.setdefault(owner, set()).add(plan.complete_blocks)
                deepest[owner] = max(deepest.get(owner, 0), end)
        tokens = self.field2id_token[self.iid_field]
        return {
            owner: (
                [str(tokens[item]) for item in self.user_sequences[self.owner_user(owner)][: deepest[owner]]],
                counts,
            )
            for owner, counts in needed.items()
        }

    def prompt_parts(self, user: int, history_end: int) -> tuple[str, list[int]]:
        """(summary text, recent item ids oldest first) for the example whose target follows history_end."""
        history, plan = self.plan(user, history_end)
        owner = self.summary_owner(user, history_end)
        summary = self.summaries.get((owner, plan.complete_blocks), "") if plan.complete_blocks else ""
        return summary, [int(item) for item in plan.recent]
