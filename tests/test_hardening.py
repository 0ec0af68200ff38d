"""Bad input ends in one line and exit 2, values never run as code, and the summary store survives damage."""

from __future__ import annotations

import http.server
import logging
import os
import shutil
import threading
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import torch

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.generation import GenerationSettings
from recbole_trsr.summary.store import SummaryStore
from recbole_trsr.summary.summarizer import Summarizer
from tests.conftest import as_arguments
from tests.test_cli import assert_one_line_error, run_cli
from tests.test_summary import HISTORY, RecordingBackend, item_text


def tiny_run(capsys, overrides, *extra, model="SASRec"):
    capsys.readouterr()  # what fixtures printed
    return run_cli(capsys, [f"--model={model}", "--dataset=tiny", *as_arguments(overrides), *extra])


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("{'mode': 'fulll'}", "'fulll' is not full, labeled, uni<N> or pop<N>"),
        ("{'split': {'XX': 0.5}}", "eval_args split {'XX': 0.5} is not"),
        ("mode:full", "eval_args must be a dict"),
        ("{'mode': {'valid': 'uni0'}}", "'uni0' is not full"),
        ("{'order': 'XO'}", "order 'XO' is not RO or TO"),
        ("{'mode': 'labeled'}", "eval_args mode labeled reads each row's 'label' column, but "),
        # RecBole trained the model, then failed on the empty test set's result (None) or on the split's length.
        ("{'split': {'LS': 'valid_only'}}", "eval_args split {'LS': 'valid_only'} is not"),
        ("{'split': {'RS': [0.8, 0.2, 0]}}", "with train and test above 0"),
        ("{'split': {'RS': [0, 0.5, 0.5]}}", "with train and test above 0"),
        ("{'split': {'RS': [0.8, 0.2]}}", "{'RS': [train, valid, test] ratios}"),
    ],
)
def test_eval_args_that_recbole_rejects(capsys, tiny_overrides, value, fragment):  # 7
    code, error = tiny_run(capsys, tiny_overrides, f"--eval_args={value}")
    assert_one_line_error(code, error, fragment)


def test_values_are_data_never_code(capsys, tiny_overrides, tmp_path):  # 16
    target = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path('{target}').touch()"
    tiny_run(capsys, {**tiny_overrides, "epochs": "0"}, f"--foo={payload}")
    tiny_run(capsys, {**tiny_overrides, "epochs": "0"}, model=f"GRU4Rec[foo={payload}]")
    assert not target.exists()


def test_unquoted_lists_and_single_names(capsys, tiny_overrides):  # 22
    from recbole_trsr.runner import build_config

    config = build_config("SASRec", "tiny", overrides={**tiny_overrides, "item_text_fields": "[title,brand]"})
    assert config["item_text_fields"] == ["title", "brand"]
    config = build_config("SASRec", "tiny", overrides={**tiny_overrides, "item_text_fields": "title"})
    assert config["item_text_fields"] == ["title"]
    code, error = tiny_run(capsys, {**tiny_overrides, "item_text_fields": "[title,"})
    assert_one_line_error(code, error, "not a valid list or dict")


@pytest.mark.parametrize("key", ["dataset", "data_path", "eval_args", "seed", "eval_users", "max_users"])
def test_a_variant_cannot_change_what_all_rows_share(capsys, tiny_overrides, key):  # 11
    code, error = tiny_run(capsys, tiny_overrides, model=f"SASRec[{key}=x],GRU4Rec")
    assert_one_line_error(code, error, f"{key} cannot differ between the models of one comparison")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("train_batch_size", "0", "train_batch_size must be a positive whole number, not 0"),
        ("train_batch_size", "2.5", "train_batch_size must be a positive whole number, not 2.5"),
        ("learning_rate", "abc", "learning_rate must be a number above 0, not 'abc'"),
        ("stopping_step", "x", "stopping_step must be a whole number, 0 or more, not 'x'"),
        ("eval_step", "-2", "eval_step must be a whole number, 0 or more (0: no validation), not -2"),
        ("seed", "1.5", "seed must be a whole number from 0 to 4294967295, not 1.5"),
        ("MAX_ITEM_LIST_LENGTH", "0", "MAX_ITEM_LIST_LENGTH must be a positive whole number, not 0"),
        ("weight_decay", "-0.1", "weight_decay must be a number, 0 or more, not -0.1"),
        ("reproducibility", "no", "reproducibility must be True or False, not 'no'"),
        ("learner", "adamx", "learner 'adamx' is not adam, adamw, sgd, adagrad, rmsprop or sparse_adam"),
        ("valid_metric", "NDCG@11", "valid_metric 'NDCG@11' is not among what metrics and topk compute: Recall@3,"),
        ("metrics", "[Recall, Foo]", "There is no metric named 'Foo'"),
        ("metrics", "[Recall, NDCG, ItemCoverage]", "metrics: ItemCoverage gives no value per test user, which the"),
        ("metrics", "[NDCG, GAUC]", "metrics: GAUC gives no value per test user, which the comparison's intervals"),
        ("topk", "[10, 0]", "topk must be a positive integer or a list of positive integers"),
        ("repeatable", "False", "Sequential models currently only support repeatable recommendation"),
        ("clip_grad_norm", "abc", "clip_grad_norm must be ~ or a dict of max_norm, norm_type"),
        ("clip_grad_norm", "{'max_norm': 0}", "with a max_norm above 0, such as \"{'max_norm': 5}\", not {'max_"),
    ],
)
def test_recboles_training_keys_are_checked_before_the_data_loads(capsys, tiny_overrides, key, value, fragment):
    # RecBole read each of these with a traceback when the data loaded, the optimizer was made or the first
    # validation ended; a negative eval_step, a flag such as "no" (read as on) and an unknown learner (trained as
    # Adam after a warning) it took.
    code, error = tiny_run(capsys, {**tiny_overrides, key: value})
    assert_one_line_error(code, error, fragment)
    assert not list(Path(tiny_overrides["checkpoint_dir"]).glob("SASRec-*.pth"))


