"""Summaries split across processes (--precompute_summaries --nproc=N): one store, each summary made once."""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import sqlite3
import threading
import time

import pytest

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.generation import Generated
from recbole_trsr.summary import store as store_module
from recbole_trsr.summary.share import SummaryShare
from recbole_trsr.summary.store import StoredSummary, SummaryStore
from recbole_trsr.summary.summarizer import Summarizer
from tests.conftest import as_arguments
from tests.test_summary import HISTORY, RecordingBackend, item_text

REQUESTS = {
    "u": (HISTORY, {1, 2, 3, 4}),
    "v": (HISTORY[:10], {1, 2}),
    "w": ([f"w{n}" for n in range(20)], {2, 4}),
    "x": ([f"x{n}" for n in range(30)], {6}),
}


class DigestBackend(RecordingBackend):
    """A summary that depends on its prompt only, as greedy decoding does, whichever process makes it."""

    def generate(self, prompts, progress=True):
        self.prompts += prompts
        return [Generated("S" + hashlib.sha256(prompt.encode()).hexdigest()[:8], 5, 3) for prompt in prompts]


def summarize_in_threads(path, mode: str, ranks: int) -> list:
    """Each rank in a thread of its own with its own store connection, all on one file, as processes would be."""
    outcomes = [None] * ranks

    def work(rank):
        backend = DigestBackend()
        share = SummaryShare(rank, ranks, timeout_s=30)
        summarizer = Summarizer(backend, SummaryStore(path), item_text, mode, progress=False, share=share)
        outcomes[rank] = (summarizer.summarize(REQUESTS), backend.prompts, summarizer.stats)

    threads = [threading.Thread(target=work, args=(rank,)) for rank in range(ranks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.parametrize("mode", ["hierarchical", "recurrent"])
def test_two_shares_make_every_summary_once_into_one_store(tmp_path, mode):
    ((alone, alone_prompts, _),) = summarize_in_threads(tmp_path / "one.db", mode, 1)
    (first, first_prompts, first_stats), (second, second_prompts, second_stats) = summarize_in_threads(
        tmp_path / "two.db", mode, 2
    )
    assert first == second and set(first) == set(alone)  # both ranks end with every summary
    assert first_prompts and second_prompts  # both did work
    assert not set(first_prompts) & set(second_prompts)  # none twice
    assert sorted(first_prompts + second_prompts) == sorted(alone_prompts)  # none left out
    assert len(SummaryStore(tmp_path / "two.db")) == first_stats.calls + second_stats.calls == len(alone_prompts)
    assert first_stats.from_others + second_stats.from_others > 0


def test_a_share_whose_other_process_is_gone_stops_naming_it(tmp_path):
    share = SummaryShare(0, 2, timeout_s=0.5)
    summarizer = Summarizer(
        RecordingBackend(), SummaryStore(tmp_path / "s.db"), item_text, "hierarchical", progress=False, share=share
    )
    started = time.monotonic()
    with pytest.raises(UserInputError, match=r"process 1 of 2 made none of its \d+ remaining summaries in 0.5 s"):
        summarizer.summarize(REQUESTS)
    assert time.monotonic() - started < 10
    assert summarizer.stats.calls > 0 and len(SummaryStore(tmp_path / "s.db")) == summarizer.stats.calls  # kept


def summary_calls(output: str) -> list[int]:
    return [int(line.split(" LLM calls")[0].rsplit(" ", 1)[1]) for line in output.splitlines() if "LLM calls" in line]


def test_precompute_in_two_processes_fills_one_store_as_one_process_does(capsys, tiny_llm_overrides, tmp_path):
    from recbole_trsr.cli import main

    arguments = ["--model=LLMTRSR", "--dataset=tiny", *as_arguments(tiny_llm_overrides), "--precompute_summaries"]
    assert main([*arguments, f"--summary_store={tmp_path / 'two.db'}", "--nproc=2"]) == 0
    output = capsys.readouterr().out
    assert "process 0 of 2: hierarchical summaries of tiny" in output
    assert "process 1 of 2: hierarchical summaries of tiny" in output
    made = summary_calls(output)
    assert len(made) == 2 and all(made)
    assert main([*arguments, f"--summary_store={tmp_path / 'one.db'}"]) == 0
    (alone,) = summary_calls(capsys.readouterr().out)
    two, one = SummaryStore(tmp_path / "two.db"), SummaryStore(tmp_path / "one.db")
    assert sum(made) == alone == len(two) == len(one)  # every summary once, none left out
    keys = lambda store: {row[0] for row in store.connection.execute("SELECT key FROM summaries")}  # noqa: E731
    assert keys(two) == keys(one)


def dying_config(overrides: dict, local_rank: int):
    """The config of a --nproc process, except that process 1 dies at once, as a killed process would."""
    if local_rank == 1:
        os._exit(9)
    from recbole_trsr.cli import share_config

    return share_config("LLMTRSR", "tiny", [], overrides, local_rank)


def test_a_process_that_dies_ends_the_run_naming_it(tiny_llm_overrides):
    from recbole_trsr.runner import build_config
    from recbole_trsr.summary.commands import precompute_in_processes

    overrides = {**tiny_llm_overrides, "nproc": "2", "summary_share_timeout": "600"}
    config = build_config("LLMTRSR", "tiny", [], overrides)
    started = time.monotonic()
    with pytest.raises(UserInputError, match="summary process 1 of 2: ended with exit status 9; the other processes"):
        precompute_in_processes(config, functools.partial(dying_config, overrides))
    assert time.monotonic() - started < 120  # not the 600 s that process 0 would wait for process 1's summaries


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["--nproc=0", "--precompute_summaries"], "nproc must be 1 or more, not 0"),
        (["--nproc=2", "--offset=3", "--world_size=4", "--precompute_summaries"], "offset 3 with nproc 2 does not fit"),
        (["--nproc=two", "--precompute_summaries"], "nproc must be a whole number, not 'two'"),
    ],
)
def test_bad_process_settings_end_in_one_line(capsys, tiny_llm_overrides, settings, message):
    from recbole_trsr.cli import main

    assert main(["--model=LLMTRSR", "--dataset=tiny", *as_arguments(tiny_llm_overrides), *settings]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def open_and_write(path, n: int, start) -> None:
    start.wait()  # every process opens the new store at the same moment
    store = SummaryStore(path)
    store.put_many({f"k{n}": StoredSummary(f"s{n}", 1, 1)})
    store.close()


def test_processes_that_open_a_new_store_at_once_all_get_it_whole(tmp_path):
    context = multiprocessing.get_context("fork")  # fast to start: the race is in the first milliseconds
    for round_ in range(40):  # the old failure (an at-once "locked" while switching to WAL) came in ~1% of rounds
        path = tmp_path / f"new-{round_}.db"
        start = context.Barrier(6)
        workers = [context.Process(target=open_and_write, args=(path, n, start)) for n in range(6)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert [worker.exitcode for worker in workers] == [0] * 6
        assert len(SummaryStore(path)) == 6
    assert not list(tmp_path.glob("*.corrupt-*"))  # nobody took a half-made store for a damaged one


def test_a_store_another_process_keeps_locked_ends_in_one_line_and_stays_in_place(tmp_path, monkeypatch):
    path = tmp_path / "held.db"
    SummaryStore(path).close()
    holder = sqlite3.connect(path)
    holder.execute("BEGIN EXCLUSIVE")  # as a process in the middle of writing would, for longer than the wait
    monkeypatch.setattr(store_module, "LOCK_TIMEOUT_S", 0.5)
    started = time.monotonic()
    with pytest.raises(UserInputError, match=r"summary store .*held.db cannot be opened \(database is locked\)$"):
        SummaryStore(path)
    assert time.monotonic() - started < 10  # it gave up after the wait, not after retrying forever
    holder.rollback()
    holder.close()
    assert len(SummaryStore(path)) == 0 and not list(tmp_path.glob("*.corrupt-*"))
