"""Section budgets and truncation: oldest text goes first, the candidate and answer slot never."""

from __future__ import annotations

import logging

import pytest

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.prompt_fit import PromptFitter, Section

HISTORY = "".join(f"item {n}; " for n in range(40))  # oldest first


def sections(summary="likes makeup and skin care. " * 5, history=HISTORY):
    return [
        Section("Instruction: answer yes or no.\n"),
        Section(summary, budget=None, cut_order=1),
        Section(history, budget=None, cut_order=0),
    ]


def test_prompt_within_budget_is_untouched(tiny_lm):
    _, tokenizer = tiny_lm
    fitter = PromptFitter(tokenizer, max_tokens=2048)
    ids = fitter.fit_prefix(sections(), longest_suffix=20)
    assert tokenizer.decode(ids) == "Instruction: answer yes or no.\n" + "likes makeup and skin care. " * 5 + HISTORY
    assert (fitter.prompts, fitter.truncated) == (1, 0)


def test_section_budget_keeps_the_newest_text(tiny_lm):
    _, tokenizer = tiny_lm
    fitter = PromptFitter(tokenizer, max_tokens=2048)
    parts = sections()
    parts[2].budget = 12
    text = tokenizer.decode(fitter.fit_prefix(parts, longest_suffix=20))
    assert text.endswith("item 39; ") and "item 0;" not in text
    assert fitter.truncated == 1


def test_window_cuts_oldest_history_first_then_summary(tiny_lm):
    _, tokenizer = tiny_lm
    fitter = PromptFitter(tokenizer, max_tokens=2048)
    full = len(fitter.fit_prefix(sections(), longest_suffix=0))
    history_tokens = len(tokenizer.encode(HISTORY, add_special_tokens=False))
    fitter.max_tokens = full + 30 - 10  # 10 tokens too many with a 30-token suffix
    text = tokenizer.decode(fitter.fit_prefix(sections(), longest_suffix=30))
    assert "likes makeup and skin care. " * 5 in text  # summary intact
    assert text.endswith("item 39; ") and "item 0;" not in text
    fitter.max_tokens = full + 30 - history_tokens - 5  # history gone, 5 tokens of summary to cut
    text = tokenizer.decode(fitter.fit_prefix(sections(), longest_suffix=30))
    assert "item" not in text and text.startswith("Instruction: answer yes or no.\n")
    assert text.endswith("skin care. ")


def test_uncuttable_parts_beyond_the_window(tiny_lm):
    _, tokenizer = tiny_lm
    fitter = PromptFitter(tokenizer, max_tokens=40)
    with pytest.raises(UserInputError, match="never cut"):
        fitter.fit_prefix(sections(), longest_suffix=39)


def test_truncation_count_is_logged(tiny_lm, caplog):
    _, tokenizer = tiny_lm
    fitter = PromptFitter(tokenizer, max_tokens=60)
    for _ in range(3):
        fitter.fit_prefix(sections(), longest_suffix=10)
    fitter.fit_prefix(sections(summary="x", history="y"), longest_suffix=10)
    with caplog.at_level(logging.INFO):
        fitter.log_truncation()
    assert "3 of 4 prompts were truncated" in caplog.text


def test_texts_encoded_together_get_the_ids_of_each_alone(tiny_lm):
    """Candidates are tokenized in one call per batch; a text's tokens must not depend on its neighbours."""
    _, tokenizer = tiny_lm
    fitter = PromptFitter(tokenizer, max_tokens=2048)
    texts = [
        " Nikon D3400 (bought 12 times, 0 times with the recent items)\nAnswer:",
        "",
        "  two leading spaces and a trailing one ",
        "Crème brûlée 🍮 set, 4 pcs.\n\n",
        "12345 digits",
    ]
    assert fitter.encode_many(texts) == [fitter.encode(text) for text in texts]
    assert fitter.encode_many([]) == []