@pytest.mark.parametrize(
    ("variant", "fragment"),
    [
        ("SASRec[hidden_size=abc]", "SASRec[hidden_size=abc] cannot be built from its settings (TypeError: "),
        ("SASRec[hidden_size=7;n_heads=2]", "cannot be built from its settings (ValueError: The hidden size (7) is"),
    ],
)
def test_a_model_its_settings_cannot_build_keeps_the_rows_before_it(capsys, tiny_overrides, variant, fragment):
    # RecBole reads a model's hyper-parameters when it builds the model, after the models before it have trained:
    # this was a traceback that named neither the entry nor the rows already written.
    code, error = tiny_run(capsys, tiny_overrides, model=f"GRU4Rec,{variant}")
    assert_one_line_error(code, error, fragment, "rows so far in ", f'to go on, run it again with --model="{variant}"')
    (table,) = Path(tiny_overrides["output_dir"]).glob("comparison-tiny-*[0-9].csv")
    assert pd.read_csv(table)["model"].tolist() == ["GRU4Rec", "RandomRank"]


def test_valid_metric_is_needed_only_where_validation_reads_it(tiny_overrides):
    from recbole_trsr.runner import build_config

    # NDCG@10, valid_metric's default, is not computed
    overrides = {**tiny_overrides, "topk": "[5]", "significance_metrics": "[NDCG@5]", "eval_step": "0"}
    assert build_config("SASRec", "tiny", overrides=overrides)["topk"] == [5]
    with pytest.raises(UserInputError, match="valid_metric 'NDCG@10' is not among what metrics and topk compute"):
        build_config("SASRec", "tiny", overrides={**overrides, "eval_step": "1"})


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("summary_mode", "flat", "summary_mode 'flat' is not hierarchical, recurrent or none"),
        ("summary_backend", "vllm", "summary_backend 'vllm' is not transformers or server"),
        ("finetune", "half", "finetune 'half' is not lora or full"),
        ("loss_scope", "all", "loss_scope 'all' is not answer or prompt"),
        ("block_size", "0", "block_size must be a positive whole number, not 0"),
        ("recent_k", "abc", "recent_k must be a whole number, 0 or more, not 'abc'"),
        ("lora_dropout", "1.0", "lora_dropout must be a number from 0 up to 1, 1 left out, not 1.0"),
        ("max_prompt_tokens", "0", "max_prompt_tokens must be a positive whole number or ~"),
        ("gradient_accumulation_steps", "0", "gradient_accumulation_steps must be a positive whole number, not 0"),
        ("llm_path", "/nowhere/model", "llm_path '/nowhere/model' does not exist"),
        ("llm_path", "someone/uncached-model", "no copy of it is in the local Hugging Face cache"),
        ("summarizer_llm_path", "/nowhere/summarizer", "summarizer_llm_path '/nowhere/summarizer' does not exist"),
        ("llm_dtype", "float33", "llm_dtype 'float33' is not one of: auto, float32"),
        ("summarizer_llm_dtype", "half", "summarizer_llm_dtype 'half' is not one of: auto, float32"),
        ("llm_device", "cuda:7", "llm_device 'cuda:7': this machine has "),
        ("llm_device", "gpu0", "llm_device 'gpu0' is not auto, cpu, cuda or cuda:<index>"),
        ("lora_target_modules", "[q_proj,qproj]", "is named 'qproj' ("),
        ("lora_target_modules", "self_attn", "'self_attn' is a LlamaAttention in "),
        ("lora_target_modules", "[]", "lora_target_modules must name modules"),
        ("answer_leading_space", "maybe", "answer_leading_space must be auto, True or False, not 'maybe'"),
        ("adam_betas", "[0.9]", "adam_betas must be two numbers in [0, 1), such as [0.9, 0.95], not [0.9]"),
        ("compile_layers", "no", "compile_layers must be True or False, not 'no'"),
        ("summary_backend", "server", "summary_server_url None is not an http:// or https:// address"),
        ("llm_attn_implementation", "foo", "llm_attn_implementation 'foo': Specified `attn_implementation=\"foo\"`"),
    ],
)
def test_every_model_is_checked_before_the_first_trains(capsys, tiny_llm_overrides, key, value, fragment):  # 12
    code, error = tiny_run(capsys, {**tiny_llm_overrides, key: value}, model="SASRec,LLMTRSR")
    assert_one_line_error(code, error, fragment)
    assert not list(Path(tiny_llm_overrides["checkpoint_dir"]).glob("SASRec-*.pth"))  # SASRec never trained


