"""Where summaries are generated: in this process with transformers (default) or on a server."""

from __future__ import annotations

from dataclasses import asdict

from recbole_trsr.llm.generation import Generated, GenerationSettings, generate


class TransformersBackend:
    """Batched greedy generation in this process."""

    def __init__(self, model, tokenizer, settings: GenerationSettings, model_name: str):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        # Batch size only changes rounding, not what is asked for: it stays out of the identity (and the keys).
        generation = {k: v for k, v in asdict(settings).items() if k != "batch_size"}
        self.identity = f"transformers|{model_name}|{sorted(generation.items())}"

    def generate(self, prompts: list[str], progress: bool = True) -> list[Generated]:
        return generate(self.model, self.tokenizer, prompts, self.settings, progress=progress)
