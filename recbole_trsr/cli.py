"""Command line of run_recbole_trsr.py, in the manner of RecBole's run_recbole.py."""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time

from recbole_trsr import distributed
from recbole_trsr.comparison import Comparison, comparison_settings, earlier_tables, joined_rows
from recbole_trsr.config import parse_value
from recbole_trsr.config_keys import file_keys, unread_keys_warning
from recbole_trsr.errors import UserInputError
from recbole_trsr.interruption import (
    RunInterrupted,
    exit_status,
    interruption_message,
    resume_points_since,
    sigterm_stops_the_run,
)
from recbole_trsr.model_list import model_variant, split_model_list
from recbole_trsr.parallel_models import ModelsFailed, side_by_side
from recbole_trsr.processes import run_processes
from recbole_trsr.property_files import check_config_files
from recbole_trsr.registry import get_model_class
from recbole_trsr.runner import ModelBuildFailed, build_config, run_comparison
from recbole_trsr.summary import commands
from recbole_trsr.summary.share import processes
from recbole_trsr.whole_files import WriteFailed

KEY_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
LITERAL_OPENERS = ("[", "{", "(")


def parse_overrides(arguments: list[str]) -> dict[str, str]:
    """``--key=value`` arguments as a dict of strings; RecBole's Config converts the values."""
    overrides = {}
    for argument in arguments:
        if not argument.startswith("--") or "=" not in argument:
            raise UserInputError(f"malformed argument '{argument}': expected --key=value")
        key, value = argument[2:].split("=", 1)
        if not KEY_PATTERN.match(key):
            raise UserInputError(f"malformed argument '{argument}': '{key}' is not a config key")
        if value == "":
            raise UserInputError(f"malformed argument '{argument}': --{key} has no value")
        if value.lstrip().startswith(LITERAL_OPENERS):
            try:
                parse_value(value)
            except ValueError:
                raise UserInputError(
                    f"malformed argument '{argument}': the value of --{key} is not a valid list or dict "
                    f"(text that starts with a bracket goes in quotes: --{key}=\"'...'\")"
                ) from None
        if key in overrides and overrides[key] != value:
            raise UserInputError(f"--{key} is given twice with different values")
        overrides[key] = value
    return overrides


def share_config(model: str, dataset: str, config_files: list, overrides: dict, local_rank: int):
    """The config of one process of ``--precompute_summaries --nproc=N`` (made in that process). As in RecBole's
    DDP, only the first process shows progress; the others log errors only (TRSRConfig._init_device)."""
    return build_config(model, dataset, config_files, {**overrides, "local_rank": str(local_rank)})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_recbole_trsr.py",
        description="Train and compare RecBole models (and the plugin's) on one dataset, split and "
        "set of test candidates. Any other --key=value is passed to RecBole's Config.",
        allow_abbrev=False,  # --data_path must never be taken for --dataset
    )
    parser.add_argument(
        "--model",
        "-m",
        default="SASRec,GRU4Rec",
        help="model names separated by commas; NAME[key=value;...] adds a variant with its own settings",
    )
    parser.add_argument("--dataset", "-d", default="ml-100k", help="dataset name")
    parser.add_argument("--config_files", default="", help="YAML files, separated by spaces")
    parser.add_argument(
        "--precompute_summaries",
        action="store_true",
        help="make every preference summary the run needs, then stop (no training)",
    )
    parser.add_argument(
        "--add_to",
        metavar="CSV[,CSV...]",
        help="earlier comparison-<dataset>-<time>.csv files: their rows join this run's in one table (same candidates "
        "only)",
    )
    parser.add_argument("--show_user", metavar="USER", help="print one user's blocks, summary and prompt, then stop")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, rest = build_parser().parse_known_args(argv)
    try:
        with sigterm_stops_the_run():
            return run(args, rest)
    except UserInputError as error:
        if args.debug:
            raise
        message = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())  # always one line
        print(f"run_recbole_trsr.py: error: {message}", file=sys.stderr)
        return getattr(error, "status", 2)
    except KeyboardInterrupt as interrupt:
        if args.debug:
            raise
        print(f"run_recbole_trsr.py: {getattr(interrupt, 'message', 'interrupted')}", file=sys.stderr)
        return exit_status(interrupt)


