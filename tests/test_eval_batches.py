"""Sampled-candidate batches built in one piece hold what RecBole's user-by-user batches hold, from the same draws."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from recbole.data import create_dataset
from recbole.data.dataloader.general_dataloader import NegSampleEvalDataLoader

from recbole_trsr import eval_batches
from recbole_trsr.runner import build_config, prepare_data
from recbole_trsr.seeding import seed_everything


def loaders(overrides: dict, model: str, **settings):
    config = build_config(model, "tiny", [], {**overrides, **{key: str(value) for key, value in settings.items()}})
    seed_everything(config)
    _, valid, test = prepare_data(config, create_dataset(config))
    return valid, test


def batches_of(loader, collate, seed: int):
    """Every batch of one pass over ``loader`` through ``collate``, numpy seeded first. (A loader keeps the collate
    function that its class had when it was made.)"""
    loader.collate_fn = types.MethodType(collate, loader)
    np.random.seed(seed)
    return list(loader)


def assert_same_batches(loader):
    theirs = batches_of(loader, eval_batches._recbole_collate, seed=7)
    ours = batches_of(loader, eval_batches.collate_users, seed=7)
    assert len(ours) == len(theirs) > 1
    for (batch, idx, pos_u, pos_i), (expected, e_idx, e_pos_u, e_pos_i) in zip(ours, theirs, strict=True):
        assert sorted(batch.columns) == sorted(expected.columns)
        for column in expected.columns:
            assert batch[column].dtype == expected[column].dtype, column
            assert torch.equal(batch[column], expected[column]), column
        for mine, recboles in ((idx, e_idx), (pos_u, e_pos_u), (pos_i, e_pos_i)):
            assert mine.dtype == recboles.dtype and torch.equal(mine, recboles)
    # the draws themselves came from numpy's global state: another seed gives other candidates
    other = batches_of(loader, eval_batches.collate_users, seed=8)
    field = loader._dataset.iid_field
    assert not all(torch.equal(a[0][field], b[0][field]) for a, b in zip(ours, other, strict=True))


def test_the_plugin_builds_sampled_candidates_in_one_piece():
    assert NegSampleEvalDataLoader.collate_fn is eval_batches.collate_users


@pytest.mark.parametrize("model", ["SASRec", "LLMTRSR"])
def test_sequential_candidates_equal_recboles(tiny_overrides, model):
    """One row per user (leave-one-out), 20 sampled negatives, in batches of several users."""
    if model == "LLMTRSR":
        tiny_overrides = {**tiny_overrides, "summary_mode": "none"}
    valid, test = loaders(tiny_overrides, model, eval_batch_size=84)
    assert eval_batches.builds_in_one_piece(valid)
    assert_same_batches(valid)
    assert_same_batches(test)


def test_several_rows_per_user_and_joined_item_features_equal_recboles(tiny_overrides):
    """A general model on a ratio split: users with several test rows, each with its negatives, and an item
    feature joined onto positives and negatives alike."""
    valid, test = loaders(
        tiny_overrides,
        "BPR",
        eval_args="{'split': {'RS': [0.6, 0.2, 0.2]}, 'order': 'RO', 'group_by': 'user', 'mode': 'uni5'}",
        load_col="{'inter': ['user_id', 'item_id', 'timestamp'], 'item': ['item_id', 'price']}",
        eval_batch_size=40,
    )
    assert max(test.uid2items_num) > 1
    assert "price" in next(iter(test))[0].columns
    assert_same_batches(valid)
    assert_same_batches(test)


def test_a_transform_keeps_recboles_batches(tiny_overrides):
    _, test = loaders(tiny_overrides, "SASRec", transform="crop_itemseq", eval_batch_size=84)
    assert not eval_batches.builds_in_one_piece(test)
