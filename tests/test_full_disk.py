"""A disk that fills during a run: one line names the file and the space left, exit status 1, the half-written file
is gone, the last whole version stays, and the line says how to go on.

A full file system needs root to mount, so the writers here fail as each does on a full disk: torch's zip writer
with a RuntimeError, Python with ENOSPC, safetensors with its own error, SQLite with "database or disk is full"
(each message as a 300 KB tmpfs gave it).
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from recbole_trsr.model.adapter_checkpoint import save
from recbole_trsr.summary.store import SummaryStore
from recbole_trsr.whole_files import WriteFailed, replaced
from tests.test_hardening import tiny_run

TORCH_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 23616 vs 23510"


def test_a_failed_write_keeps_the_last_whole_file_and_leaves_no_half(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text("whole\n")
    with pytest.raises(WriteFailed) as failed, replaced(path) as staging:
        Path(staging).write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(failed.value).startswith(f"writing {path} failed (No space left on device; ")
    assert str(failed.value).endswith(" MiB free on its disk)")
    assert path.read_text() == "whole\n"
    assert list(tmp_path.iterdir()) == [path]


def test_a_failed_adapter_save_keeps_the_last_resume_point(tmp_path):
    last = tmp_path / "last"
    last.mkdir()
    (last / "adapter_model.safetensors").write_bytes(b"whole")

    class Adapter:
        def save_pretrained(self, folder):
            Path(folder).mkdir()
            (Path(folder) / "adapter_model.safetensors").write_bytes(b"half")
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    with pytest.raises(WriteFailed, match=r"writing .*last failed \(Error while serializing: I/O error: No space"):
        save(Adapter(), tmp_path, "last", {"step": 1})
    assert (last / "adapter_model.safetensors").read_bytes() == b"whole"
    assert list(tmp_path.iterdir()) == [last]


def test_a_full_disk_while_a_baseline_trains_says_how_to_go_on(capsys, tiny_overrides, monkeypatch):
    # It was a torch traceback, and the half-written resume point stayed, taking the space.
    torch_save = torch.save

    def full_at_the_first_resume_point(state, path, *args, **kwargs):
        if str(path).endswith("-last.pth.saving"):
            Path(path).write_bytes(b"PK\x03\x04 cut short")
            raise RuntimeError(TORCH_FULL)
        return torch_save(state, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_at_the_first_resume_point)
    code, error = tiny_run(capsys, tiny_overrides, model="SASRec,GRU4Rec")
    checkpoint_dir = Path(tiny_overrides["checkpoint_dir"])
    assert code == 1 and len(error.splitlines()) == 1, error
    assert error.startswith(f"run_recbole_trsr.py: error: writing {checkpoint_dir / 'SASRec-'}")
    assert f"-last.pth failed ({TORCH_FULL}; " in error and " MiB free on its disk); rows so far in " in error
    assert 'to go on, run it again with --model="SASRec,GRU4Rec" --add_to=' in error
    assert not list(checkpoint_dir.glob("*.saving"))


class FullDisk:
    """An SQLite connection on a disk with no room for the next batch."""

    def __init__(self, connection):
        self.connection = connection

    def __getattr__(self, name):
        return getattr(self.connection, name)

    def __enter__(self):
        return self.connection.__enter__()

    def __exit__(self, *exception):
        return self.connection.__exit__(*exception)

    def executemany(self, *arguments):
        raise sqlite3.OperationalError("database or disk is full")


def test_a_full_disk_while_summaries_are_made_keeps_those_stored(capsys, tiny_llm_overrides, monkeypatch):
    open_store = SummaryStore._open
    monkeypatch.setattr(SummaryStore, "_open", lambda self: FullDisk(open_store(self)))
    code, error = tiny_run(capsys, tiny_llm_overrides, "--precompute_summaries", model="LLMTRSR")
    store = Path(tiny_llm_overrides["checkpoint_dir"]) / "summaries.sqlite"
    assert code == 1 and len(error.splitlines()) == 1, error
    assert error.startswith(f"run_recbole_trsr.py: error: writing {store} failed (database or disk is full; ")
    assert error.endswith(f"; the summaries made so far are kept in {store}, and the same command makes the rest")
