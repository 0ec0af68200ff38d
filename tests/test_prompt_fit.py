"""Section budgets and truncation: oldest text goes first, headers, the candidate and answer slot never."""

from __future__ import annotations

import logging

import pytest

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.prompt_fit import PromptFitter, Section, header_tokens
from recbole_trsr.summary.prompts import numbered

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
    assert "3 of 4 prompts were cut to their token budgets" in caplog.text
    caplog.clear()
    fitter.fit_prefix(sections(summary="x", history="y"), longest_suffix=10)
    with caplog.at_level(logging.INFO):
        fitter.log_truncation()  # counts afresh after each log: one epoch's or evaluation's prompts
    assert caplog.text == ""


RECENT = "[Recent Items]\n{items}\n"
ITEMS = [f"Product {n} with a long description of its size, colour and brand" for n in range(12)]  # oldest first


def recent_items(fitter, items=ITEMS, budget=None, cut_order=None):
    """The recent-items section as LLMTRSR builds it: a header kept whole and numbered lines dropped whole."""

    def render(lines):
        return RECENT.format(items=numbered(lines))

    keep = header_tokens(fitter, RECENT, "items")
    return Section(render(items), budget, cut_order, keep=keep, lines=items, render=render)


def test_recent_items_over_their_budget_keep_their_header_and_newest_items_whole(tiny_lm):
    _, tokenizer = tiny_lm
    fitter = PromptFitter(tokenizer, max_tokens=2048)
    one_item = len(fitter.encode(RECENT.format(items=numbered(ITEMS[-1:]))))
    for budget in (one_item, one_item + 20, 90, 200):
        text = tokenizer.decode(fitter.fit_prefix([recent_items(fitter, budget=budget)], longest_suffix=10))
        kept = [item for item in ITEMS if item in text]
        # the newest that fit, renumbered from 1, and nothing of the items left out
        assert text == RECENT.format(items=numbered(kept)), budget
        assert len(fitter.encode(text)) <= budget
        assert len(fitter.encode(RECENT.format(items=numbered(ITEMS[-len(kept) - 1 :])))) > budget
        assert kept == ITEMS[-len(kept) :] and "Product 0 " not in text
    assert fitter.truncated == 4


def test_an_item_alone_over_the_budget_keeps_the_header_and_its_end(tiny_lm):
    _, tokenizer = tiny_lm
    fitter = PromptFitter(tokenizer, max_tokens=2048)
    keep = header_tokens(fitter, RECENT, "items")
    assert keep == len(fitter.encode("[Recent Items]\n")) > 0
    text = tokenizer.decode(fitter.fit_prefix([recent_items(fitter, budget=keep + 6)], longest_suffix=10))
    assert text.startswith("[Recent Items]\n") and text.endswith("brand\n") and "1. Product 11" not in text


def test_headers_stay_when_the_window_cuts_the_sections(tiny_lm):
    _, tokenizer = tiny_lm
    fitter = PromptFitter(tokenizer, max_tokens=2048)
    summary_template = "[Preference Summary]\n{summary}\n"
    summary = Section(
        summary_template.format(summary="likes makeup and skin care. " * 5),
        cut_order=1,
        keep=header_tokens(fitter, summary_template, "summary"),
    )
    prompt = [Section("Instruction: answer yes or no.\n"), summary, recent_items(fitter, cut_order=0)]
    full = len(fitter.fit_prefix(prompt, longest_suffix=0))
    items = len(fitter.encode(prompt[2].text)) - prompt[2].keep
    fitter.max_tokens = full - items  # room for no item: the recent items' header stays
    text = tokenizer.decode(fitter.fit_prefix(prompt, longest_suffix=0))
    assert text.endswith("skin care. \n[Recent Items]\n") and "likes makeup and skin care. " * 5 in text
    fitter.max_tokens -= 2
    text = tokenizer.decode(fitter.fit_prefix(prompt, longest_suffix=0))
    assert "[Preference Summary]\n and skin care." in text and text.endswith("[Recent Items]\n")


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
