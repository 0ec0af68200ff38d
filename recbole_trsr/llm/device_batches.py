"""Batch sizes that follow the device: the CPU's measured best, or what a GPU's free memory holds."""

from __future__ import annotations

import torch

from recbole_trsr.errors import UserInputError

# 4.6x the tokens/s of batch 1 on 2 CPU cores (benchmarks/RESULTS.md, 2026-11-24).
CPU_GENERATION_BATCH = 16
# On an H100 the default model's tokens/s grew with the batch at every size measured (374 at 16 and 2,352 at 256 in
# issue 13's measurement; 697 at 64 and 1,240 at 128 on 2026-11-27): a decoding step costs about the same whatever
# its batch, so the batch is as large as memory allows, up to 1,024 (about 23 GB of float16 KV cache for the default
# model's longest summary prompts). 512 and 1,024 are not measured yet (benchmarks/gpu_session.sh does).
GPU_GENERATION_BATCH_CAP = 1024
# The rest of the free memory is left to prefill activations, the logits and other processes on the GPU.
MEMORY_SHARE = 0.5


def kv_cache_bytes_per_token(model_config, dtype: torch.dtype) -> int:
    """Keys and values of one token over all layers (grouped-query attention keeps fewer heads)."""
    heads = model_config.num_attention_heads
    kv_heads = getattr(model_config, "num_key_value_heads", None) or heads
    head_dim = getattr(model_config, "head_dim", None) or model_config.hidden_size // heads
    return 2 * model_config.num_hidden_layers * kv_heads * head_dim * torch.empty((), dtype=dtype).element_size()


def generation_batch_size(device_type: str, free_bytes: int, bytes_per_sequence: int) -> int:
    if device_type != "cuda":
        return CPU_GENERATION_BATCH
    fits = int(free_bytes * MEMORY_SHARE // max(1, bytes_per_sequence))
    return max(1, min(GPU_GENERATION_BATCH_CAP, fits))


def summary_sequence_tokens(config, context_window: int) -> int:
    """The longest summary prompt and its answer, bounded from the settings: a block of capped item texts, or the
    merge of ``max_blocks`` summaries, with room for the template."""
    new_tokens = config["summary_max_new_tokens"]
    item_tokens = config["item_max_tokens"]
    block = config["block_size"] * item_tokens if item_tokens else context_window
    merge = config["max_blocks"] * new_tokens
    return min(context_window, max(block, merge) + 256 + new_tokens)


def summary_server_concurrency(config) -> int:
    """Requests a server backend keeps in flight: a server such as vLLM batches the requests it holds."""
    value = config["summary_server_concurrency"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserInputError(f"summary_server_concurrency must be a positive whole number, not {value!r}")
    return value


def summary_batch_size(config, model=None) -> int:
    """``summary_batch_size`` as given, or for ``auto`` the device's (see generation_batch_size). Without a model
    (a server generates), the batch is how many prompts go to the server before they are committed together:
    ``auto`` is the CPU's, or ``summary_server_concurrency`` when that is larger, so that every request slot has a
    prompt."""
    value = config["summary_batch_size"]
    concurrency = summary_server_concurrency(config)  # checked here too: check_config's one call covers both
    if value != "auto":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"summary_batch_size must be a positive whole number or auto, not {value!r}")
        return value
    if model is None:
        return max(CPU_GENERATION_BATCH, concurrency)
    weights = next(model.parameters())
    free = torch.cuda.mem_get_info(weights.device)[0] if weights.device.type == "cuda" else 0
    per_sequence = kv_cache_bytes_per_token(model.config, weights.dtype) * summary_model_tokens(config, model)
    return generation_batch_size(weights.device.type, free, per_sequence)


def summary_model_tokens(config, model) -> int:
    """``summary_sequence_tokens`` within ``model``'s context window."""
    return summary_sequence_tokens(config, int(getattr(model.config, "max_position_embeddings", 0) or 2048))


def train_examples_per_pass(config, device) -> int | None:
    """``train_examples_per_pass`` as given (None: a whole batch in one pass), or for ``auto`` the device's.

    On a CPU, one example at a time: activations of whole batches took most of the memory of a training run
    (RESULTS.md, 2026-11-26). A GPU holds a default batch's activations many times over, and every extra pass
    costs it a round of kernel launches that it waits on: 16 examples in one pass trained 10x the rows/s of
    one-example passes on an H100 (2026-11-27).
    """
    value = config["train_examples_per_pass"]
    if value == "auto":
        return 1 if torch.device(device).type == "cpu" else None
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise UserInputError(f"train_examples_per_pass must be a positive whole number, ~ or auto, not {value!r}")
    return value


# Users per scoring step for eval_batch_size: auto. On a CPU, 4 (the measured default since 2026-11-24). On a GPU a
# step launches the same kernels for 4 users as for 64 (16 users a step scored 2,214 candidates/s on an H100, far
# below its compute), and by estimate 64 users' prefixes (~600 tokens) and candidates keep their explicit attention
# scores within ~2 GB in float32. Not yet measured at 64 (benchmarks/gpu_session.sh does).
CPU_SCORING_USERS, GPU_SCORING_USERS = 4, 64


def eval_batch_size(value, candidates_per_user: int, device) -> int:
    """``eval_batch_size`` as given, or for ``auto`` whole users' candidates: 4 users on a CPU, 64 on a GPU."""
    if value != "auto":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserInputError(f"eval_batch_size must be a positive whole number or auto, not {value!r}")
        return value
    users = CPU_SCORING_USERS if torch.device(device).type == "cpu" else GPU_SCORING_USERS
    return users * candidates_per_user
