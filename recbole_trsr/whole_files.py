"""Files written beside their names and renamed into place, so that a run stopped while writing keeps the last
whole version (a checkpoint that a resume reads, a table that ``--add_to`` reads); a write that fails (a full disk)
removes its half-written file and ends the run in one line that names the file and the space left."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

from recbole_trsr.errors import UserInputError

STAGING_SUFFIX = ".saving"


class WriteFailed(UserInputError):
    """A file the run writes could not be written, most often for a full disk. One line says which, and what the
    run kept; the exit status is 1, not bad input's 2."""

    status = 1


def write_failure(path, error: BaseException, doing: str = "writing") -> WriteFailed:
    """The one-line error of a failed write: the writer's reason, and the space left on the disk, which tells a full
    disk from other causes (torch's zip writer says only that a write came out short)."""
    detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error).strip()
    detail = (detail.splitlines() or [type(error).__name__])[0][:160]
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


@contextlib.contextmanager
def replaced(path):
    """A staging path to write; once the block ends without an error, it replaces ``path``. A write that fails
    (OSError, or torch's RuntimeError for a full disk) leaves ``path`` as it was and raises WriteFailed."""
    staging = f"{path}{STAGING_SUFFIX}"
    try:
        yield staging
        os.replace(staging, path)
    except (OSError, RuntimeError) as error:
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
