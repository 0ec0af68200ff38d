"""LLMTRSR training rows per second in steady state, and where a training epoch spends its time.

    python benchmarks/training_profile.py [--train_users 40] [--dataset amazon-scientific] [--data_path ../shared/data]
        [--checkpoint_dir saved] [--setting key=value ...] [--tiny-model [--tiny-layers 2]] [--evaluate]
        [--profile | --python-profile] [--anomaly-detection] [--resume-point-saves 15] [--output figures.json]

Builds LLMTRSR as ``run_recbole_trsr.py`` does (default model, each training user's most recent example with its
sampled negatives), runs one epoch through the trainer's own loop to warm up (allocator, kernels, the loss scaler's
first steps), then times a second epoch: rows are targets and their negatives, per second of that epoch. With
``--evaluate`` it then times the trainer's evaluation of the same users' validation candidates (candidates per
second). Each timing is split into the prompts (``LLMTRSR.build_requests``: summaries, recent items, counts and
tokens), the LLM's forward passes through the scorer (``one_pass_answer_states``, then ``answer_states`` in
scoring; under ``loss_scope: prompt`` or gradient checkpointing the training forward bypasses them) and the rest
(backward, the optimizer, RecBole's loop and sampling). With ``--tiny-model`` a random 64-wide model with the
default model's tokenizer takes the default model's place: the LLM's arithmetic then costs little, and what is left
is mostly host time that a GPU would wait on, whatever its speed (1000 / host ms per row bounds its rows/s). That
host time grows with the layers: it has 2 unless ``--tiny-layers`` says otherwise (the default model has 30). The
summaries stay the default model's (copy benchmarks/published/summaries-amazon-scientific-300.sqlite into
``--checkpoint_dir`` first). With ``--profile`` the second epoch runs under torch.profiler, and the operators that
took the most device time (CPU time on a CPU) are printed, then those that took the most CPU time, with the epoch's
count of kernel launches and the share of its wall time that the device was busy: what a GPU waits on. With
``--python-profile`` the second epoch runs under cProfile instead, and the Python functions with the most cumulative
time are printed. With ``--anomaly-detection`` autograd's anomaly detection is on, as it was in every run that named
one of RecBole's sequential models until 2026-11-28 (``compat.keep_anomaly_detection_off``): what that cost. With
``--resume-point-saves N`` it then times N saves of a resume point (the adapter, the optimizer's and the generators'
states), against a training batch's time. Under ``--setting compile_layers=True`` the layers compile in the warm-up
epoch; ``--evaluate`` first scores one batch untimed (since 2026-11-28), so that scoring's graph compiles there.
Summaries come from the store under ``--checkpoint_dir`` (make them first, or add ``--setting summary_mode=none``).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbole.data import create_dataset  # noqa: E402
from recbole.utils import get_trainer  # noqa: E402

from benchmarks.profiling import profiled  # noqa: E402
from recbole_trsr.llm.loading import load_llm  # noqa: E402
from recbole_trsr.llm.random_models import tiny_llama  # noqa: E402
from recbole_trsr.runner import build_config, prepare_data  # noqa: E402
from recbole_trsr.seeding import seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def synchronized_seconds(function) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - started


def timed_epoch(trainer, train_data, epoch: int) -> float:
    return synchronized_seconds(lambda: trainer._train_epoch(train_data, epoch))


class Parts:
    """Seconds spent inside chosen methods, by part, and rows through ``predict``. On a GPU a part's time is its
    host time: kernels run on after the call returns, and their wait lands wherever the next synchronisation is.
    Time on another thread (prompts built ahead, ``prompt_prefetch``) is its own part, ``<part> ahead``, and
    overlaps the others: it is not taken from the rest."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.predicted_rows = 0

    def time(self, owner, name: str, part: str) -> None:
        method = getattr(owner, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                ahead = threading.current_thread() is not threading.main_thread()
                self.seconds[f"{part} ahead" if ahead else part] += time.perf_counter() - started

        setattr(owner, name, timed)

    def count_rows(self, model) -> None:
        predict = model.predict

        def counted(interaction):
            self.predicted_rows += len(interaction)
            return predict(interaction)

        model.predict = counted

    def split(self, total_s: float) -> dict[str, float]:
        """This period's parts, and the rest of ``total_s``; the counters start again."""
        parts = dict(self.seconds)
        parts["rest"] = total_s - sum(seconds for name, seconds in parts.items() if not name.endswith(" ahead"))
        self.seconds.clear()
        return parts


def saved_tiny_model(folder: Path, layers: int) -> str:
    """A random 64-wide Llama of ``layers`` layers with the default model's tokenizer, saved where llm_path can
    name it."""
    _, tokenizer = load_llm()
    tiny_llama(tokenizer, layers=layers).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def shares(parts: dict[str, float]) -> str:
    total = sum(seconds for name, seconds in parts.items() if not name.endswith(" ahead"))
    return ", ".join(f"{name} {seconds:.2f} s ({100 * seconds / total:.0f} %)" for name, seconds in parts.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train_users", type=int, default=40)
    parser.add_argument("--dataset", default="amazon-scientific")
    parser.add_argument("--data_path", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--checkpoint_dir", default="saved")
    parser.add_argument("--setting", action="append", default=[], help="key=value for LLMTRSR, repeatable")
    parser.add_argument("--tiny-model", action="store_true", help="a random 64-wide model: host time alone")
    parser.add_argument("--tiny-layers", type=int, default=2, help="the tiny model's layers (the default model: 30)")
    parser.add_argument("--evaluate", action="store_true", help="then time the evaluation of the same users")
    parser.add_argument("--profile", action="store_true", help="run the timed epoch under torch.profiler")
    parser.add_argument("--python-profile", action="store_true", help="run the timed epoch under cProfile")
    parser.add_argument(
        "--resume-point-saves",
        type=int,
        default=0,
        help="then time this many saves of a resume point (adapter, optimizer and generator states): what "
        "checkpoint_steps or checkpoint_seconds add to training, per save",
    )
    parser.add_argument("--top", type=int, default=20, help="operators (or functions) shown when profiling")
    parser.add_argument("--output", help="write the figures as JSON here")
    parser.add_argument(
        "--anomaly-detection",
        action="store_true",
        help="autograd's anomaly detection on, as RecBole's sine.py left any run that named SASRec or GRU4Rec "
        "until recbole_trsr turned it back off (2026-11-28): the cost that the fix took away",
    )
    args = parser.parse_args()

    overrides = {
        "data_path": args.data_path,
        "checkpoint_dir": args.checkpoint_dir,
        "train_users": str(args.train_users),
        "eval_users": str(args.train_users),
        "max_train_prefixes": "1",
        "checkpoint_steps": "0",
        "checkpoint_seconds": "0",  # epochs of steady training; --resume-point-saves times a save apart
        "show_progress": "False",
        "state": "WARNING",
    }
    temporary = tempfile.TemporaryDirectory()
    for setting in args.setting:
        key, _, value = setting.partition("=")
        overrides[key] = value
    config = build_config("LLMTRSR", args.dataset, [], overrides)
    if args.tiny_model:
        # The summaries stay those of the model the settings name (from the store: the published one holds the
        # default model's for amazon-scientific's first 300 users), not the tiny model's, which are empty and would
        # shorten every prompt.
        overrides.setdefault("summarizer_llm_path", config["summarizer_llm_path"] or config["llm_path"])
        overrides["llm_path"] = saved_tiny_model(Path(temporary.name) / "tiny-llm", args.tiny_layers)
        config = build_config("LLMTRSR", args.dataset, [], overrides)
    seed_everything(config)
    train_data, valid_data, _ = prepare_data(config, create_dataset(config))
    model = config.model_class(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    rows = len(train_data._dataset) * (1 + config["train_neg_sample_args"]["sample_num"])
    parts = Parts()
    parts.time(model, "build_requests", "prompts")
    parts.time(model.scorer, "one_pass_answer_states", "llm")  # training's forward
    parts.time(model.scorer, "answer_states", "llm")  # scoring's passes
    parts.count_rows(model)

    torch.autograd.set_detect_anomaly(args.anomaly_detection)
    warmup_s = timed_epoch(trainer, train_data, 0)
    parts.split(warmup_s)
    # At once, flushed: a time box that cuts the timed epoch still leaves this rate (compiles and first plans in it).
    print(f"warm-up epoch: {rows} rows in {warmup_s:.1f} s, {rows / warmup_s:.2f} rows/s", flush=True)
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
    training_parts = parts.split(seconds)

    figures = {
        "device": torch.cuda.get_device_name(0) if config["device"].type == "cuda" else "cpu",
        "model": f"tiny random ({args.tiny_layers} layers, 64 wide)" if args.tiny_model else config["llm_path"],
        "dtype": str(model.llm.get_input_embeddings().weight.dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "rows_per_epoch": rows,
        "batches_per_epoch": len(train_data),
        "warmup_epoch_s": warmup_s,
        "epoch_s": seconds,
        "rows_per_s": rows / seconds,
        "epoch_parts_s": training_parts,
        "kernel_launches": launches,
        "device_busy_s": device_busy_s,
        "settings": args.setting,
        "anomaly_detection": args.anomaly_detection,
    }
    print(
        f"{figures['device']}, {figures['model']}, {figures['dtype']}: {rows} rows in {len(train_data)} batches, "
        f"{seconds:.1f} s after a {warmup_s:.1f} s warm-up epoch: {figures['rows_per_s']:.2f} rows/s"
        + (f", {launches} kernel launches" if launches is not None else "")
        + (f", device busy {device_busy_s:.1f} s of {seconds:.1f}" if device_busy_s is not None else "")
        + (", under autograd's anomaly detection" if args.anomaly_detection else "")
    )
    print(f"  training epoch: {shares(training_parts)}; {1000 * seconds / rows:.2f} ms per row")
    if args.evaluate:
        # One batch scored first, untimed, on either side: scoring's first shapes (and, under compile_layers, its
        # graph's compile) stay out of the rate.
        with torch.no_grad():
            model.eval().predict(next(iter(valid_data))[0].to(config["device"]))
        parts.predicted_rows = 0
        parts.split(0.0)
        evaluate_s = synchronized_seconds(lambda: trainer.evaluate(valid_data, load_best_model=False))
        candidates = parts.predicted_rows
        if not candidates:
            raise SystemExit("--evaluate counts the rows of predict (sampled candidates); full ranking has none")
        figures.update(
            evaluated_candidates=candidates,
            evaluate_s=evaluate_s,
            candidates_per_s=candidates / evaluate_s,
            evaluate_parts_s=parts.split(evaluate_s),
        )
        print(
            f"  evaluation: {candidates} candidates in {evaluate_s:.1f} s, {figures['candidates_per_s']:.1f} "
            f"candidates/s; {shares(figures['evaluate_parts_s'])}; {1000 * evaluate_s / candidates:.2f} ms per "
            "candidate"
        )
    if args.resume_point_saves:
        seconds_per_save = []
        for _ in range(args.resume_point_saves):
            seconds_per_save.append(synchronized_seconds(lambda: trainer.save_resume_point(1, 1, 0.0)))
        figures["resume_point_save_s"] = sorted(seconds_per_save)[len(seconds_per_save) // 2]
        print(
            f"  a resume point: {figures['resume_point_save_s']:.3f} s a save (median of {len(seconds_per_save)}), "
            f"against {seconds / len(train_data):.3f} s a training batch"
        )
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=2))
    temporary.cleanup()


if __name__ == "__main__":
    main()
