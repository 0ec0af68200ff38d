"""Host time of one pass over the sampled-candidate validation batches: RecBole's collate against the plugin's.

    python benchmarks/eval_batches_speed.py [--dataset amazon] [--data_path ../shared/data] [--model SASRec]
        [--rounds 3]

Builds the validation loader as ``run_recbole_trsr.py`` does for the model, then iterates it, alternating RecBole's
``NegSampleEvalDataLoader.collate_fn`` and ``recbole_trsr.eval_batches.collate_users``, with numpy seeded alike before
each pass. Prints the seconds of each pass, the median ratio, and whether both drew the same candidates. No model
runs: this is the host time that every validation and test pays, whatever the device.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbole.data import create_dataset  # noqa: E402

from recbole_trsr import eval_batches  # noqa: E402
from recbole_trsr.runner import build_config, prepare_data  # noqa: E402
from recbole_trsr.seeding import seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed_pass(loader, collate, seed: int) -> tuple[float, str]:
    """(seconds, a digest of every batch's users and items) of one pass through ``collate``."""
    loader.collate_fn = types.MethodType(collate, loader)
    np.random.seed(seed)
    digest = hashlib.sha256()
    started = time.perf_counter()
    for batch, *_ in loader:
        for field in (loader._dataset.uid_field, loader._dataset.iid_field):
            digest.update(batch[field].numpy().tobytes())
    return time.perf_counter() - started, digest.hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--data_path", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--model", default="SASRec")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = build_config(args.model, args.dataset, [], {"data_path": args.data_path, "state": "WARNING"})
    seed_everything(config)
    _, valid, _ = prepare_data(config, create_dataset(config))
    sides = {"recbole": eval_batches._recbole_collate, "one piece": eval_batches.collate_users}
    seconds = {name: [] for name in sides}
    digests = {name: set() for name in sides}
    for round_ in range(args.rounds):
        order = list(sides) if round_ % 2 == 0 else list(sides)[::-1]
        for name in order:
            took, digest = timed_pass(valid, sides[name], seed=config["seed"])
            seconds[name].append(took)
            digests[name].add(digest)
            print(f"round {round_ + 1}, {name}: {took:.2f} s")
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    print(
        f"{args.dataset}, {args.model}: {valid.sample_size:,} users a pass; median {medians['recbole']:.2f} s "
        f"(RecBole) against {medians['one piece']:.2f} s (one piece): {medians['recbole'] / medians['one piece']:.2f}x"
        f"; the same candidates: {digests['recbole'] == digests['one piece'] and len(digests['recbole']) == 1}"
    )


if __name__ == "__main__":
    main()
