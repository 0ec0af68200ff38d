"""Item text, rendered as ``field: value; field: value`` from a dataset's .item atomic file.

The text is read from the file itself, not from RecBole's item features: RecBole normalizes floats
(price), fills empty floats with the column mean and turns token_seq values into ids, none of which
belongs in a prompt.
"""

from __future__ import annotations

import ast
import csv
import html

import pandas as pd

from recbole_trsr.datasets import atomic_file
from recbole_trsr.errors import UserInputError

FIELD_SEPARATOR_IN_TEXT = "; "


def readable_sequence(value: str) -> str:
    """A token_seq value as a reader would write it.

    Amazon's categories are Python string literals (``'Beauty', "Women's"``): they become plain
    comma-separated names. Any other value (ml-100k's title words, its genre tags) is kept as written:
    whether its tokens are words or tags cannot be told apart, and as written reads right for both.
    """
    try:
        names = ast.literal_eval(f"[{value}]")
    except (ValueError, SyntaxError):
        return value
    if names and all(isinstance(name, str) for name in names):
        return ", ".join(name.strip() for name in names if name.strip())
    return value


class ItemTexts:
    """Rendered text of every item of one .item file, looked up by the item's token (its id in the file).

    Empty fields are left out; an item with no text at all renders as the empty string.
    """

    def __init__(self, item_file, text_fields, id_field="item_id", field_separator="\t"):
        frame = pd.read_csv(
            item_file,
            sep=field_separator,
            dtype=str,
            keep_default_na=False,
            quoting=csv.QUOTE_NONE,
            encoding="utf-8",
        )
        names, types = zip(*(column.split(":", 1) for column in frame.columns), strict=True)
        frame.columns = names
        field_types = dict(zip(names, types, strict=True))
        for field in [id_field, *text_fields]:
            if field not in field_types:
                raise UserInputError(f"{item_file} has no column '{field}' named in item_text_fields")
        self.text_fields = list(text_fields)
        self._texts = {}
        for row in frame[[id_field, *text_fields]].itertuples(index=False):
            parts = []
            for field, value in zip(text_fields, row[1:], strict=True):
                value = html.unescape(value).strip()  # the Amazon metadata carries entities like &#39;
                if field_types[field] == "token_seq":
                    value = readable_sequence(value)
                if value:
                    parts.append(f"{field}: {value}")
            self._texts[row[0]] = FIELD_SEPARATOR_IN_TEXT.join(parts)

    @classmethod
    def from_config(cls, config):
        return cls(
            atomic_file(config, "item"),
            config["item_text_fields"] or [],
            id_field=config["ITEM_ID_FIELD"],
            field_separator=config["field_separator"],
        )

    def __len__(self):
        return len(self._texts)

    def __iter__(self):
        return iter(self._texts)

    def __contains__(self, token):
        return token in self._texts

    def text(self, token: str) -> str:
        """The item's text; the empty string for an item the .item file does not list."""
        return self._texts.get(token, "")


def capped_texts(item_texts: ItemTexts, tokenizer, max_tokens: int):
    """item token -> its text cut to ``max_tokens`` tokens of ``tokenizer``, each item tokenized once."""
    cache: dict[str, str] = {}

    def text(token: str) -> str:
        if token not in cache:
            full = item_texts.text(token)
            ids = tokenizer.encode(full, add_special_tokens=False)
            cache[token] = full if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens]).strip()
        return cache[token]

    return text
