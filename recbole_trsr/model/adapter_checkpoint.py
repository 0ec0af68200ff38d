"""LLMTRSR's checkpoint folder: the LoRA adapter (peft's save_pretrained), never the frozen base model (with
``finetune: full``, the whole fine-tuned model, transformers' save_pretrained).

    <checkpoint_dir>/LLMTRSR-<time>/
        config.yaml          the run's config
        best/                the adapter of the best validation epoch (what the test uses)
        last/                the adapter at the latest save point, with trainer_state.pt (resume)

Each sub-folder is written beside its final name and renamed into place, so a run killed while saving
leaves the previous save point whole. Everything is read back without unpickling code: the adapter is
safetensors, and the trainer state holds only tensors and plain values (torch.load with weights_only).
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from recbole_trsr.errors import UserInputError
from recbole_trsr.whole_files import replaced

BEST, LAST, STATE_FILE, CONFIG_FILE = "best", "last", "trainer_state.pt", "config.yaml"


def plain(value):
    """A config value as YAML can write it: containers kept, anything else (devices, enums) as text."""
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    return str(value)


def write_config(folder: Path, config) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    settings = {key: plain(value) for key, value in config.final_config_dict.items()}
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(settings, sort_keys=True))


def save(peft_model, folder: Path, name: str, trainer_state: dict | None = None) -> Path:
    """Write the adapter (and the trainer state, for resuming) to ``folder/name``, replacing it whole."""
    with replaced(folder / name) as staging:
        peft_model.save_pretrained(staging)
        if trainer_state is not None:
            torch.save(trainer_state, Path(staging) / STATE_FILE)
    return folder / name


def load_full_model(model, folder: Path) -> None:
    """Load a fully fine-tuned model's weights (``save_pretrained``'s safetensors) into ``model``."""
    from safetensors.torch import load_file

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise UserInputError(f"{folder} holds neither a LoRA adapter nor model weights (*.safetensors)")
    device = next(model.parameters()).device
    try:
        weights = {key: value for file in files for key, value in load_file(str(file), device=str(device)).items()}
        missing, unexpected = model.load_state_dict(weights, strict=False)
    except Exception as error:
        raise UserInputError(f"{folder}: the weights cannot be read or do not fit this model ({error})") from None
    tied = getattr(model.config, "tie_word_embeddings", False)  # the output embedding is the input's, not saved
    missing = [name for name in missing if not (tied and name.endswith("lm_head.weight"))]
    if unexpected or missing:
        raise UserInputError(f"{folder}: the weights do not fit this model (e.g. {(unexpected or missing)[0]})")


def load_adapter(peft_model, folder: Path) -> None:
    """Load the adapter weights saved in ``folder`` into ``peft_model`` (same base, same LoRA settings); for a
    fully fine-tuned model (``finetune: full``), its whole weights."""
    from peft.utils import load_peft_weights, set_peft_model_state_dict

    if not hasattr(peft_model, "peft_config"):
        return load_full_model(peft_model, folder)
    if not (folder / "adapter_config.json").is_file():
        raise UserInputError(f"{folder} holds no LoRA adapter (adapter_config.json is missing)")
    device = next(peft_model.parameters()).device
    try:
        weights = load_peft_weights(str(folder), device=str(device))
        result = set_peft_model_state_dict(peft_model, weights)
    except Exception as error:  # safetensors and torch raise many kinds for a damaged file
        raise UserInputError(f"{folder}: the adapter cannot be read or does not fit this model ({error})") from None
    if result.unexpected_keys:
        raise UserInputError(
            f"{folder}: the adapter does not fit this model (unexpected weights such as {result.unexpected_keys[0]}); "
            "were lora_target_modules or llm_path different?"
        )


def check_resume_folder(path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise UserInputError(f"resume_from '{path}': no such checkpoint folder")
    return folder


def load_trainer_state(folder: Path, device) -> dict:
    path = folder / STATE_FILE
    if not path.is_file():
        raise UserInputError(f"{folder} is not a resumable LLMTRSR checkpoint: {STATE_FILE} is missing")
    return load_plain_state(path, device)


def load_plain_state(path: Path, device) -> dict:
    """A saved trainer state of tensors and plain values; a damaged file is one line naming it."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # a cut or overwritten file raises many kinds
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise UserInputError(
            f"{path} is damaged and cannot be resumed from ({type(error).__name__}: {first_line})"
        ) from None
