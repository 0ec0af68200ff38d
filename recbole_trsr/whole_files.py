"""Files written beside their names and renamed into place, so that a run stopped while writing keeps the last
whole version (a checkpoint that a resume reads, a table that ``--add_to`` reads); a write that fails (a full disk)
removes its half-written file and ends the run in one line that names the file and the space left."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from safetensors import SafetensorError

from recbole_trsr.errors import UserInputError, first_line

STAGING_SUFFIX = ".saving"
RETIRED_SUFFIX = ".old"
# How each writer reports a full disk: Python, torch's zip writer (a RuntimeError), safetensors (its own error).
WRITE_ERRORS = (OSError, RuntimeError, SafetensorError)


class WriteFailed(UserInputError):
    """A file the run writes could not be written, most often for a full disk. One line says which, and what the
    run kept; the exit status is 1, not bad input's 2."""

    status = 1


def write_failure(path, error: BaseException, doing: str = "writing") -> WriteFailed:
    """The one-line error of a failed write: the writer's reason, and the space left on the disk, which tells a full
    disk from other causes (torch's zip writer says only that a write came out short)."""
    detail = error.strerror if isinstance(error, OSError) and error.strerror else first_line(error)
    try:
        free = f"; {shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free / 2**20:.1f} MiB free on its disk"
    except OSError:
        free = ""
    return WriteFailed(f"{doing} {path} failed ({detail}{free})")


def remove(path) -> None:
    """A half-written file or folder, gone: left behind, it would take the space a full disk needs."""
    if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.remove(path)


def swap_in(staging, path) -> None:
    """``staging`` in place of ``path``; a folder, which cannot replace another in one step, via ``<path>.old``."""
    if not (os.path.isdir(staging) and os.path.exists(path)):
        os.replace(staging, path)
        return
    retired = f"{path}{RETIRED_SUFFIX}"
    remove(retired)
    os.replace(path, retired)
    os.replace(staging, path)
    remove(retired)


@contextlib.contextmanager
def replaced(path):
    """A staging path to write, a file or a folder; once the block ends without an error, it replaces ``path``. A
    write that fails (WRITE_ERRORS) leaves ``path`` as it was and raises WriteFailed."""
    staging = f"{path}{STAGING_SUFFIX}"
    remove(staging)  # a half-written one, from a run killed while saving
    try:
        yield staging
        swap_in(staging, path)
    except WRITE_ERRORS as error:
        failure = write_failure(path, error)  # the space left before the half-written file goes
        remove(staging)
        raise failure from error
    except BaseException:
        remove(staging)
        raise


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
