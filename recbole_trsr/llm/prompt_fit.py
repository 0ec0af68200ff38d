"""Token budgets for prompt sections, and truncation that keeps every prompt inside the context window.

A prompt is a prefix of sections (instruction, preference summary, recent items, ...) followed by a
suffix (the candidate and the answer slot). Sections hold text in time order, so truncation cuts from a
section's start, after its header: the oldest history and the oldest summary text go first. A section of
lines (the recent items) loses its oldest lines whole, so that no item is shown cut in half. The suffix is
never cut.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from recbole_trsr.errors import UserInputError

logger = logging.getLogger(__name__)
LINE_COUNTS_KEPT = 200_000  # lines are item texts: a catalogue's worth, then the counts start afresh


@dataclass
class Section:
    text: str
    budget: int | None = None  # most tokens the section keeps; None: no budget of its own
    cut_order: int | None = None  # sections with a number may be cut to fit, lowest first; None: never cut
    keep: int = 0  # leading tokens never cut: the section's header (see ``header_tokens``)
    lines: Sequence[str] = ()  # the section's lines, oldest first, when over its budget it drops the oldest whole
    render: Callable[[Sequence[str]], str] | None = None  # the section's text with only the given lines
    shortened: bool = False  # lines were dropped to fit the budget


def header_tokens(fitter: PromptFitter, template: str, placeholder: str) -> int:
    """How many leading tokens of ``template``'s sections are its header, the text before ``placeholder``: kept when
    the section is cut. 0 where the tokenizer merges the header's end with what follows it (then they are cut)."""
    header = template.split("{" + placeholder + "}", 1)[0]
    ids = fitter.encode(header)
    followed = [fitter.encode(header + start) for start in ("1. Item", "Likes", " likes", "- likes")]
    return len(ids) if all(other[: len(ids)] == ids for other in followed) else 0


