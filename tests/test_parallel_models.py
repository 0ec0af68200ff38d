"""The models of a comparison side by side, one process each (parallel_models): the table of one after another."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from recbole_trsr.cli import main
from tests.conftest import as_arguments
from tests.test_cli import SCRIPT, assert_one_line_error


def compare(capsys, overrides: dict, models: str, **settings) -> tuple[int, str, Path | None]:
    """Exit status, error line, and the per-user table of one comparison written under its own output_dir."""
    output_dir = Path(overrides["output_dir"]) / "-".join(f"{key}{value}" for key, value in settings.items())
    arguments = as_arguments({**overrides, **settings, "output_dir": str(output_dir)})
    code = main([f"--model={models}", "--dataset=tiny", *arguments])
    error = capsys.readouterr().err.strip()
    tables = list(output_dir.glob("comparison-tiny-*-users.csv"))
    return code, error, tables[0] if tables else None


def marked_log_lines(model: str) -> list[str]:
    """Lines of the model's RecBole log file (under ./log) that carry the side-by-side mark of its process."""
    lines = [line for path in Path("log", model).glob("*.log") for line in path.read_text().splitlines()]
    return [line for line in lines if f"[{model}]" in line]


def test_side_by_side_gives_each_model_the_rows_of_one_after_another(capsys, tiny_overrides):
    overrides = {**tiny_overrides, "epochs": "2", "state": "INFO"}
    models = "SASRec,GRU4Rec,CountRank"
    code, _, alone = compare(capsys, overrides, models, parallel_models="False")
    assert code == 0 and not marked_log_lines("SASRec")
    code, _, together = compare(capsys, overrides, models, parallel_models="True")
    assert code == 0
    # each model logged from its own process (the mark), and the random ranking from this one
    assert marked_log_lines("SASRec") and marked_log_lines("GRU4Rec") and not marked_log_lines("RandomRank")
    one_after_another, side_by_side = pd.read_csv(alone), pd.read_csv(together)
    assert side_by_side["model"].unique().tolist() == ["SASRec", "GRU4Rec", "CountRank", "RandomRank"]
    pd.testing.assert_frame_equal(side_by_side, one_after_another)  # every user's every metric
    summary = pd.read_csv(str(together)[: -len("-users.csv")] + ".csv")
    assert summary["candidates"].nunique() == 1


def test_auto_runs_side_by_side_on_a_gpu_only(capsys, tiny_overrides):
    code, _, table = compare(capsys, {**tiny_overrides, "state": "INFO"}, "SASRec,GRU4Rec", parallel_models="auto")
    assert code == 0 and table is not None
    on_a_gpu = torch.cuda.is_available()  # RecBole's models take the GPU wherever there is one
    assert bool(marked_log_lines("SASRec")) == bool(marked_log_lines("GRU4Rec")) == on_a_gpu


def test_llmtrsr_beside_a_baseline_gives_its_rows_of_one_after_another(capsys, tiny_llm_overrides):
    overrides = {**tiny_llm_overrides, "epochs": "1", "max_users": "20", "eval_users": "10"}
    _, _, alone = compare(capsys, overrides, "LLMTRSR,SASRec", parallel_models="False")
    code, error, together = compare(capsys, overrides, "LLMTRSR,SASRec", parallel_models="True")
    assert code == 0, error
    pd.testing.assert_frame_equal(pd.read_csv(together), pd.read_csv(alone))


def test_a_model_that_fails_leaves_the_others_to_finish(capsys, tiny_overrides):
    # The dropout probability passes the config checks and fails when GRU4Rec's layers are built, in its process.
    code, error, table = compare(capsys, tiny_overrides, "SASRec,GRU4Rec[dropout_prob=2]", parallel_models="True")
    assert_one_line_error(
        code,
        error,
        "error: GRU4Rec[dropout_prob=2] cannot be built from its settings (ValueError: dropout probability",
        "the other models finished",
    )
    assert pd.read_csv(table)["model"].unique().tolist() == ["SASRec", "RandomRank"]
    # what goes on: the failed model alone, its row added to the others' (it said only that they were written)
    rows = str(table).replace("-users.csv", ".csv")
    assert error.endswith(
        f'; rows so far in {rows}; to go on, run it again with --model="GRU4Rec[dropout_prob=2]" --add_to={rows}'
    )


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"parallel_models": "sometimes"}, "parallel_models must be True, False or auto, not 'sometimes'"),
        ({"parallel_models": "True", "nproc": "2"}, "parallel_models=True cannot run with several ranks"),
    ],
)
def test_bad_parallel_models_is_one_line(capsys, tiny_overrides, settings, fragment):
    code, error, table = compare(capsys, tiny_overrides, "SASRec,GRU4Rec", **settings)
    assert_one_line_error(code, error, fragment)
    assert table is None


LONG_RUN = {"epochs": "1000", "stopping_step": "1000", "parallel_models": "True"}


