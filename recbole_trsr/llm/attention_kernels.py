"""Which of PyTorch's attention kernels the LLM runs on CUDA, and why.

- cuDNN's attention (the first choice of ``scaled_dot_product_attention`` on an H100) builds an execution plan
  for every new shape, and prompts here change shape with every batch and every generated token. On one H100
  that cost 0.65 s per LoRA training pass whatever its size (5.9 rows/s) and held generation at 1,240 tokens/s
  at batch 128 (RESULTS.md, 2026-11-27). Flash and memory-efficient attention need no plan.
- Under ``torch.use_deterministic_algorithms`` (RecBole's ``reproducibility`` on a GPU), flash and
  memory-efficient attention keep their non-deterministic backward (atomic adds) and only warn, so training
  attends through the math kernel, whose backward is ordinary matrix products. Inference has no backward and
  keeps the fast kernels.
"""

from __future__ import annotations

import contextlib

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel


def avoid_planned_attention(device) -> None:
    """Turns cuDNN's attention off for this process once an LLM runs on CUDA (a no-op elsewhere)."""
    if torch.device(device).type == "cuda":
        torch.backends.cuda.enable_cudnn_sdp(False)


def training_attention(device) -> contextlib.AbstractContextManager:
    """The attention kernels for a training forward on ``device``: the math kernel when CUDA must be deterministic."""
    if torch.device(device).type == "cuda" and torch.are_deterministic_algorithms_enabled():
        return sdpa_kernel([SDPBackend.MATH])
    return contextlib.nullcontext()
