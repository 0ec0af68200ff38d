"""Files written beside their names and renamed into place, so that a run stopped while writing keeps the last
whole version (a checkpoint that a resume reads, a table that ``--add_to`` reads)."""

from __future__ import annotations

import contextlib
import os
import tempfile

from recbole_trsr.errors import UserInputError

STAGING_SUFFIX = ".saving"


@contextlib.contextmanager
def replaced(path):
    """A staging path to write; once the block ends without an error, it replaces ``path``."""
    staging = f"{path}{STAGING_SUFFIX}"
    yield staging
    os.replace(staging, path)


def writable_folder(folder, refusal: str) -> None:
    """Make ``folder`` and write a file in it, now: a folder that takes no files (a read-only mount, one that
    another user owns) passed the makedirs and failed the run at its first save, after training. Otherwise one
    line: ``refusal``, then the system's reason."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise UserInputError(f"{refusal}: {error.strerror}") from None
