"""Turns users' histories into preference summaries, hierarchically or recurrently, through the store.

Work goes level by level across all users, so that every LLM call of a level is batched with the others:
hierarchical: every block summary, then every merge; recurrent: step 1 of every chain, then step 2, ...
A summary already in the store is never asked for again, within a run or across runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm.auto import tqdm

from recbole_trsr.errors import UserInputError
from recbole_trsr.progress import ProgressLog
from recbole_trsr.summary.blocks import block_items
from recbole_trsr.summary.prompts import SummaryPrompts
from recbole_trsr.summary.share import SummaryShare
from recbole_trsr.summary.store import StoredSummary, SummaryStore, summary_key

POLL_S = 0.5  # how often a process looks for the summaries that other processes make


@dataclass
class SummaryStats:
    calls: int = 0  # LLM calls made in this run
    reused: int = 0  # summaries found in the store
    from_others: int = 0  # summaries that other processes of a --nproc run made while this one waited
    prompt_tokens: int = 0
    new_tokens: int = 0
    empty: int = 0  # generations that came back empty (stored as empty)
    seconds: float = 0.0
    users: set = field(default_factory=set)

    def calls_per_user(self) -> float:
        return (self.calls + self.reused + self.from_others) / max(len(self.users), 1)


class Summarizer:
    """Summaries of the first ``j`` complete blocks of users' histories.

    Args:
        backend: has ``identity`` (a string naming the model and generation settings) and
            ``generate(prompts, progress) -> list of objects with text, prompt_tokens, new_tokens``.
        store: the SummaryStore results go to.
        item_text: the text of an item, by item token.
        mode: "hierarchical" or "recurrent".
        share: which summaries this process makes when several fill the store (default: all of them).
    """

    def __init__(
        self,
        backend,
        store: SummaryStore,
        item_text: Callable[[str], str],
        mode: str,
        block_size: int = 5,
        max_blocks: int = 5,
        prompts: SummaryPrompts | None = None,
        chunk_size: int | None = None,
        progress: bool = True,
        always_merge: bool = False,
        share: SummaryShare | None = None,
    ):
        if mode not in ("hierarchical", "recurrent"):
            raise ValueError(f"summary_mode '{mode}' does not summarize")
        self.backend = backend
        self.store = store
        self.item_text = item_text
        self.mode = mode
        self.block_size = block_size
        self.max_blocks = max_blocks
        self.prompts = prompts or SummaryPrompts()
        self.given_chunk_size = chunk_size
        self.progress = progress
        self.always_merge = always_merge  # the paper's code merges a single block's summary too
        self.share = share or SummaryShare()
        self.stats = SummaryStats()

    @property
    def chunk_size(self) -> int:
        """Prompts generated, then committed, at a time: one generation batch, so a kill loses at most that. Read
        each time: under summary_batch_size: auto the backend halves its batch when the device runs out of memory."""
        settings = getattr(self.backend, "settings", None)
        return self.given_chunk_size or getattr(settings, "batch_size", None) or 16

    def block_texts(self, history: Sequence[str], block: int) -> list[str]:
        return [self.item_text(item) for item in block_items(history, block, self.block_size)]

    def summarize(self, requests: dict) -> dict[tuple, str]:
        """``requests``: {user: (history, counts)}, the history as item tokens (oldest first) and the
        numbers of complete blocks whose summary is wanted. Returns {(user, count): summary}."""
        self._started = started = time.perf_counter()
        self.stats.users.update(requests)
        wanted = {(user, count) for user, (_, counts) in requests.items() for count in counts if count > 0}
        bar = tqdm(total=0, desc=f"{self.mode} summaries", unit="call", disable=not self.progress)
        self.log = ProgressLog(f"{self.mode} summaries", 0, " calls", enabled=not self.progress)
        try:
            if self.mode == "hierarchical":
                result = self._hierarchical(requests, wanted, bar)
            else:
                result = self._recurrent(requests, wanted, bar)
        finally:
            bar.close()
        self.stats.seconds += time.perf_counter() - started
        return result

    def _hierarchical(self, requests, wanted, bar) -> dict[tuple, str]:
        windows = {(u, c): range(max(0, c - self.max_blocks), c) for u, c in wanted}
        block_prompts = {
            (user, block): self.prompts.block_prompt(self.block_texts(requests[user][0], block))
            for (user, _), window in windows.items()
            for block in window
        }
        block_summaries = self._run(block_prompts, bar)
        merge_prompts = {
            node: self.prompts.merge_prompt([block_summaries[(node[0], block)] for block in window])
            for node, window in windows.items()
            if len(window) > 1 or self.always_merge
        }
        merged = self._run(merge_prompts, bar)
        return {
            node: merged[node] if node in merged else block_summaries[(node[0], window[0])]
            for node, window in windows.items()
        }

    def _recurrent(self, requests, wanted, bar) -> dict[tuple, str]:
        deepest = {}
        for user, count in wanted:
            deepest[user] = max(deepest.get(user, 0), count)
        chain: dict[tuple, str] = {}
        for step in range(1, max(deepest.values(), default=0) + 1):
            prompts = {}
            for user, depth in deepest.items():
                if depth < step:
                    continue
                items = self.block_texts(requests[user][0], step - 1)
                prompts[(user, step)] = (
                    self.prompts.block_prompt(items)
                    if step == 1
                    else self.prompts.update_prompt(chain[(user, step - 1)], items)
                )
            chain.update(self._run(prompts, bar))
        return {node: chain[node] for node in wanted}

    def _run(self, prompts: dict, bar) -> dict:
        """Texts for {node: prompt}: from the store, or generated in committed chunks."""
        keys = {node: summary_key(prompt=prompt, model=self.backend.identity) for node, prompt in prompts.items()}
        stored = self.store.get_many(keys.values())
        missing = {}
        for node, key in keys.items():
            if key not in stored and key not in missing:
                missing[key] = prompts[node]
        bar.total += len(set(keys.values()))
        bar.update(len(set(keys.values())) - len(missing))
        self.log.total += len(missing)
        self.stats.reused += len(set(keys.values())) - len(missing)
        pending = sorted(missing.items(), key=lambda item: len(item[1]))  # similar lengths batch together
        theirs = {key for key, _ in pending if not self.share.owns(key)}
        pending = [(key, prompt) for key, prompt in pending if key not in theirs]
        while pending:
            # Another process may have made some of these meanwhile: read the store again before each batch.
            done = self.store.get_many(key for key, _ in pending[: 4 * self.chunk_size])
            if done:
                stored.update(done)
                pending = [(key, prompt) for key, prompt in pending if key not in done]
                self.stats.reused += len(done)
                bar.update(len(done))
                self.log.update(len(done))
                continue
            chunk, pending = pending[: self.chunk_size], pending[self.chunk_size :]
            try:
                generated = self.backend.generate([prompt for _, prompt in chunk], progress=False)
            except UserInputError as error:
                raise UserInputError(
                    f"{error}; the {self.stats.calls} summaries generated before it are kept in {self.store.path}"
                ) from None
            fresh = {
                key: StoredSummary(g.text, g.prompt_tokens, g.new_tokens)
                for (key, _), g in zip(chunk, generated, strict=True)
            }
            self.store.put_many(fresh)
            stored.update(fresh)
            self.stats.calls += len(chunk)
            self.stats.prompt_tokens += sum(g.prompt_tokens for g in generated)
            self.stats.new_tokens += sum(g.new_tokens for g in generated)
            self.stats.empty += sum(not g.text for g in generated)
            bar.update(len(chunk))
            elapsed = time.perf_counter() - self._started
            self.log.update(len(chunk), tokens_per_s=f"{self.stats.new_tokens / elapsed:.1f}")
            bar.set_postfix(
                users=len(self.stats.users),
                calls=self.stats.calls,
                tokens_per_s=f"{self.stats.new_tokens / elapsed:.1f}",
            )
        self._wait_for(theirs, stored, bar)
        return {node: stored[key].text for node, key in keys.items()}

    def _wait_for(self, keys: set, stored: dict, bar) -> None:
        """The other processes' summaries of this level, read from the store as they commit them."""
        last_arrival = time.monotonic()
        while keys:
            done = self.store.get_many(keys)
            if done:
                stored.update(done)
                keys -= done.keys()
                self.stats.from_others += len(done)
                bar.update(len(done))
                self.log.update(len(done))
                last_arrival = time.monotonic()
                continue
            if time.monotonic() - last_arrival > self.share.timeout_s:
                silent = sorted({self.share.owner(key) for key in keys})
                raise UserInputError(
                    f"process {', '.join(map(str, silent))} of {self.share.ranks} made none of its "
                    f"{len(keys)} remaining summaries in {self.share.timeout_s:g} s (summary_share_timeout); "
                    f"the summaries made so far are kept in {self.store.path}"
                )
            time.sleep(POLL_S)
