"""Batched greedy generation against batch size 1, on real block-summary prompts, side by side in one run.

    python benchmarks/generation_speed.py [--batch-sizes 1 8 16 32] [--prompts 32] [--max-new-tokens 128]
                                          [--cache dynamic static]

Prompts are the paper's block-summary prompt over 5 consecutive items of real `amazon` histories. Batch size 1
runs the first `--single-prompts` prompts only (it is slow); every figure is generated tokens per second, and the
speed-up is over the first row. With several ``--cache`` kinds (summary_cache), each batch size runs with each, side
by side. A run's first batch is timed apart from the rest: with a static cache on a GPU, transformers compiles the
decoding step then, and "steady tokens/s" is the rate after it (the whole run's rate where one batch holds every
prompt). The static cache has the length that a run at LLMTRSR.yaml's defaults gives it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import recbole_trsr  # noqa: E402,F401
from recbole_trsr.item_text import ItemTexts  # noqa: E402
from recbole_trsr.llm.device_batches import summary_model_tokens  # noqa: E402
from recbole_trsr.llm.generation import GenerationSettings, encode_prompt, generate  # noqa: E402
from recbole_trsr.llm.loading import load_llm  # noqa: E402
from recbole_trsr.memory import PeakMemory  # noqa: E402
from recbole_trsr.summary.prompts import SummaryPrompts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
AMAZON = ROOT.parent / "shared" / "data" / "amazon"


def block_prompts(count: int) -> list[str]:
    inter = pd.read_csv(AMAZON / "amazon.inter", sep="\t", dtype=str)
    inter.columns = ["user", "item", "time"]
    inter["time"] = inter["time"].astype(float)
    texts = ItemTexts(AMAZON / "amazon.item", ["title", "categories", "brand", "price"])
    prompts = []
    for _, history in inter.sort_values(["user", "time"]).groupby("user", sort=True):
        items = history["item"].tolist()
        if len(items) >= 5:
            prompts.append(SummaryPrompts().block_prompt([texts.text(item) for item in items[:5]]))
        if len(prompts) == count:
            break
    return prompts


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--single-prompts", type=int, default=8, help="prompts run at batch size 1")
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--cache", nargs="+", default=["dynamic"], choices=["dynamic", "static"], help="summary_cache")
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args()

    model, tokenizer = load_llm()
    prompts = block_prompts(args.prompts)
    # The static cache's length as a run at LLMTRSR.yaml's defaults sizes it.
    defaults = yaml.safe_load((ROOT / "properties" / "model" / "LLMTRSR.yaml").read_text())
    cache_tokens = summary_model_tokens({**defaults, "summary_max_new_tokens": args.max_new_tokens}, model)
    generate(model, tokenizer, prompts[:2], GenerationSettings(max_new_tokens=8, batch_size=2), progress=False)
    rows = {}
    # Each row is printed (and the JSON rewritten) as it is measured: a time-boxed GPU step keeps what it finished.
    print(
        f"{'cache':>7} {'batch':>5} {'prompts':>7} {'tokens':>7} {'seconds':>8} {'first s':>8} {'tokens/s':>9} "
        f"{'steady':>9} {'speed-up':>8} {'RSS MB':>7} {'GPU MB':>7}"
    )
    for batch_size in args.batch_sizes:
        for cache in args.cache:
            chosen = prompts[: args.single_prompts] if batch_size == 1 else prompts
            # Longest first, as generate orders them: the first call then takes the batch one call would make first.
            chosen = sorted(chosen, key=lambda prompt: -len(encode_prompt(tokenizer, prompt, True)))
            settings = GenerationSettings(
                max_new_tokens=args.max_new_tokens,
                batch_size=batch_size,
                static_cache_tokens=cache_tokens if cache == "static" else None,
            )
            with PeakMemory() as memory:
                started = time.perf_counter()
                first = generate(model, tokenizer, chosen[:batch_size], settings, progress=False)
                first_seconds = time.perf_counter() - started
                rest = (
                    generate(model, tokenizer, chosen[batch_size:], settings, progress=False)
                    if chosen[batch_size:]
                    else []
                )
                seconds = time.perf_counter() - started
            tokens = sum(result.new_tokens for result in first + rest)
            rest_tokens = sum(result.new_tokens for result in rest)
            row = rows[f"{cache} {batch_size}"] = {
                "cache": cache,
                "batch_size": batch_size,
                "prompts": len(chosen),
                "new_tokens": tokens,
                "seconds": seconds,
                "first_batch_seconds": first_seconds,
                "tokens_per_s": tokens / seconds,
                "steady_tokens_per_s": rest_tokens / (seconds - first_seconds) if rest else tokens / seconds,
                "peak_rss_mb": memory.rss_mb,
                "peak_cuda_mb": memory.cuda_mb,  # what summary_batch_size: auto's cap of 1,024 prompts assumes
            }
            row["speedup_over_first_row"] = row["tokens_per_s"] / next(iter(rows.values()))["tokens_per_s"]
            print(
                f"{cache:>7} {batch_size:>5} {row['prompts']:>7} {row['new_tokens']:>7} {row['seconds']:>8.1f} "
                f"{first_seconds:>8.1f} {row['tokens_per_s']:>9.1f} {row['steady_tokens_per_s']:>9.1f} "
                f"{row['speedup_over_first_row']:>7.1f}x {row['peak_rss_mb']:>7.0f} {row['peak_cuda_mb']:>7.0f}",
                flush=True,
            )
            if args.output:
                Path(args.output).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