def cut_short(file: Path) -> None:
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])


def without(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).unlink()


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda folder: cut_short(folder / "model.safetensors"), "model.safetensors cannot be read (Error while"),
        (lambda folder: without(folder, "model.safetensors"), "holds no weights (model.safetensors or pytorch_model"),
        (lambda folder: without(folder, "tokenizer.json", "tokenizer_config.json"), "holds no usable tokenizer"),
        (lambda folder: (folder / "config.json").write_text("{"), "the folder's config.json cannot be read"),
    ],
)
def test_a_damaged_model_folder_is_refused_before_the_first_model_trains(capsys, tiny_llm_overrides, damage, fragment):
    # A copy or download that stopped: tracebacks once LLMTRSR loaded the model, after the baselines had trained.
    folder = Path(tiny_llm_overrides["llm_path"])
    damage(folder)
    code, error = tiny_run(capsys, tiny_llm_overrides, model="SASRec,LLMTRSR")
    assert_one_line_error(code, error, f"llm_path '{folder}': ", fragment)
    assert not list(Path(tiny_llm_overrides["checkpoint_dir"]).glob("SASRec-*.pth"))


def test_a_download_cut_short_in_the_hub_cache_is_refused_before_the_first_model_trains(
    capsys, tiny_llm_overrides, tmp_path, monkeypatch
):
    import huggingface_hub.constants

    from recbole_trsr.llm.loading import LLMSpec, check_source

    # The Hugging Face cache's layout: refs/main names the snapshot that holds the repository's files.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    repository = tmp_path / "hub" / "models--someone--tiny"
    snapshot = repository / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_llm_overrides["llm_path"], snapshot)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text("0" * 40)
    check_source(LLMSpec(path="someone/tiny"))  # whole: taken
    cut_short(snapshot / "model.safetensors")
    code, error = tiny_run(capsys, {**tiny_llm_overrides, "llm_path": "someone/tiny"}, model="SASRec,LLMTRSR")
    assert_one_line_error(code, error, "llm_path 'someone/tiny': the weights file ", " cannot be read (Error while")
    assert not list(Path(tiny_llm_overrides["checkpoint_dir"]).glob("SASRec-*.pth"))


def test_a_file_that_is_not_a_gguf_model(capsys, tiny_llm_overrides, tmp_path):
    damaged = tmp_path / "model.gguf"
    damaged.write_bytes(b"not a GGUF file")
    overrides = {**tiny_llm_overrides, "llm_path": str(damaged), "llm_cache_dir": str(tmp_path / "cache")}
    code, error = tiny_run(capsys, overrides, model="SASRec,LLMTRSR")
    assert_one_line_error(code, error, f"{damaged} cannot be read as a GGUF model (", "a damaged or cut-short file")
    assert not list((tmp_path / "cache" / "models").iterdir())  # no half-converted folder left


@pytest.mark.parametrize(
    ("negatives", "fragment"),
    [
        ("None", "LLMTRSR learns 'no' from sampled negatives: train_neg_sample_args needs a distribution"),
        ("{'distribution': 'uniform', 'sample_num': 0}", "and a sample_num of 1 or more, not {'distribution'"),
        ("{'distribution': 'foo', 'sample_num': 3}", "The distribution [foo] of train_neg_sample_args should in"),
    ],
)
def test_llmtrsr_needs_sampled_negatives_to_learn_no(capsys, tiny_llm_overrides, negatives, fragment):
    # Without them every label is yes, and RecBole's loader gave the loss no label field: a KeyError mid-epoch.
    code, error = tiny_run(capsys, {**tiny_llm_overrides, "train_neg_sample_args": negatives}, model="LLMTRSR")
    assert_one_line_error(code, error, fragment)
    assert not list(Path(tiny_llm_overrides["checkpoint_dir"]).glob("LLMTRSR-*"))


def test_a_summary_store_whose_folder_cannot_be_made(capsys, tiny_llm_overrides, tmp_path):
    taken = tmp_path / "a-file"
    taken.write_text("")
    store = taken / "below" / "summaries.sqlite"
    code, error = tiny_run(capsys, {**tiny_llm_overrides, "summary_store": str(store)}, model="SASRec,LLMTRSR")
    assert_one_line_error(
        code, error, f"summary_store '{store}': its folder cannot be made or written: Not a directory"
    )
    assert not list(Path(tiny_llm_overrides["checkpoint_dir"]).glob("SASRec-*.pth"))


def test_an_empty_show_user_is_not_a_full_run(capsys, tiny_llm_overrides):
    # --show_user= ran the whole comparison: summaries for every user, then training.
    code, error = tiny_run(capsys, tiny_llm_overrides, "--show_user=", model="LLMTRSR")
    assert_one_line_error(code, error, "--show_user needs a user token of the dataset")


