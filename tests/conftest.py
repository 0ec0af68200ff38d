"""Tiny atomic-file datasets made in the test, and the config that trains on them in seconds."""

from __future__ import annotations

import os
import random
import signal
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY_TEXT_FIELDS = ["title", "categories", "brand", "price"]
# As in the real amazon.item: Python-style quoted names, 'Beauty' first, double quotes around an apostrophe.
CATEGORY_NAMES = ["'Makeup'", '"Women\'s"', "'Skin Care'", "'Tools & Accessories'"]


def write_tiny_dataset(folder: Path, name: str = "tiny", users: int = 40, items: int = 30, seed: int = 0) -> Path:
    """<folder>/<name>/<name>.inter and .item: every user has 6 to 11 interactions, some items lack fields."""
    rng = random.Random(seed)
    directory = folder / name
    directory.mkdir(parents=True, exist_ok=True)
    inter_lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user in range(users):
        history = rng.sample(range(items), rng.randint(6, 11))
        inter_lines += [f"u{user}\ti{item}\t{position}" for position, item in enumerate(history)]
    (directory / f"{name}.inter").write_text("\n".join(inter_lines) + "\n", encoding="utf-8")
    item_lines = ["item_id:token\ttitle:token\tcategories:token_seq\tbrand:token\tprice:float"]
    for item in range(items):
        title = "" if item % 10 == 3 else f"Product {item} deluxe"
        categories = ", ".join(["'Beauty'", rng.choice(CATEGORY_NAMES)])
        brand = "" if item % 4 == 0 else f"Brand{item % 5}"
        price = "" if item % 3 == 0 else f"{item + 0.99:.2f}"
        item_lines.append(f"i{item}\t{title}\t{categories}\t{brand}\t{price}")
    (directory / f"{name}.item").write_text("\n".join(item_lines) + "\n", encoding="utf-8")
    return directory


def tiny_settings(root: Path) -> dict:
    """--key=value settings that train SASRec or GRU4Rec on 'tiny' (written under root) in seconds."""
    write_tiny_dataset(root / "data")
    return {
        "data_path": str(root / "data"),
        "item_text_fields": str(TINY_TEXT_FIELDS),
        "checkpoint_dir": str(root / "saved"),
        "output_dir": str(root / "outputs"),
        "epochs": "1",
        "train_batch_size": "64",
        "eval_batch_size": "256",
        "hidden_size": "8",
        "embedding_size": "8",
        "inner_size": "16",
        "n_layers": "1",
        "n_heads": "1",
        "MAX_ITEM_LIST_LENGTH": "10",
        "show_progress": "False",
        "state": "WARNING",
    }


@pytest.fixture
def tiny_overrides(tmp_path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)  # RecBole writes ./log and ./log_tensorboard
    return tiny_settings(tmp_path)


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    """With RECBOLE_TRSR_REPORT_AT_ONCE set, the SIGTERM of a time box's ``timeout`` ends the run as Ctrl-C does, so
    that pytest still writes its --junitxml report of the tests that finished: SIGTERM's default ends it first.
    Only in the process that reports (under xdist the workers keep SIGTERM, which some tests send themselves)."""
    if os.environ.get("RECBOLE_TRSR_REPORT_AT_ONCE") and not hasattr(config, "workerinput"):
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_runtest_logreport(report):
    """With RECBOLE_TRSR_REPORT_AT_ONCE set, each failure's traceback is printed as it happens: a time-boxed run (the
    GPU session) is cut before pytest's summary at the end, which held every reason."""
    if report.failed and os.environ.get("RECBOLE_TRSR_REPORT_AT_ONCE"):
        print(f"\n--- {report.nodeid} ({report.when})\n{report.longreprtext[-3000:]}", file=sys.__stderr__, flush=True)


def score_tolerance(model, float32: float = 1e-4) -> float:
    """How far two ways of computing one score may lie apart in the model's dtype. float32 differs in the order
    of its sums alone; float16, the GPU's default, keeps a shared prefix within the 1e-2 that scoring promises."""
    import torch

    return float32 if model.dtype == torch.float32 else 1e-2


def as_arguments(overrides: dict) -> list[str]:
    return [f"--{key}={value}" for key, value in overrides.items()]


@pytest.fixture(scope="session")
def default_llm():
    """The embedded default model (SmolLM2-135M-Instruct), converted once into the user cache."""
    from recbole_trsr.llm.loading import load_llm

    return load_llm()


@pytest.fixture(scope="session")
def tiny_lm(default_llm):
    """A random 2-layer, 64-wide Llama over the default model's real tokenizer."""
    from recbole_trsr.llm.random_models import tiny_llama

    _, tokenizer = default_llm
    return tiny_llama(tokenizer), tokenizer


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
