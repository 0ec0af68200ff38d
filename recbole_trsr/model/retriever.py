"""The retriever behind LLMTRSR's full ranking: a trained RecBole model, loaded from its RecBole checkpoint.

Scoring every item with the LLM is out of reach (thousands of prompts per user), so ``mode: full`` ranks
all items with the retriever and lets the LLM rerank its top ``rerank_top_m``.
"""

from __future__ import annotations

import os

import torch

from recbole_trsr import safe_pickle
from recbole_trsr.errors import UserInputError

NO_RETRIEVER = (
    "eval_args mode full: LLMTRSR reranks a retriever's top items, but none is available; add the retriever to "
    "the run (--model=LLMTRSR,{retriever}) or set retriever_checkpoint to its RecBole checkpoint"
)


def full_ranking(config) -> bool:
    return "full" in config["eval_args"]["mode"].values()


def check_retriever_checkpoint(path: str) -> None:
    if not os.path.isfile(path):
        raise UserInputError(f"retriever_checkpoint '{path}': no such file")


def load_retriever(config, dataset):
    """The RecBole model saved at ``retriever_checkpoint``, checked against ``dataset``, frozen."""
    from recbole_trsr.registry import get_model_class

    path = config["retriever_checkpoint"]
    if not path:
        raise UserInputError(NO_RETRIEVER.format(retriever=config["retriever"]))
    check_retriever_checkpoint(path)
    try:
        # RecBole pickles its Config into the file, which weights_only cannot read; safe_pickle reads it
        # without running anything the file asks for.
        saved = torch.load(path, map_location="cpu", weights_only=False, pickle_module=safe_pickle)
        saved_config, state = saved["config"], saved["state_dict"]
    except Exception as error:
        raise UserInputError(f"retriever_checkpoint '{path}' is not a RecBole checkpoint ({error})") from None
    if saved_config["dataset"] != config["dataset"]:
        raise UserInputError(
            f"retriever_checkpoint '{path}' belongs to dataset '{saved_config['dataset']}', not '{config['dataset']}'"
        )
    retriever = get_model_class(saved_config["model"])(saved_config, dataset)
    try:
        retriever.load_state_dict(state)
    except RuntimeError as error:
        detail = str(error).splitlines()[-1].strip()
        raise UserInputError(
            f"retriever_checkpoint '{path}' does not fit this dataset's items or users "
            f"(another subset of '{config['dataset']}'?): {detail}"
        ) from None
    retriever.load_other_parameter(saved.get("other_parameter"))
    retriever.requires_grad_(False)
    return retriever.eval()
