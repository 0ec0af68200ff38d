"""Which config keys some part of a run reads, so that a key nothing reads is named before the run starts.

RecBole takes any key and ignores those it does not know, so a typo such as ``--sumary_mode=none`` ran hours of
hierarchical summaries without a word. A key is known when a property file (RecBole's, the plugin's or the working
directory's ``properties/``) sets it, or when the source of RecBole, of the plugin or of a model of the run reads it
from a config; reading the source keeps the list true as they change, and covers keys that no YAML sets.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import re
from pathlib import Path

import recbole
import yaml

from recbole_trsr.property_files import local_properties_dir, properties_dir

# config["key"], self.config['key'], config_dict["key"], config.get("key"), "key" in config.
READ_KEY = re.compile(
    r"""config\w*\s*\[\s*["']([A-Za-z_][\w.]*)["']\s*\]"""
    r"""|config\w*\.get\(\s*["']([A-Za-z_][\w.]*)["']"""
    r"""|["']([A-Za-z_][\w.]*)["']\s+(?:not\s+)?in\s+(?:self\.)?\w*config"""
)
RECBOLE_DIR = Path(recbole.__file__).resolve().parent
PLUGIN_DIR = Path(__file__).resolve().parent


@functools.cache
def keys_read_in(source_file: Path) -> frozenset[str]:
    text = source_file.read_text(encoding="utf-8", errors="replace")
    return frozenset(next(group for group in match.groups() if group) for match in READ_KEY.finditer(text))


def keys_set_in(property_dir: Path) -> set[str]:
    keys = set()
    for file in property_dir.rglob("*.yaml"):
        try:
            content = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):  # a broken file of one's own has its own error
            continue
        if isinstance(content, dict):
            keys |= set(map(str, content))
    return keys


@functools.cache
def library_keys() -> frozenset[str]:
    """The keys RecBole and the plugin set in their property files or read in their source."""
    keys = keys_set_in(RECBOLE_DIR / "properties") | keys_set_in(properties_dir())
    for root in (RECBOLE_DIR, PLUGIN_DIR):
        for source_file in root.rglob("*.py"):
            keys |= keys_read_in(source_file)
    return frozenset(keys)


def known_keys(model_classes=()) -> set[str]:
    """Every key that this run may read: the libraries', the working directory's property files', and those that
    the file of each model class reads (a model of one's own, registered with ``register_model``)."""
    keys = set(library_keys())
    local = local_properties_dir()
    if local is not None:
        keys |= keys_set_in(local)
    for model_class in model_classes:
        try:
            source = inspect.getsourcefile(model_class)
        except (TypeError, OSError):  # a class made in a notebook or by code has no file to read
            source = None
        if source and Path(source).is_file():
            keys |= keys_read_in(Path(source).resolve())
    return keys


def file_keys(config_file: str) -> list[str]:
    with open(config_file, encoding="utf-8") as stream:
        return list(map(str, yaml.safe_load(stream) or {}))


def closest_key(key: str, known: set[str]) -> str | None:
    """The known key a typo most likely meant: the same but for case, else the closest of those that share its
    first word, else the closest (lora_rank: lora_r, not local_rank)."""
    same = [name for name in known if name.lower() == key.lower()]
    close = same or difflib.get_close_matches(key, known, n=3, cutoff=0.7)
    first_word = key.lower().split("_")[0]
    return next((name for name in close if name.lower().split("_")[0] == first_word), close[0] if close else None)


def unread_keys_warning(given: list[tuple[str, str, str]], model_classes=()) -> str | None:
    """One line naming each given key that nothing of this run reads, with the known key closest to it.

    ``given`` holds (key, the key as the warning names it, how it names a suggestion): ("sumary_mode",
    "--sumary_mode", "--{}") for the command line, ("sumary_mode", "sumary_mode in my.yaml", "{}") for a file.
    """
    known = known_keys(model_classes)
    unread = []
    for key, named, pattern in given:
        if key in known:
            continue
        close = closest_key(key, known)
        unread.append(named + (f" (did you mean {pattern.format(close)}?)" if close else ""))
    if not unread:
        return None
    return f"nothing in RecBole, recbole-trsr or this run's models reads {', '.join(unread)}: ignored"
