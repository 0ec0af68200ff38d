"""Item text, rendered as ``field: value; field: value`` from a dataset's .item atomic file.

The text is read from the file itself, not from RecBole's item features: RecBole normalizes floats
(price), fills empty floats with the column mean and turns token_seq values into ids, none of which
belongs in a prompt.
"""

from __future__ import annotations

import ast
import html
import re

from recbole_trsr.atomic_files import read_atomic
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


HTML_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.DOTALL)  # an unterminated comment runs to the end
HTML_BLOCK = re.compile(r"<(style|script)\b.*?(?:</\1\s*>|$)", re.DOTALL | re.IGNORECASE)
HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
ESCAPED_BREAK = re.compile(r"\\[ntr]")  # a literal backslash-n written into the data


def flattened_list(value: str) -> str:
    """A Python list literal of strings (``['line one', 'line two']``, as some metadata stores descriptions)
    as its strings joined; anything else unchanged."""
    if not (value.startswith("[") and value.endswith("]")):
        return value
    try:
        parts = ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value
    if isinstance(parts, list) and parts and all(isinstance(part, str) for part in parts):
        return " ".join(parts)
    return value


def clean_text(value: str) -> str:
    """A metadata value as prose: entities unescaped, HTML (tags, comments, CSS, scripts) and escaped line
    breaks removed, list literals flattened, whitespace collapsed."""
    value = flattened_list(html.unescape(value).strip())
    value = HTML_TAG.sub(" ", HTML_BLOCK.sub(" ", HTML_COMMENT.sub(" ", value)))
    return " ".join(ESCAPED_BREAK.sub(" ", value).split())


class ItemTexts:
    """Rendered text of every item of one .item file, looked up by the item's token (its id in the file).

    Empty fields are left out; an item with no text at all renders as the empty string.
    """

    def __init__(self, item_file, text_fields, id_field="item_id", field_separator="\t"):
        frame = read_atomic(item_file, field_separator)
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
                value = clean_text(value)  # the Amazon metadata carries entities like &#39;, some HTML
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


def word_boundary_cut(full: str, cut: str) -> str:
    """``cut`` (a token-level prefix of ``full``) without a word it cut in two."""
    cut = cut.rstrip()
    if full.startswith(cut) and len(full) > len(cut) and not full[len(cut)].isspace():
        shorter = cut.rsplit(None, 1)[0] if len(cut.split()) > 1 else cut
        cut = shorter.rstrip(" ,;:-")
    return cut.strip()


def capped_texts(item_texts: ItemTexts, tokenizer, max_tokens: int):
    """item token -> its text cut to ``max_tokens`` tokens of ``tokenizer``, each item tokenized once."""
    cache: dict[str, str] = {}

    def text(token: str) -> str:
        if token not in cache:
            full = item_texts.text(token)
            ids = tokenizer.encode(full, add_special_tokens=False)
            cache[token] = (
                full if len(ids) <= max_tokens else word_boundary_cut(full, tokenizer.decode(ids[:max_tokens]))
            )
        return cache[token]

    return text