@pytest.mark.parametrize(
    ("user", "settings", "fragment"),
    [
        ("[PAD]", {}, "user '[PAD]' is not in dataset tiny"),  # RecBole's padding token: a KeyError
        ("u39", {"max_users": "5"}, "user 'u39' is not in dataset tiny (its --max_users=5 subset)"),
    ],
)
def test_show_user_names_who_is_not_there(capsys, tiny_llm_overrides, user, settings, fragment):
    overrides = {**tiny_llm_overrides, "summary_mode": "none", **settings}
    code, error = tiny_run(capsys, overrides, f"--show_user={user}", model="LLMTRSR")
    assert_one_line_error(code, error, fragment)


def test_a_dataset_named_by_a_path_or_with_a_byte_order_mark(capsys, tiny_overrides):
    code, error = run_cli(capsys, ["--model=SASRec", "--dataset=./tiny", *as_arguments(tiny_overrides)])
    assert_one_line_error(code, error, "--dataset './tiny' must be a folder's name under data_path, not a path")
    path = inter_file(tiny_overrides)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    code, error = tiny_run(capsys, tiny_overrides)
    assert_one_line_error(code, error, "has no column 'user_id'", "starts with a byte-order mark", "utf-8-sig")


def test_lines_repeated_exactly_in_the_interactions_are_named(tiny_overrides, caplog):
    from recbole_trsr.runner import build_config

    rewrite(inter_file(tiny_overrides), lambda lines: lines + lines[1:4])
    with caplog.at_level(logging.WARNING):
        build_config("SASRec", "tiny", overrides=tiny_overrides)
        build_config("GRU4Rec", "tiny", overrides=tiny_overrides)  # once a file version, not once a model
    assert caplog.text.count("repeats 3 of its") == 1 and "--rm_dup_inter=first" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        build_config("SASRec", "tiny", overrides={**tiny_overrides, "rm_dup_inter": "first", "seed": "3"})
    assert "repeats" not in caplog.text


def test_show_user_of_any_user_the_split_tests(capsys, tiny_llm_overrides):
    from recbole_trsr.cli import main
    from recbole_trsr.subset import ranked_users

    def u1_keeps_two(lines):
        of_u1 = [line for line in lines if line.startswith("u1\t")]
        return [line for line in lines if not line.startswith("u1\t")] + of_u1[:2]

    rewrite(inter_file(tiny_llm_overrides), u1_keeps_two)
    overrides = {**tiny_llm_overrides, "summary_mode": "none", "eval_users": "1"}
    code, error = tiny_run(capsys, overrides, "--show_user=u1", model="LLMTRSR")
    assert_one_line_error(
        code,
        error,
        "user 'u1' has no test target: eval_args split {'LS': 'valid_and_test'} holds none out of their 2 interactions",
    )
    # A user whom eval_users leaves out of a run's test is shown all the same (an IndexError before).
    tested = [user for user in ranked_users([f"u{n}" for n in range(40)], 2020) if user != "u1"]
    assert main(["--model=LLMTRSR", "--dataset=tiny", *as_arguments(overrides), f"--show_user={tested[1]}"]) == 0
    assert capsys.readouterr().out.startswith(f"user {tested[1]}: ")


def test_summary_users_that_are_not_in_the_dataset(capsys, tiny_llm_overrides):
    code, error = tiny_run(capsys, {**tiny_llm_overrides, "summary_users": "[u1, nobody]"}, model="LLMTRSR")
    assert_one_line_error(code, error, "summary_users: user 'nobody' is not in dataset tiny")


@pytest.mark.parametrize("key", ["output_dir", "checkpoint_dir"])
def test_a_folder_that_cannot_be_made(capsys, tiny_overrides, tmp_path, key):
    taken = tmp_path / "a-file"
    taken.write_text("")
    code, error = tiny_run(capsys, {**tiny_overrides, key: str(taken / "below")})
    assert_one_line_error(code, error, f"{key} '{taken / 'below'}' cannot be made a writable folder: Not a directory")
    assert not list(Path(tiny_overrides["checkpoint_dir"]).glob("SASRec-*.pth"))


