"""LLMTRSR training rows per second in steady state, and where a training epoch spends its time.

    python benchmarks/training_profile.py [--train_users 40] [--dataset amazon-scientific] [--data_path ../shared/data]
        [--checkpoint_dir saved] [--setting key=value ...] [--profile | --python-profile] [--output figures.json]

Builds LLMTRSR as ``run_recbole_trsr.py`` does (default model, each training user's most recent example with its
sampled negatives), runs one epoch through the trainer's own loop to warm up (allocator, kernels, the loss
scaler's first steps), then times a second epoch: rows are targets and their negatives, per second of that epoch.
With ``--profile`` the second epoch runs under torch.profiler, and the operators that took the most device time
(CPU time on a CPU) are printed, then those that took the most CPU time, with the epoch's count of kernel launches
and the share of its wall time that the device was busy: what a GPU waits on. With ``--python-profile`` the second
epoch runs under cProfile instead, and the Python functions with the most cumulative time are printed. Summaries come
from the store under ``--checkpoint_dir`` (make them first, or add ``--setting summary_mode=none``).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbole.data import create_dataset  # noqa: E402
from recbole.utils import get_trainer  # noqa: E402

from benchmarks.profiling import profiled  # noqa: E402
from recbole_trsr.runner import build_config, prepare_data  # noqa: E402
from recbole_trsr.seeding import seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def timed_epoch(trainer, train_data, epoch: int) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    trainer._train_epoch(train_data, epoch)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_users", type=int, default=40)
    parser.add_argument("--dataset", default="amazon-scientific")
    parser.add_argument("--data_path", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--checkpoint_dir", default="saved")
    parser.add_argument("--setting", action="append", default=[], help="key=value for LLMTRSR, repeatable")
    parser.add_argument("--profile", action="store_true", help="run the timed epoch under torch.profiler")
    parser.add_argument("--python-profile", action="store_true", help="run the timed epoch under cProfile")
    parser.add_argument("--top", type=int, default=20, help="operators (or functions) shown when profiling")
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args()

    overrides = {
        "data_path": args.data_path,
        "checkpoint_dir": args.checkpoint_dir,
        "train_users": str(args.train_users),
        "eval_users": str(args.train_users),
        "max_train_prefixes": "1",
        "checkpoint_steps": "0",
        "show_progress": "False",
        "state": "WARNING",
    }
    for setting in args.setting:
        key, _, value = setting.partition("=")
        overrides[key] = value
    config = build_config("LLMTRSR", args.dataset, [], overrides)
    seed_everything(config)
    train_data, _, _ = prepare_data(config, create_dataset(config))
    model = config.model_class(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    rows = len(train_data._dataset) * (1 + config["train_neg_sample_args"]["sample_num"])

    warmup_s = timed_epoch(trainer, train_data, 0)
    launches = device_busy_s = None
    if args.profile:
        profile = profiled(lambda: timed_epoch(trainer, train_data, 1), config["device"], args.top)
        seconds, launches, device_busy_s = profile.result, profile.kernel_launches, profile.device_busy_s
    elif args.python_profile:
        python_profile = cProfile.Profile()
        python_profile.enable()
        seconds = timed_epoch(trainer, train_data, 1)
        python_profile.disable()
        pstats.Stats(python_profile).sort_stats("cumulative").print_stats(args.top)
    else:
        seconds = timed_epoch(trainer, train_data, 1)

    figures = {
        "device": torch.cuda.get_device_name(0) if config["device"].type == "cuda" else "cpu",
        "dtype": str(model.llm.get_input_embeddings().weight.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "rows_per_epoch": rows,
        "batches_per_epoch": len(train_data),
        "warmup_epoch_s": warmup_s,
        "epoch_s": seconds,
        "rows_per_s": rows / seconds,
        "kernel_launches": launches,
        "device_busy_s": device_busy_s,
        "settings": args.setting,
    }
    print(
        f"{figures['device']}, {figures['dtype']}: {rows} rows in {len(train_data)} batches, "
        f"{seconds:.1f} s after a {warmup_s:.1f} s warm-up epoch: {figures['rows_per_s']:.2f} rows/s"
        + (f", {launches} kernel launches" if launches is not None else "")
        + (f", device busy {device_busy_s:.1f} s of {seconds:.1f}" if device_busy_s is not None else "")
    )
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