class PromptFitter:
    """Encodes prompt prefixes within budgets and the context window, counting the prompts it truncated."""

    def __init__(self, tokenizer, max_tokens: int):
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.special_prefix = tokenizer("")["input_ids"]  # e.g. BOS, for tokenizers that add one
        self.prompts = 0
        self.truncated = 0
        self.line_counts: dict[str, int] = {}  # tokens of each line seen in a section over its budget (item texts)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def encode_many(self, texts: list[str]) -> list[list[int]]:
        """The token ids of each text, as ``encode`` gives them, from one tokenizer call over the distinct texts (a
        repeated text shares one list: do not change it in place). A fast tokenizer encodes a list in parallel,
        and each call costs ~0.1 ms of Python besides the work: 0.17 ms a candidate text one by one against 0.09
        in a list, on 2 CPU cores."""
        distinct = list(dict.fromkeys(texts))
        if not distinct:
            return []
        ids = dict(zip(distinct, self.tokenizer(distinct, add_special_tokens=False)["input_ids"], strict=True))
        return [ids[text] for text in texts]

    def fit_prefix(self, sections: list[Section], longest_suffix: int) -> list[int]:
        """The prefix's token ids, cut so that it and a suffix of ``longest_suffix`` tokens fit the window."""
        return self.fit_prefixes([sections], [longest_suffix])[0]

    def fit_prefixes(self, prompts: list[list[Section]], longest_suffixes: list[int]) -> list[list[int]]:
        """``fit_prefix`` of each prompt's sections, their texts tokenized in one call."""
        ids = iter(self.encode_many([section.text for sections in prompts for section in sections]))
        pieces = [[next(ids) for _ in sections] for sections in prompts]
        self.drop_oldest_lines(prompts, pieces)
        return [
            self.fit_pieces(sections, own, longest)
            for sections, own, longest in zip(prompts, pieces, longest_suffixes, strict=True)
        ]

    def drop_oldest_lines(self, prompts: list[list[Section]], pieces: list[list[list[int]]]) -> None:
        """Each section of lines over its budget keeps its newest lines that fit, whole (at least one), in place of
        ``pieces``. The count of lines is guessed from each line's tokens, then checked, one tokenizer call a round
        for all the sections."""
        over = [
            (p, i)
            for p, sections in enumerate(prompts)
            for i, section in enumerate(sections)
            if section.lines and section.budget is not None and len(pieces[p][i]) > section.budget
        ]
        if not over:
            return
        self.count_line_tokens([prompts[p][i].lines for p, i in over])
        tries = [(p, i, self.lines_that_fit(prompts[p][i], len(pieces[p][i]), self.line_counts)) for p, i in over]
        while tries:
            texts = [prompts[p][i].render(prompts[p][i].lines[-kept:]) for p, i, kept in tries]
            again = []
            for (p, i, kept), ids in zip(tries, self.encode_many(texts), strict=True):
                if len(ids) > prompts[p][i].budget and kept > 1:
                    again.append((p, i, kept - 1))
                else:
                    pieces[p][i] = ids
                    prompts[p][i].shortened = True
            tries = again

    def count_line_tokens(self, line_lists: list[Sequence[str]]) -> None:
        """``line_counts`` of the given sections' lines, the new ones tokenized in one call."""
        new = [
            line
            for line in dict.fromkeys(line for lines in line_lists for line in lines)
            if line not in self.line_counts
        ]
        if len(self.line_counts) + len(new) > LINE_COUNTS_KEPT:
            self.line_counts.clear()
        self.line_counts.update(zip(new, map(len, self.encode_many(new)), strict=True))

    @staticmethod
    def lines_that_fit(section: Section, section_tokens: int, counts: dict[str, int]) -> int:
        """A guess of how many newest lines of ``section`` fit its budget: each line costs its own tokens and a
        share of what the whole section spends besides them (numbers, line breaks), the header once."""
        lines = section.lines
        besides = max(section_tokens - section.keep - sum(counts[line] for line in lines), 0) / len(lines)
        used, kept = section.keep, 0
        for line in reversed(lines):
            used += counts[line] + besides
            if used > section.budget:
                break
            kept += 1
        return max(kept, 1)

    def fit_pieces(self, sections: list[Section], pieces: list[list[int]], longest_suffix: int) -> list[int]:
        """``fit_prefix`` for sections whose token ids (``pieces``, one list per section) are already known."""
        pieces = list(pieces)
        cut = any(section.shortened for section in sections)
        for index, section in enumerate(sections):
            if section.budget is not None and len(pieces[index]) > section.budget:
                pieces[index] = cut_after_header(pieces[index], section.keep, len(pieces[index]) - section.budget)
                cut = True
        room = self.max_tokens - longest_suffix - len(self.special_prefix)
        excess = sum(map(len, pieces)) - room
        cuttable = sorted((s.cut_order, i) for i, s in enumerate(sections) if s.cut_order is not None)
        for _, index in cuttable:
            if excess <= 0:
                break
            removed = min(excess, max(len(pieces[index]) - sections[index].keep, 0))
            pieces[index] = cut_after_header(pieces[index], sections[index].keep, removed)
            excess -= removed
            cut = cut or removed > 0
        if excess > 0:
            raise UserInputError(
                f"the parts of the prompt that are never cut (instruction, section headers, candidate, answer slot) "
                f"need {self.max_tokens + excess} tokens, more than the context window of {self.max_tokens}"
            )
        self.prompts += 1
        self.truncated += cut
        return self.special_prefix + [token for piece in pieces for token in piece]

    def log_truncation(self, log: logging.Logger = logger) -> None:
        """Log how many prompts since the last call were cut, then count afresh."""
        if self.truncated:
            log.info(
                f"{self.truncated} of {self.prompts} prompts were cut to their token budgets (summary_max_tokens, "
                f"recent_max_tokens, the context window): their oldest recent items or summary text left out"
            )
        self.prompts = self.truncated = 0


def cut_after_header(ids: list[int], keep: int, count: int) -> list[int]:
    """``ids`` without ``count`` tokens after its first ``keep`` (the header); never the header itself."""
    return ids[:keep] + ids[keep + max(count, 0) :]
