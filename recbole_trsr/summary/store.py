"""A persistent, content-addressed store of LLM outputs (summaries), in SQLite from the standard library.

A summary's key is a hash of everything its text depends on: the kind of call, the prompt (which holds the
template, the items' text and any earlier summary), the model and the generation settings. Changing any of
them asks for new summaries; changing none finds the old ones. Each batch is committed as soon as it is
generated, so a run that is killed loses at most the batch in flight, and a second process working on the same
store reads it again before each batch, skipping what the first has finished.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from recbole_trsr.errors import UserInputError
from recbole_trsr.whole_files import writable_folder, write_failure

logger = logging.getLogger(__name__)

APPLICATION_ID = 0x54525352  # "TRSR": marks an SQLite file as this store
SCHEMA_VERSION = 1
LOCK_TIMEOUT_S = 60  # how long a process waits for another's lock on the store
_jitter = random.Random()  # its own generator: backing off must not move the seeded global one
SCHEMA = """
CREATE TABLE IF NOT EXISTS summaries (
    key TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    new_tokens INTEGER NOT NULL,
    created REAL NOT NULL
)
"""


def summary_key(**parts) -> str:
    """A stable key for a summary from the parts its text depends on (JSON-serializable values)."""
    payload = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class StoredSummary:
    text: str
    prompt_tokens: int
    new_tokens: int


def make_store_folder(path: Path) -> None:
    writable_folder(path.parent, f"summary_store '{path}': its folder cannot be made or written")


class SummaryStore:
    """Summaries by key. A file that is not an SQLite database, or one written by another program, is
    set aside (renamed ``<name>.corrupt-<time>``) and a new store is started, with a warning saying so;
    ``rebuild=False`` raises a one-line error instead."""

    def __init__(self, path: str | os.PathLike, rebuild: bool = True):
        self.path = Path(path)
        make_store_folder(self.path)
        try:
            self.connection = self._open_when_free()
        except sqlite3.OperationalError as error:  # locked or unreachable: not damage, so nothing is moved aside
            raise UserInputError(f"summary store {self.path} cannot be opened ({error})") from None
        except (sqlite3.DatabaseError, ValueError) as error:
            if not rebuild:
                raise UserInputError(f"summary store {self.path} is unreadable ({error}); move it away") from None
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            os.replace(self.path, aside)
            logger.warning(f"summary store {self.path} was unreadable ({error}); moved to {aside}, starting anew")
            self.connection = self._open_when_free()

    def _open_when_free(self) -> sqlite3.Connection:
        # SQLite answers "locked" at once, without waiting, where waiting could deadlock: two processes that both
        # switch a new store to WAL, or one that switches while another commits. Backing off and starting over
        # (all locks let go) resolves it.
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                return self._open()
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(_jitter.uniform(0.01, 0.1))

    def _open(self) -> sqlite3.Connection:
        # Several processes may open (and create) one store at once: each waits for the others' locks, and the
        # check-and-create below runs in one write transaction, so that no process sees a half-made store.
        connection = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S)
        try:
            connection.execute("BEGIN IMMEDIATE")
            application_id = connection.execute("PRAGMA application_id").fetchone()[0]
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if application_id == 0 and not tables:  # a new file
                connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            elif application_id != APPLICATION_ID:
                raise ValueError("not a recbole-trsr summary store")
            elif connection.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                raise ValueError("written by another version of recbole-trsr")
            else:  # damage past the first page shows only when those pages are read: check them all now
                problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
                if problems != ["ok"]:
                    raise ValueError(f"damaged: {problems[0]}")
            connection.execute(SCHEMA)
            connection.commit()
            connection.execute("PRAGMA journal_mode = WAL")  # readers and a killed writer leave it intact
        except BaseException:
            connection.close()
            raise
        return connection

    def get_many(self, keys) -> dict[str, StoredSummary]:
        found = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), 500):  # SQLite's bound-parameter limit
            chunk = keys[start : start + 500]
            placeholders = ",".join("?" * len(chunk))
            query = f"SELECT key, text, prompt_tokens, new_tokens FROM summaries WHERE key IN ({placeholders})"
            try:
                rows = self.connection.execute(query, chunk).fetchall()
            except sqlite3.OperationalError as error:  # WAL's shared memory file cannot grow on a full disk
                raise write_failure(self.path, error, "reading") from error
            for key, text, prompt_tokens, new_tokens in rows:
                found[key] = StoredSummary(text, prompt_tokens, new_tokens)
        return found

    def put_many(self, items: dict[str, StoredSummary]) -> None:
        """Store and commit at once. A write that fails (a full disk) rolls back this batch alone."""
        now = time.time()
        try:
            with self.connection:
                self.connection.executemany(
                    "INSERT OR REPLACE INTO summaries VALUES (?, ?, ?, ?, ?)",
                    [(key, s.text, s.prompt_tokens, s.new_tokens, now) for key, s in items.items()],
                )
        except sqlite3.OperationalError as error:
            raise write_failure(self.path, error) from error

    def __len__(self) -> int:
        return self.connection.execute("SELECT COUNT(*) FROM summaries").fetchone()[0]

    def close(self) -> None:
        self.connection.close()
