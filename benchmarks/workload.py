"""The work of one LLMTRSR run, counted without running the LLM, and what it takes to fit a time budget.

    python benchmarks/workload.py [--dataset amazon] [--data_path ../shared/data] [--setting key=value ...]
        [--summaries-from benchmarks/published/summaries-amazon-scientific-300.sqlite] [--sample 2000]
        [--budget-min 20] [--output workload.json]

Builds the dataset as ``run_recbole_trsr.py --model=LLMTRSR`` does (the same split, users and training budget) and
counts, through the plugin's own code:
- summaries: the LLM calls the summarizer would make with an empty store (blocks and merges, or the recurrent
  chain's steps) and their prompt tokens (the summarizer's tokenizer and chat template). The generated tokens are
  estimated: each call "answers" with a real summary of the default model, drawn (seeded) from ``--summaries-from``,
  so merge prompts hold summaries of the real lengths too;
- training: rows per epoch (targets and their sampled negatives) and epochs, and the tokens a row costs through
  the shared prefix (a positive and its negatives read one prefix), from ``--sample`` seeded training examples;
- scoring: the candidates of each validation and of the test, and their tokens per candidate, from ``--sample``
  seeded evaluation users;
- training passes: the tokens a row costs, padding included, when a batch of ``--pass-rows`` rows goes through one
  pass as on a GPU (each example one row, its prefix then its candidates, padded to the pass's widest), the
  sampled examples taken in their drawn order as a shuffled epoch takes them.
It then prints each phase's time at issue 13's floor rates (10,000 generated tokens/s, 300 training rows/s, 10,000
scored candidates/s) and the training rows/s that the budget leaves room for, with the forward FLOPs of each
phase (2 x the model's non-embedding parameters per token; attention and the backward not counted). The
baselines (SASRec, GRU4Rec) are not counted. Nothing is written to the run's checkpoint folder or summary store.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recbole.data import create_dataset  # noqa: E402

from recbole_trsr.item_text import capped_texts  # noqa: E402
from recbole_trsr.llm.generation import Generated, encode_prompt  # noqa: E402
from recbole_trsr.llm.loading import LLMSpec, load_tokenizer  # noqa: E402
from recbole_trsr.runner import build_config, prepare_data  # noqa: E402
from recbole_trsr.seeding import seed_everything  # noqa: E402
from recbole_trsr.summary.dataset import HISTORY_END  # noqa: E402
from recbole_trsr.summary.factory import summary_prompts  # noqa: E402
from recbole_trsr.summary.store import SummaryStore  # noqa: E402
from recbole_trsr.summary.summarizer import Summarizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Issue 13's floor rates on one H100.
FLOOR = {"summary tokens/s": 10_000, "training rows/s": 300, "scored candidates/s": 10_000}


class StoredAnswers:
    """A summarizer backend that answers each prompt with a stored summary (seeded draw) and counts its prompt's
    tokens: the calls and their sizes, without generating."""

    identity = "workload-count"

    def __init__(self, tokenizer, use_chat_template: bool, answers: list[tuple[str, int]], seed: int):
        self.tokenizer = tokenizer
        self.use_chat_template = use_chat_template
        self.answers = answers
        self.draw = random.Random(seed)

    def generate(self, prompts: list[str], progress: bool = False) -> list[Generated]:
        results = []
        for prompt in prompts:
            text, new_tokens = self.draw.choice(self.answers)
            results.append(
                Generated(text, len(encode_prompt(self.tokenizer, prompt, self.use_chat_template)), new_tokens)
            )
        return results


def stored_answers(path: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT text, new_tokens FROM summaries WHERE text != '' ORDER BY key").fetchall()
    if not rows:
        raise SystemExit(f"{path} holds no summaries to draw answers from")
    return [(text, int(tokens)) for text, tokens in rows]


def count_summaries(config, dataset, splits, answers, seed: int) -> tuple[dict, dict]:
    """(the summaries the run would read, figures of the calls that make them from an empty store)."""
    spec = LLMSpec.from_config(config, prefix="summarizer_llm_", fallback_prefix="llm_")
    tokenizer = load_tokenizer(spec)
    backend = StoredAnswers(tokenizer, config["summary_chat_template"] is not False, answers, seed)
    with tempfile.TemporaryDirectory() as folder:
        summarizer = Summarizer(
            backend,
            SummaryStore(Path(folder) / "count.sqlite"),
            capped_texts(dataset.item_texts, tokenizer, config["item_max_tokens"]),
            config["summary_mode"],
            block_size=config["block_size"],
            max_blocks=config["max_blocks"],
            prompts=summary_prompts(config),
            chunk_size=4096,
            progress=config["show_progress"],
            always_merge=bool(config["summary_always_merge"]),
        )
        levels = []  # calls of each level: blocks then merges, or each step of the recurrent chains
        run_level = summarizer._run

        def counted(prompts, bar):
            before = summarizer.stats.calls
            result = run_level(prompts, bar)
            levels.append(summarizer.stats.calls - before)
            return result

        summarizer._run = counted
        requests = dataset.summary_requests(splits)
        texts = summarizer.summarize(requests)
        summarizer.store.close()
    stats = summarizer.stats
    return texts, {
        "users": len({dataset.owner_user(owner) for owner in requests}),
        "calls": stats.calls,
        "calls_by_level": levels,
        "prompt_tokens": stats.prompt_tokens,
        "generated_tokens_estimate": stats.new_tokens,
    }


def example_tokens(model, requests) -> tuple[float, float]:
    """Mean (tokens through the shared prefix, of them the tokens after the instruction every prompt opens with)
    per example of ``requests`` (``LLMTRSR.build_requests``): its prefix once, then each candidate's suffix."""
    opening = len(model.fitter.encode(model.templates["instruction"]))
    total = [len(prefix) + sum(map(len, suffixes)) for prefix, suffixes in requests]
    return sum(total) / len(total), sum(total) / len(total) - opening


