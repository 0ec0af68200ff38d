"""Property layers: overall < model < dataset < --config_files < --key=value, and the paper's protocol by default."""

from __future__ import annotations

import pytest

from recbole_trsr import property_files
from recbole_trsr.config import TRSRConfig
from recbole_trsr.errors import UserInputError
from recbole_trsr.registry import get_model_class


@pytest.fixture
def layered_properties(tmp_path, monkeypatch):
    """A properties folder in which every layer sets the keys of the layers below it."""
    root = tmp_path / "properties"
    (root / "model").mkdir(parents=True)
    (root / "dataset").mkdir()
    (root / "overall.yaml").write_text(
        (property_files.properties_dir() / "overall.yaml").read_text()
        + "layer_a: overall\nlayer_b: overall\nlayer_c: overall\nlayer_d: overall\n"
    )
    (root / "model" / "SASRec.yaml").write_text("layer_b: model\nlayer_c: model\nlayer_d: model\n")
    (root / "dataset" / "ml-100k.yaml").write_text("layer_c: dataset\nlayer_d: dataset\n")
    monkeypatch.setattr(property_files, "properties_dir", lambda: root)
    user_file = tmp_path / "user.yaml"
    user_file.write_text("layer_d: config_file\nlayer_e: config_file\n")
    return str(user_file)


def test_layers_override_in_order(layered_properties):
    config = TRSRConfig(
        get_model_class("SASRec"), "ml-100k", [layered_properties], overrides={"layer_e": "command_line"}
    )
    assert [config[f"layer_{x}"] for x in "abcde"] == [
        "overall",
        "model",
        "dataset",
        "config_file",
        "command_line",
    ]


def test_a_preset_named_in_a_config_file_or_local_properties_applies_below_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    llmtrsr = get_model_class("LLMTRSR")
    user_file = tmp_path / "mine.yaml"
    user_file.write_text("preset: paper\nrecent_k: 7\n")
    config = TRSRConfig(llmtrsr, "amazon", [str(user_file)])
    assert (config["recent_numbered"], config["answer_leading_space"], config["recent_k"]) == (False, False, 7)
    assert TRSRConfig(llmtrsr, "amazon", [str(user_file)], {"recent_k": "3"})["recent_k"] == 3
    (tmp_path / "properties").mkdir()
    (tmp_path / "properties" / "overall.yaml").write_text("preset: paper\n")
    assert TRSRConfig(llmtrsr, "amazon")["recent_k"] == 5
    user_file.write_text("preset: ~\n")  # a later file takes the local one back
    assert TRSRConfig(llmtrsr, "amazon", [str(user_file)])["recent_k"] == 10
    user_file.write_text("preset: papr\n")
    with pytest.raises(UserInputError, match="unknown preset 'papr'"):
        TRSRConfig(llmtrsr, "amazon", [str(user_file)])


def test_a_preset_sets_up_llmtrsr_and_leaves_the_baselines_their_settings():
    """The paper preset holds LLMTRSR's training keys (learning rate 1e-4, 5 epochs, AdamW): --preset=paper beside
    SASRec trained SASRec with them, without a word."""
    sasrec = TRSRConfig(get_model_class("SASRec"), "amazon", overrides={"preset": "paper"})
    plain = TRSRConfig(get_model_class("SASRec"), "amazon")
    for key in ("learning_rate", "epochs", "learner", "train_batch_size", "weight_decay", "train_neg_sample_args"):
        assert sasrec[key] == plain[key], key
    llmtrsr = TRSRConfig(get_model_class("LLMTRSR"), "amazon", overrides={"preset": "paper"})
    assert (llmtrsr["learning_rate"], llmtrsr["epochs"], llmtrsr["learner"]) == (0.0001, 5, "adamw")
    with pytest.raises(UserInputError, match="unknown preset 'papr'"):
        TRSRConfig(get_model_class("SASRec"), "amazon", overrides={"preset": "papr"})


def test_paper_protocol_is_the_default():
    config = TRSRConfig(get_model_class("SASRec"), "amazon")
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO"
    assert config["eval_args"]["mode"] == {"valid": "uni20", "test": "uni20"}
    assert config["metrics"] == ["Recall", "MRR", "NDCG"]
    assert config["topk"] == [3, 5, 10]
    assert config["valid_metric"] == "NDCG@10"
    assert config["item_text_fields"] == ["title", "categories", "brand", "price"]


def test_full_ranking_is_one_switch():
    config = TRSRConfig(get_model_class("SASRec"), "amazon", overrides={"eval_args": "{'mode': 'full'}"})
    assert config["eval_args"]["mode"] == {"valid": "full", "test": "full"}
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}  # RecBole alone would reset it to RS
    assert config["eval_args"]["order"] == "TO"


def test_overrides_are_converted_like_recbole_command_line():
    config = TRSRConfig(
        get_model_class("SASRec"), "ml-100k", overrides={"epochs": "3", "topk": "[10]", "show_progress": "false"}
    )
    assert config["epochs"] == 3
    assert config["topk"] == [10]
    assert config["show_progress"] is False


def test_ce_models_train_without_sampled_negatives_unless_told():
    config = TRSRConfig(get_model_class("SASRec"), "ml-100k")
    assert config["train_neg_sample_args"]["distribution"] == "none"
    bpr = TRSRConfig(
        get_model_class("SASRec"),
        "ml-100k",
        overrides={"loss_type": "BPR", "train_neg_sample_args": "{'distribution': 'uniform', 'sample_num': 1}"},
    )
    assert bpr["train_neg_sample_args"]["distribution"] == "uniform"
