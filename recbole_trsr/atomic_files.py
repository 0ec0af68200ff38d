"""Atomic files read the way RecBole reads them, and checked first, so that a bad file ends in one line.

RecBole answers a damaged file deep inside pandas (``Unable to convert column timestamp``, ``Length mismatch``,
``Some feat is empty``, ``UnicodeDecodeError``), or not at all: a line break inside a value silently makes a
second, shifted row. ``check_atomic_file`` reads the file once and names the file, the line and the value.
"""

from __future__ import annotations

import csv
import math
import os
import re

import pandas as pd

from recbole_trsr.errors import UserInputError

FEATURE_TYPES = ("token", "token_seq", "float", "float_seq")

_checked: set[tuple] = set()
# The line breaks of pandas' reader (and RecBole's); str.splitlines also breaks at form feeds, U+2028 and others,
# which are text inside a value there.
LINE_BREAKS = re.compile(r"\r\n|\r|\n")
# csv's default limit of 131,072 characters a field refused a long item description with a parser traceback;
# item_max_tokens cuts the text afterwards.
csv.field_size_limit(2**31 - 1)


def header_fields(path: str, separator: str, encoding: str = "utf-8") -> list[tuple[str, str]]:
    """(name, type) of every column of an atomic file's header, checked."""
    with open(path, encoding=encoding, errors="replace") as stream:
        header = stream.readline().rstrip("\r\n")
    fields = []
    for column in header.split(separator):
        name, colon, kind = column.partition(":")
        if not colon or kind not in FEATURE_TYPES:
            raise UserInputError(
                f"{path}: header column '{column}' is not name:type with a type among {', '.join(FEATURE_TYPES)}"
            )
        fields.append((name, kind))
    names = [name for name, _ in fields]
    for name in names:
        if names.count(name) > 1:
            raise UserInputError(f"{path}: column '{name}' appears twice in the header")
    return fields


def decoded_lines(path: str, encoding: str) -> list[str]:
    with open(path, "rb") as stream:
        raw = stream.read()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        byte = raw[error.start : error.start + 1].hex()
        raise UserInputError(
            f"{path} line {line} is not valid {encoding} (byte 0x{byte}); convert the file to {encoding} "
            "or set --encoding"
        ) from None
    return LINE_BREAKS.split(text.removesuffix("\n").removesuffix("\r"))


def is_number(value: str) -> bool:
    try:
        return not math.isnan(float(value)) or value.strip().lower() == "nan"
    except ValueError:
        return False


def check_atomic_file(path: str, separator: str, needed: list[str], encoding: str = "utf-8", exact: bool = False):
    """Refuse, in one line, a file RecBole or the item texts would misread.

    ``needed``: the columns that will be read (their float values must be numbers, empty allowed). ``exact``:
    every line must have as many fields as the header (for text read from the file: a tab or line break inside
    a value would otherwise shift fields silently); otherwise, as RecBole does, extra fields are ignored.
    """
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns, separator, tuple(needed), encoding, exact)
    if key in _checked:
        return
    fields = header_fields(path, separator, encoding)
    lines = decoded_lines(path, encoding)
    header = lines[0]
    rows = [(number, line) for number, line in enumerate(lines[1:], start=2) if line.strip()]
    if not rows:
        raise UserInputError(f"{path} holds no data, only its header line")
    positions = {name: index for index, (name, _) in enumerate(fields)}
    floats = [(positions[name], name) for name in needed if name in positions and dict(fields)[name] == "float"]
    deepest = max((positions[name] for name in needed if name in positions), default=0)
    for number, line in rows:
        if line.rstrip("\r") == header.rstrip("\r"):
            raise UserInputError(f"{path} line {number} repeats the header line")
        values = line.rstrip("\r").split(separator)
        if exact and len(values) != len(fields):
            cause = (
                "a value holds the field separator (a tab)"
                if len(values) > len(fields)
                else ("a value holds a line break, or fields are missing")
            )
            raise UserInputError(
                f"{path} line {number} has {len(values)} fields where the header has {len(fields)}: {cause}"
            )
        if len(values) <= deepest:
            raise UserInputError(
                f"{path} line {number} has {len(values)} fields: too few for column '{fields[deepest][0]}'"
            )
        for position, name in floats:
            value = values[position]
            if value.strip() and not is_number(value):
                raise UserInputError(f"{path} line {number}: {name} is '{value[:40]}', not a number ({name}:float)")
    _checked.add(key)


def read_atomic(path: str, separator: str, encoding: str = "utf-8") -> pd.DataFrame:
    """Every column of an atomic file as text, headers kept as ``name:type``; like RecBole, a line's fields past
    the header's are dropped. Quotes are text, not quoting."""
    columns = [f"{name}:{kind}" for name, kind in header_fields(path, separator, encoding)]
    return pd.read_csv(
        path,
        sep=separator,
        usecols=columns,
        dtype=str,
        keep_default_na=False,
        quoting=csv.QUOTE_NONE,
        encoding=encoding,
        engine="python",
    )
