"""The next batch's prompts, built on a thread while the GPU works on this batch.

Prompt building (summaries, recent items, the counts, the tokenizer) costs about 0.5 ms of host time per training
row (benchmarks/RESULTS.md, 2026-11-27). A GPU that waits on it cannot train more than about 2,000 rows/s, and
amazon's 20 minutes ask for about 1,500. On CUDA, autograd runs the backward in its own device threads with the
GIL released, so a Python thread can build the next batch meanwhile. The thread is started at the backward, not
earlier: during the forward the main thread launches kernels from Python, and would queue behind the GIL.

Scoring has the same cap: about 0.11 ms of prompts per candidate on this project's CPU, under 10,000 candidates/s.
There the thread builds the next batch's prompts while the main thread waits for this batch's scores, in torch
calls that release the GIL. Neither overlap is measured on a GPU yet (benchmarks/gpu_session.sh does). On a CPU the
model's arithmetic already takes every core, so ``auto`` leaves the thread off there.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import torch

from recbole_trsr.errors import UserInputError


def prompt_prefetch(config, device) -> bool:
    """``prompt_prefetch`` as given, or for ``auto`` whether ``device`` is a GPU."""
    value = config["prompt_prefetch"]
    if value == "auto":
        return torch.device(device).type == "cuda"
    if not isinstance(value, bool):
        raise UserInputError(f"prompt_prefetch must be True, False or auto, not {value!r}")
    return value


class Deferred:
    """A job run where its result is asked for: the same loop, without the thread."""

    def __init__(self, function, argument):
        self.function, self.argument = function, argument

    def result(self):
        return self.function(self.argument)


class PromptsAhead:
    """Jobs on one worker thread, one at a time, or deferred when off. A prompt that the main thread builds
    meanwhile (the parts of a scoring batch that RecBole splits) waits for the model's lock (``LLMTRSR.building``)."""

    def __init__(self, enabled: bool):
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="prompts-ahead") if enabled else None

    def start(self, function, argument) -> Future | Deferred:
        return self.pool.submit(function, argument) if self.pool else Deferred(function, argument)

    def close(self) -> None:
        """Waits for a job still running (an epoch that ended in an error), so that the evaluation after it does not
        build prompts beside it."""
        if self.pool:
            self.pool.shutdown(wait=True)


def prefetched(batches, build, ahead: PromptsAhead):
    """``batches`` in order, each once ``build(batch)`` has finished, with the next batch's build started before it
    is yielded: the consumer works on one batch while the thread builds for the next. Batches are fetched on
    the caller's thread, in their order, as without the thread."""
    batches = iter(batches)
    upcoming = next(batches, None)
    job = ahead.start(build, upcoming) if upcoming is not None else None
    while upcoming is not None:
        job.result()
        current, upcoming = upcoming, next(batches, None)
        job = ahead.start(build, upcoming) if upcoming is not None else None
        yield current
