"""The --model list: model names separated by commas, each optionally with settings of its own.

``LLMTRSR,LLMTRSR[summary_mode=none;recent_k=5],SASRec`` runs three models, the second with two settings
that only it gets, so that ablations sit in one table on the same candidates.
"""

from __future__ import annotations

import re

from recbole_trsr.errors import UserInputError

# Keys that decide which users, items and candidates are tested, or what the table holds: one value per comparison.
COMPARISON_KEYS = (
    "dataset",
    "data_path",
    "eval_args",
    "seed",
    "max_users",
    "eval_users",
    "metrics",
    "topk",
    "repeatable",
    "field_separator",
    "USER_ID_FIELD",
    "ITEM_ID_FIELD",
    "TIME_FIELD",
    "bootstrap_resamples",
    "significance_metrics",
    "output_dir",
)


def split_model_list(text: str) -> list[str]:
    """``A,B[key=value;key=value],C`` into its entries; commas inside brackets belong to the entry."""
    entries = [entry.strip() for entry in re.split(r",(?![^\[]*\])", text)]  # no split inside [...]
    return [entry for entry in entries if entry]


def model_variant(entry: str) -> tuple[str, dict[str, str]]:
    """``LLMTRSR[summary_mode=none;recent_k=5]`` -> ("LLMTRSR", its own settings), ranked as its own row."""
    match = re.fullmatch(r"\s*([^\[\]]+?)\s*(?:\[(.*)\])?\s*", entry)
    if not match:
        raise UserInputError(f"--model entry '{entry}' is not NAME or NAME[key=value;...]")
    settings = {}
    for setting in filter(None, (part.strip() for part in (match.group(2) or "").split(";"))):
        key, equals, value = setting.partition("=")
        if not equals or not key.strip():
            raise UserInputError(f"--model entry '{entry}': '{setting}' is not key=value")
        if key.strip() in COMPARISON_KEYS:
            raise UserInputError(
                f"--model entry '{entry}': {key.strip()} cannot differ between the models of one comparison "
                f"(they must share users, split and candidates); give --{key.strip()}= for the whole run"
            )
        if key.strip() in settings:  # as on the command line: which of the two was meant is not for us to guess
            raise UserInputError(f"--model entry '{entry}' gives {key.strip()} twice")
        settings[key.strip()] = value.strip()
    return match.group(1), settings