@pytest.mark.parametrize("key", ["output_dir", "checkpoint_dir", "summary_store"])
def test_a_folder_that_takes_no_files(capsys, tiny_llm_overrides, tmp_path, monkeypatch, key):
    # A read-only mount, or a folder of another user, took the makedirs: the run failed at its first save, after
    # training. The refusal is the kernel's, simulated here (root writes to any folder of tmp_path).
    import recbole_trsr.whole_files

    read_only = tmp_path / "read-only"
    read_only.mkdir()
    real = recbole_trsr.whole_files.tempfile.TemporaryFile

    def refused(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == read_only:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(recbole_trsr.whole_files.tempfile, "TemporaryFile", refused)
    value = read_only / "summaries.sqlite" if key == "summary_store" else read_only
    models = "SASRec,LLMTRSR" if key == "summary_store" else "SASRec"  # LLMTRSR's store is in checkpoint_dir
    code, error = tiny_run(capsys, {**tiny_llm_overrides, key: str(value)}, model=models)
    assert_one_line_error(code, error, f"{key} '{value}'", "Permission denied")
    assert not list(Path(tiny_llm_overrides["checkpoint_dir"]).glob("SASRec-*.pth"))


def test_a_damaged_trainer_state_is_one_line(capsys, tiny_llm_overrides):  # 8
    from recbole_trsr.runner import run_comparison

    run = run_comparison(["LLMTRSR"], "tiny", overrides={**tiny_llm_overrides, "epochs": "1"})[0]
    state = Path(run.checkpoint) / "last" / "trainer_state.pt"
    state.write_bytes(b"PK\x03\x04" + os.urandom(300))
    code, error = tiny_run(capsys, tiny_llm_overrides, f"--resume_from={run.checkpoint}", model="LLMTRSR")
    assert_one_line_error(code, error, "trainer_state.pt is damaged")
    assert "Please file an issue" not in error


@pytest.mark.parametrize(
    ("where", "given", "fragment"),
    [
        (
            "summaries",
            {"summary_batch_size": "16"},
            "in a batch of 16 summary prompts; lower summary_batch_size (now 16)",
        ),
        ("summaries", {}, "in a batch of 1 summary prompt; lower summary_max_new_tokens (now 4) or item_max_tokens"),
        (
            "training",
            {"train_examples_per_pass": "2"},
            "in a training pass of 8 rows; lower train_examples_per_pass (now 2) or train_batch_size (now 16)",
        ),
        (
            "training",
            {},
            "in a training pass of 4 rows; one example at a time does not fit: set gradient_checkpointing to True, "
            "or shorten the prompts (max_prompt_tokens, summary_max_tokens, recent_max_tokens)",
        ),
        ("scoring", {}, "in a scoring step of 12 users (252 candidates); lower eval_batch_size (now 256)"),
        (
            "scoring",
            {"eval_batch_size": "auto"},
            "in a scoring step of 1 user (21 candidates); one user at a time does not fit: shorten the prompts "
            "(max_prompt_tokens, summary_max_tokens, recent_max_tokens)",
        ),
    ],
)
def test_running_out_of_device_memory_names_the_setting_to_lower(
    capsys, tiny_llm_overrides, monkeypatch, where, given, fragment
):
    """A size the user gave, or auto down to one item, ends the run in one line when the device runs out of memory,
    not in a traceback; auto halves first (test_memory_halving)."""
    from transformers import GenerationMixin

    from recbole_trsr.llm.scoring import YesNoScorer
    from recbole_trsr.model.llmtrsr import LLMTRSR

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    owner, name = {
        "summaries": (GenerationMixin, "generate"),
        "training": (LLMTRSR, "training_loss"),
        "scoring": (YesNoScorer, "score_batch"),
    }[where]
    monkeypatch.setattr(owner, name, out_of_memory)
    code, error = tiny_run(capsys, {**tiny_llm_overrides, "epochs": "1", **given}, model="LLMTRSR")
    *halvings, error = error.splitlines() or [""]
    assert all("(auto) goes on with" in line for line in halvings)  # logged as auto halved the size down to 1
    assert_one_line_error(code, error, "the device ran out of memory " + fragment)


def test_a_crafted_checkpoint_runs_nothing(tmp_path, tiny_overrides):  # 17
    from recbole_trsr.model.retriever import load_retriever
    from recbole_trsr.runner import build_config

    target = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {target}",))

    crafted = tmp_path / "retriever.pth"
    torch.save({"config": Payload(), "state_dict": {}}, crafted)
    config = build_config("SASRec", "tiny", overrides=tiny_overrides)
    config["retriever_checkpoint"] = str(crafted)
    with pytest.raises(UserInputError, match="is not a RecBole checkpoint .*refused to load posix.system"):
        load_retriever(config, None)
    assert not target.exists()


def test_recboles_own_checkpoints_still_load(tiny_overrides):
    from recbole_trsr.runner import run_comparison

    run = run_comparison(["SASRec"], "tiny", overrides={**tiny_overrides, "epochs": "2"})[0]
    assert run.checkpoint.endswith(".pth") and Path(run.checkpoint).is_file()  # evaluate() reloaded it


def test_a_store_damaged_past_its_first_page_is_moved_aside(tmp_path, caplog):  # 13
    path = tmp_path / "store.sqlite"
    store = SummaryStore(path)
    from recbole_trsr.summary.store import StoredSummary

    store.put_many({f"k{n}": StoredSummary("x" * 500, 1, 1) for n in range(200)})
    store.close()
    data = bytearray(path.read_bytes())
    data[8192 : 8192 + 4096] = os.urandom(4096)
    path.write_bytes(bytes(data))
    reopened = SummaryStore(path)
    assert len(reopened) == 0 and reopened.get_many(["k1"]) == {}
    assert list(tmp_path.glob("store.sqlite.corrupt-*"))
    assert "moved to" in caplog.text


def test_each_generated_batch_is_committed(tmp_path):  # 14
    store_path = tmp_path / "s.db"

    class DiesOnThirdBatch(RecordingBackend):
        settings = GenerationSettings(batch_size=2)

        def generate(self, prompts, progress=True):
            if len(self.prompts) >= 4:
                raise KeyboardInterrupt
            return super().generate(prompts)

    backend = DiesOnThirdBatch()
    summarizer = Summarizer(backend, SummaryStore(store_path), item_text, "hierarchical", progress=False)
    with pytest.raises(KeyboardInterrupt):  # 6 distinct block prompts: three batches of 2
        summarizer.summarize({f"u{n}": (HISTORY[n:], {1}) for n in range(3)} | {"v": (HISTORY, {4})})
    assert len(SummaryStore(store_path)) == 4  # two batches of 2, each committed when it was made


def test_a_stopped_precompute_says_where_its_summaries_are(capsys, tiny_llm_overrides, monkeypatch):
    from recbole_trsr.summary.backends import TransformersBackend

    generate = TransformersBackend.generate
    calls = []

    def stopped_at_the_second_batch(self, prompts, progress=True):
        calls.append(len(prompts))
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C, or SIGTERM (which the run raises as one)
        return generate(self, prompts, progress)

    monkeypatch.setattr(TransformersBackend, "generate", stopped_at_the_second_batch)
    overrides = {**tiny_llm_overrides, "summary_batch_size": "8"}
    code, error = tiny_run(capsys, overrides, "--precompute_summaries", model="LLMTRSR")
    store = Path(overrides["checkpoint_dir"]) / "summaries.sqlite"
    assert (code, error) == (
        130,
        f"run_recbole_trsr.py: interrupted; the summaries made so far are kept in {store}, and the same command "
        "makes the rest",
    )  # it said "interrupted", and nothing of the summaries
    assert len(SummaryStore(store)) == 8
    monkeypatch.setattr(TransformersBackend, "generate", generate)
    code, _ = tiny_run(capsys, overrides, "--precompute_summaries", model="LLMTRSR")
    assert code == 0


class Greedy:
    """Like greedy decoding: the same prompt always gives the same text, whichever process asks."""

    identity = "greedy"
    settings = GenerationSettings(batch_size=2)

    def __init__(self):
        self.prompts = []

    def generate(self, prompts, progress=True):
        import hashlib

        from recbole_trsr.llm.generation import Generated

        self.prompts += prompts
        return [Generated("S" + hashlib.sha1(p.encode()).hexdigest()[:8], 5, 3) for p in prompts]


def test_a_second_process_skips_what_the_first_finished(tmp_path):  # 15
    store_path = tmp_path / "s.db"
    first = Greedy()
    requests = {f"u{n}": (HISTORY[n:], {2}) for n in range(6)}

    class OtherProcessMeanwhile(Greedy):
        def generate(self, prompts, progress=True):
            if not self.prompts:  # another process finishes the whole job while this one makes its first batch
                Summarizer(first, SummaryStore(store_path), item_text, "hierarchical", progress=False).summarize(
                    requests
                )
            return super().generate(prompts)

    second = OtherProcessMeanwhile()
    result = Summarizer(second, SummaryStore(store_path), item_text, "hierarchical", progress=False).summarize(requests)
    assert len(second.prompts) == 2  # only its first batch; the rest came from the store
    # 11 distinct blocks (u0's second block is u5's first) and 6 merges, each made once
    assert len(first.prompts) == len(SummaryStore(store_path)) == 17
    assert set(result) == {(user, 2) for user in requests}


class Answering(http.server.BaseHTTPRequestHandler):
    body = b"{}"

    def do_POST(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("body", [b"not json at all", b'{"error": "no choices here"}', b'{"choices": []}'])
def test_a_server_answer_that_is_not_chat_completions_is_quoted(body):  # 18
    from recbole_trsr.summary.backends import OpenAICompatibleBackend

    handler = type("Handler", (Answering,), {"body": body})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAICompatibleBackend(f"http://127.0.0.1:{server.server_port}", "m", GenerationSettings())
        with pytest.raises(UserInputError, match="did not answer like an OpenAI chat-completions server") as caught:
            backend.generate(["a prompt"])
        assert body.decode()[:10] in str(caught.value) and "\n" not in str(caught.value)
    finally:
        server.shutdown()


@pytest.mark.parametrize("url", ["file:///etc/passwd#", "ftp://example.org", "127.0.0.1:8000"])
def test_only_http_servers(url):  # 18
    from recbole_trsr.summary.backends import OpenAICompatibleBackend

    with pytest.raises(UserInputError, match="is not an http:// or https:// address"):
        OpenAICompatibleBackend(url, "m", GenerationSettings())


def test_summaries_of_a_server_are_not_taken_for_a_local_models():  # 18
    from recbole_trsr.summary.backends import OpenAICompatibleBackend, model_identity

    server = OpenAICompatibleBackend("http://127.0.0.1:1", "smollm2-135m-instruct", GenerationSettings())
    assert server.identity != model_identity("smollm2-135m-instruct", GenerationSettings())


def rewrite(path: Path, edit) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(edit(lines)) + "\n", encoding="utf-8")


def inter_file(overrides) -> Path:
    return Path(overrides["data_path"]) / "tiny" / "tiny.inter"


def item_file(overrides) -> Path:
    return Path(overrides["data_path"]) / "tiny" / "tiny.item"


def with_bad_time(lines, every=False):
    rows = [f"{line.rsplit(chr(9), 1)[0]}\tyesterday" if every or n == 5 else line for n, line in enumerate(lines)]
    return [lines[0], *rows[1:]]


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda lines: with_bad_time(lines, every=True), "line 2: timestamp is 'yesterday', not a number"),  # 1
        (with_bad_time, "line 6: timestamp is 'yesterday', not a number"),  # 1
        (lambda lines: [lines[0], lines[0], *lines[1:]], "line 2 repeats the header line"),  # 2
        (lambda lines: [*lines[:20], lines[0], *lines[20:]], "line 21 repeats the header line"),  # 2
        (lambda lines: [lines[0].replace("timestamp", "item_id"), *lines[1:]], "column 'item_id' appears twice"),  # 3
        (lambda lines: lines[:1], "holds no data, only its header line"),  # 4
    ],
)
def test_a_damaged_interaction_file(capsys, tiny_overrides, edit, fragment):
    rewrite(inter_file(tiny_overrides), edit)
    code, error = tiny_run(capsys, tiny_overrides)
    assert_one_line_error(code, error, "tiny.inter", fragment)


