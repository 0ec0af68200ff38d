"""Randomly initialised causal LMs of a given shape: a tiny one for unit tests, real shapes for speed figures.

Weights are random, so outputs mean nothing; shapes, tokenizers and code paths are those of real models.
"""

from __future__ import annotations

import torch

TINY_LLAMA = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=2048,
    tie_word_embeddings=True,
)

# Qwen2.5-0.5B's published shape (config.json of the hub model), for GPU speed figures.
QWEN25_05B = dict(
    model_type="qwen2",
    vocab_size=151936,
    hidden_size=896,
    intermediate_size=4864,
    num_hidden_layers=24,
    num_attention_heads=14,
    num_key_value_heads=2,
    max_position_embeddings=32768,
    rope_theta=1000000.0,
    rms_norm_eps=1e-6,
    tie_word_embeddings=True,
)


def random_causal_lm(
    shape: dict, vocab_size: int | None = None, seed: int = 0, dtype=torch.float32, attn_implementation: str = "sdpa"
):
    """A model of ``shape`` (keyword arguments of the architecture's config) with seeded random weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    shape = dict(shape)
    model_type = shape.pop("model_type", "llama")
    if vocab_size is not None:
        shape["vocab_size"] = vocab_size
    config = AutoConfig.for_model(model_type, **shape)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn_implementation)
    return model.eval()


def tiny_llama(tokenizer, seed: int = 0, layers: int = 2):
    """A 64-wide Llama (2 layers unless told) over ``tokenizer``'s vocabulary, built in about a second."""
    shape = {**TINY_LLAMA, "num_hidden_layers": layers}
    model = random_causal_lm(shape, vocab_size=len(tokenizer), seed=seed)
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.bos_token_id = tokenizer.bos_token_id
    return model
