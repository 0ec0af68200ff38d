"""Peak memory of one stretch of work inside a long-lived process (several models run one after another)."""

from __future__ import annotations

import ctypes
import gc
import resource

import torch

CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"


class PeakMemory:
    """Context manager: peak resident memory (and peak CUDA memory) while the block ran.

    On Linux the kernel's high-water mark is reset on entry (writing 5 to /proc/self/clear_refs), so the
    peak belongs to the block alone. Elsewhere the process-wide peak is reported and ``per_block`` is False.
    """

    def __init__(self):
        self.rss_mb = 0.0
        self.cuda_mb = 0.0
        self.per_block = False

    def __enter__(self):
        release_freed_memory()  # what earlier models freed must not count as this block's resident memory
        try:
            with open(CLEAR_REFS, "w") as stream:
                stream.write("5")
            self.per_block = True
        except OSError:
            self.per_block = False
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        return self

    def __exit__(self, *exc_info):
        self.rss_mb = high_water_mark_mb()
        if torch.cuda.is_available():
            self.cuda_mb = torch.cuda.max_memory_allocated() / 2**20
        return False


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3


def keep_freed_memory() -> None:
    """Let glibc keep freed blocks of up to 32 MB for reuse instead of unmapping them (a no-op elsewhere).

    By default glibc maps large blocks afresh and trims the heap on free, so every forward pass of an LLM on
    the CPU faults its activations in again: 2 to 4 x 10^5 page faults, 6 to 10 % of the time, in a scoring
    batch of the default model. ``release_freed_memory`` still hands freed memory back when asked.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's upper limit for this threshold
    mallopt(M_TRIM_THRESHOLD, 1 << 30)
    mallopt(M_TOP_PAD, 64 << 20)


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back to the kernel (glibc's malloc_trim; a no-op elsewhere)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def high_water_mark_mb() -> float:
    try:
        with open(STATUS) as stream:
            for line in stream:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