def test_bytes_that_are_not_utf8(capsys, tiny_overrides):  # 6
    for path, line in ((inter_file(tiny_overrides), 4), (item_file(tiny_overrides), 3)):
        data = path.read_bytes().split(b"\n")
        data[line - 1] += b"\xff\xfe"
        path.write_bytes(b"\n".join(data))
        code, error = tiny_run(capsys, tiny_overrides)
        assert_one_line_error(code, error, path.name, f"line {line} is not valid utf-8 (byte 0xff)")
        path.write_bytes(path.read_bytes().replace(b"\xff\xfe", b""))


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda line: line.replace("deluxe", "deluxe\twith a tab"), "has 6 fields where the header has 5"),  # 5
        (lambda line: line.replace("deluxe", "deluxe\nLine two"), "has 2 fields where the header has 5"),  # 9
    ],
)
def test_a_tab_or_line_break_inside_an_item_text(capsys, tiny_llm_overrides, edit, fragment):
    rewrite(item_file(tiny_llm_overrides), lambda lines: [lines[0], *lines[1:5], edit(lines[5]), *lines[6:]])
    code, error = tiny_run(capsys, tiny_llm_overrides, model="LLMTRSR")
    assert_one_line_error(code, error, "tiny.item line 6", fragment)
    # SASRec reads no item text, so it does not mind.
    assert tiny_run(capsys, {**tiny_llm_overrides, "item_text_fields": "~", "epochs": "0"})[0] == 0


