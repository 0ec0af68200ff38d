"""Blocks, summaries (hierarchical and recurrent), reuse through the store, and no leakage past the target."""

from __future__ import annotations

import http.server
import sqlite3
import threading

import pytest

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.generation import Generated, GenerationSettings
from recbole_trsr.summary.backends import TransformersBackend
from recbole_trsr.summary.blocks import plan_history
from recbole_trsr.summary.store import StoredSummary, SummaryStore
from recbole_trsr.summary.summarizer import Summarizer

HISTORY = [f"i{n}" for n in range(23)]


class RecordingBackend:
    """Echoes a digest of each prompt, so tests can see which prompts (and so which items) were used."""

    identity = "recording"

    def __init__(self, empty_for=()):
        self.prompts = []
        self.empty_for = empty_for

    def generate(self, prompts, progress=True):
        start = len(self.prompts)
        self.prompts += prompts
        return [
            Generated("" if any(word in p for word in self.empty_for) else f"S{start + n}", 5, 3)
            for n, p in enumerate(prompts)
        ]


def item_text(token):
    return f"title: product {token}"


@pytest.mark.parametrize("length", range(0, 24))
def test_every_item_before_the_target_is_summarized_or_shown(length):
    history = HISTORY[:length]
    for mode in ("hierarchical", "recurrent"):
        plan = plan_history(history, block_size=5, max_blocks=50, recent_k=3, mode=mode)
        covered = {item for block in plan.summarized for item in history[block * 5 : block * 5 + 5]}
        assert covered | set(plan.recent) == set(history)
        assert plan.complete_blocks == length // 5
        assert len(plan.recent) >= min(3, length)


def test_hierarchical_window_and_none_mode():
    plan = plan_history(HISTORY, block_size=5, max_blocks=2, recent_k=3, mode="hierarchical")
    assert plan.summarized == (2, 3) and plan.recent == ("i20", "i21", "i22")
    assert plan_history(HISTORY, 5, 2, 3, "recurrent").summarized == (0, 1, 2, 3)
    none = plan_history(HISTORY, 5, 2, 3, "none")
    assert none.summarized == () and none.recent == ("i20", "i21", "i22")
    with pytest.raises(ValueError, match="summary_mode 'flat'"):
        plan_history(HISTORY, 5, 2, 3, "flat")


def test_prefixes_share_block_summaries_and_never_see_later_items(tmp_path):
    backend = RecordingBackend()
    summarizer = Summarizer(backend, SummaryStore(tmp_path / "s.db"), item_text, "hierarchical", progress=False)
    target = 17  # the summary for history[:17] covers blocks 0..2 only
    prefix = HISTORY[:target]
    counts = {plan_history(prefix[:n], 5, 5, 3, "hierarchical").complete_blocks for n in range(1, target + 1)}
    result = summarizer.summarize({"u": (prefix, counts)})
    assert set(result) == {("u", 1), ("u", 2), ("u", 3)}
    assert all(f"product i{n}\n" not in "\n".join(backend.prompts) + "\n" for n in range(15, 23))
    assert summarizer.stats.calls == 3 + 2  # three blocks, two merges: two calls per block at most
    assert result[("u", 1)].startswith("S")  # one block needs no merge


def test_recurrent_chain_reuses_every_step(tmp_path):
    backend = RecordingBackend()
    summarizer = Summarizer(backend, SummaryStore(tmp_path / "s.db"), item_text, "recurrent", progress=False)
    result = summarizer.summarize({"u": (HISTORY, {1, 2, 3, 4}), "v": (HISTORY[:10], {1, 2})})
    assert summarizer.stats.calls == 4  # the same history: v's chain is u's
    assert result[("u", 2)] == result[("v", 2)]
    assert "[Summary]\n" + result[("u", 1)] in backend.prompts[1]  # step 2 updates step 1's summary
    assert "product i5" in backend.prompts[1] and "product i4" not in backend.prompts[1]


def test_a_second_run_makes_no_call(tmp_path):
    for mode in ("hierarchical", "recurrent"):
        first_backend, second_backend = RecordingBackend(), RecordingBackend()
        first = Summarizer(first_backend, SummaryStore(tmp_path / f"{mode}.db"), item_text, mode, progress=False)
        expected = first.summarize({"u": (HISTORY, {1, 2, 3, 4})})
        second = Summarizer(second_backend, SummaryStore(tmp_path / f"{mode}.db"), item_text, mode, progress=False)
        assert second.summarize({"u": (HISTORY, {1, 2, 3, 4})}) == expected
        assert second_backend.prompts == [] and second.stats.reused == first.stats.calls


