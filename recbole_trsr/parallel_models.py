"""The models of a comparison trained and tested at the same time, one process each (``parallel_models``).

On a GPU, LLMTRSR's training has kept the host busy while the device waited between its kernels (an H100,
2026-11-27), and SASRec or GRU4Rec take minutes of their own: run one after another, the baselines add their whole
time to the run's. Side by side, they share the device and the CPU's threads instead. Every process builds its
model's data from the same config and seeds it as a run of its own would, so each row is the row it would have
been alone: the same candidates (the table's fingerprint checks it) and, on the CPU, the same metrics.
"""

from __future__ import annotations

import functools
import logging

import torch

from recbole_trsr.errors import UserInputError
from recbole_trsr.processes import run_side_by_side
from recbole_trsr.summary.share import processes

AUTO = "auto"


def side_by_side(config) -> bool:
    """``parallel_models`` as given, or for ``auto`` whether the models run on a GPU; never on several ranks."""
    value = config["parallel_models"]
    if value not in (True, False, AUTO):
        raise UserInputError(f"parallel_models must be True, False or auto, not {value!r}")
    several_ranks = processes(config)[1] > 1
    if value is True and several_ranks:
        raise UserInputError(
            "parallel_models=True cannot run with several ranks (nproc or world_size above 1): "
            "every rank already trains each model with the others"
        )
    if value == AUTO:
        return torch.device(config["device"]).type == "cuda" and not several_ranks
    return bool(value) and not several_ranks


def groups_by_model(entries) -> list[list]:
    """The entries in one group per model class, in the order first named. Variants of one model run one after
    another in its process: RecBole names checkpoints and logs by model and start time, to the second."""
    groups: dict[str, list] = {}
    for name, config in entries:
        groups.setdefault(config["model"], []).append((name, config))
    return list(groups.values())


def run_group(groups, run_model, index: int) -> list:
    """One process: its group's runs, in order, with each log line marked by the entry it belongs to. Only the
    first group shows progress bars (as only rank 0 does under ``--nproc``); the others log progress lines."""
    runs = []
    for name, config in groups[index]:
        marked(name)
        config["show_progress"] = config["show_progress"] and index == 0
        run = run_model(config, label=name)
        run.candidates = run.candidates.detached()  # its dataset stays here; the fingerprint needs only the items
        runs.append(run)
    return runs


MARK = {"entry": None}  # the entry whose records this process is logging now


def marked(name: str) -> None:
    """Every log record of this process starts with ``[name]``: the console interleaves several models' lines."""
    if MARK["entry"] is None:
        plain = logging.getLogRecordFactory()

        def record_of(*args, **kwargs):
            record = plain(*args, **kwargs)
            record.msg = f"[{MARK['entry']}] {record.msg}"
            return record

        logging.setLogRecordFactory(record_of)
    MARK["entry"] = name


class ModelsFailed(UserInputError):
    """Models of a side-by-side run failed while the others finished: the run's line names the failures, the rows
    written and the arguments that go on."""


def run_side_by_side_models(entries, run_model, on_runs, debug: bool = False) -> None:
    """Each model of ``entries`` in a process of its own, all at once; ``on_runs(runs)`` as each process ends.
    A model that fails does not stop the others: once all have ended, one error names the failures."""
    groups = groups_by_model(entries)
    work = functools.partial(run_group, groups, run_model)
    errors = run_side_by_side(work, len(groups), lambda index, runs: on_runs(runs), debug=debug)
    if errors:
        failures = "; ".join(
            named(", ".join(name for name, _ in groups[index]), reason) for index, reason in sorted(errors.items())
        )
        others = " (parallel_models: the other models finished, and their rows were written)"
        raise ModelsFailed(failures + (others if len(errors) < len(groups) else ""))


def named(models: str, reason: str) -> str:
    """The failure of ``models`` as the run's line says it: a reason that names them (a model its settings cannot
    build) is not prefixed with their names again."""
    return reason if reason.startswith(models) else f"{models}: {reason}"
