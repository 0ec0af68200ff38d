"""The summarizer a config asks for: its backend (in-process model or server), store and templates."""

from __future__ import annotations

from pathlib import Path

from recbole_trsr.item_text import capped_texts
from recbole_trsr.llm.device_batches import summary_batch_size, summary_model_tokens, summary_server_concurrency
from recbole_trsr.llm.generation import GenerationSettings, summary_static_cache
from recbole_trsr.llm.loading import LLMSpec, load_llm, load_tokenizer
from recbole_trsr.summary.backends import OpenAICompatibleBackend, TransformersBackend
from recbole_trsr.summary.prompts import SummaryPrompts
from recbole_trsr.summary.share import SummaryShare
from recbole_trsr.summary.store import SummaryStore
from recbole_trsr.summary.summarizer import Summarizer


def build_summarizer(config, item_texts) -> Summarizer:
    spec = LLMSpec.from_config(config, prefix="summarizer_llm_", fallback_prefix="llm_")
    server = config["summary_backend"] == "server"
    model, tokenizer = (None, load_tokenizer(spec)) if server else load_llm(spec)
    static = summary_static_cache(config) and not server  # a server keeps its own cache
    settings = GenerationSettings(
        max_new_tokens=config["summary_max_new_tokens"],
        batch_size=summary_batch_size(config, model),
        use_chat_template=config["summary_chat_template"] is not False,
        static_cache_tokens=summary_model_tokens(config, model) if static else None,
        batch_follows_memory=config["summary_batch_size"] == "auto" and not server,
    )
    if server:  # the tokenizer only caps item texts the way the served model counts
        name = config["summary_server_model"] or spec.path
        concurrency = summary_server_concurrency(config)
        backend = OpenAICompatibleBackend(config["summary_server_url"], name, settings, concurrency=concurrency)
    else:
        name = spec.path + (f"/{spec.gguf_file}" if spec.gguf_file else "")
        backend = TransformersBackend(model, tokenizer, settings, name)
        backend.spec = spec
    return Summarizer(
        backend,
        open_store(config),
        capped_texts(item_texts, tokenizer, config["item_max_tokens"]),
        config["summary_mode"],
        block_size=config["block_size"],
        max_blocks=config["max_blocks"],
        prompts=summary_prompts(config),
        progress=config["show_progress"],
        always_merge=bool(config["summary_always_merge"]),
        share=SummaryShare.from_config(config),
    )


def summary_prompts(config) -> SummaryPrompts:
    defaults = SummaryPrompts()
    return SummaryPrompts(
        block=config["summary_block_template"] or defaults.block,
        update=config["summary_update_template"] or defaults.update,
        merge=config["summary_merge_template"] or defaults.merge,
        numbered=config["summary_numbered"] is not False,
        summary_label=config["summary_merge_label"] or "",
    )


def store_path(config) -> Path:
    return Path(config["summary_store"] or Path(config["checkpoint_dir"]) / "summaries.sqlite")


def open_store(config) -> SummaryStore:
    return SummaryStore(store_path(config))


def loaded_model(summarizer: Summarizer):
    """(LLMSpec, model, tokenizer) of a summarizer that ran in this process; None for a server."""
    backend = summarizer.backend
    return (backend.spec, backend.model, backend.tokenizer) if hasattr(backend, "spec") else None
