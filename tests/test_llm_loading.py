"""Loading models offline: the embedded default, local folders, GGUF files, and the errors for bad paths."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm import loading
from recbole_trsr.llm.loading import LLMSpec, load_llm, load_tokenizer


def test_default_model_loads_offline(default_llm):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    model, tokenizer = default_llm
    assert model.config.model_type == "llama"
    assert model.dtype == LLMSpec().resolved_dtype() and not model.training  # float16 on a GPU
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id is not None
    assert tokenizer.encode("hello", add_special_tokens=True) == tokenizer.encode("hello", add_special_tokens=False)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert ids.startswith("<|im_start|>")


def test_gguf_is_converted_once_into_the_cache(tmp_path, monkeypatch):
    spec = LLMSpec(path=str(loading.default_gguf_path()), cache_dir=str(tmp_path))
    folder, _ = loading.resolve_source(spec)
    assert Path(folder).parent == tmp_path / "models" and (Path(folder) / "model.safetensors").is_file()
    assert [p.name for p in (tmp_path / "models").iterdir()] == [Path(folder).name]  # no staging left

    def no_second_conversion(*args):
        raise AssertionError("converted twice")

    monkeypatch.setattr(loading, "convert_gguf", no_second_conversion)
    assert loading.resolve_source(spec)[0] == folder
    model, _ = load_llm(spec)
    assert model.config.num_hidden_layers == 30

    # Processes that start at once (--nproc, pytest workers) all convert; the last to finish finds the folder there
    # (it failed with "Directory not empty" before) and keeps it.
    monkeypatch.undo()
    first = (Path(folder) / "model.safetensors").stat().st_mtime_ns
    assert loading.convert_gguf(loading.default_gguf_path(), Path(folder)) == Path(folder)
    assert (Path(folder) / "model.safetensors").stat().st_mtime_ns == first  # the first folder, untouched
    assert [p.name for p in (tmp_path / "models").iterdir()] == [Path(folder).name]  # no staging left


def test_local_folder(tmp_path, tiny_lm):
    model, tokenizer = tiny_lm
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    loaded, _ = load_llm(LLMSpec(path=str(tmp_path / "tiny"), dtype="float32", device="cpu"))  # as saved
    for name, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name])


@pytest.mark.parametrize(("users_value", "after_loading"), [(None, "false"), ("true", "true")])
def test_a_model_on_the_cpu_leaves_the_cores_to_torch_unless_the_user_chose(
    tmp_path, tiny_lm, monkeypatch, users_value, after_loading
):
    """The tokenizer's thread pool took cores from torch's forward and backward on a CPU (RESULTS.md)."""
    model, tokenizer = tiny_lm
    model.save_pretrained(tmp_path / "tiny")
    tokenizer.save_pretrained(tmp_path / "tiny")
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    if users_value is not None:
        monkeypatch.setenv("TOKENIZERS_PARALLELISM", users_value)
    load_llm(LLMSpec(path=str(tmp_path / "tiny"), device="cpu"))
    assert os.environ["TOKENIZERS_PARALLELISM"] == after_loading


@pytest.mark.parametrize("path", ["/nonexistent/model", "./missing.gguf"])
def test_missing_model_path(path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_llm(LLMSpec(path=path))


def test_folder_that_is_not_a_model(tmp_path):
    with pytest.raises(UserInputError, match="without config.json"):
        load_tokenizer(LLMSpec(path=str(tmp_path)))


def test_hub_id_not_in_the_local_cache():
    with pytest.raises(UserInputError, match="no copy of it is in the local Hugging Face cache"):
        load_tokenizer(LLMSpec(path="nobody-here/no-such-model-xyz"))


def test_gguf_without_the_gguf_package(tmp_path, monkeypatch):
    real_find_spec = loading.importlib.util.find_spec
    monkeypatch.setattr(
        loading.importlib.util, "find_spec", lambda name: None if name == "gguf" else real_find_spec(name)
    )
    spec = LLMSpec(path=str(loading.default_gguf_path()), cache_dir=str(tmp_path))
    with pytest.raises(UserInputError, match="needs the 'gguf' package: pip install gguf"):
        load_llm(spec)


def test_spec_from_config_with_fallback():
    config = {"llm_path": "a/model", "llm_dtype": "bf16", "summarizer_llm_path": "b/model"}
    recommender = LLMSpec.from_config(config)
    summarizer = LLMSpec.from_config(config, prefix="summarizer_llm_", fallback_prefix="llm_")
    assert (recommender.path, recommender.resolved_dtype()) == ("a/model", torch.bfloat16)
    assert (summarizer.path, summarizer.dtype) == ("b/model", "bf16")
    assert LLMSpec().resolved_dtype() == (torch.float16 if torch.cuda.is_available() else torch.float32)
    with pytest.raises(UserInputError, match="dtype 'fp8'"):
        LLMSpec(dtype="fp8").resolved_dtype()


def test_the_gguf_files_own_end_of_turn_token_ends_generation(default_llm, tmp_path):
    # transformers 5.17 read SmolLM2's EOS as <|im_start|>, so summaries ran on past the end of each answer.
    _, tokenizer = default_llm
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.eos_token = "<|im_start|>"
    model = SimpleNamespace(config=SimpleNamespace(), generation_config=SimpleNamespace())
    loading.take_gguf_special_tokens(loading.default_gguf_path(), tokenizer, model)
    assert (tokenizer.eos_token, tokenizer.bos_token) == ("<|im_end|>", "<|im_start|>")
    assert (
        model.config.eos_token_id
        == model.generation_config.eos_token_id
        == tokenizer.convert_tokens_to_ids("<|im_end|>")
    )


@pytest.mark.cuda
def test_attention_on_a_gpu_builds_no_plan_per_shape(default_llm):
    # cuDNN's attention plans each new shape (0.65 s a training pass on an H100); flash and memory-efficient do not.
    model, _ = default_llm
    assert model.device.type == "cuda" and not torch.backends.cuda.cudnn_sdp_enabled()


def test_a_model_cache_that_cannot_be_made(tmp_path):
    taken = tmp_path / "a-file"
    taken.write_text("")
    spec = LLMSpec(path=str(loading.default_gguf_path()), cache_dir=str(taken / "cache"))
    with pytest.raises(UserInputError, match=f"the model cache '{taken / 'cache'}' cannot be made a folder"):
        loading.resolve_source(spec)


def test_a_gguf_file_inside_a_model_that_is_one_file_already():
    # It was ignored without a word: the run trained the default model.
    with pytest.raises(UserInputError, match="llm_gguf_file 'qwen-q4.gguf' names a file inside llm_path, but llm_path"):
        loading.resolve_source(LLMSpec(gguf_file="qwen-q4.gguf"))
