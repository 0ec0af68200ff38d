"""Host time of LLMTRSR's scoring prompts alone, per candidate, with its text caches empty, half warm and warm.

    python benchmarks/prompt_speed.py [--eval_users 300] [--dataset amazon-scientific] [--checkpoint_dir /tmp/hp]
        [--setting key=value ...]

Builds LLMTRSR as ``run_recbole_trsr.py`` does, with a random 2-layer model and the default model's tokenizer in the
default model's place (the prompts do not depend on the weights), and builds the prompts of every test batch
(``LLMTRSR.requests_of_rows``: summaries, recent items, counts, tokens) three times on this thread: with nothing
cached (each item's text cut to ``item_max_tokens`` for the first time), with the cut item texts but no candidate
text cached, and with both cached. One core's candidates/s here bounds what ``prompt_prefetch``'s thread can feed a
GPU. Summaries come from the store under ``--checkpoint_dir`` (copy
benchmarks/published/summaries-amazon-scientific-300.sqlite to ``<checkpoint_dir>/summaries.sqlite``), or
``--setting summary_mode=none`` leaves them out (the candidates' texts stay the same). The
tokenizer's thread pool is off, as on any run whose LLM is on the CPU, unless TOKENIZERS_PARALLELISM says otherwise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbole.data import create_dataset  # noqa: E402

from benchmarks.training_profile import saved_tiny_model  # noqa: E402
from recbole_trsr.model.llmtrsr import SUFFIX_CACHE_SIZE  # noqa: E402
from recbole_trsr.runner import build_config, prepare_data  # noqa: E402
from recbole_trsr.seeding import seed_everything  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval_users", type=int, default=300)
    parser.add_argument("--dataset", default="amazon-scientific")
    parser.add_argument("--data_path", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--checkpoint_dir", default="saved")
    parser.add_argument("--setting", action="append", default=[], help="key=value for LLMTRSR, repeatable")
    args = parser.parse_args()
    overrides = {
        "data_path": args.data_path,
        "checkpoint_dir": args.checkpoint_dir,
        "train_users": "8",  # training is not run; fewer users make the dataset sooner
        "eval_users": str(args.eval_users),
        "show_progress": "False",
        "state": "WARNING",
        **dict(setting.partition("=")[::2] for setting in args.setting),
    }
    config = build_config("LLMTRSR", args.dataset, [], overrides)
    # The summaries stay those of the model the settings name (from the store), not the random model's.
    overrides["summarizer_llm_path"] = config["summarizer_llm_path"] or config["llm_path"]
    with tempfile.TemporaryDirectory() as temporary:
        overrides["llm_path"] = saved_tiny_model(Path(temporary) / "tiny-llm", 2)
        config = build_config("LLMTRSR", args.dataset, [], overrides)
        seed_everything(config)
        _, _, test_data = prepare_data(config, create_dataset(config))
        model = config.model_class(config, test_data._dataset)
    batches = [model.batch_rows(interaction) for interaction, *_ in test_data]
    candidates = sum(len(users) for users, _, _ in batches)
    print(f"{candidates} candidates of {args.eval_users} test users in {len(batches)} batches")
    for caches in ("nothing cached", "item texts cut, no candidate text cached", "both cached"):
        if caches.startswith("item texts"):
            model.suffix_cache.clear()
        started = time.perf_counter()
        for rows in batches:
            model.requests_of_rows(*rows)
        seconds = time.perf_counter() - started
        print(
            f"{caches}: {seconds:.2f} s, {1000 * seconds / candidates:.3f} ms a candidate, "
            f"{candidates / seconds:,.0f} candidates/s"
        )
        if caches == "nothing cached":  # what a run's one pass over these users tokenizes: each distinct text once
            distinct = len(model.suffix_cache)
            bounded = " (the cache's bound: fewer than that)" if distinct >= SUFFIX_CACHE_SIZE else ""
            print(f"  {distinct:,} distinct candidate texts{bounded}, {distinct / candidates:.0%} of the candidates")


if __name__ == "__main__":
    main()
