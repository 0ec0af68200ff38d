"""RecBole's Config with the plugin's property layers and command-line values handed in, not read from sys.argv.

Layers, low to high: RecBole's own defaults, properties/overall.yaml, properties/model/<Model>.yaml,
properties/dataset/<dataset>.yaml, the user's --config_files in order, then --key=value overrides.
"""

from __future__ import annotations

import ast
import contextlib
from dataclasses import dataclass

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


LIST_KEYS = ("item_text_fields", "lora_target_modules", "significance_metrics", "summary_users")


def parse_value(text: str):
    """A ``--key=value`` value as data, never as code (RecBole's own conversion calls ``eval``).

    Python literals first (``5``, ``1e-3``, ``None``, ``['a', 'b']``, ``{'mode': 'full'}``), then YAML's safe flow
    syntax for lists and dicts without quotes (``[title, description]``), then true/false in any case and ``~``
    for None; anything else stays the text it is (``uni20``, ``SASRec``).
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    if text.lstrip().startswith(("[", "{")):
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise ValueError(f"'{text}' is not a valid list or dict") from None
        if isinstance(value, (list, dict)):
            return value
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text in ("~", "null"):  # YAML's nothing, as in the property files
        return None
    return text


# valid_only is RecBole's too, but it leaves nothing to test, and every model of a comparison is tested.
LS_SPLITS = ("valid_and_test", "test_only")


def eval_mode_problem(mode) -> str | None:
    if not isinstance(mode, str):
        return f"{mode!r} is not a string"
    if mode in ("full", "labeled"):
        return None
    if mode[:3] in ("uni", "pop") and mode[3:].isdigit() and int(mode[3:]) > 0:
        return None
    return f"'{mode}' is not full, labeled, uni<N> or pop<N>"


def check_eval_args(eval_args) -> None:
    """Refuse what RecBole would reject later with a traceback: eval_args' keys and values, checked up front."""
    if not isinstance(eval_args, dict):
        raise UserInputError(f"eval_args must be a dict such as \"{{'mode': 'full'}}\", not {eval_args!r}")
    unknown = set(eval_args) - {"split", "order", "group_by", "mode"}
    if unknown:
        raise UserInputError(f"eval_args has unknown keys {sorted(unknown)}; its keys are split, order, group_by, mode")
    split = eval_args.get("split")
    if split is not None:
        ok = isinstance(split, dict) and len(split) == 1
        kind, value = next(iter(split.items())) if ok else (None, None)
        ok = ok and (
            (kind == "LS" and value in LS_SPLITS)
            or (
                kind == "RS"
                and isinstance(value, (list, tuple))
                and len(value) == 3
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in value)
                and value[0] > 0
                and value[2] > 0
            )
        )
        if not ok:
            raise UserInputError(
                f"eval_args split {split!r} is not {{'LS': 'valid_and_test'}} (or test_only) "
                "or {'RS': [train, valid, test] ratios} with train and test above 0"
            )
    if eval_args.get("order", "RO") not in ("RO", "TO"):
        raise UserInputError(f"eval_args order {eval_args['order']!r} is not RO or TO")
    if eval_args.get("group_by", "user") not in ("user", "none", None):
        raise UserInputError(f"eval_args group_by {eval_args['group_by']!r} is not user or none")
    mode = eval_args.get("mode", "full")
    modes = mode.items() if isinstance(mode, dict) else [("mode", mode)]
    for phase, value in modes:
        problem = (
            f"'{phase}' is not valid or test" if phase not in ("mode", "valid", "test") else eval_mode_problem(value)
        )
        if problem:
            raise UserInputError(f"eval_args mode {mode!r}: {problem}")


@dataclass(frozen=True)
class NumberKey:
    """What a number-valued key may hold, and how its one-line error says so."""

    meaning: str  # completes "<key> must be ..."
    low: float = 0  # the smallest value, or with low_open the bound above which values lie
    whole: bool = True
    low_open: bool = False
    high: float | None = None  # values lie below it
    optional: bool = False  # ~ allowed

    def fits(self, value) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN
            return False
        if self.whole and not isinstance(value, int):
            return False
        above = value > self.low if self.low_open else value >= self.low
        return above and (self.high is None or value < self.high)


