"""The counts a candidate's text may show: other users' interactions, and other users who bought it with a
recent item. Hand-made training parts whose answers can be counted by eye."""

from __future__ import annotations

import numpy as np

from recbole_trsr.candidate_counts import CandidateCounts

# user -> items of the training part (ids 1..5; 0 is RecBole's padding item)
PARTS = {1: np.array([1, 2, 3]), 2: np.array([1, 2, 2]), 3: np.array([2, 4]), 4: np.array([5])}


def test_popularity_counts_the_other_users_interactions_only():
    counts = CandidateCounts(PARTS, item_num=6)
    assert counts.popularity(1, [1, 2, 3, 4, 5]).tolist() == [1, 3, 0, 1, 1]
    assert counts.popularity(2, [1, 2, 3, 4, 5]).tolist() == [1, 2, 1, 1, 1]
    # a user without a training part (only evaluated) sees every interaction
    assert counts.popularity(9, [1, 2, 3, 4, 5]).tolist() == [2, 4, 1, 1, 1]


def test_together_sums_the_other_users_who_hold_a_recent_item_and_the_candidate():
    counts = CandidateCounts(PARTS, item_num=6)
    # users holding both 2 and 1: users 1, 2; both 2 and 4: user 3; both 2 and 3: user 1
    assert counts.together(9, recent=[2], items=[1, 3, 4, 5]).tolist() == [2, 1, 1, 0]
    # summed over the distinct recent items 1 and 2 (the repeat counts once); the candidate itself is not a pair
    assert counts.together(9, recent=[1, 2, 2], items=[1, 2, 3]).tolist() == [2, 2, 2]
    # user 1's own part holds 1, 2 and 3: its own pairs are not counted
    assert counts.together(1, recent=[1, 2], items=[3, 4]).tolist() == [0, 1]
    assert counts.together(1, recent=[], items=[3, 4]).tolist() == [0, 0]


def test_a_training_positive_looks_like_a_test_target_not_like_its_own_count():
    """The rule the counts exist for: a training target inside its own user's part gets no credit from it."""
    counts = CandidateCounts({1: np.array([7, 8]), 2: np.array([9])}, item_num=10)
    # user 1 trains on target 8 after 7; no other user bought 8 or bought it with 7
    assert counts.popularity(1, [8]).tolist() == [0]
    assert counts.together(1, recent=[7], items=[8]).tolist() == [0]


def test_counts_equal_a_count_by_hand_over_random_histories():
    """Every user's counts against the definitions, counted pair by pair over other users' parts."""
    generator = np.random.default_rng(0)
    parts = {user: generator.integers(1, 25, size=generator.integers(1, 9)) for user in range(1, 41)}
    parts[7] = np.array([], dtype=np.int64)  # a user whose part is empty
    counts = CandidateCounts(parts, item_num=25)
    for user in [*parts, 99]:
        others = [set(part.tolist()) for owner, part in parts.items() if owner != user]
        recent = generator.integers(1, 25, size=generator.integers(0, 6))
        items = generator.integers(1, 25, size=10)
        popularity = [
            sum(int(np.sum(part == item)) for owner, part in parts.items() if owner != user) for item in items
        ]
        together = [
            sum(sum(1 for held in others if first in held and item in held) for first in set(recent) - {item})
            for item in items
        ]
        assert counts.popularity(user, items).tolist() == popularity
        assert counts.together(user, recent, items).tolist() == together
