"""Equal scores among a user's candidates, ordered by a seeded hash of user and item instead of by item id.

RecBole ranks with ``torch.topk`` over a row of scores indexed by item id, and among equal scores ``topk`` keeps
an order that follows the item ids (torch does not specify it). Ids follow the order in which items first appear
in the .inter file, so popular items tend to have low ids, as the test item tends to: on `amazon-scientific` a
model that gave every candidate the same score got NDCG@10 0.286 where chance is 0.217. Breaking ties by a hash
that does not depend on the id's size gives a tied model what chance gives it, and every model of a comparison
the same order for the same tie.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np
import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)
logger = logging.getLogger(__name__)


def tie_keys(users: np.ndarray, items: np.ndarray, seed: int) -> np.ndarray:
    """A pseudo-random 64-bit key per (user, item) pair (splitmix64's finaliser), the same in every run of a seed."""
    with np.errstate(over="ignore"):  # the arithmetic is meant to wrap modulo 2**64
        mixed = users.astype(np.uint64) * _GOLDEN + items.astype(np.uint64) * _MIX_1 + np.uint64(seed % 2**64) * _MIX_2
        mixed ^= mixed >> np.uint64(30)
        mixed *= _MIX_1
        mixed ^= mixed >> np.uint64(27)
        mixed *= _MIX_2
        mixed ^= mixed >> np.uint64(31)
    return mixed


def tied_rows(scores: torch.Tensor) -> torch.Tensor:
    """Which rows hold two equal candidate scores (above -inf), on the scores' device; rows with a NaN are left out,
    so that the model's fault stays visible in its metrics."""
    ordered = scores.sort(dim=1).values
    equal = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] > -torch.inf)
    return equal.any(dim=1) & ~torch.isnan(scores).any(dim=1)


def places(scores: torch.Tensor, users: np.ndarray, seed: int) -> torch.Tensor:
    """Each candidate's place among its row's candidates (0 the lowest), equal scores in the order of their
    ``tie_keys``; -inf outside the candidates. On the host, float32."""
    rows, items = (index.numpy() for index in torch.nonzero(scores > -torch.inf, as_tuple=True))
    order = np.lexsort((tie_keys(users[rows], items, seed), scores[rows, items].numpy(), rows))
    sorted_rows = rows[order]
    place = np.arange(len(order)) - np.searchsorted(sorted_rows, sorted_rows, side="left")
    ranked = torch.full(scores.shape, -torch.inf, dtype=torch.float32)
    ranked[sorted_rows, items[order]] = torch.from_numpy(place.astype(np.float32))
    return ranked


def untied(scores: torch.Tensor, users: torch.Tensor, seed: int) -> torch.Tensor:
    """``scores`` (one row per user, -inf outside the user's candidates) with the equal scores of a row put in the
    order of their ``tie_keys``. The order of unequal scores does not change. Only the rows with a tie are
    rewritten (as places), on the host; a matrix without one comes back as it is, at the cost of one sort."""
    if scores.dim() != 2:
        return scores  # a value metric's scores, one per interaction: nothing is ranked
    if len(users) != scores.shape[0]:
        raise RuntimeError(f"{scores.shape[0]} score rows for {len(users)} users: a user's rows were split")
    fixed = tied_rows(scores.detach())
    if not fixed.any():
        return scores
    tied = scores.detach()[fixed].cpu()
    # Places up to 2**24 are exact in float32; half precision would make ties of them, and float32 would round
    # the float64 scores of the other rows.
    result = scores.detach().to(torch.float64 if scores.dtype == torch.float64 else torch.float32, copy=True)
    tied = tied.float() if tied.dtype in (torch.float16, torch.bfloat16) else tied  # exact; numpy has no bfloat16
    result[fixed] = places(tied, users.cpu().numpy()[fixed.cpu().numpy()], seed).to(result)
    return result


def tied_positives(scores: torch.Tensor, positive_u: torch.Tensor, positive_i: torch.Tensor) -> int:
    """How many candidate positives share their score with another candidate of their row."""
    if scores.dim() != 2 or not len(positive_u):
        return 0
    own = scores[positive_u, positive_i].unsqueeze(1)
    return int((((scores[positive_u] == own).sum(dim=1) > 1) & (own[:, 0] > -torch.inf)).sum())


@contextlib.contextmanager
def ties_broken(trainer, dataset, seed: int):
    """Within the block, the score matrices that ``trainer`` evaluates reach its collector with ties broken; the
    log then says how many test items had tied with another candidate."""
    collector = trainer.eval_collector
    collect = collector.eval_batch_collect
    counts = {"tied": 0, "positives": 0}

    def untied_collect(scores, interaction, positive_u, positive_i):
        users = torch.unique_consecutive(interaction[dataset.uid_field].cpu())
        counts["tied"] += tied_positives(scores, positive_u, positive_i)
        counts["positives"] += len(positive_u)
        return collect(untied(scores, users, seed), interaction, positive_u, positive_i)

    collector.eval_batch_collect = untied_collect
    try:
        yield
    finally:
        collector.eval_batch_collect = collect
    if counts["tied"]:
        logger.info(
            f"{counts['tied']} of {counts['positives']} test items scored the same as another of their user's "
            "candidates; their order was drawn by a seeded hash of user and item, not taken from the item ids"
        )
