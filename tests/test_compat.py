"""Each of RecBole 1.2.1's known breakages (DESIGN.md section 3), shown mended by recbole_trsr.compat."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_trainer, init_seed

import recbole_trsr  # noqa: F401  (applies the fixes)
from recbole_trsr import compat
from recbole_trsr.config import TRSRConfig
from recbole_trsr.registry import get_model_class
from tests.conftest import tiny_settings


@pytest.fixture(scope="module")
def trained_sasrec(tmp_path_factory):
    """SASRec trained one epoch on 'tiny' with a checkpoint saved, as RecBole's quick start does it."""
    root = tmp_path_factory.mktemp("compat")
    settings = tiny_settings(root)
    settings["metrics"] = "['Recall', 'NDCG', 'ItemCoverage', 'GiniIndex', 'AveragePopularity', 'TailPercentage']"
    settings["checkpoint_dir"] = str(root / "saved")
    config = TRSRConfig(get_model_class("SASRec"), "tiny", overrides=settings)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model_class("SASRec")(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    return config, train_data, trainer, test_data


def test_recbole_quick_start_imports_without_ray():
    # Fix 1: recbole.quick_start does `from ray import tune` at import time.
    script = "import recbole_trsr, recbole.quick_start; print(recbole.quick_start.run_recbole.__name__)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "run_recbole"


def test_ray_placeholder_says_what_is_missing():
    import ray

    if not getattr(ray, "__recbole_trsr_placeholder__", False):
        pytest.skip("a working ray is installed")
    with pytest.raises(ImportError, match="hyper-parameter search"):
        ray.tune.run()


def test_numpy_aliases_that_recbole_metrics_use():
    # Fix 2: Config.compatibility_settings assigns np.float_ (gone in numpy 2); metrics use np.float.
    config = TRSRConfig(get_model_class("SASRec"), "ml-100k")
    assert config["topk"] == [3, 5, 10]
    from recbole.evaluator.metrics import MRR, NDCG

    pos_index = np.array([[False, True, False], [True, False, False]])
    pos_len = np.array([1, 1])
    assert MRR(config).metric_info(pos_index)[:, -1].tolist() == [0.5, 1.0]
    ndcg = NDCG(config).metric_info(pos_index, pos_len)[:, -1]
    assert ndcg == pytest.approx([1 / np.log2(3), 1.0])


def test_numpy_2_keeps_its_own_bool():
    if np.lib.NumpyVersion(np.__version__) < "2.0.0":
        pytest.skip("numpy 1 has no np.bool of its own")
    compat.numpy_compatibility_settings()
    assert np.bool is np.bool_


def test_token_seq_fields_load_as_tokens(tmp_path):
    # Fix 3: pandas 3 breaks RecBole's token_seq loading; the install pins pandas < 3 and compat checks it.
    settings = tiny_settings(tmp_path)
    settings["load_col"] = "{'inter': ['user_id', 'item_id', 'timestamp'], 'item': ['item_id', 'categories']}"
    settings["seq_separator"] = ", "
    config = TRSRConfig(get_model_class("SASRec"), "tiny", overrides=settings)
    dataset = create_dataset(config)
    tokens = set(dataset.field2id_token["categories"][1:])
    assert "'Beauty'" in tokens and '"Women\'s"' in tokens
    assert tokens <= {"'Beauty'", "'Makeup'", '"Women\'s"', "'Skin Care'", "'Tools & Accessories'"}
    lengths = {len(ids) for ids in dataset.item_feat["categories"][1:]}  # row 0 is padding
    assert lengths == {2}  # 'Beauty' and one more name per item


def test_pandas_3_is_refused_with_the_fix(monkeypatch):
    import pandas

    monkeypatch.setattr(pandas, "__version__", "3.0.0")
    with pytest.raises(ImportError, match="pandas < 3"):
        compat.check_pandas()


def test_evaluate_loads_the_best_checkpoint(trained_sasrec):
    # Fix 4: torch >= 2.6 loads with weights_only=True, which rejects RecBole's checkpoints.
    config, _, trainer, test_data = trained_sasrec
    result = trainer.evaluate(test_data, load_best_model=True)
    assert 0.0 <= result["ndcg@10"] <= 1.0
    with pytest.raises(Exception, match="[Ww]eights only"):
        torch.load(trainer.saved_model_file)  # outside RecBole's readers the safe default still holds


def test_resume_checkpoint(trained_sasrec):
    config, train_data, trainer, _ = trained_sasrec
    model = get_model_class("SASRec")(config, train_data._dataset).to(config["device"])
    resumed = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    resumed.resume_checkpoint(trainer.saved_model_file)
    assert resumed.start_epoch == 1
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name])


def test_non_accuracy_metrics(trained_sasrec):
    # Fix 5: Collector.get_data_struct called .cpu() on ints, crashing these four metrics.
    _, _, trainer, test_data = trained_sasrec
    result = trainer.evaluate(test_data, load_best_model=False)
    for metric in ["itemcoverage@10", "giniindex@10", "averagepopularity@10", "tailpercentage@10"]:
        assert metric in result
    assert 0.0 < result["itemcoverage@10"] <= 1.0


def test_recbole_models_leave_autograd_anomaly_detection_off(tmp_path):
    # Fix 6: RecBole's sine.py turns anomaly detection on for the process when the sequential models are imported,
    # as SASRec's config does; LLMTRSR's training beside SASRec then took 1.6 times as long on a CPU.
    TRSRConfig(get_model_class("SASRec"), "tiny", overrides=tiny_settings(tmp_path))
    assert not torch.is_anomaly_enabled()


def test_anomaly_detection_that_the_user_turned_on_stays_on():
    try:
        torch.autograd.set_detect_anomaly(True)
        compat.keep_anomaly_detection_off()
        assert torch.is_anomaly_enabled()
    finally:
        torch.autograd.set_detect_anomaly(False)
