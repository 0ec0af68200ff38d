"""Yes/no scoring speed, three methods side by side in one run, against the machine's matmul rate.

    python benchmarks/scoring_speed.py                      # the default model on this machine's CPU
    python benchmarks/scoring_speed.py --model qwen2.5-0.5b --device cuda --dtype bf16   # GPU, random weights

Methods, for 21 candidates per user with realistic section lengths (instruction ~80 tokens, summary ~150,
3 recent items and the candidate ~40 each):
  (a) full   each whole prompt, batched per user with dynamic (unpadded) length
  (b) padded each whole prompt padded to 2,048 tokens, one at a time (the paper's public code)
  (c) shared the user's prefix encoded once, its KV cache reused by every candidate suffix
             (several users per forward pass, --users-per-batch)
All three read logits only at the answer position (two vocabulary rows). (b) is slow, so it runs a few
candidates and is reported per candidate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import recbole_trsr  # noqa: E402,F401
from recbole_trsr.item_text import ItemTexts  # noqa: E402
from recbole_trsr.llm.loading import LLMSpec, load_llm  # noqa: E402
from recbole_trsr.llm.random_models import QWEN25_05B, random_causal_lm  # noqa: E402
from recbole_trsr.llm.scoring import YesNoScorer  # noqa: E402
from recbole_trsr.memory import PeakMemory  # noqa: E402
from recbole_trsr.model.llmtrsr import INSTRUCTION  # noqa: E402

SUMMARY = (
    "[Preference Summary] This shopper buys affordable, well-reviewed drugstore beauty products and returns to "
    "brands that worked. Early purchases centred on skin care for sensitive, dry skin: fragrance-free "
    "cleansers, a rich night cream and a mineral sunscreen. Later the focus moved to makeup, first neutral "
    "eyeshadow palettes and brown eyeliner, then bolder lip colours in red and berry shades, bought together "
    "with liners. Hair care appears regularly: sulfate-free shampoo, a leave-in conditioner for curly hair "
    "and heat protectant spray. Prices stay mostly under twenty dollars, with an occasional premium "
    "fragrance as a treat. Overall the user values gentle ingredients, practical everyday products and a "
    "small set of trusted brands.\n"
)
SENTENCES = [
    sentence.strip() + "." for sentence in SUMMARY.removeprefix("[Preference Summary] ").split(".") if sentence.strip()
]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon" / "amazon.item"
PADDED_LENGTH = 2048


def item_texts(tokenizer, count: int, tokens: int, seed: int) -> list[str]:
    """Real Amazon item texts cut to about ``tokens`` tokens (synthetic ones if the data is not there)."""
    rng = random.Random(seed)
    if SHARED_DATA.is_file():
        texts = ItemTexts(SHARED_DATA, ["title", "categories", "brand", "price"])
        pool = [texts.text(token) for token in texts]
    else:
        words = "gentle hydrating serum matte lipstick brush palette shampoo cream spray oil".split()
        pool = [" ".join(rng.choice(words) for _ in range(60)) for _ in range(200)]
    chosen = rng.sample([text for text in pool if text], count)
    return [tokenizer.decode(tokenizer.encode(text, add_special_tokens=False)[:tokens]) for text in chosen]


def build_users(tokenizer, users: int, candidates: int, seed: int):
    """Per user: prefix ids and the candidate suffix ids (candidate text plus answer slot)."""
    texts = item_texts(tokenizer, users * (3 + candidates), 40, seed)
    built = []
    for user in range(users):
        own = texts[user * (3 + candidates) : (user + 1) * (3 + candidates)]
        recent = "".join(f"{n}. {text}\n" for n, text in enumerate(own[:3], start=1))
        # Everything the candidates share, the "[Next Item]" label included, belongs to the prefix. Each user
        # gets their own summary (the sentences in another order), so users share only what real prompts
        # share: the instruction and the section label.
        summary = "[Preference Summary] " + " ".join(random.Random(seed + user).sample(SENTENCES, len(SENTENCES)))
        prefix = tokenizer(INSTRUCTION + summary + "\n[Historical Items]\n" + recent + "[Next Item]")["input_ids"]
        suffixes = [tokenizer.encode(f" {text}\nAnswer:", add_special_tokens=False) for text in own[3:]]
        built.append((prefix, suffixes))
    return built


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(function, device, repeats: int = 1):
    function()  # warm-up: kernels, allocator, caches
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        result = function()
    synchronize(device)
    return result, (time.perf_counter() - started) / repeats


def matmul_gflops(device, dtype, size: int) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    _, seconds = timed(lambda: a @ b, device, repeats=5)
    return 2 * size**3 / seconds / 1e9


def model_flops(model, query_tokens: int, attended_pairs: int) -> float:
    """Forward FLOPs: 2 per non-embedding weight per token, plus QK^T and AV over the attended pairs."""
    embedding = model.get_input_embeddings().weight.numel()
    weights = sum(p.numel() for p in model.parameters()) - embedding
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention = 4 * config.num_hidden_layers * config.num_attention_heads * head_dim * attended_pairs
    return 2 * weights * query_tokens + attention


def padded_scores(scorer, prompt_ids):
    """(b): the paper's way, one prompt at a time, right-padded to 2,048 tokens."""
    backbone, device = scorer.backbone(), scorer.device
    scores = []
    for ids in prompt_ids:
        tokens = torch.full((1, PADDED_LENGTH), scorer.pad_id, device=device)
        tokens[0, : len(ids)] = torch.tensor(ids, device=device)
        mask = torch.zeros_like(tokens)
        mask[0, : len(ids)] = 1
        with torch.inference_mode():
            hidden = backbone(input_ids=tokens, attention_mask=mask, use_cache=False).last_hidden_state
            scores.append(scorer.answer_probability(hidden[:, len(ids) - 1]))
    return torch.cat(scores).cpu()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default' (SmolLM2-135M) or 'qwen2.5-0.5b' (random)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--users-per-batch", type=int, default=4, help="users scored together by method (c)")
    parser.add_argument("--suffixes-per-row", type=int, default=7, help="candidates packed per row by (c)")
    parser.add_argument("--candidates", type=int, default=21)
    parser.add_argument("--padded-candidates", type=int, default=3, help="candidates run by method (b)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    spec = LLMSpec(device=args.device, dtype=args.dtype)
    device, dtype = spec.resolved_device(), spec.resolved_dtype()
    model, tokenizer = load_llm(LLMSpec())  # the default model's tokenizer serves both
    if args.model == "qwen2.5-0.5b":
        model = random_causal_lm(QWEN25_05B, seed=0, dtype=dtype)
    model.to(device=device, dtype=dtype).eval()
    scorer = YesNoScorer(model, tokenizer, suffixes_per_row=args.suffixes_per_row)
    users = build_users(tokenizer, args.users, args.candidates, seed=0)

    figures = {
        "model": args.model,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({args.threads} threads)",
        "dtype": str(dtype).replace("torch.", ""),
        "users": args.users,
        "candidates_per_user": args.candidates,
        "prefix_tokens": sum(len(p) for p, _ in users) / len(users),
        "suffix_tokens": sum(len(s) for _, ss in users for s in ss) / (len(users) * args.candidates),
    }
    methods = {}

    def record(name, function, candidates, query_tokens, attended_pairs, repeats=1):
        with PeakMemory() as memory:
            scores, seconds = timed(function, device, repeats)
        methods[name] = {
            "seconds": seconds,
            "candidates_per_s": candidates / seconds,
            "tokens_per_s": query_tokens / seconds,
            "gflops_per_s": model_flops(model, query_tokens, attended_pairs) / seconds / 1e9,
            "peak_rss_mb": memory.rss_mb,
            "peak_cuda_mb": memory.cuda_mb,
        }
        return scores

    full = [[prefix + suffix for suffix in suffixes] for prefix, suffixes in users]
    total = args.users * args.candidates
    full_tokens = sum(len(ids) for prompts in full for ids in prompts)
    full_pairs = sum(len(ids) * (len(ids) + 1) // 2 for prompts in full for ids in prompts)
    shared_tokens = sum(len(p) + sum(len(s) for s in ss) for p, ss in users)
    shared_pairs = sum(
        len(p) * (len(p) + 1) // 2 + sum(len(s) * len(p) + len(s) * (len(s) + 1) // 2 for s in ss) for p, ss in users
    )
    a = record(
        "a_full",
        lambda: [scorer.score_full_prompts(p, batch_size=args.candidates) for p in full],
        total,
        full_tokens,
        full_pairs,
    )
    groups = [users[i : i + args.users_per_batch] for i in range(0, len(users), args.users_per_batch)]
    c = record(
        "c_shared",
        lambda: [s for group in groups for s in scorer.score_batch(group)],
        total,
        shared_tokens,
        shared_pairs,
    )
    padded = full[0][: args.padded_candidates]
    record(
        "b_padded",
        lambda: padded_scores(scorer, padded),
        len(padded),
        PADDED_LENGTH * len(padded),
        len(padded) * PADDED_LENGTH * (PADDED_LENGTH + 1) // 2,
    )
    figures["max_abs_diff_c_vs_a"] = max((x - y).abs().max().item() for x, y in zip(a, c, strict=True))

    size = 8192 if device.type == "cuda" else 2048
    figures["matmul_gflops_per_s"] = matmul_gflops(device, dtype, size)
    figures["methods"] = methods
    figures["speedup_c_over_a"] = methods["c_shared"]["candidates_per_s"] / methods["a_full"]["candidates_per_s"]
    figures["speedup_c_over_b"] = methods["c_shared"]["candidates_per_s"] / methods["b_padded"]["candidates_per_s"]
    figures["c_fraction_of_matmul_rate"] = methods["c_shared"]["gflops_per_s"] / figures["matmul_gflops_per_s"]

    print(
        f"{figures['model']} on {figures['device']}, {figures['dtype']}; {args.users} users x {args.candidates} "
        f"candidates; prefix {figures['prefix_tokens']:.0f} tokens, suffix {figures['suffix_tokens']:.0f}"
    )
    print(f"{'method':<10} {'cand/s':>9} {'tokens/s':>10} {'GFLOP/s':>9} {'peak RSS MB':>12} {'peak CUDA MB':>13}")
    for name, row in methods.items():
        print(
            f"{name:<10} {row['candidates_per_s']:>9.2f} {row['tokens_per_s']:>10.0f} {row['gflops_per_s']:>9.1f} "
            f"{row['peak_rss_mb']:>12.0f} {row['peak_cuda_mb']:>13.0f}"
        )
    print(f"matmul {size}x{size}: {figures['matmul_gflops_per_s']:.1f} GFLOP/s")
    print(
        f"(c) vs (a): {figures['speedup_c_over_a']:.1f}x   (c) vs (b): {figures['speedup_c_over_b']:.1f}x   "
        f"(c) at {100 * figures['c_fraction_of_matmul_rate']:.0f}% of the matmul rate   "
        f"max |c - a| = {figures['max_abs_diff_c_vs_a']:.2e}"
    )
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=2))
    return 0 if math.isfinite(figures["speedup_c_over_a"]) else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