def test_changed_item_text_or_template_asks_again(tmp_path):
    store = SummaryStore(tmp_path / "s.db")
    Summarizer(RecordingBackend(), store, item_text, "recurrent", progress=False).summarize({"u": (HISTORY, {2})})
    changed = Summarizer(RecordingBackend(), store, lambda t: item_text(t) + "!", "recurrent", progress=False)
    changed.summarize({"u": (HISTORY, {2})})
    assert changed.stats.calls == 2 and changed.stats.reused == 0


def test_empty_generation_is_stored_and_counted(tmp_path):
    backend = RecordingBackend(empty_for=["product i5"])
    summarizer = Summarizer(backend, SummaryStore(tmp_path / "s.db"), item_text, "hierarchical", progress=False)
    result = summarizer.summarize({"u": (HISTORY, {2})})
    assert summarizer.stats.empty == 1 and ("u", 2) in result


def test_unreadable_store_is_set_aside_and_rebuilt(tmp_path, caplog):
    path = tmp_path / "s.db"
    path.write_bytes(b"this is not a database at all" * 100)
    store = SummaryStore(path)
    store.put_many({"k": StoredSummary("text", 1, 1)})
    assert len(store) == 1
    assert "moved to" in caplog.text and list(tmp_path.glob("s.db.corrupt-*"))
    with pytest.raises(UserInputError, match="unreadable"):
        path2 = tmp_path / "t.db"
        path2.write_bytes(b"garbage" * 100)
        SummaryStore(path2, rebuild=False)


def test_foreign_sqlite_file_is_not_taken_for_a_store(tmp_path):
    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE people (name TEXT)")
    connection.commit()
    connection.close()
    with pytest.raises(UserInputError, match="not a recbole-trsr summary store"):
        SummaryStore(path, rebuild=False)


def test_real_model_backend(tmp_path, tiny_lm):
    model, tokenizer = tiny_lm
    backend = TransformersBackend(model, tokenizer, GenerationSettings(max_new_tokens=6, batch_size=4), "tiny")
    summarizer = Summarizer(backend, SummaryStore(tmp_path / "s.db"), item_text, "hierarchical", progress=False)
    result = summarizer.summarize({"u": (HISTORY, {1, 2}), "v": (HISTORY[5:], {1})})
    # u's blocks 0 and 1 and their merge; v's block 0 holds u's block 1 items, so it is the same call
    assert summarizer.stats.calls == 3
    assert set(result) == {("u", 1), ("u", 2), ("v", 1)}
    assert 0 < summarizer.stats.new_tokens <= 6 * summarizer.stats.calls


KILLED_RUN = """
import hashlib, sys, time
sys.path.insert(0, {root!r})
from recbole_trsr.llm.generation import Generated
from recbole_trsr.summary.store import SummaryStore
from recbole_trsr.summary.summarizer import Summarizer

class SlowBackend:
    identity = "recording"
    def generate(self, prompts, progress=True):
        time.sleep(0.3)
        return [Generated("summary " + hashlib.md5(p.encode()).hexdigest(), 5, 3) for p in prompts]

histories = {{f"u{{n}}": ([f"i{{n}}-{{k}}" for k in range(20)], {{1, 2, 3, 4}}) for n in range(10)}}
summarizer = Summarizer(SlowBackend(), SummaryStore({store!r}), lambda t: "title: product " + t, "hierarchical",
                        chunk_size=2, progress=False)
summarizer.summarize(histories)
"""


def test_a_killed_run_loses_nothing_it_finished(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    store_path = tmp_path / "s.db"
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN.format(root=str(Path(__file__).resolve().parents[1]), store=str(store_path)))
    process = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 120
    stored = 0
    while time.time() < deadline and stored < 6:
        time.sleep(0.2)
        if store_path.exists():
            try:
                stored = len(SummaryStore(store_path, rebuild=False))
            except Exception:
                stored = 0
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    finished = len(SummaryStore(store_path, rebuild=False))
    total = 10 * (4 + 3)  # ten users: four blocks and three merges each
    assert 6 <= finished < total

    backend = RecordingBackend()
    resumed = Summarizer(backend, SummaryStore(store_path), item_text, "hierarchical", progress=False)
    histories = {f"u{n}": ([f"i{n}-{k}" for k in range(20)], {1, 2, 3, 4}) for n in range(10)}
    resumed.summarize(histories)
    assert resumed.stats.reused == finished  # nothing finished is asked for again
    assert resumed.stats.calls == total - finished


