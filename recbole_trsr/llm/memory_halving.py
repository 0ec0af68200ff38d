"""Batch sizes that follow the device's memory: under ``auto``, work that runs out of it runs again in halves.

The sizes that ``auto`` picks on a GPU assume a large one's memory; a smaller GPU, longer prompts or another
process on the same GPU may not hold them. Under ``auto`` a step that runs out of memory is run again with half as
many items, and the smaller size stays for the rest of the run (each halving is logged). A size the user gave is
kept: running out of memory with it ends the run in one line that names the setting to lower. Either way, what the
run finished stays: summaries in their store, training at its last save point.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch
from accelerate.utils.memory import should_reduce_batch_size

from recbole_trsr.errors import UserInputError

logger = logging.getLogger(__name__)
Item, Result = TypeVar("Item"), TypeVar("Result")


def is_out_of_memory(error: BaseException) -> bool:
    """torch's out-of-memory error, or an allocator's that accelerate recognises by its message (the CPU's)."""
    return isinstance(error, torch.OutOfMemoryError) or should_reduce_batch_size(error)


def release_device_memory() -> None:
    """Hand the failed step's blocks back: its tensors were freed with the error, but torch's caching allocator
    keeps their blocks, split to the failed sizes."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class HalvingSize:
    """How many items (prompts, users, training examples) run together: ``size``, or all of them for None.

    ``follows_memory``: the size came from ``auto`` and halves when the device runs out of memory; otherwise running
    out of memory ends the run in one line with ``advice`` (which setting to lower), or with ``one_at_a_time``
    when a single item was too much, where no batch size helps.
    """

    def __init__(self, size: int | None, follows_memory: bool, setting: str, advice: str, one_at_a_time: str):
        self.size = size
        self.follows_memory = follows_memory
        self.setting = setting
        self.advice = advice
        self.one_at_a_time = one_at_a_time

    def can_halve(self) -> bool:
        return self.follows_memory and (self.size is None or self.size > 1)

    def halve(self, failed: int, work: str) -> None:
        """After ``work`` of ``failed`` items ran out of device memory: go on with half as many, or end the run."""
        if not self.follows_memory or failed <= 1:
            advice = self.advice if failed > 1 else self.one_at_a_time
            raise UserInputError(f"the device ran out of memory in {work}; {advice}")
        half = (failed + 1) // 2  # a short last chunk of 3 that failed goes on with 2, not 1
        self.size = half if self.size is None else min(self.size, half)
        release_device_memory()
        logger.warning(
            f"the device ran out of memory in {work}; {self.setting} (auto) goes on with {self.size} at a time"
        )

    def run(
        self, items: list[Item], work: Callable[[list[Item]], Result], name: Callable[[list[Item]], str]
    ) -> Iterator[tuple[list[Item], Result]]:
        """(chunk, ``work(chunk)``) for consecutive chunks of ``items`` of at most ``size`` items. A chunk that runs
        out of device memory runs again in halves; ``name(chunk)`` says what it was, for the log and the error."""
        start = 0
        while start < len(items):
            chunk = items[start : start + (self.size or len(items))]
            try:
                result = work(chunk)
            except RuntimeError as error:
                if not is_out_of_memory(error):
                    raise
                failed = True  # halved below: until this block ends, the error's frames hold the chunk's tensors
            else:
                failed = False
            if failed:
                self.halve(len(chunk), name(chunk))
                continue
            yield chunk, result
            start += len(chunk)
