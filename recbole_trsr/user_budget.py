"""The users a run evaluates (``eval_users``) and the users LLMTRSR trains on (``train_users``).

``eval_users`` restricts validation and test to a seeded subset of users, the same for every model of a run,
while every model keeps its whole training split. ``train_users`` is LLMTRSR's training budget (read by its
dataset only; the baselines ignore it). Both take the head of one seeded ranking of user tokens
(``subset.ranked_users``), so the same seed picks the same users on every rerun, and the smaller of the two
subsets lies inside the larger: summaries made for the evaluated users serve training too.
"""

from __future__ import annotations

import os

import pandas as pd
import torch

from recbole_trsr.config import positive_count
from recbole_trsr.datasets import atomic_file
from recbole_trsr.errors import UserInputError
from recbole_trsr.subset import ranked_users

EVAL_USERS = "eval_users"
TRAIN_USERS = "train_users"
TRAIN_PREFIXES = "max_train_prefixes"


_user_counts: dict[tuple, int] = {}


def users_in_file(config) -> int:
    """Distinct users of the run's .inter file (after max_users), read once per file version."""
    path = atomic_file(config, "inter")
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _user_counts:
        user = config["USER_ID_FIELD"]
        column = next(
            name
            for name in pd.read_csv(path, sep=config["field_separator"], nrows=0).columns
            if name.split(":")[0] == user
        )
        users = pd.read_csv(path, sep=config["field_separator"], usecols=[column], dtype=str, keep_default_na=False)
        _user_counts[key] = users[column].nunique()
    return _user_counts[key]


def check_user_budgets(config) -> None:
    """Refuse bad budget values before any model trains (the datasets check the user counts again, exactly)."""
    positive_count(config, TRAIN_PREFIXES)
    for key in (EVAL_USERS, TRAIN_USERS):
        count = positive_count(config, key)
        if count is not None and count > (available := users_in_file(config)):
            raise UserInputError(f"{key}={count} is larger than the {available} users of {config['dataset']}")


def head_users(split, count: int, seed: int, key: str) -> torch.Tensor:
    """Ids of the first ``count`` users of ``split``, in the seeded ranking of their tokens."""
    field = split.uid_field
    present = torch.unique(split.inter_feat[field]).numpy()
    if count > len(present):
        raise UserInputError(f"{key}={count} is larger than the {len(present)} users of {split.dataset_name}")
    tokens = split.id2token(field, present)
    chosen = ranked_users(tokens, seed)[:count]
    return torch.as_tensor(split.token2id(field, chosen))


def keep_users(split, users: torch.Tensor) -> None:
    split.inter_feat = split.inter_feat[torch.isin(split.inter_feat[split.uid_field], users)]


def restrict_evaluation(config, splits: list) -> list:
    """With ``eval_users`` set, validation and test keep the same seeded users; training is untouched.

    The users are picked among the test split's; applying this twice changes nothing.
    """
    count = positive_count(config, EVAL_USERS)
    if count is None:
        return splits
    users = head_users(splits[-1], count, config["seed"], EVAL_USERS)
    for split in splits[1:]:
        keep_users(split, users)
    return splits


def restrict_training(config, train) -> None:
    """LLMTRSR's budget: with ``train_users`` set, only those seeded users' training examples remain."""
    count = positive_count(config, TRAIN_USERS)
    if count is not None:
        keep_users(train, head_users(train, count, config["seed"], TRAIN_USERS))
