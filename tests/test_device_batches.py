"""Batch sizes that follow the device: the CPU's measured best, a GPU's memory, and one-line errors."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.device_batches import (
    CPU_GENERATION_BATCH,
    GPU_GENERATION_BATCH_CAP,
    GPU_SCORING_USERS,
    eval_batch_size,
    generation_batch_size,
    kv_cache_bytes_per_token,
    summary_batch_size,
    summary_sequence_tokens,
    train_examples_per_pass,
)
from recbole_trsr.runner import build_config

SETTINGS = {
    "summary_max_new_tokens": 128,
    "item_max_tokens": 64,
    "block_size": 5,
    "max_blocks": 5,
    "summary_server_concurrency": 8,
}


def test_kv_cache_of_the_default_model_and_of_a_model_without_grouped_heads():
    # SmolLM2-135M: 30 layers, 3 key/value heads of 64; float16 keys and values of one token take 23,040 bytes.
    smollm = LlamaConfig(num_hidden_layers=30, hidden_size=576, num_attention_heads=9, num_key_value_heads=3)
    assert kv_cache_bytes_per_token(smollm, torch.float16) == 2 * 30 * 3 * 64 * 2
    plain = LlamaConfig(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32)
    plain.num_key_value_heads = None  # an older config without the field: every head keeps its keys and values
    assert kv_cache_bytes_per_token(plain, torch.float32) == 2 * 32 * 32 * 128 * 4


def test_a_gpu_takes_what_half_its_free_memory_holds_up_to_the_cap():
    gib = 2**30
    assert generation_batch_size("cpu", 80 * gib, 1) == CPU_GENERATION_BATCH  # the CPU's best, whatever is free
    assert generation_batch_size("cuda", 80 * gib, 2**20) == GPU_GENERATION_BATCH_CAP  # the default model fits more
    assert (
        generation_batch_size("cuda", 80 * gib, 45 * 2**20) == 910
    )  # float32 KV of the default model, 1,024-token prompts: 45 MiB
    assert generation_batch_size("cuda", 16 * gib, gib // 8) == 64  # 8 GiB of KV cache at 128 MiB a sequence
    assert generation_batch_size("cuda", gib // 4, gib) == 1  # never zero


def test_the_longest_summary_prompt_is_bounded_by_the_settings():
    assert summary_sequence_tokens(SETTINGS, 8192) == 5 * 128 + 256 + 128  # the merge of 5 summaries
    assert summary_sequence_tokens({**SETTINGS, "item_max_tokens": 200}, 8192) == 5 * 200 + 256 + 128  # a block
    assert summary_sequence_tokens({**SETTINGS, "item_max_tokens": None}, 2048) == 2048  # uncapped: the window


def test_auto_on_the_cpu_and_a_given_size(tiny_lm):
    model, _ = tiny_lm
    assert summary_batch_size({**SETTINGS, "summary_batch_size": "auto"}, model) == CPU_GENERATION_BATCH
    assert summary_batch_size({**SETTINGS, "summary_batch_size": "auto"}) == CPU_GENERATION_BATCH  # a server's
    assert summary_batch_size({**SETTINGS, "summary_batch_size": 3}, model) == 3


def test_a_servers_batch_fills_every_request_slot():
    server = {**SETTINGS, "summary_batch_size": "auto", "summary_server_concurrency": 256}
    assert summary_batch_size(server) == 256  # 16 at a time would leave 240 of vLLM's slots empty
    assert summary_batch_size({**server, "summary_batch_size": 32}) == 32  # as given


@pytest.mark.parametrize("value", [0, -2, 1.5, "many", True, None])
def test_a_bad_summary_server_concurrency_is_one_line(value):
    with pytest.raises(
        UserInputError, match=f"^summary_server_concurrency must be a positive whole number, not {value!r}$"
    ):
        summary_batch_size({**SETTINGS, "summary_batch_size": "auto", "summary_server_concurrency": value})


@pytest.mark.parametrize("value", [0, -2, 1.5, "big", True])
def test_a_bad_summary_batch_size_is_one_line(value):
    with pytest.raises(
        UserInputError, match=f"^summary_batch_size must be a positive whole number or auto, not {value!r}$"
    ):
        summary_batch_size({**SETTINGS, "summary_batch_size": value})


def test_training_passes_follow_the_device():
    assert train_examples_per_pass({"train_examples_per_pass": "auto"}, "cpu") == 1  # activations of one example
    assert train_examples_per_pass({"train_examples_per_pass": "auto"}, "cuda:0") is None  # the whole batch at once
    assert train_examples_per_pass({"train_examples_per_pass": 3}, "cuda") == 3
    assert train_examples_per_pass({"train_examples_per_pass": None}, "cpu") is None


@pytest.mark.parametrize("value", [0, -1, 2.5, "many", True])
def test_a_bad_train_examples_per_pass_is_one_line(value):
    with pytest.raises(
        UserInputError, match=f"^train_examples_per_pass must be a positive whole number, ~ or auto, not {value!r}$"
    ):
        train_examples_per_pass({"train_examples_per_pass": value}, "cpu")


def test_scoring_steps_hold_whole_users_and_more_of_them_on_a_gpu():
    assert eval_batch_size("auto", 21, "cpu") == 4 * 21  # the CPU default since 2026-11-24
    assert eval_batch_size("auto", 21, "cuda") == GPU_SCORING_USERS * 21
    assert eval_batch_size(500, 21, "cuda") == 500


def test_auto_eval_batch_size_reaches_recboles_data_loaders(tiny_overrides):
    config = build_config("LLMTRSR", "tiny", overrides={**tiny_overrides, "eval_batch_size": "auto"})
    assert config["eval_batch_size"] == (4 if config["device"].type == "cpu" else GPU_SCORING_USERS) * 21
    mixed = {**tiny_overrides, "eval_batch_size": "auto", "eval_args": "{'mode': {'valid': 'uni20', 'test': 'pop100'}}"}
    config = build_config("LLMTRSR", "tiny", overrides=mixed)
    assert config["eval_batch_size"] == (4 if config["device"].type == "cpu" else GPU_SCORING_USERS) * 101


@pytest.mark.parametrize("value", [0, "big", 2.5])
def test_a_bad_eval_batch_size_is_one_line(value):
    with pytest.raises(
        UserInputError, match=f"^eval_batch_size must be a positive whole number or auto, not {value!r}$"
    ):
        eval_batch_size(value, 21, "cpu")
