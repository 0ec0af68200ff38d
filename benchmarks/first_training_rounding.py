"""How far apart the same seed's weights end on the CPU: a process's first training against its second, and the
first trainings of fresh processes against each other.

    python benchmarks/first_training_rounding.py [--processes 32] [--threads 2] [--model SASRec] [--epochs 1]
        [--dataset tiny | amazon-scientific --data_path ../shared/data]

``tiny`` is the tests' dataset and model size (the resume tests' case; about 8 s a process); a real dataset trains
RecBole's defaults on it (4 minutes a process on ``amazon-scientific``, 2 CPU cores).

Each of ``--processes`` fresh processes trains ``--model`` twice, one run after the other, under the same seed and
settings (no validation), and prints the largest weight difference between its two runs, whether their test
metrics are equal, and a digest of each run's weights. The summary counts the processes whose two runs differ and
the distinct digests of the first and of the second runs: a command line run is always its process's first.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def digest(weights: dict) -> str:
    hashed = hashlib.sha256()
    for key in sorted(weights):
        hashed.update(weights[key].detach().cpu().contiguous().numpy().tobytes())
    return hashed.hexdigest()[:12]


def dataset_settings(args, folder: Path) -> dict:
    if args.dataset != "tiny":
        return {"data_path": args.data_path}
    sys.path.insert(0, str(ROOT))
    from tests.conftest import tiny_settings

    return tiny_settings(folder)


def train_twice(args) -> None:
    """In this process: the two runs, as one line."""
    import torch

    from recbole_trsr import safe_pickle
    from recbole_trsr.runner import build_config, run_model

    torch.set_num_threads(args.threads)
    runs, weights = [], []
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)  # RecBole writes ./log
        for index in range(2):
            settings = {
                **dataset_settings(args, Path(folder)),
                "checkpoint_dir": str(Path(folder) / f"saved-{index}"),
                "output_dir": str(Path(folder) / "outputs"),
                "epochs": str(args.epochs),
                "eval_step": "0",
                "show_progress": "False",
                "state": "WARNING",
            }
            run = run_model(build_config(args.model, args.dataset, [], settings))
            state = torch.load(run.checkpoint, map_location="cpu", weights_only=False, pickle_module=safe_pickle)
            runs.append(run)
            weights.append(state["state_dict"])
    first, second = weights
    largest = max(float((first[key].float() - second[key].float()).abs().max()) for key in first)
    same_metrics = runs[0].test_result == runs[1].test_result
    print(f"RUNS {largest:.3g} {same_metrics} {digest(first)} {digest(second)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="SASRec")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--dataset", default="tiny")
    parser.add_argument("--data_path", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        train_twice(args)
        return
    command = [sys.executable, __file__, "--child", *sys.argv[1:]]
    environment = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    differing, unequal_metrics, largest = 0, 0, 0.0
    firsts, seconds = Counter(), Counter()
    for index in range(args.processes):
        output = subprocess.run(command, check=True, env=environment, capture_output=True, text=True).stdout
        line = next(line for line in output.splitlines() if line.startswith("RUNS "))
        difference, same_metrics, first, second = line.split()[1:]
        print(f"process {index + 1}: first against second {difference}, same metrics {same_metrics}", flush=True)
        differing += float(difference) > 0
        unequal_metrics += same_metrics != "True"
        largest = max(largest, float(difference))
        firsts[first] += 1
        seconds[second] += 1
    print(
        f"{args.model} on {args.dataset}, {args.epochs} epoch(s), {args.threads} thread(s), "
        f"{args.processes} processes: "
        f"the two runs differ in {differing} (at most {largest:.3g}), metrics differ in {unequal_metrics}; "
        f"first runs' weights: {len(firsts)} distinct {sorted(firsts.values(), reverse=True)}, "
        f"second runs': {len(seconds)} distinct {sorted(seconds.values(), reverse=True)}"
    )


if __name__ == "__main__":
    main()
