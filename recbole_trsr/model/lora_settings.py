"""peft's LoRA settings from the ``lora_*`` keys, and the check that their target modules exist in llm_path.

peft reads ``target_modules`` only when it wraps the loaded model: after the summaries and after the other models of
a comparison have trained. It refuses a list that matches no module at all, and takes a list in which some names
match nothing without a word.
"""

from __future__ import annotations

import warnings

import torch

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.loading import LLMSpec

ALL_LINEAR = "all-linear"  # peft's name for every linear layer but the output layer


def lora_targets(config) -> list[str] | str:
    """``lora_target_modules`` as peft takes it: module names, or peft's ``all-linear`` (a list of one here, since
    the config reads a single name as a list)."""
    names = list(config["lora_target_modules"] or [])
    return ALL_LINEAR if names == [ALL_LINEAR] else names


def lora_config(config):
    """peft's adapter settings from the ``lora_*`` keys of a config (or of LLMTRSR.yaml, read as a dict)."""
    from peft import LoraConfig

    return LoraConfig(
        r=config["lora_r"],
        lora_alpha=config["lora_alpha"],
        lora_dropout=config["lora_dropout"],
        target_modules=lora_targets(config),
        task_type="CAUSAL_LM",
    )


def check_lora_targets(config, skeleton) -> None:
    """Each name in ``lora_target_modules`` names modules of ``llm_path`` (``skeleton``: its model_skeleton) that
    LoRA can wrap; one line otherwise."""
    from peft import LoraConfig, get_peft_model
    from peft.tuners.tuners_utils import check_target_module_exists

    targets = lora_targets(config)
    if not targets:
        raise UserInputError(f"lora_target_modules must name modules, such as [q_proj, v_proj] or {ALL_LINEAR}")
    spec = LLMSpec.from_config(config)
    modules = dict(skeleton.named_modules())
    linear = sorted(
        {name.rsplit(".", 1)[-1] for name, module in modules.items() if isinstance(module, torch.nn.Linear)}
    )
    hint = f"{spec.path}'s linear layers: {', '.join(linear)}; or {ALL_LINEAR}"
    kinds = {}  # target -> the kinds of module it names
    for target in [] if targets == ALL_LINEAR else targets:
        single = LoraConfig(target_modules=[target])
        kinds[target] = {
            type(module).__name__ for name, module in modules.items() if check_target_module_exists(single, name)
        }
        if not kinds[target]:
            raise UserInputError(f"lora_target_modules: no module of {spec.path} is named {target!r} ({hint})")
    with warnings.catch_warnings():  # peft's notes on a skeleton's tied weights: nothing for a user to do
        warnings.simplefilter("ignore")
        try:
            get_peft_model(skeleton, lora_config(config))
        except ValueError as error:  # peft wraps linear, embedding and convolution layers, not whole blocks
            # peft prints the refused module whole: "Target module LlamaAttention(\n  (q_proj): ..."
            kind = str(error).removeprefix("Target module ").split("(", 1)[0]
            target = next((target for target, named in kinds.items() if kind in named), None)
            what = f"{target!r} is a {kind}" if target else str(error).splitlines()[0]
            raise UserInputError(
                f"lora_target_modules: {what} in {spec.path}, which LoRA cannot wrap ({hint})"
            ) from None
