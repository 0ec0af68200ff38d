"""Checks of a dataset's atomic files, made before RecBole reads them.

RecBole answers a missing folder by starting its downloader (which waits on stdin when offline) and a
missing column with a KeyError deep in pandas; these checks name the file, the column and the fix instead.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from recbole_trsr.atomic_files import check_atomic_file, decoded_lines, header_fields
from recbole_trsr.errors import UserInputError
from recbole_trsr.property_files import known_datasets

HOW_TO_GET_DATA = "see 'Datasets' in the README for how to get the files"
logger = logging.getLogger(__name__)
_looked_for_repeats: set[tuple] = set()


def atomic_file(config, suffix: str) -> str:
    return os.path.join(config["data_path"], f"{config['dataset']}.{suffix}")


def read_header(path: str, separator: str, encoding: str = "utf-8") -> list[str]:
    """Column names of an atomic file (the header is ``name:type`` separated by ``separator``), checked."""
    return [name for name, _ in header_fields(path, separator, encoding)]


_distinct_values: dict[tuple, set[str]] = {}


def distinct_inter_values(config, field: str) -> set[str]:
    """The distinct values of one column of the run's .inter file, as RecBole reads its tokens; read once per
    file version."""
    path = atomic_file(config, "inter")
    stat = os.stat(path)
    encoding = config["encoding"] or "utf-8"
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, field, encoding)
    if key not in _distinct_values:
        separator = config["field_separator"]
        column = next(f"{name}:{kind}" for name, kind in header_fields(path, separator, encoding) if name == field)
        values = pd.read_csv(
            path, sep=separator, usecols=[column], dtype=str, keep_default_na=False, encoding=encoding
        )[column]
        _distinct_values[key] = set(values)
    return _distinct_values[key]


def required_inter_columns(config) -> list[str]:
    load_col = config["load_col"]
    if isinstance(load_col, dict) and load_col.get("inter"):
        return list(load_col["inter"])
    columns = [config["USER_ID_FIELD"], config["ITEM_ID_FIELD"]]
    if config["eval_args"].get("order") == "TO":
        columns.append(config["TIME_FIELD"])
    return columns


def check_labels(config, inter_file, columns: list[str], loaded: list[str]) -> None:
    """``eval_args`` mode labeled ranks each user's rows by their label column; without one RecBole's evaluation
    fails with an IndexError once the first model has trained."""
    modes = config["eval_args"]["mode"]
    if "labeled" not in (modes.values() if isinstance(modes, dict) else [modes]):
        return
    label = config["LABEL_FIELD"]
    if label not in columns:
        raise UserInputError(
            f"eval_args mode labeled reads each row's '{label}' column, but {inter_file} has none (its columns: "
            f"{', '.join(columns)}); use uni<N>, pop<N> or full"
        )
    if label not in loaded:
        raise UserInputError(f"eval_args mode labeled reads each row's '{label}' column: add it to load_col's inter")


def check_dataset_files(config) -> None:
    """Raise UserInputError unless the .inter file and the configured item text fields are all there."""
    dataset = config["dataset"]
    if not dataset or dataset != os.path.basename(dataset) or dataset in (".", ".."):
        # RecBole joins it into the data folder and into its log file's name, which then cannot be made
        raise UserInputError(f"--dataset '{dataset}' must be a folder's name under data_path, not a path")
    folder = config["data_path"]
    inter_file = atomic_file(config, "inter")
    separator = config["field_separator"]
    if not os.path.isfile(inter_file):
        if dataset in known_datasets():
            raise UserInputError(
                f"dataset '{dataset}': no {dataset}.inter in {os.path.abspath(folder)}; "
                f"{HOW_TO_GET_DATA}, then pass --data_path=<folder that holds {dataset}/>"
            )
        raise UserInputError(
            f"unknown dataset '{dataset}': {os.path.abspath(inter_file)} does not exist; "
            f"known datasets: {', '.join(known_datasets())}; "
            f"a dataset of your own needs <data_path>/{dataset}/{dataset}.inter"
        )
    encoding = config["encoding"] or "utf-8"
    columns = read_header(inter_file, separator, encoding)
    needed = required_inter_columns(config)
    for column in needed:
        if column not in columns:
            raise UserInputError(
                f"{inter_file} has no column '{column}' (its columns: {', '.join(columns)}){bom_hint(columns)}"
            )
    check_atomic_file(inter_file, separator, needed, encoding)
    warn_of_repeated_lines(config, inter_file, encoding)
    check_labels(config, inter_file, columns, needed)
    text_fields = config["item_text_fields"] or []
    if not text_fields:
        return
    item_file = atomic_file(config, "item")
    if not os.path.isfile(item_file):
        raise UserInputError(f"item_text_fields names {', '.join(text_fields)}, but {item_file} does not exist")
    columns = read_header(item_file, separator, encoding)
    for field in [config["ITEM_ID_FIELD"], *text_fields]:
        if field not in columns:
            raise UserInputError(
                f"{item_file} has no column '{field}' named in item_text_fields (its columns: {', '.join(columns)})"
                + bom_hint(columns)
            )
    # The item texts are read field by field from the file: a tab or line break inside a value would shift them.
    check_atomic_file(item_file, separator, [config["ITEM_ID_FIELD"], *text_fields], encoding, exact=True)


def bom_hint(columns: list[str]) -> str:
    """Where a file starts with a byte-order mark, its first column's name holds it, invisible in the error."""
    if columns and columns[0].startswith("\ufeff"):
        return "; the file starts with a byte-order mark: save it without one, or set --encoding=utf-8-sig"
    return ""


def warn_of_repeated_lines(config, inter_file: str, encoding: str) -> None:
    """A line that repeats exactly (the same user, item and time) is kept by RecBole: the test item can then be the
    last item of its own history, and every model scores well on it. Said once a file version, unless
    ``rm_dup_inter`` deals with it."""
    stat = os.stat(inter_file)
    key = (os.path.abspath(inter_file), stat.st_size, stat.st_mtime_ns)
    if config["rm_dup_inter"] is not None or key in _looked_for_repeats:
        return
    _looked_for_repeats.add(key)
    lines = [line for line in decoded_lines(inter_file, encoding)[1:] if line.strip()]
    repeated = len(lines) - len(set(lines))
    if repeated:
        logger.warning(
            f"{inter_file} repeats {repeated} of its {len(lines)} lines exactly (the same user, item and time); "
            "RecBole keeps them, so a test item can be the last item of its own history: remove them, or set "
            "--rm_dup_inter=first (which drops every repeated user-item pair, repurchases too)"
        )
