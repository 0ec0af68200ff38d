"""Peak resident memory of LLMTRSR training and testing, one setting after another, each in a fresh process.

    python benchmarks/memory_llmtrsr.py [--users 150] [--data_path ../shared/data] [--dataset amazon]
        [--setting "train_examples_per_pass=None" --setting "train_examples_per_pass=1" ...]

Each setting runs ``run_recbole_trsr.py --model=LLMTRSR`` (1 epoch over each user's most recent training example,
all users tested) in its own process, so that no setting inherits another's heap; the peak comes from the
comparison table (``peak_rss_mb``: the process's high-water mark while the dataset was built, the model trained
and tested). Summaries come from the store (``summary_mode`` hierarchical by default: make them first, or add
``summary_mode=none``). Prints one line per setting: peak RSS, train and test seconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def run(setting: str, args) -> dict:
    with tempfile.TemporaryDirectory() as output_dir:
        command = [
            sys.executable,
            str(ROOT / "run_recbole_trsr.py"),
            "--model=LLMTRSR",
            f"--dataset={args.dataset}",
            f"--data_path={args.data_path}",
            f"--max_users={args.users}",
            "--max_train_prefixes=1",
            "--epochs=1",
            "--eval_step=0",
            "--show_progress=False",
            f"--output_dir={output_dir}",
            f"--checkpoint_dir={args.checkpoint_dir}",
            *(f"--{pair}" for pair in setting.split(";") if pair),
        ]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        (table,) = [path for path in Path(output_dir).glob("comparison-*.csv") if not path.stem.endswith("-users")]
        row = pd.read_csv(table).set_index("model").loc["LLMTRSR"]
        return {
            "setting": setting or "(defaults)",
            "peak_rss_mb": row["peak_rss_mb"],
            "train_s": row["train_s"],
            "test_s": row["test_s"],
            "ndcg@10": row["ndcg@10"],
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--data_path", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--checkpoint_dir", default="saved")
    parser.add_argument("--setting", action="append", help="key=value;key=value for one run (repeat the option)")
    args = parser.parse_args()
    settings = args.setting or ["", "train_examples_per_pass=1"]
    rows = []
    for setting in settings:
        rows.append(run(setting, args))
        print(pd.DataFrame(rows[-1:]).to_string(index=False, header=len(rows) == 1), flush=True)
    print()
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
