"""Progress of long work as log lines, for runs without progress bars (``show_progress: False``, logs to files)."""

from __future__ import annotations

import logging
import time

logger = logging.getLogger("recbole_trsr")

INTERVAL_SECONDS = 60.0


def duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"
    )


class ProgressLog:
    """Logs ``<what>: done/total (rate/s, elapsed, ETA)`` at most every ``interval`` seconds, and at the end."""

    def __init__(self, what: str, total: int, unit: str = "", interval: float = INTERVAL_SECONDS, enabled=True):
        self.what, self.total, self.unit, self.interval, self.enabled = what, total, unit, interval, enabled
        self.done = 0
        self.started = self.last = time.perf_counter()

    def update(self, count: int = 1, **details) -> None:
        self.done += count
        now = time.perf_counter()
        if self.enabled and (now - self.last >= self.interval or self.done >= self.total):
            self.last = now
            elapsed = now - self.started
            rate = self.done / elapsed if elapsed > 0 else 0.0
            eta = duration((self.total - self.done) / rate) if rate > 0 and self.total > self.done else "0m00s"
            extra = "".join(f", {key} {value}" for key, value in details.items())
            logger.info(
                f"{self.what}: {self.done}/{self.total}{self.unit} ({rate:.2f}{self.unit}/s, "
                f"{duration(elapsed)} elapsed, ETA {eta}{extra})"
            )
