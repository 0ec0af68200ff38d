"""A comparison on several processes (--nproc, gloo on the CPU): one process's candidates and metrics, one
checkpoint, every summary once, and a dead rank or a taken port ends the run in one line."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from recbole_trsr.errors import UserInputError
from tests.conftest import as_arguments

# Dropout draws other masks when a batch is split across ranks (an equally valid draw, not the same one); without
# it, 2 ranks compute one process's gradients, summed in another order.
NO_DROPOUT = {"hidden_dropout_prob": "0.0", "attn_dropout_prob": "0.0", "dropout_prob": "0.0", "lora_dropout": "0.0"}


# The ranks' equality with one process holds for the CPU's float sums (and two "machines" on one host cannot share
# its GPU through NCCL), so these comparisons run on the CPU wherever they run; gpu_id '' is RecBole's way to say so.
ON_THE_CPU = {"gpu_id": "''", "llm_device": "cpu"}


@pytest.fixture
def cuda_seen_before_cpu_runs(monkeypatch):
    """RecBole writes gpu_id into this process's CUDA_VISIBLE_DEVICES; CUDA, started first, keeps its GPUs for the
    tests after this one, and the variable is put back."""
    if torch.cuda.is_available():
        torch.cuda.init()
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", os.environ["CUDA_VISIBLE_DEVICES"])
    else:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def compare(capsys, overrides: dict, models: str, output: Path, *settings: str) -> pd.DataFrame:
    """Run the command line; the per-user CSV it wrote (one row per model and user)."""
    from recbole_trsr.cli import main

    arguments = [f"--model={models}", "--dataset=tiny", *as_arguments({**overrides, "output_dir": str(output)})]
    assert main([*arguments, *settings]) == 0, capsys.readouterr().err
    capsys.readouterr()
    (users_csv,) = output.glob("comparison-tiny-*-users.csv")
    return pd.read_csv(users_csv, dtype={"user": str}).sort_values(["model", "user"]).reset_index(drop=True)


def summary_of(output: Path) -> pd.DataFrame:
    (table,) = [path for path in output.glob("comparison-tiny-*.csv") if not path.name.endswith("-users.csv")]
    return pd.read_csv(table).set_index("model")


def largest_difference(one: pd.DataFrame, two: pd.DataFrame) -> float:
    assert list(one["user"]) == list(two["user"]) and list(one["model"]) == list(two["model"])
    metrics = [column for column in one.columns if "@" in column]
    return (one[metrics] - two[metrics]).abs().to_numpy().max()


@pytest.mark.usefixtures("cuda_seen_before_cpu_runs")
def test_two_ranks_train_and_test_the_baselines_as_one_process(capsys, tiny_overrides, tmp_path):
    overrides = {**tiny_overrides, **NO_DROPOUT, **ON_THE_CPU, "epochs": "2"}
    one = compare(capsys, overrides, "SASRec,GRU4Rec", tmp_path / "one")
    two = compare(capsys, overrides, "SASRec,GRU4Rec", tmp_path / "two", "--nproc=2", f"--port={free_port()}")
    assert largest_difference(one, two) <= 1e-6
    assert (one["ndcg@10"] != one["ndcg@10"].iloc[0]).any()  # not a degenerate ranking that any run would match
    first, second = summary_of(tmp_path / "one"), summary_of(tmp_path / "two")
    assert (first["candidates"] == second["candidates"]).all()  # the same test candidates, user by user
    # each model's checkpoint and resume point once, by rank 0, under one name (one pair per run)
    assert len(list((tmp_path / "saved").glob("SASRec-*[0-9].pth"))) == 2
    assert len(list((tmp_path / "saved").glob("SASRec-*-last.pth"))) == 2


@pytest.mark.usefixtures("cuda_seen_before_cpu_runs")
def test_two_ranks_resume_a_baseline_to_the_metrics_of_an_uninterrupted_run(capsys, tiny_overrides, tmp_path):
    """With dropout on: each rank's own masks go on from its saved generator state. A run of 1 epoch leaves the
    resume point that a run of 3 killed in its second epoch would have left."""
    overrides = {**tiny_overrides, **ON_THE_CPU}
    ranks = ("--nproc=2", f"--port={free_port()}")
    whole = compare(capsys, {**overrides, "epochs": "3"}, "SASRec", tmp_path / "whole", *ranks)
    first = {**overrides, "epochs": "1", "checkpoint_dir": str(tmp_path / "first")}
    compare(capsys, first, "SASRec", tmp_path / "first", *ranks)
    (resume_point,) = (tmp_path / "first").glob("SASRec-*-last.pth")
    again = {**first, "epochs": "3", "resume_from": str(resume_point)}
    resumed = compare(capsys, again, "SASRec", tmp_path / "resumed", *ranks)
    assert largest_difference(whole, resumed) <= 1e-6
    assert summary_of(tmp_path / "resumed").loc["SASRec", "epochs"] == 3


@pytest.mark.usefixtures("cuda_seen_before_cpu_runs")
def test_two_ranks_train_llmtrsr_on_halves_of_each_batch(capsys, tiny_llm_overrides, tmp_path):
    overrides = {**tiny_llm_overrides, **NO_DROPOUT, **ON_THE_CPU, "train_examples_per_pass": "1"}
    one = compare(capsys, {**overrides, "summary_store": str(tmp_path / "one.db")}, "LLMTRSR", tmp_path / "one")
    runs_before = set((tmp_path / "saved").iterdir())
    two = compare(
        capsys,  # with the prompts built ahead on a thread, as on a GPU: the same metrics
        {**overrides, "summary_store": str(tmp_path / "two.db"), "prompt_prefetch": "True"},
        "LLMTRSR",
        tmp_path / "two",
        "--nproc=2",
        f"--port={free_port()}",
    )
    (adapter_folder,) = set((tmp_path / "saved").iterdir()) - runs_before  # one checkpoint, written by rank 0
    assert (adapter_folder / "best").is_dir()
    # Each rank's examples are whole (a prompt with its positive and negatives); the batch's gradient is one
    # process's, up to the order of float sums. On this data that leaves every metric within 1e-6; a larger model
    # trained longer may turn such rounding into a different order of near-tied candidates.
    assert largest_difference(one, two) <= 1e-6
    from recbole_trsr.summary.store import SummaryStore

    alone, shared = SummaryStore(tmp_path / "one.db"), SummaryStore(tmp_path / "two.db")
    keys = lambda store: sorted(row[0] for row in store.connection.execute("SELECT key FROM summaries"))  # noqa: E731
    assert len(alone) > 0 and keys(alone) == keys(shared)  # every summary, each once, the ranks writing one store


@pytest.mark.usefixtures("cuda_seen_before_cpu_runs")
def test_two_machines_meet_through_world_size_offset_ip_and_port(capsys, tiny_overrides, tmp_path):
    """Two commands as two machines would run them (here both on this one, each with its own checkpoint folder)."""
    overrides = {**tiny_overrides, **NO_DROPOUT, **ON_THE_CPU}
    one = compare(capsys, overrides, "SASRec", tmp_path / "one")
    port, root = free_port(), Path(__file__).resolve().parents[1]
    machines = []
    for offset in (0, 1):
        settings = {
            **overrides,
            "output_dir": str(tmp_path / "two"),
            "checkpoint_dir": str(tmp_path / f"saved-{offset}"),
        }
        command = ["--model=SASRec", "--dataset=tiny", *as_arguments(settings), "--nproc=1", "--world_size=2"]
        command = [sys.executable, str(root / "run_recbole_trsr.py"), *command, f"--offset={offset}", f"--port={port}"]
        machines.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = [machine.communicate(timeout=300) for machine in machines]
    assert [machine.returncode for machine in machines] == [0, 0], [err[-2000:] for _, err in outputs]
    assert "written to" in outputs[0][0] and "written to" not in outputs[1][0]  # the table, on the first machine
    (users_csv,) = (tmp_path / "two").glob("comparison-tiny-*-users.csv")
    two = pd.read_csv(users_csv, dtype={"user": str}).sort_values(["model", "user"]).reset_index(drop=True)
    assert largest_difference(one, two) <= 1e-6
    for offset in (0, 1):  # each machine's first process keeps the checkpoint that its ranks test
        assert len(list((tmp_path / f"saved-{offset}").glob("SASRec-*[0-9].pth"))) == 1
        assert len(list((tmp_path / f"saved-{offset}").glob("SASRec-*-last.pth"))) == 1


def llmtrsr_trained_as_rank(config_overrides: dict, interrupt_at: int, local_rank: int) -> str:
    """LLMTRSR trained on 2 ranks from start to end, then again interrupted at batch ``interrupt_at`` (counted
    over the epochs) and resumed; both final adapters, saved for the test."""
    from peft import get_peft_model_state_dict
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_trainer, init_seed

    from recbole_trsr import distributed
    from recbole_trsr.distributed_trainer import split_across_ranks
    from recbole_trsr.runner import build_config

    def prepared(extra: dict):
        config = build_config("LLMTRSR", "tiny", [], {**config_overrides, **extra, "local_rank": str(local_rank)})
        init_seed(config["seed"], config["reproducibility"])
        train_data, valid_data, _ = data_preparation(config, create_dataset(config))
        init_seed(config["seed"], config["reproducibility"])
        distributed.seed_dropout(config["seed"])
        model = config.model_class(config, train_data._dataset)
        trainer = split_across_ranks(get_trainer(config["MODEL_TYPE"], config["model"]))(config, model)
        return trainer, train_data, valid_data

    def adapter(trainer) -> dict:
        return {name: value.clone() for name, value in get_peft_model_state_dict(trainer.model.llm).items()}

    config = build_config("LLMTRSR", "tiny", [], {**config_overrides, "local_rank": str(local_rank)})
    distributed.join(config, local_rank)
    try:
        trainer, train_data, valid_data = prepared({})
        trainer.fit(train_data, valid_data, saved=True)
        uninterrupted = adapter(trainer)

        interrupted, train_data, valid_data = prepared({})
        calls, original = {"count": 0}, interrupted.passes

        def killed_in_the_second_epoch(interaction, size):
            calls["count"] += 1
            if calls["count"] == interrupt_at:
                raise KeyboardInterrupt
            return original(interaction, size)

        interrupted.passes = killed_in_the_second_epoch
        try:
            interrupted.fit(train_data, valid_data, saved=True)
        except KeyboardInterrupt:
            pass
        resumed, train_data, valid_data = prepared({"resume_from": interrupted.saved_model_file})
        assert resumed.resume_batches > 0, "the interruption must fall inside an epoch"
        resumed.fit(train_data, valid_data, saved=True)
        output = Path(config_overrides["output_dir"])
        torch.save({"uninterrupted": uninterrupted, "resumed": adapter(resumed)}, output / f"rank{local_rank}.pt")
    finally:
        distributed.leave()
    return "done"


def test_two_ranks_resume_to_the_adapter_of_an_uninterrupted_run(tiny_llm_overrides, tmp_path):
    """With dropout on: each rank draws its own masks, so each must go on with its own stream after a resume."""
    from recbole.data import create_dataset, data_preparation

    from recbole_trsr.processes import run_processes
    from recbole_trsr.runner import build_config

    overrides = {
        **tiny_llm_overrides,
        "summary_mode": "none",
        "epochs": "2",
        "stopping_step": "5",
        "checkpoint_steps": "1",
        "train_examples_per_pass": "1",
        "lora_dropout": "0.5",
        "nproc": "2",
        "port": str(free_port()),
        "output_dir": str(tmp_path),
    }
    config = build_config("LLMTRSR", "tiny", [], overrides)
    batches = len(data_preparation(config, create_dataset(config))[0])
    # The ranks build RecBole's trainers without the runner, which makes the folders first: RecBole's own
    # exists-then-makedirs would race between them (FileExistsError in CI, 2026-11-28).
    os.makedirs(config["checkpoint_dir"], exist_ok=True)
    run_processes(functools.partial(llmtrsr_trained_as_rank, overrides, batches + 2), 2, 0, 2, "rank")
    for rank in (0, 1):
        adapters = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        uninterrupted, resumed = adapters["uninterrupted"], adapters["resumed"]
        assert resumed.keys() == uninterrupted.keys()
        assert all(torch.allclose(resumed[k], uninterrupted[k], atol=1e-6) for k in resumed)


def rank_that_dies(config_overrides: dict, local_rank: int) -> str:
    """Rank 1 dies once the group has formed, as a killed process would; rank 0 then waits in a collective."""
    from recbole_trsr import distributed
    from recbole_trsr.runner import build_config

    config = build_config("SASRec", "tiny", [], {**config_overrides, "local_rank": str(local_rank)})
    distributed.join(config, local_rank)
    if local_rank == 1:
        os._exit(9)
    distributed.barrier()
    return "rank 0 was not stopped"


def test_a_rank_that_dies_ends_the_run_naming_it(tiny_overrides):
    from recbole_trsr.processes import run_processes

    overrides = {**tiny_overrides, "nproc": "2", "port": str(free_port()), "ddp_timeout": "600"}
    started = time.monotonic()
    with pytest.raises(
        UserInputError, match="^rank 1 of 2: ended with exit status 9; the other processes were stopped"
    ):
        run_processes(functools.partial(rank_that_dies, overrides), 2, 0, 2, "rank")
    assert time.monotonic() - started < 120  # not the 600 s of the group's timeout


def rank_that_stalls(config_overrides: dict, local_rank: int) -> str:
    """Rank 1 stops answering (a hung process, or a machine gone from the network); rank 0 waits in a collective."""
    from recbole_trsr import distributed
    from recbole_trsr.runner import build_config

    config = build_config("SASRec", "tiny", [], {**config_overrides, "local_rank": str(local_rank)})
    distributed.join(config, local_rank)
    if local_rank == 1:
        time.sleep(300)
    with distributed.collective_errors(config):
        distributed.barrier()
    return "rank 0 did not time out"


def test_a_rank_that_stops_answering_ends_the_run_after_ddp_timeout(tiny_overrides):
    from recbole_trsr.processes import run_processes

    overrides = {**tiny_overrides, "nproc": "2", "port": str(free_port()), "ddp_timeout": "5"}
    started = time.monotonic()
    timed_out = r"^rank 0 of 2: a collective step with the other ranks failed \(ddp_timeout 5 s\): "
    with pytest.raises(UserInputError, match=timed_out):
        run_processes(functools.partial(rank_that_stalls, overrides), 2, 0, 2, "rank")
    assert time.monotonic() - started < 120  # not the 300 s that rank 1 sleeps


def test_a_port_in_use_ends_the_run_in_one_line(capsys, tiny_overrides):
    from recbole_trsr.cli import main

    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        arguments = ["--model=SASRec", "--dataset=tiny", *as_arguments(tiny_overrides), "--nproc=2", f"--port={port}"]
        assert main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert f"port {port} is already in use" in error and len(error.splitlines()) == 1


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["--nproc=2", "--port=eighty"], "port must be a whole number, not 'eighty'"),
        (["--nproc=2", "--port=70000"], "port must lie in 1..65535, not 70000"),
        (["--nproc=2", "--ddp_timeout=0"], "ddp_timeout must be 1 second or more, not 0"),
    ],
)
def test_bad_group_settings_end_in_one_line(capsys, tiny_overrides, settings, message):
    from recbole_trsr.cli import main

    assert main(["--model=SASRec", "--dataset=tiny", *as_arguments(tiny_overrides), *settings]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


@pytest.mark.parametrize(
    ("gpus", "devices", "backend"), [(1, ["cuda:0", "cuda:0"], "gloo"), (2, ["cuda:0", "cuda:1"], "nccl")]
)
def test_processes_that_outnumber_the_gpus_share_them_through_gloo(monkeypatch, tiny_overrides, gpus, devices, backend):
    """--nproc=2 on one GPU: both ranks on cuda:0 (not a missing cuda:1), and gloo, since NCCL refuses two ranks on
    one device. On a machine without a GPU, its CUDA calls are stood in for."""
    from recbole_trsr import distributed
    from recbole_trsr.runner import build_config

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    configs = [
        build_config("SASRec", "tiny", [], {**tiny_overrides, "nproc": "2", "local_rank": str(rank)}) for rank in (0, 1)
    ]
    assert [str(config["device"]) for config in configs] == devices == [str(device) for device in chosen]
    assert {distributed.group_backend(config) for config in configs} == {backend}
