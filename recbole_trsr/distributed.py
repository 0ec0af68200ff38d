"""The ranks of a run on several processes (``--nproc``, RecBole's DDP keys): joining them, and what each one does.

RecBole 1.2.1 joins its process group inside ``Config`` (NCCL only, once per config) and splits data with a
``DistributedSampler`` that pads the last shard with repeated users and averages rounded per-rank means. A
comparison builds one config per model and must give every model the same users and candidates as one process
would. So the group is joined once per process, here, with gloo on the CPU and NCCL on GPUs, and every rank
walks the same batches in the same order, each taking its own contiguous share of every batch (training) or of
the batches (evaluation). See distributed_trainer.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

from recbole_trsr.errors import UserInputError
from recbole_trsr.summary.share import processes, whole_number

DEFAULT_TIMEOUT_S = 600


@dataclass(frozen=True)
class Ranks:
    rank: int = 0  # this process among all machines' processes
    size: int = 1

    @property
    def first(self) -> bool:
        return self.rank == 0

    def share(self, count: int) -> range:
        """This rank's contiguous part of ``count`` things; the parts of ranks 0, 1, ... follow each other."""
        start, stop = (count * self.rank) // self.size, (count * (self.rank + 1)) // self.size
        return range(start, stop)


def writes_checkpoints(config) -> bool:
    """The first process of each machine writes the checkpoints there, which its machine's ranks read back: the
    ranks hold the same weights, and machines need not share a folder."""
    return int(config["local_rank"] or 0) == 0


def current() -> Ranks:
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


DROPOUT_STREAM_STRIDE = 100_003


def seed_dropout(seed: int) -> None:
    """torch's generator, which draws dropout masks, seeded apart on each rank (rank 0: ``seed``, as one process);
    numpy's and Python's, which draw the batches, negatives and candidates, stay alike on every rank."""
    torch.manual_seed(seed + DROPOUT_STREAM_STRIDE * current().rank)


def timeout_s(config) -> int:
    seconds = whole_number(config, "ddp_timeout", DEFAULT_TIMEOUT_S)
    if seconds < 1:
        raise UserInputError(f"ddp_timeout must be 1 second or more, not {seconds}")
    return seconds


def address(config) -> tuple[str, int]:
    host, port = str(config["ip"] or "localhost"), config["port"]
    try:
        port = int(port)
    except (TypeError, ValueError):
        raise UserInputError(f"port must be a whole number, not '{port}'") from None
    if not 0 < port < 65536:
        raise UserInputError(f"port must lie in 1..65535, not {port}")
    return host, port


def check_port_free(config) -> None:
    """On the machine of rank 0 the port must be free: the group's store listens there."""
    host, port = address(config)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("" if host in ("localhost", "127.0.0.1", "0.0.0.0") else host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise UserInputError(f"port {port} is already in use on {host}; choose another with --port") from None
            raise UserInputError(f"cannot listen on {host}:{port} ({error.strerror})") from None


def group_backend(config) -> str:
    """NCCL where every process of this machine has a GPU of its own; gloo on the CPU, and where processes share
    a GPU (NCCL refuses two ranks on one device; gloo, which DDP also drives on CUDA tensors, does not)."""
    if config["device"].type != "cuda":
        return "gloo"
    nproc, _, _ = processes(config)
    return "nccl" if nproc <= torch.cuda.device_count() else "gloo"


def join(config, local_rank: int) -> Ranks:
    """Join the group of ``world_size`` processes at ``ip:port`` as rank ``offset + local_rank``."""
    _, world_size, offset = processes(config)
    host, port = address(config)
    backend = group_backend(config)
    try:
        dist.init_process_group(
            backend=backend,
            init_method=f"tcp://{host}:{port}",
            rank=offset + local_rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=timeout_s(config)),
        )
    except (RuntimeError, ValueError) as error:  # torch's DistNetworkError and DistStoreError are RuntimeErrors
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserInputError(
            f"rank {offset + local_rank} could not join the group at {host}:{port}: {reason}"
        ) from None
    return current()


@contextlib.contextmanager
def collective_errors(config):
    """A collective step that fails (a peer gone, or silent past ``ddp_timeout``) as one line for the parent."""
    try:
        yield
    except RuntimeError as error:
        text = str(error).strip()
        if not isinstance(error, dist.DistError) and "gloo" not in text:
            raise
        reason = text.splitlines()[0] if text else type(error).__name__
        raise UserInputError(
            f"a collective step with the other ranks failed (ddp_timeout {timeout_s(config)} s): {reason}"
        ) from None


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if current().size > 1:
        dist.barrier()


def gather_to_first(value) -> list | None:
    """Every rank's ``value`` (picklable), in rank order, on rank 0; None elsewhere."""
    ranks = current()
    if ranks.size == 1:
        return [value]
    gathered = [None] * ranks.size if ranks.first else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def everyone(value) -> list:
    """Every rank's ``value`` (picklable), in rank order, on every rank."""
    ranks = current()
    if ranks.size == 1:
        return [value]
    gathered = [None] * ranks.size
    dist.all_gather_object(gathered, value)
    return gathered


def from_first(value):
    """Rank 0's ``value`` on every rank."""
    if current().size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
