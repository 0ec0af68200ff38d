"""Processes of a run: the ranks of ``--nproc`` (started, watched, and stopped together when one fails), and
the models of a comparison run side by side (``parallel_models``; each goes on whatever the others do).

A rank that dies mid-run leaves the others blocked in a collective until the group's timeout; watching the
processes from here ends the run at once instead, with one line that names the rank.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import time
import traceback

import torch

from recbole_trsr.errors import UserInputError

PR_SET_PDEATHSIG = 1  # linux/prctl.h
GRACE_S = 2.0  # after a first error, time for a rank that died to show its exit status (it is the cause)


def process_main(work, local_rank: int, threads: int, results, debug: bool) -> None:
    """One process: ``work(local_rank)``'s report, or its error in one line, to the parent."""
    # Ctrl-C reaches every process of the terminal's group: the parent stops this one (its saves are atomic) and
    # says in one line how to go on, instead of each process printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()
    torch.set_num_threads(threads)
    try:
        report = work(local_rank)
    except UserInputError as error:
        results.put((local_rank, False, str(error)))
        raise SystemExit(2) from None
    except Exception as error:  # noqa: BLE001 - any failure of a rank must reach the parent as one line
        if debug:
            traceback.print_exc()
        first_line = (str(error).strip().splitlines() or [""])[0]
        results.put((local_rank, False, f"{type(error).__name__}: {first_line}"))
        raise SystemExit(1) from None
    results.put((local_rank, True, report))


def die_with_parent() -> None:
    """SIGTERM to this process when its parent dies (killed, or out of memory), instead of holding the device and
    training on alone. Linux's prctl(PR_SET_PDEATHSIG); elsewhere the parent's own stop is all there is."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:  # it died before the call above
        os._exit(1)


def run_processes(work, nproc: int, offset: int, world_size: int, what: str, debug: bool = False) -> dict[int, str]:
    """``work(local_rank)`` in ``nproc`` fresh processes, each with an equal share of the threads; their reports by
    local rank. If one fails or dies, the others are stopped and one UserInputError names it (a rank that died
    without a word comes first: the others' errors are then about losing it)."""
    workers, results = start_processes(work, nproc, debug)
    reports, errors, first_error_at = {}, {}, None
    try:
        while len(reports) < nproc:
            # exit codes first: a process that failed said why before it exited, so its message is read below
            failed = [rank for rank, worker in enumerate(workers) if worker.exitcode not in (None, 0)]
            while not results.empty():
                rank, ok, text = results.get()
                (reports if ok else errors)[rank] = text
            silent = [rank for rank in failed if rank not in errors]
            if errors and first_error_at is None:
                first_error_at = time.monotonic()
            if silent or (errors and time.monotonic() - first_error_at > GRACE_S):
                rank = silent[0] if silent else min(errors)
                reason = errors.get(rank) or f"ended with exit status {workers[rank].exitcode}"
                raise UserInputError(
                    f"{what} {offset + rank} of {world_size}: {reason}; the other processes were stopped"
                )
            time.sleep(0.2)
    finally:
        stop(workers)
    return reports


def run_side_by_side(work, count: int, on_report, debug: bool = False) -> dict[int, str]:
    """``work(index)`` in ``count`` fresh processes that do not wait on each other, each with an equal share of the
    threads. ``on_report(index, report)`` is called here as each one finishes. One that fails does not stop the
    others: the failures' one-line reasons come back by index once all have ended."""
    workers, results = start_processes(work, count, debug)
    ended, errors = set(), {}
    try:
        while len(ended) < count:
            exit_codes = [worker.exitcode for worker in workers]  # before the queue: a process reports, then exits
            while not results.empty():
                index, ok, report = results.get()
                ended.add(index)
                if ok:
                    on_report(index, report)
                else:
                    errors[index] = report
            for index, code in enumerate(exit_codes):
                if code is not None and index not in ended:  # ended before the queue was read: no report
                    ended.add(index)
                    errors[index] = f"ended with exit status {code}" if code else "ended without a report"
            time.sleep(0.2)
    finally:
        stop(workers)
    return errors


def start_processes(work, count: int, debug: bool):
    """The started processes of ``work(0)`` to ``work(count - 1)``, and the queue of their reports."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch threads or SQLite handles
    results = context.SimpleQueue()
    threads = max(1, torch.get_num_threads() // count)
    workers = [
        context.Process(target=process_main, args=(work, index, threads, results, debug), daemon=True)
        for index in range(count)
    ]
    for worker in workers:
        worker.start()
    return workers, results


def stop(workers) -> None:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()
        worker.join()
