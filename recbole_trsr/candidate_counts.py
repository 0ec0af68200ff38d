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


def looked_up(keys: np.ndarray, values: np.ndarray | None, queries: np.ndarray) -> np.ndarray:
    """The value of each query in ascending ``keys`` (0 where absent), the queries' shape kept; without values,
    whether each query is a key."""
    if not len(keys):
        return np.zeros(queries.shape, dtype=np.int64 if values is not None else bool)
    at = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)
    found = keys[at] == queries
    return found if values is None else np.where(found, values[at], 0).astype(np.int64)


class CandidateCounts:
    """Counts over each user's training part (every item up to their last training target), by item id.

    Lookups are searches in sorted arrays: they run for every training example and every test user, and SciPy's
    fancy indexing of the item x item matrix (with ``np.isin`` for the user's own items) took 4.5x as long
    (benchmarks/RESULTS.md, 2026-11-27).
    """

    def __init__(self, training_parts: dict[int, np.ndarray], item_num: int):
        self.training_parts = training_parts
        self.item_num = item_num
        self.interactions = np.zeros(item_num, dtype=np.int64)
        for items in training_parts.values():
            np.add.at(self.interactions, items, 1)
        self._owned: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._pairs = None  # item x item: users whose training part holds both; built when a template asks

    def owned(self, user: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's training part: its distinct items, ascending, and their occurrences."""
        if user not in self._owned:
            self._owned[user] = np.unique(
                np.asarray(self.training_parts.get(user, []), dtype=np.int64), return_counts=True
            )
        return self._owned[user]

    def popularity(self, user: int, items) -> np.ndarray:
        """Occurrences of each item in the other users' training parts."""
        items = np.asarray(items, dtype=np.int64)
        return self.interactions[items] - looked_up(*self.owned(user), items)

    @property
    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(item * item_num + other item, users whose training part holds both) of every pair held, ascending."""
        if self._pairs is None:
            held = [np.unique(items) for items in self.training_parts.values()]
            rows = np.repeat(np.arange(len(held)), [len(items) for items in held])
            columns = np.concatenate(held) if held else np.zeros(0, dtype=np.int64)
            holds = sp.csr_matrix((np.ones(len(columns), dtype=np.int32), (rows, columns)), (len(held), self.item_num))
            both = (holds.T @ holds).tocsr()
            both.sum_duplicates()  # sorted column indices within each row: the keys below come out ascending
            first = np.repeat(np.arange(self.item_num, dtype=np.int64), np.diff(both.indptr))
            self._pairs = (first * self.item_num + both.indices, both.data.astype(np.int64))
        return self._pairs

    def together(self, user: int, recent, items) -> np.ndarray:
        """For each item, the other users whose training part holds it and a recent item, summed over the
        distinct recent items other than the item itself."""
        recent = np.unique(np.asarray(recent, dtype=np.int64))
        items = np.asarray(items, dtype=np.int64)
        if not len(recent) or not len(items):
            return np.zeros(len(items), dtype=np.int64)
        both = looked_up(*self.pairs, recent[:, None] * self.item_num + items[None, :])
        own = self.owned(user)[0]
        both -= np.outer(looked_up(own, None, recent), looked_up(own, None, items))  # the user's own part holds both
        both[recent[:, None] == items[None, :]] = 0
        return both.sum(axis=0)
