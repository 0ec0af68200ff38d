"""RecBole's Config with the plugin's property layers and command-line values handed in, not read from sys.argv.

Layers, low to high: RecBole's own defaults, properties/overall.yaml, properties/model/<Model>.yaml,
properties/dataset/<dataset>.yaml, the user's --config_files in order, then --key=value overrides.
"""

from __future__ import annotations

import yaml
from recbole.config import Config

from recbole_trsr.errors import UserInputError
from recbole_trsr.property_files import property_files

# Dict-valued keys merged key by key across layers. RecBole replaces a dict whole, so a lone
# `--eval_args="{'mode': 'full'}"` would silently reset split and order to RecBole's RS/RO defaults.
KEY_MERGED_DICTS = ("eval_args",)


def merge_layer(merged: dict, layer: dict) -> dict:
    """``merged.update(layer)``, except that the dicts in KEY_MERGED_DICTS are merged key by key."""
    for key, value in (layer or {}).items():
        if key in KEY_MERGED_DICTS and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def positive_count(config, key: str) -> int | None:
    """The value of a count key: None (no limit) or a positive whole number; anything else is refused."""
    value = config[key]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserInputError(f"{key} must be a positive whole number, not {value!r}")
    return value


class TRSRConfig(Config):
    """``recbole.config.Config`` for a model class (RecBole's or the plugin's) with layered properties.

    Args:
        model_class: the model class, e.g. ``registry.get_model_class("SASRec")``.
        dataset: the dataset name.
        config_file_list: the user's YAML files, above the plugin's own properties.
        overrides: ``--key=value`` pairs as strings (converted the way RecBole converts its command line)
            or as Python values; they take precedence over everything else.
    """

    def __init__(self, model_class, dataset, config_file_list=None, overrides=None):
        self._overrides = dict(overrides or {})
        files = property_files(model_class.__name__, dataset) + list(config_file_list or [])
        super().__init__(model=model_class, dataset=dataset, config_file_list=files)

    def _load_cmd_line(self):
        return self._convert_config_dict(dict(self._overrides))

    def _load_config_files(self, file_list):
        merged = {}
        for file in file_list or []:
            with open(file, encoding="utf-8") as stream:
                merge_layer(merged, yaml.load(stream.read(), Loader=self.yaml_loader))
        return merged

    def _merge_external_config_dict(self):
        merged = {}
        for layer in (self.file_config_dict, self.variable_config_dict, self.cmd_config_dict):
            merge_layer(merged, layer)
        self.external_config_dict = merged

    def _get_final_config_dict(self):
        final = super()._get_final_config_dict()
        # CE-trained sequential models (SASRec, GRU4Rec, ...) refuse sampled training negatives, which
        # RecBole's defaults always give; only a user's explicit setting keeps them.
        if "train_neg_sample_args" not in self.external_config_dict and final.get("loss_type") == "CE":
            final["train_neg_sample_args"] = None
        return final
