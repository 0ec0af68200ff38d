"""Yes/no scoring speed, four methods (five with --flex) side by side in one run, against the machine's matmul rate.

    python benchmarks/scoring_speed.py                      # the default model on this machine's CPU
    python benchmarks/scoring_speed.py --model qwen2.5-0.5b --device cuda --dtype bf16   # GPU, random weights

Methods, for 21 candidates per user with realistic section lengths (instruction ~80 tokens, summary ~150,
3 recent items and the candidate ~40 each):
  (a) full   each whole prompt, batched with dynamic (unpadded) length, at the fastest of --full-batch-sizes
  (b) padded each whole prompt padded to 2,048 tokens, one at a time (the paper's public code)
  (c) shared the user's prefix encoded once, its KV cache read by every candidate suffix
             (several users per forward pass, --users-per-batch). The prompts' common opening (the
             instruction) is encoded by the first, untimed run and kept for every later batch, as in an
             evaluation: the timed rounds measure that steady state and count no opening work.
  (d) one pass  each user one row, its prefix then its candidates under one mask (score_pass: one_pass; what
             training runs): a third of (c)'s operators a step, with dense attention over each row
  (e) one pass, flex  with --flex: (d) through FlexAttention with a block mask (one_pass_attention: flex),
             fused kernels that skip the 128 x 128 blocks the mask hides wholly. Its first runs compile (untimed);
             where it cannot run, it is left out with its traceback, and the JSON gives the reason
All of them read logits only at the answer position (two vocabulary rows). (b) is slow, so it runs a few
candidates and is reported per candidate. The methods and the matmul reference take turns for --rounds
rounds and each one's fastest round counts, so that a slow spell of a shared machine hits all of them.
GFLOP/s counts the work each method needs, padding excluded ((b) counts its padding: that is its method).
With --profile, (c) runs once more under torch.profiler, and its operators by device time are printed (then, on a
GPU, by host time, with the share of the wall time that the device was busy).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import recbole_trsr  # noqa: E402,F401
from benchmarks.profiling import profiled  # noqa: E402
from recbole_trsr.item_text import ItemTexts  # noqa: E402
from recbole_trsr.llm.loading import LLMSpec, load_llm  # noqa: E402
from recbole_trsr.llm.random_models import QWEN25_05B, random_causal_lm  # noqa: E402
from recbole_trsr.llm.scoring import YesNoScorer, common_opening, one_pass_rows, segment_block_mask  # noqa: E402
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


def seconds_of(function, device) -> float:
    synchronize(device)
    started = time.perf_counter()
    function()
    synchronize(device)
    return time.perf_counter() - started


def model_flops(model, query_tokens: int, attended_pairs: int) -> float:
    """Forward FLOPs: 2 per non-embedding weight per token, plus QK^T and AV over the attended pairs."""
    embedding = model.get_input_embeddings().weight.numel()
    weights = sum(p.numel() for p in model.parameters()) - embedding
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    attention = 4 * config.num_hidden_layers * config.num_attention_heads * head_dim * attended_pairs
    return 2 * weights * query_tokens + attention


def causal_pairs(first: int, last: int) -> int:
    """Query/key pairs of positions first..last-1 attending causally to everything before them."""
    return (last * (last + 1) - first * (first + 1)) // 2


def shared_work(groups, kept) -> tuple[int, int]:
    """(tokens, attended pairs) that (c) runs once an earlier batch left its ``kept`` opening (or None): per batch
    of users, a common opening only where the kept one does not serve, then each user's own prefix and every
    suffix (against the whole prefix and, causally, itself). Padding is not counted."""
    tokens = pairs = 0
    for group in groups:
        prefixes = [prefix for prefix, _ in group]
        if kept is not None and kept.serves(prefixes):
            common = len(kept.tokens)
        else:
            common = common_opening(prefixes)
            tokens += common
            pairs += causal_pairs(0, common)
        for prefix, suffixes in group:
            tokens += len(prefix) - common + sum(len(suffix) for suffix in suffixes)
            pairs += causal_pairs(common, len(prefix))
            pairs += sum(len(suffix) * len(prefix) + causal_pairs(0, len(suffix)) for suffix in suffixes)
    return tokens, pairs


def one_pass_work(groups) -> tuple[int, int]:
    """(tokens, attended pairs) that (d) needs: each prefix whole (its opening too), every suffix against it and,
    causally, itself. Padding and the pairs that the mask hides are not counted (see dense_work)."""
    tokens = pairs = 0
    for group in groups:
        for prefix, suffixes in group:
            tokens += len(prefix) + sum(len(suffix) for suffix in suffixes)
            pairs += causal_pairs(0, len(prefix))
            pairs += sum(len(suffix) * len(prefix) + causal_pairs(0, len(suffix)) for suffix in suffixes)
    return tokens, pairs


def dense_work(groups) -> tuple[int, int]:
    """(tokens, attended pairs) that (d) computes: each step's rows padded to its widest, every pair of a row
    scored, as a dense mask makes the attention kernel do."""
    tokens = pairs = 0
    for group in groups:
        width = max(len(prefix) + sum(len(suffix) for suffix in suffixes) for prefix, suffixes in group)
        tokens += len(group) * width
        pairs += len(group) * width * width
    return tokens, pairs


def largest_gap(expected, scores) -> float:
    """The largest absolute difference between two methods' scores of the same users."""
    return max((x - y).abs().max().item() for x, y in zip(expected, scores, strict=True))


