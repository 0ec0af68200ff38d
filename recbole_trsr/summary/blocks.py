"""Which part of a history the summary covers and which items the prompt shows verbatim.

Blocks are aligned to the start of the history: block k always holds items [k*B, (k+1)*B). Every prefix of
a user's history therefore reuses the same blocks, and the same block summaries. Only complete blocks are
summarized; the items after the last complete block are always among the recent items, so every item
before the target is covered by the summary or shown (except blocks older than the hierarchical window).
Nothing at or after the target is ever looked at: a plan is built from the history before the target only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

SUMMARY_MODES = ("hierarchical", "recurrent", "none")


@dataclass(frozen=True)
class HistoryPlan:
    """The prompt's view of one history: ``complete_blocks`` summarized, ``recent`` shown verbatim."""

    complete_blocks: int  # blocks [0, complete_blocks) exist; the summary is keyed by this count
    summarized: tuple[int, ...]  # indices of the blocks the summary covers
    recent: tuple  # the items shown verbatim, oldest first


def plan_history(
    history: Sequence, block_size: int, max_blocks: int, recent_k: int, mode: str, partial: bool = False
) -> HistoryPlan:
    """Plan the prompt for ``history`` (the items before the target, oldest first).

    - hierarchical: the summary merges the ``max_blocks`` most recent complete blocks;
    - recurrent: the summary runs over every complete block (a window would restart the chain, and so the
      calls, each time it slides; the recurrence is what carries the older blocks forward);
    - none: no summary; the last ``recent_k`` items only (the TALLRec-style prompt).
    The recent items are the last ``recent_k`` items, widened to every item after the last complete block.
    With ``partial`` (the paper's code), the items after the last complete block form one more, shorter block
    that is summarized too (``complete_blocks`` then counts it), and the recent items are the last ``recent_k``.
    """
    if mode not in SUMMARY_MODES:
        raise ValueError(f"summary_mode '{mode}' is not one of {', '.join(SUMMARY_MODES)}")
    if block_size < 1 or max_blocks < 1 or recent_k < 0:
        raise ValueError("block_size and max_blocks must be at least 1 and recent_k at least 0")
    history = tuple(history)
    if mode == "none":
        return HistoryPlan(0, (), last(history, recent_k))
    complete = -(-len(history) // block_size) if partial else len(history) // block_size
    first = max(0, complete - max_blocks) if mode == "hierarchical" else 0
    uncovered = max(0, len(history) - complete * block_size)
    shown = max(recent_k, uncovered)
    return HistoryPlan(complete, tuple(range(first, complete)), last(history, shown))


def last(items: tuple, count: int) -> tuple:
    return items[max(0, len(items) - count) :] if count > 0 else ()


def block_items(history: Sequence, block: int, block_size: int) -> tuple:
    return tuple(history[block * block_size : (block + 1) * block_size])