def pass_tokens(requests, examples_per_pass: int) -> dict:
    """Tokens per row when ``examples_per_pass`` examples go through each training pass together, as
    ``YesNoScorer.one_pass_answer_states`` runs them: each example one row, its prefix then its suffixes, padded to
    the pass's widest. Padding is what that adds to the same passes unpadded."""
    run = padding = rows = 0
    for start in range(0, len(requests) - examples_per_pass + 1, examples_per_pass):
        passed = requests[start : start + examples_per_pass]
        widths = [len(prefix) + sum(map(len, suffixes)) for prefix, suffixes in passed]
        padded = len(widths) * max(widths)
        run += padded
        padding += padded - sum(widths)
        rows += sum(len(suffixes) for _, suffixes in passed)
    return {"tokens_per_row": run / rows, "padding_share": padding / run}


def sampled_examples(split, draw: random.Random, size: int, items_per_example, item_num: int):
    """(user, history end, [the target, then uniformly drawn items]) of ``size`` seeded rows of ``split``."""
    frame = split.inter_feat
    rows = draw.sample(range(len(frame)), min(size, len(frame)))
    users = frame[split.uid_field][rows].tolist()
    ends = frame[HISTORY_END][rows].long().tolist()
    targets = frame[split.iid_field][rows].tolist()
    return [
        (user, end, [target] + [draw.randrange(1, item_num) for _ in range(items_per_example - 1)])
        for user, end, target in zip(users, ends, targets, strict=True)
    ]


