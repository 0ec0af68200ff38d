"""Model names: RecBole's own models and the plugin's, resolved the same way.

A plugin model's Dataset and Trainer are not looked up here. They are placed where RecBole's own
``create_dataset`` and ``get_trainer`` look (``recbole.data.dataset.<Model>Dataset`` and
``recbole.trainer.<Model>Trainer``), so RecBole picks them by itself.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from pathlib import Path

import recbole.data.dataset
import recbole.model
import recbole.trainer
from recbole.model.abstract_recommender import AbstractRecommender

from recbole_trsr.errors import UserInputError

# The sub-packages RecBole's own get_model searches, in its order.
RECBOLE_MODEL_PACKAGES = (
    "general_recommender",
    "context_aware_recommender",
    "sequential_recommender",
    "knowledge_aware_recommender",
    "exlib_recommender",
)

RECBOLE_MODEL_DIR = Path(recbole.model.__file__).parent

_plugin_models: dict[str, type[AbstractRecommender]] = {}


def register_model(model_class, dataset_class=None, trainer_class=None):
    """Make ``model_class`` available by its class name, with optional Dataset and Trainer classes."""
    name = model_class.__name__
    _plugin_models[name] = model_class
    if dataset_class is not None:
        setattr(recbole.data.dataset, f"{name}Dataset", dataset_class)
    if trainer_class is not None:
        setattr(recbole.trainer, f"{name}Trainer", trainer_class)
    return model_class


def plugin_model_names() -> list[str]:
    return sorted(_plugin_models)


def recbole_model_names() -> list[str]:
    """RecBole's model class names, read from its packages (the optional exlib ones only if importable)."""
    names = set()
    for package in RECBOLE_MODEL_PACKAGES:
        try:
            module = importlib.import_module(f"recbole.model.{package}")
        except ImportError:  # exlib_recommender needs lightgbm and xgboost
            continue
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, AbstractRecommender):
                names.add(name)
    return sorted(names)


def available_model_names() -> list[str]:
    return sorted(set(plugin_model_names()) | set(recbole_model_names()), key=str.lower)


def get_model_class(name: str) -> type[AbstractRecommender]:
    """The model class for ``name``: a plugin model first, then RecBole's, as its get_model would find it."""
    if name in _plugin_models:
        return _plugin_models[name]
    for package in RECBOLE_MODEL_PACKAGES:
        # Looked up as a file, not with find_spec: importing exlib_recommender's __init__ fails without
        # lightgbm, which is the confusing error RecBole's own get_model gives for any unknown name.
        if not (RECBOLE_MODEL_DIR / package / f"{name.lower()}.py").is_file():
            continue
        try:
            module = importlib.import_module(f"recbole.model.{package}.{name.lower()}")
        except ImportError as error:
            raise UserInputError(f"model '{name}' needs the package '{error.name}', which is not installed") from error
        model_class = getattr(module, name, None)
        if inspect.isclass(model_class):
            return model_class
    raise UserInputError(unknown_model_message(name))


def unknown_model_message(name: str) -> str:
    names = available_model_names()
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    close += [n for n in names if n.lower() == name.lower() and n not in close]
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"unknown model '{name}'{hint}; available models: {', '.join(names)}"
