"""The summary commands of run_recbole_trsr.py: precompute every summary, or show one user's prompt."""

from __future__ import annotations

import functools

from recbole.data import create_dataset

from recbole_trsr.errors import UserInputError
from recbole_trsr.processes import run_processes
from recbole_trsr.seeding import seed_everything
from recbole_trsr.summary.dataset import HISTORY_END, LLMTRSRDataset
from recbole_trsr.summary.factory import open_store, store_path
from recbole_trsr.summary.share import SummaryShare, processes


def summary_dataset(config) -> LLMTRSRDataset:
    seed_everything(config)
    dataset = create_dataset(config)
    if not isinstance(dataset, LLMTRSRDataset):
        raise UserInputError(f"model {config['model']} has no preference summaries (use --model=LLMTRSR)")
    return dataset


def precompute(config) -> str:
    """Make (or find in the store) every summary the run needs; train nothing. Returns a report."""
    from recbole_trsr.runner import start_model_logger

    start_model_logger(config)  # minutes of generation log their progress, as a training run does
    dataset = summary_dataset(config)
    dataset.build()
    stats = dataset.summary_stats
    if stats is None:
        return "summary_mode is none: no summaries to make"
    share = SummaryShare.from_config(config)
    made_by_others = f", {stats.from_others} made by the other processes" if share.ranks > 1 else ""
    return (
        f"{config['summary_mode']} summaries of {config['dataset']} for {len(stats.users)} users: "
        f"{stats.calls} LLM calls, {stats.reused} reused{made_by_others}, "
        f"{stats.calls_per_user():.2f} calls per user, "
        f"{stats.new_tokens} tokens generated ({stats.new_tokens / max(stats.seconds, 1e-9):.1f} tokens/s), "
        f"{stats.empty} empty, {stats.seconds:.1f} s; store: {store_path(config)}"
    )


def interrupted(config, cause: str = "interrupted") -> str:
    """What a stopped --precompute_summaries says: each finished batch is in the store, and the same command goes
    on from there."""
    return f"{cause}; the summaries made so far are kept in {store_path(config)}, and the same command makes the rest"


def precompute_share(build, local_rank: int) -> str:
    """One process of ``precompute_in_processes``: its share of the summaries."""
    return precompute(build(local_rank))


def precompute_in_processes(config, build) -> str:
    """``--precompute_summaries`` in ``nproc`` processes on this machine, all writing to one store.
    ``build(local_rank)`` makes a process's config. A process that fails or dies stops the others at once,
    with one error that names it."""
    nproc, world_size, offset = processes(config)
    open_store(config).close()  # created (and checked) once, not by processes racing to do it
    try:
        reports = run_processes(
            functools.partial(precompute_share, build), nproc, offset, world_size, "summary process"
        )
    except UserInputError as error:
        raise UserInputError(f"{error}; every summary made so far is kept in {store_path(config)}") from None
    lines = [f"process {offset + rank} of {world_size}: {reports[rank]}" for rank in sorted(reports)]
    store = open_store(config)
    try:
        lines.append(f"{store.path} holds {len(store)} summaries")
    finally:
        store.close()
    return "\n".join(lines)


def show_user(config, token: str) -> str:
    """One user's blocks, summary, and the prompt for their test target."""
    config.final_config_dict["summary_users"] = [token]
    config.final_config_dict["eval_users"] = None  # the user asked for, whether or not a run would test them
    dataset = summary_dataset(config)
    if token not in dataset.field2token_id[dataset.uid_field] or token == "[PAD]":  # RecBole's padding, id 0
        subset = f" (its --max_users={config['max_users']} subset)" if config["max_users"] else ""
        raise UserInputError(f"user '{token}' is not in dataset {config['dataset']}{subset}")
    _, _, test = dataset.build()
    user = dataset.token2id(dataset.uid_field, token)
    rows = (test.inter_feat[dataset.uid_field] == user).nonzero().flatten()
    if not len(rows):
        raise UserInputError(
            f"user '{token}' has no test target: eval_args split {config['eval_args']['split']} holds none out of "
            f"their {len(dataset.user_sequences[user])} interactions"
        )
    row = rows[0]
    end, target = int(test.inter_feat[HISTORY_END][row]), int(test.inter_feat[dataset.iid_field][row])
    history, plan = dataset.plan(user, end)
    tokens = dataset.field2id_token[dataset.iid_field]
    text = lambda item: dataset.item_texts.text(str(tokens[item]))  # noqa: E731
    lines = [f"user {token}: {end} interactions before the test target, {plan.complete_blocks} complete blocks"]
    for block in range(plan.complete_blocks):
        used = "summarized" if block in plan.summarized else "not in the summary window"
        lines.append(f"block {block + 1} ({used}):")
        size = config["block_size"]
        lines += [f"  - {text(item)}" for item in history[block * size : (block + 1) * size]]
    summary, recent = dataset.prompt_parts(user, end)
    lines.append(f"summary ({config['summary_mode']}): {summary or '(none)'}")
    lines.append("recent items:")
    lines += [f"  - {text(item)}" for item in recent]
    from recbole_trsr.model import LLMTRSR

    model = LLMTRSR(config, test)
    prefix, (suffix,) = model.request(user, end, [target])
    prompt = model.tokenizer.decode(prefix + suffix)
    lines += [
        f"prompt for the test target ({len(prefix) + len(suffix)} tokens):",
        prompt + model.scorer.verbalizer.yes,
    ]
    return "\n".join(lines)