def flex_area(groups, pad_id: int) -> float:
    """The share of (d)'s attention scores that FlexAttention computes: the area of the blocks its block mask keeps
    (each 128 x 128 block it does not skip, whole) over each step's rows x width²."""
    computed = total = 0.0
    for group in groups:
        parts = one_pass_rows([prefix for prefix, _ in group], [suffixes for _, suffixes in group], pad_id)[2]
        rows, width = len(parts), len(parts[0])
        computed += (1 - segment_block_mask(parts, "cpu").sparsity() / 100) * rows * width * width
        total += rows * width * width
    return computed / total


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


def print_profile(function, device, rows: int = 20) -> None:
    """The operators of one run of ``function``, and on a GPU how busy the device was over its wall time."""
    profile = profiled(function, device, rows)
    if profile.device_busy_s is not None:
        print(
            f"device busy {profile.device_busy_s:.3f} s of {profile.wall_s:.3f} s under the profiler; "
            f"kernel launches {profile.kernel_launches}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default", help="'default' (SmolLM2-135M) or 'qwen2.5-0.5b' (random)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--users", type=int, default=3)
    parser.add_argument("--users-per-batch", type=int, default=4, help="users scored together by method (c)")
    parser.add_argument("--candidates", type=int, default=21)
    parser.add_argument("--full-batch-sizes", default="21,7,3", help="prompts per batch tried by (a); the fastest runs")
    parser.add_argument("--padded-candidates", type=int, default=3, help="candidates run by method (b)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds; each method's fastest round counts")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--profile", action="store_true", help="then run (c) once under torch.profiler: top operators")
    parser.add_argument("--flex", action="store_true", help="also (e), one pass through FlexAttention")
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    spec = LLMSpec(device=args.device, dtype=args.dtype)
    device, dtype = spec.resolved_device(), spec.resolved_dtype()
    model, tokenizer = load_llm(LLMSpec())  # the default model's tokenizer serves both
    if args.model == "qwen2.5-0.5b":
        model = random_causal_lm(QWEN25_05B, seed=0, dtype=dtype)
    model.to(device=device, dtype=dtype).eval()
    scorer = YesNoScorer(model, tokenizer)
    one_pass_scorer = YesNoScorer(model, tokenizer, one_pass=True)
    users = build_users(tokenizer, args.users, args.candidates, seed=0)

    figures = {
        "model": args.model,
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({args.threads} threads)",
        "dtype": str(dtype).replace("torch.", ""),
        "users": args.users,
        "candidates_per_user": args.candidates,
        "prefix_tokens": sum(len(p) for p, _ in users) / len(users),
        "suffix_tokens": sum(len(s) for _, ss in users for s in ss) / (len(users) * args.candidates),
        "shared_prefix_attention": scorer.shared_prefix_attention,
    }

    full = [[prefix + suffix for suffix in suffixes] for prefix, suffixes in users]
    groups = [users[i : i + args.users_per_batch] for i in range(0, len(users), args.users_per_batch)]
    padded = full[0][: args.padded_candidates]

    # (a) gets its fastest batch size, tried on the first user's prompts.
    tried = {}
    for size in sorted({int(size) for size in args.full_batch_sizes.split(",")}):
        scorer.score_full_prompts(full[0][:size], batch_size=size)  # warm-up
        run = lambda size=size: scorer.score_full_prompts(full[0], batch_size=size)  # noqa: E731
        tried[size] = args.candidates / seconds_of(run, device)
    full_batch = max(tried, key=tried.get)
    figures["a_batch_size"] = full_batch
    figures["a_candidates_per_s_by_batch_size"] = tried

    total = args.users * args.candidates
    methods = {  # name: (function, candidates, query tokens, attended pairs)
        "a_full": (
            lambda: [scorer.score_full_prompts(prompts, batch_size=full_batch) for prompts in full],
            total,
            sum(len(ids) for prompts in full for ids in prompts),
            sum(causal_pairs(0, len(ids)) for prompts in full for ids in prompts),
        ),
        "c_shared": (
            lambda: [scores for group in groups for scores in scorer.score_batch(group)],
            total,
            None,  # counted below, once the warm-up has left its opening
            None,
        ),
        "d_one_pass": (
            lambda: [scores for group in groups for scores in one_pass_scorer.score_batch(group)],
            total,
            *one_pass_work(groups),
        ),
        "b_padded": (
            lambda: padded_scores(scorer, padded),
            len(padded),
            PADDED_LENGTH * len(padded),
            len(padded) * causal_pairs(0, PADDED_LENGTH),
        ),
    }
    if args.flex:  # last, so that its compile comes after the other methods' first runs
        flex_scorer = YesNoScorer(model, tokenizer, one_pass=True, one_pass_attention="flex")
        methods["e_one_pass_flex"] = (
            lambda: [scores for group in groups for scores in flex_scorer.score_batch(group)],
            total,
            *one_pass_work(groups),
        )
    # Peak memory from one untimed run each (measuring it releases freed memory, which the timed runs reuse);
    # then rounds that run every method in turn, so that a slow spell of the machine hits all of them.
    peaks, results = {}, {}
    for name, (function, *_) in list(methods.items()):
        try:
            with PeakMemory() as memory:
                results[name] = function()
        except Exception as error:  # (e) where FlexAttention cannot compile or run: the other figures still come
            if name != "e_one_pass_flex":
                raise
            traceback.print_exc()
            figures["e_left_out"] = f"{type(error).__name__}: {error}"[:2000]
            del methods[name]
            continue
        peaks[name] = (memory.rss_mb, memory.cuda_mb)
    methods["c_shared"] = (methods["c_shared"][0], total, *shared_work(groups, scorer.kept_opening))
    # Printed as they come, not only at the end: a GPU session's time box may cut the run (one did, 2026-11-27).
    gaps = {name: largest_gap(results["a_full"], scores) for name, scores in results.items() if name[0] in "cde"}
    print("max |method - a| on the untimed runs: " + "   ".join(f"{name} {gap:.2e}" for name, gap in gaps.items()))
    size = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    timings = {name: [] for name in [*methods, "matmul"]}
    for round_index in range(args.rounds):
        for name, (function, *_) in methods.items():
            timings[name].append(seconds_of(function, device))
        a @ b  # warm-up
        timings["matmul"].append(min(seconds_of(lambda: a @ b, device) for _ in range(5)))
        rates = "   ".join(
            f"{name} {candidates / min(timings[name]):.2f}" for name, (_, candidates, *_) in methods.items()
        )
        print(f"candidates/s, fastest of {round_index + 1} round(s): {rates}", flush=True)

    figures["matmul_gflops_per_s"] = 2 * size**3 / min(timings["matmul"]) / 1e9
    figures["methods"] = {}
    methods_work = {name: (candidates, tokens, pairs) for name, (_, candidates, tokens, pairs) in methods.items()}
    for name, (_, candidates, tokens, pairs) in methods.items():
        seconds = min(timings[name])
        figures["methods"][name] = {
            "seconds": seconds,
            "seconds_per_round": timings[name],
            "candidates_per_s": candidates / seconds,
            "tokens_per_s": tokens / seconds,
            "gflops_per_s": model_flops(model, tokens, pairs) / seconds / 1e9,
            "peak_rss_mb": peaks[name][0],
            "peak_cuda_mb": peaks[name][1],
        }
    methods = figures["methods"]
    a_scores, c_scores, d_scores = results["a_full"], results["c_shared"], results["d_one_pass"]
    figures["max_abs_diff_c_vs_a"] = largest_gap(a_scores, c_scores)
    figures["max_abs_diff_d_vs_a"] = largest_gap(a_scores, d_scores)
    figures["speedup_d_over_c"] = methods["d_one_pass"]["candidates_per_s"] / methods["c_shared"]["candidates_per_s"]
    figures["d_fraction_of_matmul_rate"] = methods["d_one_pass"]["gflops_per_s"] / figures["matmul_gflops_per_s"]
    _, c_tokens, c_pairs = methods_work["c_shared"]
    figures["d_computed_work_over_c"] = model_flops(model, *dense_work(groups)) / model_flops(model, c_tokens, c_pairs)
    if "e_one_pass_flex" in methods:
        e_scores = results["e_one_pass_flex"]
        figures["max_abs_diff_e_vs_a"] = largest_gap(a_scores, e_scores)
        figures["speedup_e_over_d"] = (
            methods["e_one_pass_flex"]["candidates_per_s"] / methods["d_one_pass"]["candidates_per_s"]
        )
        figures["e_fraction_of_matmul_rate"] = (
            methods["e_one_pass_flex"]["gflops_per_s"] / figures["matmul_gflops_per_s"]
        )
        area = flex_area(groups, scorer.pad_id)
        figures["e_attention_area_computed"] = area
        tokens, pairs = dense_work(groups)
        figures["e_computed_work_over_c"] = model_flops(model, tokens, round(pairs * area)) / model_flops(
            model, c_tokens, c_pairs
        )
    figures["speedup_c_over_a"] = methods["c_shared"]["candidates_per_s"] / methods["a_full"]["candidates_per_s"]
    figures["speedup_c_over_b"] = methods["c_shared"]["candidates_per_s"] / methods["b_padded"]["candidates_per_s"]
    figures["c_fraction_of_matmul_rate"] = methods["c_shared"]["gflops_per_s"] / figures["matmul_gflops_per_s"]

    print(
        f"{figures['model']} on {figures['device']}, {figures['dtype']}; {args.users} users x {args.candidates} "
        f"candidates; prefix {figures['prefix_tokens']:.0f} tokens, suffix {figures['suffix_tokens']:.0f}; "
        f"fastest of {args.rounds} rounds; (a) in batches of {full_batch} "
        f"(tried: {', '.join(f'{k}: {v:.2f} cand/s' for k, v in tried.items())})"
    )
    print(f"{'method':<15} {'cand/s':>9} {'tokens/s':>10} {'GFLOP/s':>9} {'peak RSS MB':>12} {'peak CUDA MB':>13}")
    for name, row in methods.items():
        print(
            f"{name:<15} {row['candidates_per_s']:>9.2f} {row['tokens_per_s']:>10.0f} {row['gflops_per_s']:>9.1f} "
            f"{row['peak_rss_mb']:>12.0f} {row['peak_cuda_mb']:>13.0f}"
        )
    print(f"matmul {size}x{size}: {figures['matmul_gflops_per_s']:.1f} GFLOP/s")
    print(
        f"(c) vs (a): {figures['speedup_c_over_a']:.1f}x   (c) vs (b): {figures['speedup_c_over_b']:.1f}x   "
        f"(c) at {100 * figures['c_fraction_of_matmul_rate']:.0f}% of the matmul rate   "
        f"max |c - a| = {figures['max_abs_diff_c_vs_a']:.2e}"
    )
    print(
        f"(d) vs (c): {figures['speedup_d_over_c']:.2f}x   (d) at {100 * figures['d_fraction_of_matmul_rate']:.0f}% "
        f"of the matmul rate   max |d - a| = {figures['max_abs_diff_d_vs_a']:.2e}   (d) computes "
        f"{figures['d_computed_work_over_c']:.2f}x (c)'s arithmetic (padding and masked pairs included)"
    )
    if "e_one_pass_flex" in methods:
        print(
            f"(e) vs (d): {figures['speedup_e_over_d']:.2f}x   "
            f"(e) at {100 * figures['e_fraction_of_matmul_rate']:.0f}% of the matmul rate   "
            f"max |e - a| = {figures['max_abs_diff_e_vs_a']:.2e}   (e) scores "
            f"{100 * figures['e_attention_area_computed']:.0f}% of the dense mask's width², computing "
            f"{figures['e_computed_work_over_c']:.2f}x (c)'s arithmetic"
        )
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=2))
    if args.profile:
        print_profile(lambda: [scorer.score_batch(group) for group in groups], device)
    return 0 if math.isfinite(figures["speedup_c_over_a"]) else 1


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