def run(args, rest: list[str]) -> int:
    overrides = parse_overrides(rest)
    models = split_model_list(args.model)
    if not models:
        raise UserInputError("--model names no model")
    config_files = args.config_files.split()
    check_config_files(config_files)
    warn_of_unread_keys(models, config_files, overrides)

    if args.show_user is not None and not args.show_user.strip():
        raise UserInputError("--show_user needs a user token of the dataset, such as --show_user=A1B2C3D4")
    if args.precompute_summaries or args.show_user:
        for model in models:
            config = build_config(model, args.dataset, config_files, overrides)
            if args.show_user:
                print(commands.show_user(config, args.show_user))
                continue
            try:
                if processes(config)[0] > 1:
                    build = functools.partial(share_config, model, args.dataset, config_files, overrides)
                    print(commands.precompute_in_processes(config, build))
                else:
                    print(commands.precompute(config))
            except KeyboardInterrupt as interrupt:
                raise RunInterrupted(commands.interrupted(config), exit_status(interrupt)) from None
            except WriteFailed as failure:
                raise WriteFailed(commands.interrupted(config, str(failure))) from failure
        return 0
    earlier = earlier_tables(args.add_to.split(",")) if args.add_to else []
    first_config = build_config(models[0], args.dataset, config_files, overrides)
    nproc, world_size, offset = processes(first_config)
    side_by_side(first_config)  # a value that cannot run fails here, before any rank starts
    if world_size == 1:
        print(compare(args, models, config_files, overrides, earlier))
        return 0
    if offset == 0:
        distributed.check_port_free(first_config)
    work = functools.partial(compare_as_rank, args, models, config_files, overrides, earlier)
    reports = run_processes(work, nproc, offset, world_size, "rank", debug=args.debug)
    if offset == 0:
        print(reports[0])
    return 0


def warn_of_unread_keys(models: list[str], config_files: list[str], overrides: dict) -> None:
    """A key that nothing reads is named before any work: RecBole would ignore it without a word."""
    given = [(key, f"--{key}", "--{}") for key in overrides]
    given += [(key, f"{key} in {file}", "{}") for file in config_files for key in file_keys(file)]
    model_classes = []
    for entry in models:
        name, settings = model_variant(entry)
        model_classes.append(get_model_class(name))
        given += [(key, f"{key} in --model entry {entry}", "{}") for key in settings]
    warning = unread_keys_warning(given, model_classes)
    if warning:
        print(f"run_recbole_trsr.py: warning: {warning}", file=sys.stderr)


def compare_as_rank(args, models: list, config_files: list, overrides: dict, earlier: list, local_rank: int) -> str:
    """One process of a comparison on several: it joins the group, runs every model with the others, and (rank 0)
    writes the table."""
    overrides = {**overrides, "local_rank": str(local_rank)}
    config = build_config(models[0], args.dataset, config_files, overrides)
    distributed.join(config, local_rank)
    try:
        with distributed.collective_errors(config):
            return compare(args, models, config_files, overrides, earlier)
    finally:
        distributed.leave()


def compare(args, models: list, config_files: list, overrides: dict, earlier: list) -> str:
    """Run the comparison; the table and where it was written, as printed (empty on ranks other than 0)."""
    written, finished = {}, []
    first = distributed.current().first
    started = time.time()

    def write(runs):
        """Rewrite the comparison as each model finishes, so that an interrupted run keeps its finished rows."""
        finished[:] = runs
        if not first:
            return
        config = runs[0].config
        if not written:
            written["to"] = Comparison.start(config["output_dir"], args.dataset)
        rows = joined_rows(earlier, [run.row() for run in runs]) if earlier else [run.row() for run in runs]
        title = (
            f"{args.dataset}: {len(rows[0].per_user)} test users, candidates {rows[0].facts['candidates']}; "
            "bars: 95% bootstrap intervals"
        )
        written["markdown"] = written["to"].write(rows, comparison_settings(config), title)

    try:
        run_comparison(models, args.dataset, config_files, overrides, on_run=write, debug=args.debug)
    except (KeyboardInterrupt, WriteFailed, ModelsFailed, ModelBuildFailed) as stop:  # each keeps what Ctrl-C keeps
        if not first:
            raise
        table = written["to"].paths["csv"] if written else None
        checkpoint_dir = build_config(models[0], args.dataset, config_files, overrides)["checkpoint_dir"]
        points = resume_points_since(checkpoint_dir, started, [run.checkpoint for run in finished])
        if isinstance(stop, UserInputError):  # a full disk, or models that failed beside others that finished
            raise type(stop)(interruption_message(models, finished, table, points, str(stop))) from stop
        raise RunInterrupted(interruption_message(models, finished, table, points), exit_status(stop)) from None
    if not first:
        return ""
    return written["markdown"] + "\n\nwritten to " + ", ".join(written["to"].paths.values())