def training_side_by_side(overrides: dict, cwd: Path) -> subprocess.Popen:
    """The command line's run of SASRec and GRU4Rec side by side, once both have saved a resume point."""
    command = [sys.executable, SCRIPT, "--model=SASRec,GRU4Rec", "--dataset=tiny", *as_arguments(overrides)]
    # Ctrl-C as a terminal sends it, to a run started in the foreground: a test run started as a background job
    # (nohup ... &) ignores SIGINT, and the run would inherit that and never hear the signal. A handled signal goes
    # back to its default in the started program, an ignored one stays ignored: so a handler while it starts (no
    # preexec_fn, which may deadlock in a process with threads, as pytest's is).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        run = subprocess.Popen(command, cwd=cwd, start_new_session=True, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    checkpoints = Path(overrides["checkpoint_dir"])
    deadline = time.monotonic() + 120
    while not all(list(checkpoints.glob(f"{model}-*-last.pth")) for model in ("SASRec", "GRU4Rec")):
        assert run.poll() is None and time.monotonic() < deadline, "both models should be training"
        time.sleep(0.2)
    return run


def models_of(run: subprocess.Popen) -> list[int]:
    """The process ids of the run's children (its models' processes and multiprocessing's helpers)."""
    pids = []
    for children in Path(f"/proc/{run.pid}/task").glob("*/children"):
        pids += [int(pid) for pid in children.read_text().split()]
    return pids


def ended(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "\nState:\tZ" in status.read_text()  # a zombie has ended; only its parent's wait is left
    except FileNotFoundError:
        return True


def wait_until_ended(pids: list[int], seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not all(ended(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return all(ended(pid) for pid in pids)


def test_ctrl_c_stops_every_model_and_says_how_to_go_on(capsys, tiny_overrides, tmp_path):
    overrides = {**tiny_overrides, **LONG_RUN}
    run = training_side_by_side(overrides, tmp_path)
    os.killpg(run.pid, signal.SIGINT)  # as Ctrl-C in a terminal: every process of the group
    _, error = run.communicate(timeout=60)
    assert run.returncode == 130
    assert "Traceback" not in error  # the models' processes ignore it; the run stops them
    line = error.strip().splitlines()[-1]
    assert line.startswith("run_recbole_trsr.py: interrupted; rows so far in ")
    # the line's own arguments go on from both resume points and complete the table
    arguments = shlex.split(line.split("run it again with ", 1)[1])
    assert arguments[1].startswith("--resume_from=") and "SASRec-" in arguments[1] and "GRU4Rec-" in arguments[1]
    code = main(["--dataset=tiny", *as_arguments({**overrides, "epochs": "1"}), *arguments])
    assert code == 0, capsys.readouterr().err
    tables = sorted(
        Path(overrides["output_dir"]).glob("comparison-tiny-*[0-9].csv"), key=lambda path: path.stat().st_mtime
    )
    assert sorted(pd.read_csv(tables[-1])["model"]) == ["GRU4Rec", "RandomRank", "SASRec"]


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the processes' children from /proc")
def test_a_run_stopped_by_sigterm_stops_its_models(tiny_overrides, tmp_path):
    run = training_side_by_side({**tiny_overrides, **LONG_RUN}, tmp_path)
    children = models_of(run)
    run.send_signal(signal.SIGTERM)  # to the run alone, as kill or a job scheduler sends it
    _, error = run.communicate(timeout=60)
    assert run.returncode == 143 and error.strip().splitlines()[-1].startswith("run_recbole_trsr.py: interrupted;")
    assert children and wait_until_ended(children)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the processes' children from /proc")
def test_models_end_when_their_run_is_killed(tiny_overrides, tmp_path):
    run = training_side_by_side({**tiny_overrides, **LONG_RUN}, tmp_path)
    children = models_of(run)
    run.kill()  # SIGKILL: the run cannot stop anything; its models must not train on alone
    run.communicate(timeout=60)
    assert children and wait_until_ended(children)


def test_the_resume_points_named_are_this_runs_unfinished_ones(tmp_path):
    from recbole_trsr.interruption import resume_points_since

    started = time.time()
    (tmp_path / "LLMTRSR-now" / "last").mkdir(parents=True)  # an LLMTRSR run with a save point
    (tmp_path / "LLMTRSR-no-save" / "best").mkdir(parents=True)  # none yet: nothing to resume from
    for name in ("SASRec-now-last.pth", "GRU4Rec-done-last.pth", "GRU4Rec-done.pth", "SASRec-before-last.pth"):
        (tmp_path / name).write_bytes(b"")
    an_hour_ago = started - 3600
    os.utime(tmp_path / "SASRec-before-last.pth", (an_hour_ago, an_hour_ago))  # an earlier run's
    finished = [str(tmp_path / "GRU4Rec-done.pth")]  # a model of this run that finished
    assert resume_points_since(str(tmp_path), started, finished) == [
        str(tmp_path / "LLMTRSR-now"),
        str(tmp_path / "SASRec-now-last.pth"),
    ]
