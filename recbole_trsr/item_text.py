"""Item text, rendered as ``field: value; field: value`` from a dataset's .item atomic file.

The text is read from the file itself, not from RecBole's item features: RecBole normalizes floats
(price), fills empty floats with the column mean and turns token_seq values into ids, none of which
belongs in a prompt.
"""

from __future__ import annotations

import ast
import html
import os
import re

from recbole_trsr.atomic_files import read_atomic
from recbole_trsr.datasets import atomic_file, distinct_inter_values, read_header
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

    def __init__(self, item_file, text_fields, id_field="item_id", field_separator="\t", encoding="utf-8"):
        frame = read_atomic(item_file, field_separator, encoding)
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
            text = FIELD_SEPARATOR_IN_TEXT.join(parts)
            if self._texts.setdefault(row[0], text) != text:  # a repeated identical row is harmless
                raise UserInputError(
                    f"{item_file} has two rows for item '{row[0]}' with different text; keep one row per item"
                )

    @classmethod
    def from_config(cls, config):
        """The run's item texts, read once per file version and settings (the config check reads them first)."""
        path = atomic_file(config, "item")
        stat = os.stat(path)
        fields = tuple(config["item_text_fields"] or [])
        settings = (config["ITEM_ID_FIELD"], config["field_separator"], config["encoding"] or "utf-8")
        key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, fields, settings)
        if key not in _read:
            _read.clear()  # one dataset's texts at a time
            _read[key] = cls(path, fields, *settings)
        return _read[key]

    def __len__(self):
        return len(self._texts)

    def __iter__(self):
        return iter(self._texts)

    def __contains__(self, token):
        return token in self._texts

    def text(self, token: str) -> str:
        """The item's text; the empty string for an item the .item file does not list."""
        return self._texts.get(token, "")


_read: dict[tuple, ItemTexts] = {}


def check_item_texts(config) -> str | None:
    """What a model that reads item text needs, checked before any model of a comparison trains: item_text_fields
    set, one text per item, and text for the interactions' items. None with text is an error (the LLM would
    rank by nothing: the two files' item ids differ, or the fields are empty). Some without: the warning to log
    once the run's logger is set up, returned."""
    item_file = atomic_file(config, "item")
    if not config["item_text_fields"]:
        columns = (
            f"its columns: {', '.join(read_header(item_file, config['field_separator']))}"
            if os.path.isfile(item_file)
            else f"{item_file} does not exist"
        )
        raise UserInputError(
            f"{config['model']} needs item text: set item_text_fields to columns of {config['dataset']}.item "
            f"({columns}), as --item_text_fields=[a,b] or in properties/dataset/{config['dataset']}.yaml "
            "(here or in the package) or a --config_files file"
        )
    texts = ItemTexts.from_config(config)
    items = sorted(filter(None, distinct_inter_values(config, config["ITEM_ID_FIELD"])))  # RecBole drops ''.
    unlisted = [token for token in items if token not in texts]
    empty = [token for token in items if token in texts and not texts.text(token)]
    if not unlisted and not empty:
        return None
    fields = ", ".join(texts.text_fields)
    detail = (
        f"{len(unlisted)} have no row in {item_file}, {len(empty)} an empty {fields}; e.g. item "
        f"'{(unlisted or empty)[0]}'"
    )
    if len(unlisted) + len(empty) == len(items):
        raise UserInputError(
            f"none of the {len(items)} items of {config['dataset']}.inter has text ({detail}): check the item ids "
            "of both files and item_text_fields"
        )
    return (
        f"{len(unlisted) + len(empty)} of the {len(items)} items of {config['dataset']}.inter have no text "
        f"({detail}): their prompts show none"
    )


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
