"""RecBole's ``init_seed``, made whole on CUDA."""

from __future__ import annotations

import os

import torch
from recbole.utils import init_seed


def seed_everything(config) -> None:
    """Seed as RecBole does; with ``reproducibility`` on a CUDA device, also choose the deterministic kernels.

    RecBole's cuDNN flags leave CUDA's atomic-add kernels in place (the backward of gather and embedding lookups),
    so the same seed gave other metrics on a GPU. cuBLAS needs a fixed workspace for the same reason; the variable
    is read when the first cuBLAS handle is made, so set it before the first matrix product to be sure of it.
    """
    init_seed(config["seed"], config["reproducibility"])
    on_cuda = torch.device(config["device"]).type == "cuda"
    deterministic = bool(config["reproducibility"]) and on_cuda
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op without a deterministic kernel still runs (with a warning), as RecBole's own runs would.
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