def test_extra_fields_are_dropped_as_recbole_does(capsys, tiny_overrides):  # 21
    rewrite(inter_file(tiny_overrides), lambda lines: [*lines[:-1], lines[-1] + "\t5"])
    overrides = {**tiny_overrides, "max_users": "40", "epochs": "0"}
    assert tiny_run(capsys, overrides)[0] == 0


def test_item_text_reads_as_prose():  # 24
    from recbole_trsr.item_text import clean_text, word_boundary_cut

    assert clean_text("['The most beautiful blue \\nIf you', 'look']") == "The most beautiful blue If you look"
    assert clean_text("Pen <sup>TM</sup> &amp; ink<!-- .headerM {color:#000000;} --> set") == "Pen TM & ink set"
    assert clean_text("Ink <!-- .headerM {color:#000000;") == "Ink"
    assert clean_text("one\\ntwo <style>p {x: 1}</style>three") == "one two three"
    assert word_boundary_cut("deluxe wonderful pen", "deluxe wond") == "deluxe"
    assert word_boundary_cut("deluxe wonderful pen", "deluxe wonderful") == "deluxe wonderful"


def test_the_item_text_error_lists_the_columns(capsys, tiny_llm_overrides):  # 23
    code, error = tiny_run(capsys, {**tiny_llm_overrides, "item_text_fields": "None"}, model="SASRec,LLMTRSR")
    assert_one_line_error(code, error, "needs item text", "its columns: item_id, title, categories, brand, price")
    assert not list(Path(tiny_llm_overrides["checkpoint_dir"]).glob("SASRec-*.pth"))  # SASRec never trained


def first_two_of_each_user(lines):
    kept, seen = [lines[0]], Counter()
    for line in lines[1:]:
        user = line.split("\t")[0]
        seen[user] += 1
        if seen[user] <= 2:
            kept.append(line)
    return kept


def test_users_too_short_to_be_tested(capsys, tiny_overrides):
    # Leave-one-out holds no user out when each has 2 interactions: RecBole trained, then failed on None.
    rewrite(inter_file(tiny_overrides), first_two_of_each_user)
    code, error = tiny_run(capsys, tiny_overrides)
    assert_one_line_error(
        code,
        error,
        "eval_args split {'LS': 'valid_and_test'} tests no user of tiny: leave-one-out tests users with at least 3 "
        "interactions (for a sequential model), and the users here have at most 2",
    )
    assert not list(Path(tiny_overrides["checkpoint_dir"]).glob("SASRec-*.pth"))


