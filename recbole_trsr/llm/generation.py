"""Batched, deterministic text generation: left padding, greedy decoding, prompts grouped by length."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.memory_halving import HalvingSize


@dataclass
class GenerationSettings:
    max_new_tokens: int = 128
    batch_size: int = 8
    greedy: bool = True  # sampling makes stored summaries irreproducible; kept as an explicit choice
    use_chat_template: bool = True  # when the tokenizer has one
    # The length of a static KV cache (summary_cache: static), or None for the dynamic one. With a static cache on a
    # GPU, transformers compiles each decoding step into CUDA graphs (torch.compile, mode reduce-overhead), so that a
    # step stops costing the host's launch of every operator of every layer. The length is the longest prompt and
    # answer the run may ask for (summary_sequence_tokens): the summarizer calls generate once per chunk, shortest
    # prompts first, so a cache sized to each call would grow, and recompile, call after call.
    static_cache_tokens: int | None = None
    # summary_batch_size: auto. A batch that runs out of device memory runs again in halves, and batch_size stays
    # halved for later calls (memory_halving).
    batch_follows_memory: bool = False


@dataclass
class Generated:
    text: str
    prompt_tokens: int
    new_tokens: int


def context_window(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", 0) or 2**31)


def encode_prompt(tokenizer, prompt: str, use_chat_template: bool) -> list[int]:
    if use_chat_template and tokenizer.chat_template:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return tokenizer(prompt)["input_ids"]


def summary_static_cache(config) -> bool:
    """``summary_cache``: static or dynamic (see GenerationSettings.static_cache_tokens)."""
    value = config["summary_cache"]
    if value not in ("dynamic", "static"):
        raise UserInputError(f"summary_cache must be dynamic or static, not {value!r}")
    return value == "static"


def summary_prompts(batch: list) -> str:
    return f"a batch of {len(batch)} summary prompt{'s' * (len(batch) != 1)}"


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: list[str],
    settings: GenerationSettings | None = None,
    progress: bool = True,
    desc: str = "generating",
) -> list[Generated]:
    """Generate one completion per prompt, in the prompts' order.

    Prompts are sorted by length so that each batch pads little; the progress bar counts prompts and
    shows generated tokens per second.
    """
    from transformers import GenerationConfig

    settings = settings or GenerationSettings()
    encoded = [encode_prompt(tokenizer, prompt, settings.use_chat_template) for prompt in prompts]
    limit = context_window(model)
    for index, ids in enumerate(encoded):
        if len(ids) + settings.max_new_tokens > limit:
            raise UserInputError(
                f"prompt {index} has {len(ids)} tokens; with max_new_tokens={settings.max_new_tokens} it "
                f"exceeds the model's context window of {limit} tokens"
            )
    generation_config = GenerationConfig(
        max_new_tokens=settings.max_new_tokens,
        do_sample=not settings.greedy,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        cache_implementation="static" if settings.static_cache_tokens else None,
        max_cache_len=settings.static_cache_tokens,
    )
    order = sorted(range(len(prompts)), key=lambda index: -len(encoded[index]))
    results: list[Generated | None] = [None] * len(prompts)
    device = next(model.parameters()).device
    started, generated_tokens = time.perf_counter(), 0
    bar = tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress)
    size = HalvingSize(
        settings.batch_size,
        settings.batch_follows_memory,
        "summary_batch_size",
        f"lower summary_batch_size (now {settings.batch_size})",
        f"lower summary_max_new_tokens (now {settings.max_new_tokens}) or item_max_tokens",
    )

    def generated(batch: list[int]) -> tuple[torch.Tensor, int]:
        padded = tokenizer.pad(
            {"input_ids": [encoded[index] for index in batch]}, padding_side="left", return_tensors="pt"
        ).to(device)
        return model.generate(**padded, generation_config=generation_config), padded["input_ids"].shape[1]

    for batch, (output, prompt_width) in size.run(order, generated, summary_prompts):
        settings.batch_size = size.size  # later calls start from what fits
        new = output[:, prompt_width:]
        for row, index in enumerate(batch):
            tokens = new[row].tolist()
            if tokenizer.eos_token_id in tokens:
                tokens = tokens[: tokens.index(tokenizer.eos_token_id) + 1]
            text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
            results[index] = Generated(text, len(encoded[index]), len(tokens))
            generated_tokens += len(tokens)
        bar.update(len(batch))
        bar.set_postfix(tokens_per_s=f"{generated_tokens / (time.perf_counter() - started):.1f}")
    bar.close()
    return results
