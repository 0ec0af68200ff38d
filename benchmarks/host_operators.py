"""Operators dispatched per training pass and per scoring step: the host work that a GPU waits on.

    python benchmarks/host_operators.py [--layers 30] [--examples 1 16 64] [--users 16 64] [--output ops.json]

On one H100 a training pass of the default model (30 layers) cost about the same whatever its size, 0.67 s for one
example and 0.83 s for 16 (RESULTS.md, 2026-11-27): the GPU waited on the host, which dispatches every operator
of every layer through Python and PyTorch's dispatcher. The count of dispatched ATen operators is that host work,
measured without a GPU and without noise. This counts them with a random model of the default model's depth
(64 wide, the default model's tokenizer, LoRA on the default target modules with the default dropout) on
synthetic prompts shaped like ``amazon``'s: the instruction, then 150 to 500 tokens of the user's own, and
candidates of 40 tokens.

- training: one forward and backward of ``--examples`` examples (a positive and 3 negatives each), through
  ``YesNoScorer.one_pass_answer_states`` (one pass) and, side by side, ``answer_states`` with gradients (the
  shared opening, the prefixes, then the candidates: the passes training took until 2026-11-28);
- scoring: one ``score_batch`` of ``--users`` users with 21 candidates each, through the shared prefix with the
  attention a GPU takes (the explicit scores; a CPU takes a fused kernel) and, side by side, in one pass
  (``score_pass: one_pass``);
- generation: one decoding step of the summarizer (the random model without LoRA, 8 prompts of 200 tokens, greedy),
  with the dynamic KV cache and with the static one (``summary_cache``), in eager mode: the difference between
  generating 17 tokens and 1, over 16. On a GPU a static cache is compiled into CUDA graphs, which this does not
  count.
Each count is taken after a warm-up call.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch
import yaml
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recbole_trsr.llm import shared_prefix_attention  # noqa: E402
from recbole_trsr.llm.loading import load_llm  # noqa: E402
from recbole_trsr.llm.random_models import tiny_llama  # noqa: E402
from recbole_trsr.llm.scoring import YesNoScorer  # noqa: E402
from recbole_trsr.model.llmtrsr import INSTRUCTION  # noqa: E402
from recbole_trsr.model.lora_settings import lora_config  # noqa: E402

CANDIDATES = 21
SUFFIX_TOKENS = 40


class OperatorCount(TorchDispatchMode):
    """ATen operators dispatched while active, by name."""

    def __init__(self):
        super().__init__()
        self.by_name: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.by_name[str(func)] += 1
        return func(*args, **(kwargs or {}))


def counted(function) -> int:
    function()  # warm-up
    with OperatorCount() as count:
        function()
    return sum(count.by_name.values())


def training_step(answer_states, batch) -> None:
    answer_states(*batch).float().square().mean().backward()


def prompts(tokenizer, users: int, candidates: int, generator: torch.Generator):
    opening = tokenizer(INSTRUCTION)["input_ids"]

    def tokens(size: int) -> list[int]:
        return torch.randint(100, 10_000, (size,), generator=generator).tolist()

    prefixes = [opening + tokens(int(torch.randint(150, 500, (1,), generator=generator))) for _ in range(users)]
    return prefixes, [[tokens(SUFFIX_TOKENS) for _ in range(candidates)] for _ in range(users)]


def decoding_step_operators(model, tokenizer, cache: str, generator: torch.Generator, prompts: int = 8) -> float:
    """Operators of one greedy decoding step: (generating 17 tokens - generating 1) / 16."""
    from transformers import GenerationConfig

    ids = torch.randint(100, 10_000, (prompts, 200), generator=generator)

    def generated(tokens: int):
        config = GenerationConfig(
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            cache_implementation="static" if cache == "static" else None,
        )

        def run():
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=config)

        return run

    return (counted(generated(17)) - counted(generated(1))) / 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, help="the model's layers; default: the default model's")
    parser.add_argument("--examples", type=int, nargs="+", default=[1, 16, 64], help="examples a training pass")
    parser.add_argument("--users", type=int, nargs="+", default=[16, 64], help="users a scoring step")
    parser.add_argument("--output", help="write the counts as JSON here")
    args = parser.parse_args()

    from peft import get_peft_model

    default_model, tokenizer = load_llm()
    layers = args.layers or default_model.config.num_hidden_layers
    del default_model
    config = yaml.safe_load((ROOT / "properties" / "model" / "LLMTRSR.yaml").read_text())
    negatives = config["train_neg_sample_args"]["sample_num"]
    model = get_peft_model(tiny_llama(tokenizer, layers=layers), lora_config(config))
    scorer = YesNoScorer(model, tokenizer)
    one_pass_scorer = YesNoScorer(model, tokenizer, one_pass=True)
    generator = torch.Generator().manual_seed(0)
    figures = {"layers": layers, "training": {}, "scoring": {}, "generation": {}}

    model.train()
    for examples in args.examples:
        batch = prompts(tokenizer, examples, 1 + negatives, generator)
        figures["training"][examples] = {
            name: counted(lambda name=name, batch=batch: training_step(getattr(scorer, name), batch))
            for name in ("one_pass_answer_states", "answer_states")
        }
    model.eval()
    # The attention a GPU takes: explicit scores (the fused kernel is the CPU's).
    shared_prefix_attention.attention_with_lse = shared_prefix_attention.explicit_attention_with_lse
    for users in args.users:
        requests = list(zip(*prompts(tokenizer, users, CANDIDATES, generator), strict=True))
        figures["scoring"][users] = {
            name: counted(lambda requests=requests, chosen=chosen: chosen.score_batch(requests))
            for name, chosen in (("shared_prefix", scorer), ("one_pass", one_pass_scorer))
        }

    summarizer = tiny_llama(tokenizer, layers=layers).eval()
    for cache in ("dynamic", "static"):
        figures["generation"][cache] = decoding_step_operators(summarizer, tokenizer, cache, generator)

    print(f"ATen operators dispatched, {layers} layers with LoRA:")
    for examples, counts in figures["training"].items():
        one, three = counts["one_pass_answer_states"], counts["answer_states"]
        print(
            f"  training pass of {examples} example(s) ({examples * (1 + negatives)} rows): {one:,} in one pass, "
            f"{three:,} in the passes before ({three / one:.2f}x)"
        )
    for users, counts in figures["scoring"].items():
        shared, one = counts["shared_prefix"], counts["one_pass"]
        print(
            f"  scoring step of {users} users ({users * CANDIDATES} candidates): {shared:,} through the shared "
            f"prefix, {one:,} in one pass ({shared / one:.2f}x)"
        )
    dynamic, static = figures["generation"]["dynamic"], figures["generation"]["static"]
    print(
        f"  decoding step of 8 prompts, without LoRA: {dynamic:,.0f} with the dynamic cache, {static:,.0f} with "
        "the static one"
    )
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
