"""Prompt templates from the config: each is text whose ``{placeholders}`` are the ones its key takes.

A template comes from YAML or ``--key=value``, where ``{foo}`` reads as a dict and a typo in a placeholder would
only surface as a traceback in the middle of a run. Every template key is checked before any model trains.
"""

from __future__ import annotations

import string

from recbole_trsr.errors import UserInputError

# key -> the placeholders its template may use
PLACEHOLDERS = {
    "summary_section_template": {"summary"},
    "recent_section_template": {"items"},
    "candidate_template": {"item", "popularity", "together"},
    "summary_block_template": {"items"},
    "summary_update_template": {"summary", "items"},
    "summary_merge_template": {"summaries"},
    "summary_merge_label": {"n"},
}
# keys whose text goes into prompts as it is (braces included)
TEXTS = ("instruction_template", "next_item_template", "summary_missing_text")


def check_text(key: str, value) -> None:
    if not isinstance(value, str):
        raise UserInputError(
            f"{key} must be text, not {value!r} (in a --key=value or a YAML file, quote a template with braces)"
        )


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field is not None}


def check_template(key: str, template) -> None:
    """A one-line error if ``template`` is not text or uses a placeholder its key does not take."""
    check_text(key, template)
    try:
        names = placeholders(template)
    except ValueError as error:
        reason = f"{error} (write {{{{ and }}}} for braces)"
        raise UserInputError(f"{key} '{template}' is not a valid template: {reason}") from None
    allowed = PLACEHOLDERS[key]
    unknown = sorted(name for name in names if name not in allowed)
    if unknown:
        takes = ", ".join(f"{{{name}}}" for name in sorted(allowed)) or "no placeholders"
        raise UserInputError(f"{key} uses {{{unknown[0]}}}, which it does not know; it takes {takes}")


def check_templates(config) -> None:
    for key in PLACEHOLDERS:
        if config[key] is not None:
            check_template(key, config[key])
    for key in TEXTS:
        if config[key] is not None:
            check_text(key, config[key])
