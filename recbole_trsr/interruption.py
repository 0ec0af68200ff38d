"""What an interrupted comparison leaves, said in one line: where its rows so far are, and the arguments that go on
from the resume points of the models that were still training (one or several, under parallel_models)."""

from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path

from recbole_trsr.model.adapter_checkpoint import LAST
from recbole_trsr.resumable_trainer import LAST_SUFFIX, resume_point_of

CLOCK_SLACK_S = 2.0  # file times have coarse resolution on some file systems


class Stopped(KeyboardInterrupt):
    """SIGTERM (``kill``, a job scheduler, ``timeout``), raised where the run is, as Ctrl-C raises KeyboardInterrupt."""

    status = 128 + signal.SIGTERM


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a comparison, with the line that tells the user how to go on."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message, self.status = message, status


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """As a shell reports a command ended by the signal: 130 for SIGINT, 143 for SIGTERM."""
    return getattr(interrupt, "status", 128 + signal.SIGINT)


@contextlib.contextmanager
def sigterm_stops_the_run():
    """Within the block, SIGTERM stops the run as Ctrl-C does: the models' processes are stopped with it (else they
    would train on alone), and one line says how to go on. Signal handlers belong to the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Stopped()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def resume_points_since(checkpoint_dir: str, started: float, finished_checkpoints: list[str]) -> list[str]:
    """Resume points written since ``started``, except those of runs that finished: RecBole models'
    ``<Model>-<time>-last.pth`` and LLMTRSR's folders with a last save point."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return []
    finished = {str(Path(path)) for path in finished_checkpoints} | {
        str(resume_point_of(path)) for path in finished_checkpoints
    }
    since = started - CLOCK_SLACK_S
    files = [path for path in folder.glob(f"*{LAST_SUFFIX}") if path.stat().st_mtime >= since]
    folders = [path for path in folder.iterdir() if (path / LAST).is_dir() and (path / LAST).stat().st_mtime >= since]
    return sorted(str(path) for path in files + folders if str(path) not in finished)


def interruption_message(
    models: list[str], finished: list, table: str | None, resume_points: list[str], cause: str = "interrupted"
) -> str:
    """One line: why the run stopped, the rows so far and the arguments of the run that goes on (``finished``: the
    ModelRuns so far)."""
    done = {run.model for run in finished}
    unfinished = [model for model in models if model not in done]
    parts = [cause]
    if table:
        parts.append(f"rows so far in {table}")
    if unfinished:
        arguments = [f'--model="{",".join(unfinished)}"']
        if resume_points:
            arguments.append(f'--resume_from="{resume_points!r}"')
        if table:
            arguments.append(f"--add_to={table}")
        parts.append("to go on, run it again with " + " ".join(arguments))
    return "; ".join(parts)
