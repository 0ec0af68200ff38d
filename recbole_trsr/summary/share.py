"""Which summaries a process makes when several processes fill one store (``--nproc``, RecBole's DDP keys).

Each summary belongs to one process, by a hash of its store key: every process computes the same owner for a
key whatever it has already found in the store, so no summary is made twice and none is left to nobody. A
process makes its own, then waits for the others' to appear in the store before the next level (a merge
needs all its blocks), and gives up with an error naming the silent processes after ``summary_share_timeout``
seconds without progress.
"""

from __future__ import annotations

from dataclasses import dataclass

from recbole_trsr.errors import UserInputError


@dataclass(frozen=True)
class SummaryShare:
    rank: int = 0  # this process, 0 .. ranks - 1
    ranks: int = 1  # processes filling the store
    timeout_s: float = 1800.0  # waiting for others' summaries without any arriving

    def owner(self, key: str) -> int:
        return int(key[:12], 16) % self.ranks

    def owns(self, key: str) -> bool:
        return self.ranks == 1 or self.owner(key) == self.rank

    @classmethod
    def from_config(cls, config) -> SummaryShare:
        _, world_size, offset = processes(config)
        return cls(
            rank=offset + int(config["local_rank"] or 0),
            ranks=world_size,
            timeout_s=float(config["summary_share_timeout"] or cls.timeout_s),
        )


def whole_number(config, key: str, default: int) -> int:
    value = config[key]
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserInputError(f"{key} must be a whole number, not '{value}'")
    return value


def processes(config) -> tuple[int, int, int]:
    """(nproc, world_size, offset) from RecBole's keys: this machine's processes, all machines' processes, and
    the rank of this machine's first process. Checked, with one-line errors."""
    nproc = whole_number(config, "nproc", 1)
    world_size = whole_number(config, "world_size", -1)
    offset = whole_number(config, "offset", 0)
    if nproc < 1:
        raise UserInputError(f"nproc must be 1 or more, not {nproc}")
    if world_size <= 0:
        world_size = nproc
    if offset < 0 or offset + nproc > world_size:
        raise UserInputError(
            f"offset {offset} with nproc {nproc} does not fit world_size {world_size} "
            "(0 <= offset <= world_size - nproc)"
        )
    return nproc, world_size, offset
