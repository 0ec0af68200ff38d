"""The summarizer's prompt templates (the paper's Amazon wording) and how blocks and summaries fill them."""

from __future__ import annotations

from dataclasses import dataclass

BLOCK = (
    "Given the following historical purchase data of a user, including the titles, descriptions, and "
    "attributes of the items they have bought, craft a concise summary that captures the user's preferences, "
    "personality, and shopping habits.\n{items}"
)
UPDATE = (
    "Given the following summary of a user's preferences and a list of recent purchases they have made, "
    "analyze whether the user's shopping preferences and habits have changed. Taking into account both the "
    "existing summary of user preferences and the user's most recent purchase records, generate an updated "
    "concise summary that captures the user's preferences, personality, and shopping habits. It should serve "
    "as a complete summary of the user, rather than a separate narrative of the user's original summary and "
    "current preferences.\n[Summary]\n{summary}\n[Recent Purchases]\n{items}"
)
MERGE = (
    "Given a series of user preferences summaries arranged in chronological order, generate a concise "
    "summary that encapsulates the user's overall preference.\n{summaries}"
)


@dataclass(frozen=True)
class SummaryPrompts:
    """Templates with the placeholders {items}, {summary} (update) and {summaries} (merge).

    ``numbered``: items and summaries as ``1. ...`` lines, or plain lines (the paper's code). ``summary_label``:
    a label before each merged summary, with ``{n}`` for its number from 0 (the paper's code writes
    ``[Preference Summary {n}:\n]``); empty: none.
    """

    block: str = BLOCK
    update: str = UPDATE
    merge: str = MERGE
    numbered: bool = True
    summary_label: str = ""

    def lines(self, texts: list[str]) -> str:
        return numbered(texts) if self.numbered else "\n".join(texts)

    def block_prompt(self, item_texts: list[str]) -> str:
        return self.block.format(items=self.lines(item_texts))

    def update_prompt(self, summary: str, item_texts: list[str]) -> str:
        return self.update.format(summary=summary, items=self.lines(item_texts))

    def merge_prompt(self, summaries: list[str]) -> str:
        if self.summary_label:
            summaries = [self.summary_label.format(n=n) + text for n, text in enumerate(summaries)]
        return self.merge.format(summaries=self.lines(summaries))


def numbered(lines: list[str]) -> str:
    return "\n".join(f"{n}. {line}" for n, line in enumerate(lines, start=1))
