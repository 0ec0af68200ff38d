"""Model names resolve to RecBole's and the plugin's classes; plugin Dataset/Trainer go through RecBole's lookup."""

from __future__ import annotations

import pytest
from recbole.data import create_dataset
from recbole.data.dataset import SequentialDataset
from recbole.model.sequential_recommender import GRU4Rec, SASRec
from recbole.trainer import Trainer
from recbole.utils import ModelType, get_trainer

from recbole_trsr import RandomRank
from recbole_trsr.config import TRSRConfig
from recbole_trsr.errors import UserInputError
from recbole_trsr.model import RandomRankTrainer
from recbole_trsr.registry import available_model_names, get_model_class, register_model


def test_recbole_models_resolve_by_name():
    assert get_model_class("SASRec") is SASRec
    assert get_model_class("GRU4Rec") is GRU4Rec


def test_plugin_model_and_its_trainer_resolve_through_recbole():
    assert get_model_class("RandomRank") is RandomRank
    assert get_trainer(ModelType.SEQUENTIAL, "RandomRank") is RandomRankTrainer
    assert get_trainer(ModelType.SEQUENTIAL, "SASRec") is Trainer


def test_plugin_dataset_is_found_by_recbole_create_dataset(tiny_overrides):
    class MarkedDataset(SequentialDataset):
        pass

    class Marked(RandomRank):
        pass

    register_model(Marked, dataset_class=MarkedDataset)
    config = TRSRConfig(get_model_class("Marked"), "tiny", overrides=tiny_overrides)
    assert isinstance(create_dataset(config), MarkedDataset)
    assert "Marked" in available_model_names()


def test_unknown_model_lists_the_available_ones():
    with pytest.raises(UserInputError) as caught:
        get_model_class("SASRek")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("unknown model 'SASRek' (did you mean SASRec?)")
    for name in ["SASRec", "GRU4Rec", "BPR", "RandomRank"]:
        assert name in message
    assert "lightgbm" not in message.lower() or "LightGBM" in message


def test_wrong_case_suggests_the_right_name():
    with pytest.raises(UserInputError, match="did you mean GRU4Rec"):
        get_model_class("gru4rec")


def test_model_with_a_missing_optional_package_says_which():
    try:
        import lightgbm  # noqa: F401

        pytest.skip("lightgbm is installed")
    except ImportError:
        pass
    with pytest.raises(UserInputError, match="model 'LightGBM' needs the package 'lightgbm'"):
        get_model_class("LightGBM")
