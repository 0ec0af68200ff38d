"""LLMTRSR end to end on tiny data with the tiny model: trains, scores, shares candidates with the baselines."""

from __future__ import annotations

import pytest
import torch

from recbole_trsr.runner import run_comparison


@pytest.fixture
def tiny_llm_overrides(tiny_overrides, tiny_lm, tmp_path):
    model, tokenizer = tiny_lm
    folder = tmp_path / "tiny-llm"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return {
        **tiny_overrides,
        "llm_path": str(folder),
        "summary_max_new_tokens": "4",
        "max_train_prefixes": "2",
        "train_batch_size": "16",
        "learning_rate": "0.01",
        "lora_r": "4",
    }


@pytest.mark.parametrize("mode", ["hierarchical", "recurrent", "none"])
def test_llmtrsr_trains_and_is_scored_on_the_baselines_candidates(tiny_llm_overrides, mode):
    models = ["LLMTRSR", "SASRec"] if mode == "hierarchical" else ["LLMTRSR"]
    runs = run_comparison(models, "tiny", overrides={**tiny_llm_overrides, "summary_mode": mode})
    assert [run.model for run in runs] == [*models, "RandomRank"]
    assert all(run.candidates.candidates == runs[0].candidates.candidates for run in runs)
    assert runs[0].epochs == 1 and 0.0 <= runs[0].test_result["ndcg@10"] <= 1.0


def test_training_lowers_the_answer_loss(tiny_llm_overrides):
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_trsr.runner import build_config

    config = build_config("LLMTRSR", "tiny", overrides={**tiny_llm_overrides, "summary_mode": "none"})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = config.model_class(config, train_data._dataset)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and sum(p.numel() for p in trainable) < 0.2 * sum(p.numel() for p in model.parameters())
    batch = next(iter(train_data))
    optimizer = torch.optim.Adam(trainable, lr=0.01)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_precompute_then_show_user(capsys, tiny_llm_overrides):
    from recbole_trsr.cli import main
    from tests.conftest import as_arguments

    arguments = ["--model=LLMTRSR", "--dataset=tiny", *as_arguments(tiny_llm_overrides)]
    assert main([*arguments, "--precompute_summaries"]) == 0
    first = capsys.readouterr().out
    assert "hierarchical summaries of tiny for 40 users" in first and " 0 reused" in first
    assert main([*arguments, "--precompute_summaries"]) == 0
    assert "0 LLM calls" in capsys.readouterr().out  # the second run asks the LLM for nothing
    assert main([*arguments, "--show_user=u3"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("user u3: ") and "block 1 (summarized):" in shown
    assert "[Next Item]" in shown and shown.rstrip().endswith("Answer: yes")
    assert main([*arguments, "--show_user=nobody"]) == 2
    assert main(["--model=SASRec", "--dataset=tiny", *as_arguments(tiny_llm_overrides), "--precompute_summaries"]) == 2


def test_dataset_without_text_fields(capsys, tiny_llm_overrides):
    from recbole_trsr.cli import main
    from tests.conftest import as_arguments

    arguments = as_arguments({**tiny_llm_overrides, "item_text_fields": "[]"})
    assert main(["--model=LLMTRSR", "--dataset=tiny", *arguments]) == 2
    assert "LLMTRSR needs item text: set item_text_fields" in capsys.readouterr().err
