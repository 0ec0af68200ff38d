"""What a candidate's text may say about the training split: ``{popularity}`` and ``{together}``.

``{popularity}`` is how often the candidate occurs in the training part of the other users' histories.
``{together}`` is, summed over the recent items of the prompt, how many other users' training parts hold both
that item and the candidate: the item-to-item signal that SASRec and GRU4Rec learn from every user's sequence,
written as a number the LLM can read.

Both count other users only. A training example's target lies in its own user's training part, while a sampled
negative never does (RecBole samples negatives outside the user's items), and a test target does not either.
Counting the user's own interactions would make every training positive at least once bought and bought
together with its recent items, a rule that no test target follows.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class CandidateCounts:
    """Counts over each user's training part (every item up to their last training target), by item id."""

    def __init__(self, training_parts: dict[int, np.ndarray], item_num: int):
        self.training_parts = training_parts
        self.item_num = item_num
        self.interactions = np.zeros(item_num, dtype=np.int64)
        for items in training_parts.values():
            np.add.at(self.interactions, items, 1)
        self._owned: dict[int, dict[int, int]] = {}
        self._pairs = None  # item x item: users whose training part holds both; built when a template asks

    def owned(self, user: int) -> dict[int, int]:
        """The user's training part: item -> occurrences."""
        if user not in self._owned:
            items, times = np.unique(self.training_parts.get(user, []), return_counts=True)
            self._owned[user] = dict(zip(items.tolist(), times.tolist(), strict=True))
        return self._owned[user]

    def popularity(self, user: int, items) -> np.ndarray:
        """Occurrences of each item in the other users' training parts."""
        own = self.owned(user)
        return np.array([self.interactions[item] - own.get(item, 0) for item in items], dtype=np.int64)

    @property
    def pairs(self) -> sp.csr_matrix:
        if self._pairs is None:
            held = [np.unique(items) for items in self.training_parts.values()]
            rows = np.repeat(np.arange(len(held)), [len(items) for items in held])
            columns = np.concatenate(held) if held else np.zeros(0, dtype=np.int64)
            holds = sp.csr_matrix((np.ones(len(columns), dtype=np.int32), (rows, columns)), (len(held), self.item_num))
            self._pairs = (holds.T @ holds).tocsr()
        return self._pairs

    def together(self, user: int, recent, items) -> np.ndarray:
        """For each item, the other users whose training part holds it and a recent item, summed over the
        distinct recent items other than the item itself."""
        recent = np.unique(np.asarray(recent, dtype=np.int64))
        items = np.asarray(items, dtype=np.int64)
        if not len(recent) or not len(items):
            return np.zeros(len(items), dtype=np.int64)
        both = self.pairs[recent][:, items].toarray().astype(np.int64)
        own = list(self.owned(user))
        both -= np.outer(np.isin(recent, own), np.isin(items, own))  # the user's own part holds both
        both[recent[:, None] == items[None, :]] = 0
        return both.sum(axis=0)
