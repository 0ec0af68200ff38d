"""A pickle module for ``torch.load`` that reads RecBole checkpoints without running code from the file.

RecBole pickles its Config (and through it the model class, enums and a YAML loader class) into every
checkpoint, which torch's ``weights_only`` loader cannot read. Plain pickle would run whatever a crafted file
asks for. This unpickler resolves only the globals a RecBole checkpoint holds, checked before any import:
tensors, torch devices, numpy scalars and arrays, RecBole's enums, its Config classes and its model classes.
Anything else (``os.system``, ``builtins.eval``, ...) ends the load with an UnpicklingError.

Use: ``torch.load(path, weights_only=False, pickle_module=safe_pickle)``.
"""

from __future__ import annotations

import importlib
import inspect
import pickle
from pickle import Pickler, dump, dumps  # noqa: F401 (torch may ask a pickle module for them)

ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("torch", "device"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("yaml.loader", "FullLoader"),
    ("yaml.loader", "Loader"),
    ("yaml.loader", "SafeLoader"),
    ("recbole.config.configurator", "Config"),
    ("recbole_trsr.config", "TRSRConfig"),
}
ENUM_MODULE = "recbole.utils.enum_type"
MODEL_PACKAGES = ("recbole.model.", "recbole_trsr.model.")


def allowed_class(module: str, name: str):
    """The object ``module.name`` if a RecBole checkpoint may hold it; None otherwise (nothing imported)."""
    if (module, name) in ALLOWED_GLOBALS or module == ENUM_MODULE:
        return getattr(importlib.import_module(module), name, None)
    if module.startswith(MODEL_PACKAGES):
        from recbole.model.abstract_recommender import AbstractRecommender

        value = getattr(importlib.import_module(module), name, None)
        if inspect.isclass(value) and issubclass(value, AbstractRecommender):
            return value
    return None


class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        value = allowed_class(module, name)
        if value is None:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: a RecBole checkpoint holds no such object")
        return value


def load(file, **kwargs):
    return Unpickler(file, **kwargs).load()


def loads(data, **kwargs):
    import io

    return load(io.BytesIO(data), **kwargs)
