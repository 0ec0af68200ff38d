"""A deterministic subset of a dataset's users, written once as atomic files, for runs that cannot afford all.

It is applied below RecBole, to the files, so that every model of a comparison (RecBole's as well as the
plugin's) reads the same users, the same split and the same candidates.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import tempfile
from pathlib import Path

import pandas as pd

from recbole_trsr.datasets import atomic_file
from recbole_trsr.errors import UserInputError

logger = logging.getLogger(__name__)


def chosen_users(users, count: int, seed: int) -> list[str]:
    """``count`` users picked by a seeded hash: the same users for the same seed, whatever the file order."""
    ranked = sorted(set(users), key=lambda user: hashlib.sha1(f"{seed}:{user}".encode()).hexdigest())
    return sorted(ranked[:count])


def read_atomic(path: str, separator: str) -> pd.DataFrame:
    return pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE)


def write_atomic(frame: pd.DataFrame, path: Path, separator: str) -> None:
    frame.to_csv(path, sep=separator, index=False, quoting=csv.QUOTE_NONE, escapechar="\\")


def apply_user_subset(config) -> None:
    """With ``max_users`` set, point ``config['data_path']`` at a subset of that many users (made once)."""
    count = config["max_users"]
    if not count:
        return
    if not isinstance(count, int) or count < 1:
        raise UserInputError(f"max_users must be a positive whole number, not {count!r}")
    dataset, separator = config["dataset"], config["field_separator"]
    source = Path(atomic_file(config, "inter"))
    stat = source.stat()
    folder = (
        Path(config["checkpoint_dir"])
        / "subsets"
        / (f"{dataset}-{count}users-seed{config['seed']}-{stat.st_size}-{int(stat.st_mtime)}")
    )
    target = folder / dataset
    if not (target / f"{dataset}.inter").is_file():
        inter = read_atomic(str(source), separator)
        user_column = next(c for c in inter.columns if c.split(":")[0] == config["USER_ID_FIELD"])
        item_column = next(c for c in inter.columns if c.split(":")[0] == config["ITEM_ID_FIELD"])
        keep = chosen_users(inter[user_column], count, config["seed"])
        inter = inter[inter[user_column].isin(set(keep))]
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
        write_atomic(inter, staging / f"{dataset}.inter", separator)
        item_file = Path(atomic_file(config, "item"))
        if item_file.is_file():
            items = read_atomic(str(item_file), separator)
            id_column = next(c for c in items.columns if c.split(":")[0] == config["ITEM_ID_FIELD"])
            write_atomic(items[items[id_column].isin(set(inter[item_column]))], staging / f"{dataset}.item", separator)
        os.replace(staging, target)
        logger.info(f"wrote a {len(keep)}-user subset of {dataset} ({len(inter)} interactions) to {target}")
    config.final_config_dict["data_path"] = str(target)