def check_number_keys(config, keys: dict[str, NumberKey]) -> None:
    """A one-line error for the first of ``keys`` whose value in ``config`` does not fit (a key it lacks is not
    checked: RecBole's defaults hold it)."""
    for key, rule in keys.items():
        if key in config and not rule.fits(config[key]):
            raise UserInputError(f"{key} must be {rule.meaning}, not {config[key]!r}")


POSITIVE = NumberKey("a positive whole number", low=1)
NOT_NEGATIVE = NumberKey("a whole number, 0 or more")
ABOVE_ZERO = NumberKey("a number above 0", whole=False, low_open=True)

# RecBole's training keys. RecBole takes any value and fails with a traceback once the value is read (a batch size
# when the data loads, the learning rate when the optimizer is made, stopping_step after the first validation),
# or never: a negative eval_step validates on the epochs its modulo picks.
TRAINING_KEYS = {
    "seed": NumberKey("a whole number from 0 to 4294967295", high=2**32),  # numpy's seed range
    "epochs": NOT_NEGATIVE,
    "stopping_step": NOT_NEGATIVE,
    "eval_step": NumberKey("a whole number, 0 or more (0: no validation)"),
    "train_batch_size": POSITIVE,
    "MAX_ITEM_LIST_LENGTH": POSITIVE,
    "learning_rate": ABOVE_ZERO,
    "weight_decay": NumberKey("a number, 0 or more", whole=False),
}


# RecBole's True/False keys. It reads any value by its truth: --reproducibility=no would turn it on.
RECBOLE_FLAGS = (
    "use_gpu",
    "reproducibility",
    "show_progress",
    "shuffle",
    "repeatable",
    "valid_metric_bigger",
    "enable_amp",
    "enable_scaler",
    "save_dataset",
    "save_dataloaders",
    "log_wandb",
)

# RecBole's optimizers; it trains any other learner with Adam, after a warning.
LEARNERS = ("adam", "adamw", "sgd", "adagrad", "rmsprop", "sparse_adam")


def check_flags(config, keys) -> None:
    """A one-line error for the first of ``keys`` whose value in ``config`` is not True or False (1 and 0 pass)."""
    for key in keys:
        if key in config and config[key] not in (True, False):
            raise UserInputError(f"{key} must be True or False, not {config[key]!r}")


def check_learner(config) -> None:
    learner = config.get("learner")
    if learner is not None and (not isinstance(learner, str) or learner.lower() not in LEARNERS):
        raise UserInputError(f"learner {learner!r} is not {', '.join(LEARNERS[:-1])} or {LEARNERS[-1]}")


CLIP_GRAD_NORM_ARGUMENTS = ("max_norm", "norm_type", "error_if_nonfinite", "foreach")  # of torch's clip_grad_norm_


def check_clip_grad_norm(config) -> None:
    """``clip_grad_norm``: ~ (off) or the arguments of torch's clip_grad_norm_, which RecBole passes at the first
    training batch."""
    value = config.get("clip_grad_norm")
    if not value:
        return
    fits = (
        isinstance(value, dict)
        and set(value) <= set(CLIP_GRAD_NORM_ARGUMENTS)
        and ABOVE_ZERO.fits(value.get("max_norm"))
        and ABOVE_ZERO.fits(value.get("norm_type", 2.0))
    )
    if not fits:
        raise UserInputError(
            f"clip_grad_norm must be ~ or a dict of {', '.join(CLIP_GRAD_NORM_ARGUMENTS)} with a max_norm above 0, "
            f"such as \"{{'max_norm': 5}}\", not {value!r}"
        )


def check_valid_metric(config) -> None:
    """``valid_metric`` is one of the values an evaluation computes; RecBole looks it up after the first validation
    and fails there with a KeyError. Without validation (``eval_step: 0``) it is never read."""
    from recbole.evaluator.base_metric import TopkMetric
    from recbole.evaluator.register import metrics_dict

    if not config.get("eval_step"):
        return

    computed = []
    for metric in config["metrics"]:
        ranked = issubclass(metrics_dict[metric.lower()], TopkMetric)
        computed += [f"{metric}@{k}" for k in config["topk"]] if ranked else [metric]
    given = config["valid_metric"]
    if not isinstance(given, str) or given.lower() not in {name.lower() for name in computed}:
        raise UserInputError(
            f"valid_metric {given!r} is not among what metrics and topk compute: {', '.join(computed)}"
        )


COUNT = NumberKey("a positive whole number", low=1, optional=True)  # ~: no limit