def renamed_items(lines):
    return [lines[0], *("I" + line[1:] for line in lines[1:])]


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        # ids that differ between the files (here their case): the LLM would rank by nothing, without a word
        (renamed_items, "none of the 30 items of tiny.inter has text (30 have no row in "),
        (lambda lines: [*lines, lines[1].replace("deluxe", "basic")], "has two rows for item 'i0' with different text"),
    ],
)
def test_item_text_that_matches_the_interactions_badly(capsys, tiny_llm_overrides, edit, fragment):
    rewrite(item_file(tiny_llm_overrides), edit)
    code, error = tiny_run(capsys, tiny_llm_overrides, model="SASRec,LLMTRSR")
    assert_one_line_error(code, error, "tiny.item", fragment)
    assert not list(Path(tiny_llm_overrides["checkpoint_dir"]).glob("SASRec-*.pth"))


def test_item_text_fields_that_are_empty_for_every_item(capsys, tiny_llm_overrides):
    rewrite(
        item_file(tiny_llm_overrides),
        lambda lines: [lines[0], *(line.split("\t")[0] + "\t\t\t\t" for line in lines[1:])],
    )
    code, error = tiny_run(capsys, tiny_llm_overrides, model="LLMTRSR")
    assert_one_line_error(code, error, "none of the 30 items", "0 have no row in", "30 an empty title, categories")


def test_items_without_text_are_counted_and_the_run_goes_on(capsys, tiny_llm_overrides):
    # A repeated identical row is harmless; three items without a row, and the run goes on with a warning.
    rewrite(item_file(tiny_llm_overrides), lambda lines: [lines[0], lines[1], *lines[1:-3]])
    code, error = tiny_run(capsys, {**tiny_llm_overrides, "epochs": "0"}, model="LLMTRSR")
    assert code == 0
    assert "3 of the 30 items of tiny.inter have no text (3 have no row in " in error
    assert "0 an empty title, categories, brand, price; e.g. item 'i27'): their prompts show none" in error


def test_properties_in_the_working_directory_are_read(capsys, tiny_overrides, tmp_path):  # 23
    from recbole_trsr.runner import build_config

    (tmp_path / "properties" / "dataset").mkdir(parents=True)
    (tmp_path / "properties" / "dataset" / "tiny.yaml").write_text("item_text_fields: [title, brand]\n")
    overrides = {key: value for key, value in tiny_overrides.items() if key != "item_text_fields"}
    assert build_config("SASRec", "tiny", overrides=overrides)["item_text_fields"] == ["title", "brand"]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("item_text_fields: [title\n", "is not valid YAML at line 2"), ("- title\n", "must hold key: value pairs")],
)
def test_a_property_file_in_the_working_directory_that_is_not_yaml(capsys, tiny_overrides, tmp_path, content, fragment):
    # As --config_files are checked: RecBole's YAML traceback, or an AttributeError on a list.
    own = tmp_path / "properties" / "dataset" / "tiny.yaml"
    own.parent.mkdir(parents=True)
    own.write_text(content)
    code, error = tiny_run(capsys, tiny_overrides)
    assert_one_line_error(code, error, f"config file '{own}' {fragment}")


def test_without_bars_long_work_logs_its_progress(tiny_llm_overrides, monkeypatch):  # 25
    import logging

    from recbole_trsr import progress
    from recbole_trsr.runner import run_comparison

    monkeypatch.setattr(progress.ProgressLog.__init__, "__defaults__", ("", 0.0, True))  # a line per step
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    progress.logger.addHandler(handler)  # RecBole's logger setup replaces the root's handlers
    try:
        run_comparison(["LLMTRSR"], "tiny", overrides={**tiny_llm_overrides, "show_progress": "False", "state": "INFO"})
    finally:
        progress.logger.removeHandler(handler)
    for what in ("hierarchical summaries: ", "train epoch 0: ", "evaluation: "):
        assert any(line.startswith(what) and "/s, " in line and "ETA" in line for line in lines), what


def test_precomputing_summaries_logs_its_progress(capsys, tiny_llm_overrides, monkeypatch):  # 25
    from recbole_trsr import progress
    from recbole_trsr.cli import main

    monkeypatch.setattr(progress.ProgressLog.__init__, "__defaults__", ("", 0.0, True))  # a line per step
    arguments = as_arguments({**tiny_llm_overrides, "show_progress": "False", "state": "INFO"})
    assert main(["--model=LLMTRSR", "--dataset=tiny", *arguments, "--precompute_summaries"]) == 0
    output = capsys.readouterr()
    lines = (output.out + output.err).splitlines()
    assert any("hierarchical summaries: " in line and "ETA" in line for line in lines)
    assert "hierarchical summaries of tiny for" in output.out  # the report


def test_show_user_loads_the_model_once(capsys, tiny_llm_overrides, monkeypatch):  # 25
    from recbole_trsr.cli import main
    from recbole_trsr.model import llmtrsr
    from recbole_trsr.summary import factory

    loads = []
    for module in (factory, llmtrsr):
        original = module.load_llm
        monkeypatch.setattr(module, "load_llm", lambda spec, original=original: loads.append(spec) or original(spec))
    assert main(["--model=LLMTRSR", "--dataset=tiny", *as_arguments(tiny_llm_overrides), "--show_user=u3"]) == 0
    assert len(loads) == 1
