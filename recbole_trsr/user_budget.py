"""The users a run evaluates (``eval_users``) and the users LLMTRSR trains on (``train_users``).

``eval_users`` restricts validation and test to a seeded subset of users, the same for every model of a run,
while every model keeps its whole training split. ``train_users`` is LLMTRSR's training budget (read by its
dataset only; the baselines ignore it). Both take the head of one seeded ranking of user tokens
(``subset.ranked_users``), so the same seed picks the same users on every rerun, and the smaller of the two
subsets lies inside the larger: summaries made for the evaluated users serve training too.
"""

from __future__ import annotations

import torch
from recbole.data.dataset import SequentialDataset

from recbole_trsr.config import positive_count
from recbole_trsr.datasets import distinct_inter_values
from recbole_trsr.errors import UserInputError
from recbole_trsr.subset import ranked_users

EVAL_USERS = "eval_users"
TRAIN_USERS = "train_users"
TRAIN_PREFIXES = "max_train_prefixes"


def check_user_budgets(config) -> None:
    """Refuse bad budget values before any model trains (the datasets check the user counts again, exactly)."""
    positive_count(config, TRAIN_PREFIXES)
    for key in (EVAL_USERS, TRAIN_USERS):
        count = positive_count(config, key)
        if count is not None and count > (available := len(distinct_inter_values(config, config["USER_ID_FIELD"]))):
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


def check_splits(config, splits: list) -> None:
    """Refuse a split that leaves nothing to test or to train on: RecBole trained the model, then failed on an
    empty test set's result (``None``)."""
    train, test = splits[0], splits[-1]
    if len(test) and len(train):
        return
    split = config["eval_args"]["split"]
    name = train.dataset_name
    if "LS" not in split:
        part = "test" if not len(test) else "training"
        raise UserInputError(f"eval_args split {split} leaves the {part} part of {name} empty")
    # A sequential model's examples are a user's items after the first, so it needs one interaction more.
    sequential = isinstance(train, SequentialDataset)
    rows = torch.cat([part.inter_feat[part.uid_field] for part in splits])
    most = (int(torch.bincount(rows).max()) if len(rows) else 0) + sequential
    raise UserInputError(
        f"eval_args split {split} tests no user of {name}: leave-one-out tests users with at least "
        f"{2 + sequential} interactions{' (for a sequential model)' if sequential else ''}, and the users here "
        f"have at most {most}"
    )


def restrict_evaluation(config, splits: list) -> list:
    """With ``eval_users`` set, validation and test keep the same seeded users; training is untouched.

    The users are picked among the test split's; applying this twice changes nothing.
    """
    check_splits(config, splits)
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