def positive_count(config, key: str) -> int | None:
    """The value of a count key: None (no limit) or a positive whole number; anything else is refused."""
    check_number_keys(config, {key: COUNT})
    return config[key]


@contextlib.contextmanager
def recboles_refusals():
    """RecBole's own checks of a config, which raise with a message that is one line already, as one-line errors."""
    try:
        yield
    except (ValueError, TypeError, NotImplementedError, RuntimeError) as error:
        raise UserInputError(" ".join(str(error).split())) from None


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
        preset = self._overrides.get("preset")
        config_file_list = list(config_file_list or [])
        # a preset is LLMTRSR's setup (its training keys too): the baselines beside it keep their own
        takes_presets = getattr(model_class, "takes_presets", False)
        files = property_files(model_class.__name__, dataset, preset, config_file_list, takes_presets)
        files += config_file_list
        super().__init__(model=model_class, dataset=dataset, config_file_list=files)
        if self.final_config_dict.get("eval_batch_size") == "auto":  # RecBole has read the device and eval modes
            from recbole_trsr.llm.device_batches import eval_batch_size

            per_user = self.candidates_per_user()
            self.final_config_dict["eval_batch_size"] = eval_batch_size("auto", per_user, self["device"])
            # Scoring still follows memory (LLMTRSR.scoring_size); kept off the config's keys, which checkpoints save
            # as a config file where the number would then be a size the user gave.
            self.eval_batch_size_auto = True

    def candidates_per_user(self) -> int:
        """Rows of one user in a sampled evaluation, from RecBole's reading of eval_args (21 when not sampled)."""
        counts = [self[f"{phase}_neg_sample_args"]["sample_num"] for phase in ("valid", "test")]
        return max((count + 1 for count in counts if isinstance(count, int)), default=21)

    def _load_cmd_line(self):
        return self._convert_config_dict(dict(self._overrides))

    def _convert_config_dict(self, config_dict):
        converted = {key: parse_value(value) if isinstance(value, str) else value for key, value in config_dict.items()}
        for key in LIST_KEYS:  # a single name is a list of one, not a string to iterate letter by letter
            if isinstance(converted.get(key), str):
                converted[key] = [converted[key]]
        return converted

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

    def _set_default_parameters(self):
        with recboles_refusals():  # metrics, topk, repeatable, loss_type
            super()._set_default_parameters()
        check_valid_metric(self.final_config_dict)

    def _set_train_neg_sample_args(self):
        with recboles_refusals():  # a distribution other than uniform or popularity
            super()._set_train_neg_sample_args()

    def _set_eval_neg_sample_args(self, phase: str):
        with recboles_refusals():
            super()._set_eval_neg_sample_args(phase)

    def _init_device(self):
        """RecBole joins an NCCL group here when ``local_rank`` is set, once per config. The processes of
        ``--nproc`` set it, but join their group once each (distributed.join, gloo on the CPU), so this only
        places the process on its device. Data and trainers run as one process would (``single_spec``); the
        ranks split the work in distributed_trainer."""
        final = self.final_config_dict
        if "local_rank" not in final:
            return super()._init_device()
        final["gpu_id"] = (
            ",".join(map(str, final["gpu_id"])) if isinstance(final["gpu_id"], tuple) else str(final["gpu_id"])
        )
        import torch

        local_rank = int(final["local_rank"])
        if final["gpu_id"] and torch.cuda.is_available():
            # More processes than GPUs (e.g. --nproc=2 on one GPU) take the GPUs in turn
            final["device"] = torch.device("cuda", local_rank % torch.cuda.device_count())
            torch.cuda.set_device(final["device"])
        else:
            final["device"] = torch.device("cpu")
        final["single_spec"] = True
        if local_rank != 0 or int(final["offset"] or 0) != 0:  # as RecBole: the first process reports
            final["state"], final["show_progress"], final["verbose"] = "error", False, False

    def _get_final_config_dict(self):
        final = super()._get_final_config_dict()
        check_eval_args(final.get("eval_args"))
        check_number_keys(final, TRAINING_KEYS)
        check_flags(final, RECBOLE_FLAGS)
        check_learner(final)
        check_clip_grad_norm(final)
        # CE-trained sequential models (SASRec, GRU4Rec, ...) refuse sampled training negatives, which
        # RecBole's defaults always give; only a user's explicit setting keeps them.
        if "train_neg_sample_args" not in self.external_config_dict and final.get("loss_type") == "CE":
            final["train_neg_sample_args"] = None
        return final
