"""A deterministic subset of a dataset's users, written once as atomic files, for runs that cannot afford all.

It is applied below RecBole, to the files, so that every model of a comparison (RecBole's as well as the
plugin's) reads the same users, the same split and the same candidates.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from recbole_trsr.atomic_files import decoded_lines, header_fields, read_atomic
from recbole_trsr.config import positive_count
from recbole_trsr.datasets import atomic_file
from recbole_trsr.whole_files import remove, write_failure

logger = logging.getLogger(__name__)


def ranked_users(users, seed: int) -> list[str]:
    """User tokens in a seeded hash order: the same order for the same seed, whatever the file order.

    Every user subset of a run (max_users, eval_users, train_users) is a head of this order, so a smaller
    subset lies inside a larger one and summaries made for one serve the other.
    """
    return sorted({str(user) for user in users}, key=lambda user: hashlib.sha1(f"{seed}:{user}".encode()).hexdigest())


def chosen_users(users, count: int, seed: int) -> list[str]:
    """``count`` users picked by a seeded hash: the same users for the same seed, whatever the file order."""
    return sorted(ranked_users(users, seed)[:count])


def write_lines_of(source: Path, target: Path, separator: str, encoding: str, column: str, keep: set[str]) -> None:
    """The header of ``source`` and its lines whose ``column`` holds a value of ``keep``, as they are: written again
    through pandas, a backslash in a value came out doubled (its escape character) and numbers could change form."""
    lines = decoded_lines(str(source), encoding)
    position = lines[0].rstrip("\r").split(separator).index(column)
    kept = [line for line in lines[1:] if (values := line.split(separator))[position:] and values[position] in keep]
    target.write_text("\n".join([lines[0], *kept]) + "\n", encoding=encoding)


def apply_user_subset(config) -> None:
    """With ``max_users`` set, point ``config['data_path']`` at a subset of that many users (made once)."""
    count = positive_count(config, "max_users")
    if count is None:
        return
    dataset, separator, encoding = config["dataset"], config["field_separator"], config["encoding"] or "utf-8"
    source, item_file = Path(atomic_file(config, "inter")), Path(atomic_file(config, "item"))
    # the files' sizes and times in the name: a subset of an edited .inter or .item file is made afresh
    stamps = "-".join(f"{stat.st_size}-{int(stat.st_mtime)}" for path in (source, item_file) if (stat := stat_of(path)))
    folder = Path(config["checkpoint_dir"]) / "subsets" / f"{dataset}-{count}users-seed{config['seed']}-{stamps}"
    target = folder / dataset
    if not (target / f"{dataset}.inter").is_file():
        inter = read_atomic(str(source), separator, encoding)
        user_column = next(c for c in inter.columns if c.split(":")[0] == config["USER_ID_FIELD"])
        item_column = next(c for c in inter.columns if c.split(":")[0] == config["ITEM_ID_FIELD"])
        keep = chosen_users(inter[user_column], count, config["seed"])
        inter = inter[inter[user_column].isin(set(keep))]
        staging = folder / ".staging"  # made unique below, once the folder exists
        try:
            folder.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))
            write_lines_of(source, staging / f"{dataset}.inter", separator, encoding, user_column, set(keep))
            if item_file.is_file():
                fields = header_fields(str(item_file), separator, encoding)
                id_column = next(f"{name}:{kind}" for name, kind in fields if name == config["ITEM_ID_FIELD"])
                write_lines_of(
                    item_file, staging / f"{dataset}.item", separator, encoding, id_column, set(inter[item_column])
                )
            os.replace(staging, target)
        except OSError as error:
            failure = write_failure(target, error)  # the space left before the half-written files go
            remove(staging)
            if not (target / f"{dataset}.inter").is_file():  # else another process made the same subset first
                raise failure from error
        except BaseException:
            remove(staging)
            raise
        logger.info(f"wrote a {len(keep)}-user subset of {dataset} ({len(inter)} interactions) to {target}")
    config.final_config_dict["data_path"] = str(target)


def stat_of(path: Path) -> os.stat_result | None:
    return path.stat() if path.is_file() else None
