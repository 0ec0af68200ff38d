"""Prompt templates: text with the placeholders their key takes, or one line before any model trains."""

from __future__ import annotations

import pytest

from recbole_trsr.cli import main
from tests.conftest import as_arguments


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("recent_section_template={items}", "recent_section_template must be text, not {'items': None}"),
        ("candidate_template=' {itm}'", "candidate_template uses {itm}, which it does not know; it takes {item}, "),
        ("candidate_template=' {item'", "candidate_template ' {item' is not a valid template: expected '}'"),
        ("summary_merge_template='{summaries} {n}'", "summary_merge_template uses {n}, which it does not know"),
        ("instruction_template=[1]", "instruction_template must be text, not [1]"),
    ],
)
def test_a_bad_template_ends_in_one_line_before_training(capsys, tiny_llm_overrides, setting, message):
    arguments = ["--model=SASRec,LLMTRSR", "--dataset=tiny", *as_arguments(tiny_llm_overrides), f"--{setting}"]
    assert main(arguments) == 2
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert message in error and len(error.splitlines()) == 1
    assert "SASRec" not in captured.out  # refused before the first model of the comparison trained


def test_braces_in_plain_prompt_text_are_kept(tiny_llm_overrides):
    """The instruction and the next-item header are not templates: their braces reach the prompt as written."""
    from recbole.data import create_dataset

    from recbole_trsr.runner import build_config, prepare_data

    settings = {"summary_mode": "none", "instruction_template": "'Answer {yes} or {no}.'"}
    config = build_config("LLMTRSR", "tiny", overrides={**tiny_llm_overrides, **settings})
    _, _, test_data = prepare_data(config, create_dataset(config))
    model = config.model_class(config, test_data._dataset)
    split = test_data._dataset
    user, end = int(split.inter_feat["user_id"][0]), int(split.inter_feat["history_end"][0])
    prefix, _ = model.request(user, end, [int(split.inter_feat["item_id"][0])])
    assert model.tokenizer.decode(prefix).startswith("Answer {yes} or {no}.")
