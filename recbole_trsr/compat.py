"""Fixes that let RecBole 1.2.1 run on today's numpy, pandas, torch and without ray.

Everything here is applied once, by ``apply()``, which ``recbole_trsr/__init__.py`` calls before any
RecBole module is imported. Each fix names the breakage it mends (DESIGN.md section 3) so that it can
be dropped when RecBole fixes it upstream.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import types
import warnings

import numpy as np

_applied = False

# RecBole's Config.compatibility_settings re-creates aliases that numpy removed (np.float, np.int, ...),
# and RecBole's metrics use them. On numpy 2 the original code dies on `np.float_`, which is gone too.
NUMPY_ALIASES = {
    "bool": bool,
    "int": int,
    "float": float,
    "complex": complex,
    "object": object,
    "str": str,
    "long": int,
    "unicode": str,
}


def numpy_compatibility_settings(config=None) -> None:
    """Replacement for ``recbole.config.Config.compatibility_settings`` that works on numpy 1 and 2.

    Only names numpy no longer defines are added, so numpy 2's own ``np.bool`` stays numpy's type.
    """
    for name, builtin in NUMPY_ALIASES.items():
        with warnings.catch_warnings():
            # numpy 2 warns on the lookup of a removed alias before raising AttributeError
            warnings.simplefilter("ignore", FutureWarning)
            present = hasattr(np, name)
        if not present:
            setattr(np, name, builtin)


def install_ray_placeholder() -> bool:
    """Make ``from ray import tune`` in ``recbole.quick_start`` succeed without ray installed.

    RecBole 1.2.1 imports ray at module level only for hyper-parameter search, which this plugin does not
    use; ray 2.6.3 (the newest RecBole allows) fails to import on numpy 2 and setuptools >= 82.
    Returns True when the placeholder was installed, False when a working ray is present.
    """
    try:
        from ray import tune  # noqa: F401

        return False
    except Exception:  # ImportError, or ray 2.6's own AttributeError on numpy 2
        pass
    for name in [m for m in sys.modules if m == "ray" or m.startswith("ray.")]:
        del sys.modules[name]
    ray = types.ModuleType("ray")
    tune = types.ModuleType("ray.tune")

    def _unavailable(name):
        if name.startswith("__"):
            raise AttributeError(name)  # keep inspect, pickle and copy working on the module

        def call(*args, **kwargs):
            raise ImportError(
                f"ray.{name} is unavailable: recbole-trsr does not install ray, which RecBole 1.2.1 "
                "uses only for its hyper-parameter search"
            )

        return call

    tune.__getattr__ = _unavailable
    ray.tune = tune
    ray.__getattr__ = _unavailable
    ray.__recbole_trsr_placeholder__ = True
    sys.modules["ray"] = ray
    sys.modules["ray.tune"] = tune
    return True


def check_pandas() -> None:
    """pandas 3 (copy-on-write) silently breaks RecBole's token_seq loading and NaN filling."""
    import pandas as pd

    major = int(pd.__version__.split(".")[0])
    if major >= 3:
        raise ImportError(
            f"pandas {pd.__version__} is installed, but RecBole 1.2.1 needs pandas < 3 "
            "(copy-on-write breaks its token_seq loading): pip install 'pandas<3'"
        )


@contextlib.contextmanager
def trusted_torch_load():
    """Within the block, ``torch.load`` reads RecBole's checkpoints through ``safe_pickle``.

    RecBole saves its checkpoints with its Config inside, which torch's ``weights_only`` loader rejects
    outright, so its readers fail under torch >= 2.6. ``safe_pickle`` reads them while resolving only the
    objects a RecBole checkpoint holds, so a crafted file still cannot run code.
    """
    import torch

    from recbole_trsr import safe_pickle

    safe_load = torch.load
    torch.load = functools.partial(safe_load, weights_only=False, pickle_module=safe_pickle)
    try:
        yield
    finally:
        torch.load = safe_load


def _reading_trusted_checkpoints(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with trusted_torch_load():
            return function(*args, **kwargs)

    wrapper.__recbole_trsr_patched__ = True
    return wrapper


def allow_recbole_checkpoints() -> None:
    """Make RecBole's checkpoint readers work again under torch >= 2.6 (weights_only=True by default)."""
    import recbole.quick_start
    import recbole.quick_start.quick_start as quick_start
    from recbole.trainer import Trainer

    for owner, name in [
        (Trainer, "evaluate"),
        (Trainer, "resume_checkpoint"),
        (quick_start, "load_data_and_model"),
        (recbole.quick_start, "load_data_and_model"),
    ]:
        function = getattr(owner, name)
        if not getattr(function, "__recbole_trsr_patched__", False):
            setattr(owner, name, _reading_trusted_checkpoints(function))


def collector_get_data_struct(self):
    """``recbole.evaluator.Collector.get_data_struct`` without ``.cpu()`` on plain numbers.

    Upstream calls ``.cpu()`` on every collected value, but ``data.num_items`` and friends are ints, so
    ItemCoverage, GiniIndex, AveragePopularity and TailPercentage crash (RecBole issues 2131, 2191).
    """
    import copy

    import torch

    for key, value in self.data_struct._data_dict.items():
        if isinstance(value, torch.Tensor):
            self.data_struct._data_dict[key] = value.cpu()
    returned_struct = copy.deepcopy(self.data_struct)
    for key in ["rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label"]:
        if key in self.data_struct:
            del self.data_struct[key]
    return returned_struct


def keep_anomaly_detection_off() -> None:
    """RecBole's sine.py turns autograd's anomaly detection on for the whole process when it is imported, and it is
    imported with every RecBole sequential model (the config of SASRec or GRU4Rec alone does it). Every backward op
    then checks its output for NaN and every forward op keeps a traceback: beside the baselines, LLMTRSR's training
    on a CPU took 1.6 times as long with the default model and 3.6 times with a tiny one (benchmarks/RESULTS.md),
    and on a GPU each check waits on the device. Imported here, once, with the switch put back as it was."""
    import torch

    was_on = torch.is_anomaly_enabled()
    import recbole.model.sequential_recommender  # noqa: F401 - the import is the point: sine.py's side effect

    torch.autograd.set_detect_anomaly(was_on)


def apply() -> None:
    """Apply every fix; safe to call more than once."""
    global _applied
    if _applied:
        return
    check_pandas()
    # RecBole's pandas calls warn of pandas 3 changes on every run; pandas is pinned below 3 (see check_pandas).
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"recbole\.")
    # Python >= 3.12 warns of invalid escapes in RecBole's sources (dien.py, ...) when they first compile; the
    # warning's module is then the file's path.
    warnings.filterwarnings("ignore", category=SyntaxWarning, module=r".*recbole")
    install_ray_placeholder()
    numpy_compatibility_settings()

    from recbole.config import Config
    from recbole.evaluator.collector import Collector

    Config.compatibility_settings = numpy_compatibility_settings
    Collector.get_data_struct = collector_get_data_struct
    allow_recbole_checkpoints()
    keep_anomaly_detection_off()
    _applied = True
