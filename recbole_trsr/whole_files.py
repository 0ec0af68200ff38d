"""Files written beside their names and renamed into place, so that a run stopped while writing keeps the last
whole version (a checkpoint that a resume reads, a table that ``--add_to`` reads)."""

from __future__ import annotations

import contextlib
import os

STAGING_SUFFIX = ".saving"


@contextlib.contextmanager
def replaced(path):
    """A staging path to write; once the block ends without an error, it replaces ``path``."""
    staging = f"{path}{STAGING_SUFFIX}"
    yield staging
    os.replace(staging, path)