def free_local_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_server_keeps_what_was_done(tmp_path):
    from recbole_trsr.summary.backends import OpenAICompatibleBackend

    server = OpenAICompatibleBackend(f"http://127.0.0.1:{free_local_port()}", "m", GenerationSettings(), timeout=5)
    local = RecordingBackend()

    class FailsAfterFirstChunk:
        identity = "m"

        def generate(self, prompts, progress=True):
            return local.generate(prompts) if not local.prompts else server.generate(prompts)

    store = SummaryStore(tmp_path / "s.db")
    summarizer = Summarizer(FailsAfterFirstChunk(), store, item_text, "recurrent", chunk_size=1, progress=False)
    with pytest.raises(UserInputError, match=r"unreachable .*; the 1 summaries generated before it are kept in"):
        summarizer.summarize({"u": (HISTORY, {3})})
    assert len(store) == 1


class StandIn(http.server.BaseHTTPRequestHandler):
    """A stand-in summary server's handler: quiet, answering with ``reply``."""

    def reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def serving(handler, server_class=http.server.HTTPServer):
    class Listening(server_class):
        request_queue_size = 64  # socketserver's 5 would drop requests that arrive together, retried a second later

    server = Listening(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_server_that_refuses_a_request_is_quoted():
    from recbole_trsr.summary.backends import OpenAICompatibleBackend

    class Refusing(StandIn):
        def do_POST(self):  # what llama.cpp's server answers when a prompt overflows a slot's context
            self.reply(500, b'{"error":{"code":500,"message":"Context size has been exceeded."}}')

    server = serving(Refusing)
    try:
        backend = OpenAICompatibleBackend(f"http://127.0.0.1:{server.server_port}", "m", GenerationSettings())
        with pytest.raises(UserInputError, match="answered HTTP 500: .*Context size has been exceeded"):
            backend.generate(["a prompt"])
    finally:
        server.shutdown()


def test_a_server_gets_summary_server_concurrency_requests_at_once(tiny_llm_overrides):
    import json

    from recbole_trsr.runner import build_config
    from recbole_trsr.summary.factory import build_summarizer

    in_flight, most, arrivals = [0], [0], [0]
    arrived = threading.Condition()

    class Slow(StandIn):
        def do_POST(self):  # answers requests in waves of 24 (or after 5 s), as vLLM would batch them
            self.rfile.read(int(self.headers["Content-Length"]))
            with arrived:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
                arrivals[0] += 1
                wave_end = -(-arrivals[0] // 24) * 24
                arrived.notify_all()
                arrived.wait_for(lambda: arrivals[0] >= wave_end, timeout=5)
            with arrived:
                in_flight[0] -= 1
            self.reply(200, json.dumps({"choices": [{"message": {"content": "likes tea"}}], "usage": {}}).encode())

    server = serving(Slow, http.server.ThreadingHTTPServer)
    settings = {
        **tiny_llm_overrides,
        "summary_backend": "server",
        "summary_server_url": f"http://127.0.0.1:{server.server_port}",
        "summary_server_model": "m",
        "summary_server_concurrency": "24",
    }
    try:
        backend = build_summarizer(build_config("LLMTRSR", "tiny", [], settings), {}).backend
        assert backend.settings.batch_size == 24  # auto: every request slot gets a prompt
        answers = backend.generate([f"prompt {number}" for number in range(48)])
        assert [answer.text for answer in answers] == ["likes tea"] * 48 and most[0] == 24
    finally:
        server.shutdown()


@pytest.mark.skipif(
    not __import__("os").environ.get("RECBOLE_TRSR_SERVER_URL"),
    reason="set RECBOLE_TRSR_SERVER_URL (and RECBOLE_TRSR_SERVER_MODEL) to an OpenAI-compatible server",
)
def test_real_server(tmp_path):
    import os

    from recbole_trsr.summary.backends import OpenAICompatibleBackend

    backend = OpenAICompatibleBackend(
        os.environ["RECBOLE_TRSR_SERVER_URL"],
        os.environ.get("RECBOLE_TRSR_SERVER_MODEL", "default"),
        GenerationSettings(max_new_tokens=48),
    )
    summarizer = Summarizer(backend, SummaryStore(tmp_path / "s.db"), item_text, "recurrent", progress=False)
    result = summarizer.summarize({"u": (HISTORY, {2})})
    assert result[("u", 2)] and summarizer.stats.calls == 2 and summarizer.stats.new_tokens > 0


def test_item_without_text_still_makes_a_block(tmp_path):
    backend = RecordingBackend()
    texts = lambda token: "" if token == "i1" else item_text(token)  # noqa: E731
    summarizer = Summarizer(backend, SummaryStore(tmp_path / "s.db"), texts, "recurrent", progress=False)
    result = summarizer.summarize({"u": (HISTORY, {1})})
    assert result[("u", 1)] and "\n2. \n3. title: product i2" in backend.prompts[0]


def test_block_longer_than_the_context_window(tmp_path, tiny_lm):
    model, tokenizer = tiny_lm
    backend = TransformersBackend(model, tokenizer, GenerationSettings(max_new_tokens=8), "tiny")
    long_text = lambda token: f"title: {token} " + "very long description " * 200  # noqa: E731
    summarizer = Summarizer(backend, SummaryStore(tmp_path / "s.db"), long_text, "hierarchical", progress=False)
    with pytest.raises(UserInputError, match="exceeds the model's context window of 2048"):
        summarizer.summarize({"u": (HISTORY, {1})})


def test_partial_last_block_is_a_block_of_its_own():
    plan = plan_history(HISTORY[:7], block_size=5, max_blocks=5, recent_k=3, mode="hierarchical", partial=True)
    assert plan.complete_blocks == 2 and plan.summarized == (0, 1) and plan.recent == ("i4", "i5", "i6")
    assert plan_history(HISTORY[:10], 5, 5, 3, "hierarchical", partial=True).complete_blocks == 2


def test_always_merge_merges_a_single_block(tmp_path):
    backend = RecordingBackend()
    summarizer = Summarizer(
        backend, SummaryStore(tmp_path / "s.db"), item_text, "hierarchical", progress=False, always_merge=True
    )
    result = summarizer.summarize({"u": (HISTORY[:5], {1})})
    assert summarizer.stats.calls == 2 and result[("u", 1)] == "S1"  # the merge's text, not the block's


def paper_block_prompt(sentences):  # preprocess/amazon/summary_generation.py, summary_generation_hierarchical
    instruction = """
            Given the above historical purchase data of a user, including the titles, descriptions, and attributes of the items they have bought, craft a concise summary that captures the user's preferences, personality, and shopping habits. \n
            """  # noqa: E501
    return "### User:\n" + instruction + "[historical purchase data]:\n" + "\n".join(sentences) + "\n### Assistant:\n"


def paper_merge_prompt(block_summary_list):
    instruction = """
        Given a series of user preferences summaries arranged in chronological order, generate a concise summary that encapsulates the user's overall preference. Note that the newly generated summary of user preferences should be consistent with the format of the given summaries.\n
        """  # noqa: E501
    summaries = [f"[Preference Summary {j}:\n]" + block_summary_list[j] for j in range(len(block_summary_list))]
    return "### User:\n" + instruction + "\n".join(summaries) + "\n### Assistant:\n"


def test_the_paper_preset_summarizes_as_the_papers_code(tmp_path, tiny_overrides):
    from recbole_trsr.config import TRSRConfig
    from recbole_trsr.model import LLMTRSR
    from recbole_trsr.summary import factory

    config = TRSRConfig(LLMTRSR, "tiny", None, {**tiny_overrides, "preset": "paper"})
    assert config["summary_chat_template"] is False
    backend = RecordingBackend()
    summarizer = Summarizer(
        backend,
        SummaryStore(tmp_path / "s.db"),
        item_text,
        "hierarchical",
        prompts=factory.summary_prompts(config),
        progress=False,
        always_merge=config["summary_always_merge"],
    )
    history = HISTORY[:7]  # a block of 5 and a partial block of 2
    plan = plan_history(history, 5, 5, 5, "hierarchical", partial=config["summary_partial_block"])
    result = summarizer.summarize({"u": (history, {plan.complete_blocks})})
    blocks = [[item_text(token) for token in history[:5]], [item_text(token) for token in history[5:]]]
    block_prompts = [paper_block_prompt(blocks[0]), paper_block_prompt(blocks[1])]
    assert sorted(backend.prompts[:2]) == sorted(block_prompts)
    texts = [f"S{backend.prompts.index(prompt)}" for prompt in block_prompts]  # the backend's answer to each
    assert backend.prompts[2] == paper_merge_prompt(texts)
    assert result[("u", 2)] == "S2"
