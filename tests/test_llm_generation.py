"""Batched greedy generation: same texts as one prompt at a time, prompts' order kept, limits respected."""

from __future__ import annotations

import pytest

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.generation import GenerationSettings, encode_prompt, generate

PROMPTS = [
    "Summarize: a user bought red lipstick, black mascara and a pink blush palette.",
    "Is the sky blue?",
    "List three hair care products that a person with curly hair might buy, with one reason each.",
    "Hi",
    "Describe this shopper: bought nail polish remover twice, then cuticle oil.",
]


def test_batched_equals_one_at_a_time(tiny_lm):
    model, tokenizer = tiny_lm
    batched = generate(model, tokenizer, PROMPTS, GenerationSettings(max_new_tokens=12, batch_size=4), progress=False)
    single = [
        generate(model, tokenizer, [prompt], GenerationSettings(max_new_tokens=12, batch_size=1), progress=False)[0]
        for prompt in PROMPTS
    ]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.new_tokens for g in batched] == [g.new_tokens for g in single]
    assert all(0 < g.new_tokens <= 12 for g in batched)
    assert [g.prompt_tokens for g in batched] == [len(encode_prompt(tokenizer, p, True)) for p in PROMPTS]


def test_greedy_is_repeatable(tiny_lm):
    model, tokenizer = tiny_lm
    settings = GenerationSettings(max_new_tokens=10, batch_size=2)
    first = generate(model, tokenizer, PROMPTS, settings, progress=False)
    second = generate(model, tokenizer, PROMPTS, settings, progress=False)
    assert first == second


def test_chat_template_wraps_the_prompt(tiny_lm):
    _, tokenizer = tiny_lm
    with_template = tokenizer.decode(encode_prompt(tokenizer, "Hi", True))
    assert with_template.startswith("<|im_start|>") and with_template.rstrip().endswith("<|im_start|>assistant")
    assert tokenizer.decode(encode_prompt(tokenizer, "Hi", False)) == "Hi"


def test_default_model_stops_at_eos(default_llm):
    model, tokenizer = default_llm
    [answer] = generate(
        model,
        tokenizer,
        ["Answer with one word: what colour is grass?"],
        GenerationSettings(max_new_tokens=40),
        progress=False,
    )
    assert "green" in answer.text.lower()
    assert answer.new_tokens < 40  # ended at <|im_end|>, not at the limit
    assert "<|im_end|>" not in answer.text


def test_prompt_beyond_the_context_window(tiny_lm):
    model, tokenizer = tiny_lm
    with pytest.raises(UserInputError, match="exceeds the model's context window of 2048"):
        generate(model, tokenizer, ["word " * 2100], GenerationSettings(max_new_tokens=8), progress=False)


def test_a_static_cache_generates_the_same_summaries_under_the_same_store_key(tiny_lm, monkeypatch):
    """summary_cache: static is for a GPU's compiled decoding; the texts, and the key summaries are stored under,
    are those of the dynamic cache, so a store made either way serves the other."""
    from recbole_trsr.summary.backends import model_identity

    model, tokenizer = tiny_lm
    caches = []
    generate_of_model = model.generate

    def recorded(*args, **kwargs):
        config = kwargs["generation_config"]
        caches.append((config.cache_implementation, config.max_cache_len))
        return generate_of_model(*args, **kwargs)

    monkeypatch.setattr(model, "generate", recorded)
    dynamic = GenerationSettings(max_new_tokens=12, batch_size=2)
    static = GenerationSettings(max_new_tokens=12, batch_size=2, static_cache_tokens=96)
    expected = generate(model, tokenizer, PROMPTS, dynamic, progress=False)
    assert generate(model, tokenizer, PROMPTS, static, progress=False) == expected
    # 5 prompts in batches of 2, each way; every static call sized for the longest a run may ask for, so that the
    # shapes of a GPU's compiled step stay the same from call to call.
    assert caches == [(None, None)] * 3 + [("static", 96)] * 3
    assert model_identity("tiny", static) == model_identity("tiny", dynamic)


def test_an_unknown_summary_cache_ends_in_one_line(capsys, tiny_llm_overrides):
    from recbole_trsr.cli import main
    from tests.conftest import as_arguments

    arguments = as_arguments({**tiny_llm_overrides, "summary_cache": "fixed"})
    assert main(["--model=LLMTRSR", "--dataset=tiny", *arguments]) == 2
    error = capsys.readouterr().err.strip()
    assert "summary_cache must be dynamic or static, not 'fixed'" in error and len(error.splitlines()) == 1
