"""Training rows per second of one process with all threads against ``--nproc=N`` processes, side by side.

    python benchmarks/ddp_training_speed.py [--nproc 2] [--threads 2] [--repeats 1] [--data_path ../shared/data]
        [--dataset amazon-scientific] [--llm_users 50]

For SASRec (all users, 1 epoch, no validation) and LLMTRSR (the default model, ``--llm_users`` users, each user's
most recent training example with its 3 negatives, 1 epoch), each setting runs ``run_recbole_trsr.py`` in fresh
processes: one process with ``--threads`` threads, then ``--nproc`` processes with ``threads / nproc`` each, in
turn, ``--repeats`` times. Rows are training rows (targets and their sampled negatives); time is the comparison
table's ``train_s`` (rank 0's training, without data loading or the test). Summaries come from the store (make
them first). Prints one line per run and the ratio of the medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MODELS = {  # model -> (settings, sampled negatives per training target)
    "SASRec": (["--epochs=1"], 0),
    "LLMTRSR": (["--epochs=1", "--max_train_prefixes=1"], 3),
}


def run(model: str, processes: int, args) -> float:
    """Training rows per second of one run."""
    settings, negatives = MODELS[model]
    with tempfile.TemporaryDirectory() as output_dir:
        command = [
            sys.executable,
            str(ROOT / "run_recbole_trsr.py"),
            f"--model={model}",
            f"--dataset={args.dataset}",
            f"--data_path={args.data_path}",
            f"--eval_users={args.llm_users}",
            f"--train_users={args.llm_users}",
            "--eval_step=0",
            "--show_progress=False",
            f"--output_dir={output_dir}",
            f"--checkpoint_dir={args.checkpoint_dir}",
            f"--port={args.port}",
            *settings,
        ]
        if processes > 1:
            command.append(f"--nproc={processes}")
        environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
        subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)
        (table,) = [path for path in Path(output_dir).glob("*.csv") if not path.name.endswith("-users.csv")]
        row = pd.read_csv(table).set_index("model").loc[model]
        return row["train_examples"] * (1 + negatives) * row["epochs"] / row["train_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--data_path", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--dataset", default="amazon-scientific")
    parser.add_argument("--llm_users", type=int, default=50)
    parser.add_argument("--checkpoint_dir", default="saved")
    parser.add_argument("--port", type=int, default=29517)
    parser.add_argument("--models", default="SASRec,LLMTRSR")
    args = parser.parse_args()
    for model in args.models.split(","):
        rates = {1: [], args.nproc: []}
        for _ in range(args.repeats):
            for processes in rates:
                rate = run(model, processes, args)
                rates[processes].append(rate)
                threads = args.threads // processes
                print(f"{model}: {processes} process(es) x {threads} thread(s): {rate:.2f} training rows/s", flush=True)
        one, several = statistics.median(rates[1]), statistics.median(rates[args.nproc])
        print(f"{model}: {args.nproc} processes / 1 process = {several / one:.2f}x", flush=True)


if __name__ == "__main__":
    main()