def non_embedding_parameters(model) -> int:
    embeddings = {id(model.llm.get_input_embeddings().weight), id(model.llm.get_output_embeddings().weight)}
    return sum(p.numel() for p in model.llm.parameters() if id(p) not in embeddings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="amazon")
    parser.add_argument("--data_path", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--setting", action="append", default=[], help="key=value for LLMTRSR, repeatable")
    parser.add_argument(
        "--summaries-from",
        default=str(ROOT / "benchmarks" / "published" / "summaries-amazon-scientific-300.sqlite"),
        help="a summary store whose texts and lengths stand in for the answers",
    )
    parser.add_argument("--sample", type=int, default=2000, help="examples drawn for tokens per row and candidate")
    parser.add_argument("--pass-rows", type=int, nargs="+", default=[8, 32, 64, 256], help="training rows a pass")
    parser.add_argument("--budget-min", type=float, default=20.0)
    parser.add_argument("--output", help="write the figures as JSON here")
    args = parser.parse_args()

    overrides = {"data_path": args.data_path, "show_progress": "False", "state": "WARNING"}
    for setting in args.setting:
        key, _, value = setting.partition("=")
        overrides[key] = value
    with tempfile.TemporaryDirectory() as folder:
        overrides.setdefault("checkpoint_dir", folder)
        config = build_config("LLMTRSR", args.dataset, [], overrides)
        seed_everything(config)
        mode = config["summary_mode"]
        config["summary_mode"] = "none"  # the split without the summarizer; its calls are counted below
        dataset = create_dataset(config)
        train_data, valid_data, test_data = prepare_data(config, dataset)
        config["summary_mode"] = mode
        splits = [train_data._dataset, valid_data._dataset, test_data._dataset]
        figures = {"dataset": args.dataset, "settings": args.setting, "users": int(dataset.user_num - 1)}
        summaries = {}
        if mode != "none":
            summaries, figures["summaries"] = count_summaries(
                config, dataset, splits, stored_answers(Path(args.summaries_from)), config["seed"]
            )
        for split in splits:
            split.summaries = summaries
        model = config.model_class(config, train_data._dataset)

    draw = random.Random(config["seed"])
    negatives = config["train_neg_sample_args"]["sample_num"]
    train = train_data._dataset
    training_requests = model.build_requests(
        sampled_examples(train, draw, args.sample, 1 + negatives, dataset.item_num)
    )
    per_example, _ = example_tokens(model, training_requests)
    epochs = config["epochs"]
    figures["training"] = {
        "examples_per_epoch": len(train),
        "rows_per_epoch": len(train) * (1 + negatives),
        "epochs": epochs,
        "rows": len(train) * (1 + negatives) * epochs,
        "tokens_per_row": per_example / (1 + negatives),
        "one_pass_of": {
            rows: pass_tokens(training_requests, max(1, rows // (1 + negatives))) for rows in args.pass_rows
        },
    }
    candidates_per_user = 1 + int(config["eval_args"]["mode"]["valid"].removeprefix("uni") or 0)
    scoring_tokens, scoring_tokens_after_opening = example_tokens(
        model,
        model.build_requests(
            sampled_examples(valid_data._dataset, draw, args.sample, candidates_per_user, dataset.item_num)
        ),
    )
    eval_users = len(valid_data._dataset)
    passes = epochs // max(1, config["eval_step"]) + 1 if config["eval_step"] else 1
    figures["scoring"] = {
        "users_per_pass": eval_users,
        "candidates_per_pass": eval_users * candidates_per_user,
        "passes": passes,
        "candidates": eval_users * candidates_per_user * passes,
        "tokens_per_candidate": scoring_tokens / candidates_per_user,
        "tokens_per_candidate_after_opening": scoring_tokens_after_opening / candidates_per_user,
    }
    parameters = non_embedding_parameters(model)
    figures["non_embedding_parameters"] = parameters
    report(figures, parameters, args.budget_min)
    if args.output:
        Path(args.output).write_text(json.dumps(figures, indent=2))


def report(figures: dict, parameters: int, budget_min: float) -> None:
    rows = []
    fixed_s = 0.0
    summary = figures.get("summaries")
    if summary:
        seconds = summary["generated_tokens_estimate"] / FLOOR["summary tokens/s"]
        fixed_s += seconds
        flops = 2 * parameters * (summary["prompt_tokens"] + summary["generated_tokens_estimate"])
        rows.append(
            (
                "summaries",
                f"{summary['calls']:,} calls for {summary['users']:,} users: {summary['prompt_tokens']:,} prompt "
                f"tokens, ~{summary['generated_tokens_estimate']:,} generated",
                f"{FLOOR['summary tokens/s']:,} generated tokens/s",
                seconds,
                flops,
            )
        )
    scoring = figures["scoring"]
    seconds = scoring["candidates"] / FLOOR["scored candidates/s"]
    fixed_s += seconds
    rows.append(
        (
            "scoring",
            f"{scoring['passes']} pass(es) of {scoring['candidates_per_pass']:,} candidates, "
            f"{scoring['tokens_per_candidate_after_opening']:.0f} tokens each after the shared opening",
            f"{FLOOR['scored candidates/s']:,} candidates/s",
            seconds,
            2 * parameters * scoring["candidates"] * scoring["tokens_per_candidate_after_opening"],
        )
    )
    training = figures["training"]
    training_flops = 2 * parameters * training["rows"] * training["tokens_per_row"]
    rows.append(
        (
            "training",
            f"{training['epochs']} epoch(s) of {training['rows_per_epoch']:,} rows, "
            f"{training['tokens_per_row']:.0f} tokens each through the shared prefix",
            f"{FLOOR['training rows/s']:,} rows/s",
            training["rows"] / FLOOR["training rows/s"],
            training_flops,
        )
    )
    print(f"{figures['dataset']}, {figures['users']:,} users, {parameters / 1e6:.0f} M non-embedding parameters")
    print("| phase | work | at issue 13's floor rate | minutes | forward FLOPs |")
    print("|:--|:--|:--|--:|--:|")
    for phase, work, rate, seconds, flops in rows:
        print(f"| {phase} | {work} | {rate} | {seconds / 60:.1f} | {flops:.2e} |")
    print(
        "Training rows a pass (a GPU runs a batch in one pass): tokens a row, padding included (its share): "
        + ", ".join(
            f"{rows}: {passes['tokens_per_row']:.0f} ({passes['padding_share']:.0%})"
            for rows, passes in training["one_pass_of"].items()
        )
    )
    left_s = budget_min * 60 - fixed_s
    needed = training["rows"] / left_s if left_s > 0 else float("inf")
    figures["training_rows_per_s_for_budget"] = needed
    print(
        f"In {budget_min:g} minutes, with the summaries and scoring at the floor rates and nothing for the baselines, "
        f"training has {left_s / 60:.1f} minutes: {needed:,.0f} rows/s, forward alone "
        f"{training_flops / max(left_s, 1e-9) / 1e12:.0f} TFLOP/s."
    )


if __name__ == "__main__":
    main()
