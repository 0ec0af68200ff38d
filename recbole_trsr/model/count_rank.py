"""CountRank: the counts that LLMTRSR's candidate text shows, ranked without the LLM.

LLMTRSR's default candidate text says how many other users bought the candidate (``{popularity}``) and how many
bought it with one of the recent items (``{together}``). CountRank ranks the same candidates by those two numbers
alone, ``{together}`` first, so that a comparison shows what the LLM adds to the counts it is given.
"""

from __future__ import annotations

import numpy as np
import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_trsr.candidate_counts import CandidateCounts
from recbole_trsr.config import NOT_NEGATIVE, check_number_keys
from recbole_trsr.model.random_rank import UntrainedTrainer
from recbole_trsr.tie_break import tie_keys


def sequential_training_parts(dataset, uid_field: str, item_seq_field: str, item_seq_len_field: str, iid_field: str):
    """Each user's training part (the items up to their last training target, in order) from RecBole's
    augmented training split, where every row is one target with its history: the first item, then the targets."""
    feat = dataset.inter_feat
    users = feat[uid_field].numpy()
    lengths = feat[item_seq_len_field].numpy()
    targets = feat[iid_field].numpy()
    first_items = feat[item_seq_field][:, 0].numpy()
    if not len(users):
        return {}
    order = np.lexsort((lengths, users))
    users, targets, first_items = users[order], targets[order], first_items[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    return {
        int(users[start]): np.r_[first_items[start], targets[start:end]].astype(np.int64)
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
    }


class CountRank(SequentialRecommender):
    """Ranks candidates by ``{together}`` over the ``recent_k`` most recent items, then by ``{popularity}``, both
    counted over the other users' training parts exactly as LLMTRSR's prompt counts them. Ties are broken by a
    seeded hash of user and item, not by the order in which RecBole lists the candidates."""

    input_type = InputType.POINTWISE
    comparison_baseline = True  # a recommender without an LLM: a reference for LLMTRSR's paired tests

    @staticmethod
    def check_config(config) -> None:
        check_number_keys(config, {"recent_k": NOT_NEGATIVE})

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.recent_k = config["recent_k"]
        self.seed = config["seed"]
        parts = sequential_training_parts(dataset, self.USER_ID, self.ITEM_SEQ, self.ITEM_SEQ_LEN, self.ITEM_ID)
        self.counts = CandidateCounts(parts, self.n_items)
        # RecBole's Trainer builds an optimizer at construction, which refuses a model with no parameters.
        self.placeholder = torch.nn.Parameter(torch.zeros(1))

    def calculate_loss(self, interaction):
        return self.placeholder.sum()

    def ranks(self, user: int, history: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Each item's place among ``items`` (0 the lowest), by together, then popularity, then the hash."""
        recent = history[-self.recent_k :] if self.recent_k else history[:0]
        together = self.counts.together(user, recent, items)
        popularity = self.counts.popularity(user, items)
        tie_break = tie_keys(np.full(len(items), user), items, self.seed)
        ranks = np.empty(len(items), dtype=np.float32)
        ranks[np.lexsort((tie_break, popularity, together))] = np.arange(len(items), dtype=np.float32)
        return ranks

    def rows(self, interaction):
        users = interaction[self.USER_ID].cpu().numpy()
        histories = interaction[self.ITEM_SEQ].cpu().numpy()
        lengths = interaction[self.ITEM_SEQ_LEN].cpu().numpy()
        return users, [history[:length] for history, length in zip(histories, lengths, strict=True)]

    def predict(self, interaction):
        """Places are comparable within one user's candidates, which RecBole's sampled evaluation keeps together
        in one batch, and CountRankTrainer scores whole."""
        users, histories = self.rows(interaction)
        items = interaction[self.ITEM_ID].cpu().numpy()
        scores = np.empty(len(items), dtype=np.float32)
        starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
        for start, end in zip(starts.tolist(), np.r_[starts[1:], len(users)].tolist(), strict=True):
            scores[start:end] = self.ranks(int(users[start]), histories[start], items[start:end])
        return torch.from_numpy(scores).to(self.device)

    def full_sort_predict(self, interaction):
        users, histories = self.rows(interaction)
        every_item = np.arange(self.n_items)
        scores = [self.ranks(int(user), history, every_item) for user, history in zip(users, histories, strict=True)]
        return torch.from_numpy(np.stack(scores)).to(self.device)


class CountRankTrainer(UntrainedTrainer):
    """Nothing to learn: the counts are taken from the training split when the model is built. Its scores depend on
    the user and the item only, so on several ranks each scores its own share of the batches."""

    def _spilt_predict(self, interaction, batch_size):
        """One call for the whole batch: RecBole cuts a batch longer than ``eval_batch_size`` into parts, which would
        split a user's candidates, and places from different parts do not compare (the metrics then followed
        ``eval_batch_size``). CountRank holds no activations, so the batch needs no parts."""
        return self.model.predict(interaction.to(self.device))
