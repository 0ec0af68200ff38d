"""LLMTRSR end to end on tiny data with the tiny model: trains, scores, shares candidates with the baselines."""

from __future__ import annotations

import pytest
import torch

from recbole_trsr.runner import run_comparison


def test_all_summary_modes_and_the_baselines_in_one_table_on_the_same_candidates(tiny_llm_overrides):
    models = ["LLMTRSR", "LLMTRSR[summary_mode=recurrent]", "LLMTRSR[summary_mode=none; recent_k=2]", "SASRec"]
    runs = run_comparison(models, "tiny", overrides=tiny_llm_overrides)
    assert [run.model for run in runs] == [*models, "RandomRank"]
    assert [run.config["summary_mode"] for run in runs[:3]] == ["hierarchical", "recurrent", "none"]
    assert runs[2].config["recent_k"] == 2 and runs[0].config["recent_k"] == 10  # the variant's, the default
    assert all(run.candidates.candidates == runs[0].candidates.candidates for run in runs)
    assert runs[0].epochs == 1 and 0.0 <= runs[0].test_result["ndcg@10"] <= 1.0


def test_training_lowers_the_answer_loss(tiny_llm_overrides):
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_trsr.runner import build_config

    config = build_config("LLMTRSR", "tiny", overrides={**tiny_llm_overrides, "summary_mode": "none"})
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = config.model_class(config, train_data._dataset)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and sum(p.numel() for p in trainable) < 0.2 * sum(p.numel() for p in model.parameters())
    batch = next(iter(train_data))
    optimizer = torch.optim.Adam(trainable, lr=0.01)
    losses = []
    for _ in range(8):
        optimizer.zero_grad()
        loss = model.calculate_loss(batch)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    ("targets", "wrapped"),
    [
        ("all-linear", {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
        ("[q_proj, v_proj]", {"q_proj", "v_proj"}),
    ],
)
def test_lora_wraps_the_layers_lora_target_modules_names(tiny_llm_overrides, targets, wrapped):
    from recbole.data import create_dataset

    from recbole_trsr.runner import build_config

    overrides = {**tiny_llm_overrides, "summary_mode": "none", "lora_target_modules": targets}
    config = build_config("LLMTRSR", "tiny", overrides=overrides)
    config.model_class.check_config(config)
    model = config.model_class(config, create_dataset(config))
    adapted = {
        name.split(".lora_A")[0].rsplit(".", 1)[-1] for name, _ in model.llm.named_parameters() if ".lora_A" in name
    }
    assert adapted == wrapped  # peft's all-linear: every linear layer but the output layer


def test_precompute_then_show_user(capsys, tiny_llm_overrides):
    from recbole_trsr.cli import main
    from tests.conftest import as_arguments

    arguments = ["--model=LLMTRSR", "--dataset=tiny", *as_arguments(tiny_llm_overrides)]
    assert main([*arguments, "--precompute_summaries"]) == 0
    first = capsys.readouterr().out
    assert "hierarchical summaries of tiny for 40 users" in first and " 0 reused" in first
    assert main([*arguments, "--precompute_summaries"]) == 0
    assert "0 LLM calls" in capsys.readouterr().out  # the second run asks the LLM for nothing
    assert main([*arguments, "--show_user=u3"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("user u3: ") and "block 1 (summarized):" in shown
    assert "[Next Item]" in shown and shown.rstrip().endswith("Answer: yes")
    assert main([*arguments, "--show_user=nobody"]) == 2
    assert main(["--model=SASRec", "--dataset=tiny", *as_arguments(tiny_llm_overrides), "--precompute_summaries"]) == 2


def test_dataset_without_text_fields(capsys, tiny_llm_overrides):
    from recbole_trsr.cli import main
    from tests.conftest import as_arguments

    arguments = as_arguments({**tiny_llm_overrides, "item_text_fields": "[]"})
    assert main(["--model=LLMTRSR", "--dataset=tiny", *arguments]) == 2
    assert "LLMTRSR needs item text: set item_text_fields" in capsys.readouterr().err


def test_shared_prefix_loss_equals_the_loss_of_whole_prompts(tiny_llm_overrides):
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed

    from recbole_trsr.llm.scoring import pad
    from recbole_trsr.runner import build_config

    # In float32 on any device: the paths differ in the order of their sums alone, which 1e-5 measures. No dropout:
    # every path sees one function.
    overrides = {**tiny_llm_overrides, "llm_dtype": "float32", "lora_dropout": "0.0"}
    config = build_config("LLMTRSR", "tiny", overrides=overrides)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, _ = data_preparation(config, create_dataset(config))
    model = config.model_class(config, train_data._dataset)
    batch = next(iter(train_data)).to(config["device"])
    with torch.no_grad():
        model.eval().predict(batch)  # inference keeps the opening's cache; training must not read it (no gradient)
    model.train()

    def whole_prompts_loss():  # each candidate's prompt on its own, the answer token's cross-entropy
        requests, places = model.requests(batch)
        labels = batch[model.label_field].tolist()
        yes, no = model.scorer.verbalizer.yes_id, model.scorer.verbalizer.no_id
        targets = torch.tensor([yes if labels[row] > 0.5 else no for rows in places for row in rows])
        prompts = [prefix + suffix for prefix, suffixes in requests for suffix in suffixes]
        tokens, lengths, mask = pad(prompts, model.scorer.pad_id, model.device)
        hidden = model.scorer.backbone()(input_ids=tokens, attention_mask=mask).last_hidden_state
        answers = model.llm.get_output_embeddings()(
            hidden[torch.arange(len(prompts), device=model.device), lengths - 1]
        )
        return torch.nn.functional.cross_entropy(answers.float(), targets.to(model.device))

    def checkpointed_loss():  # gradient_checkpointing: True recomputes the same pass's layers in backward
        model.llm.gradient_checkpointing_enable()
        try:
            return model.calculate_loss(batch)
        finally:
            model.llm.gradient_checkpointing_disable()

    losses, gradients = [], []
    for loss_of in (whole_prompts_loss, lambda: model.calculate_loss(batch), checkpointed_loss):
        model.zero_grad()
        loss = loss_of()
        loss.backward()
        losses.append(loss.item())
        gradients.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad]))
    for loss, gradient in zip(losses[1:], gradients[1:], strict=True):
        assert abs(loss - losses[0]) < 1e-5
        assert torch.allclose(gradient, gradients[0], atol=1e-5)


def full_ranking_overrides(overrides):
    return {**overrides, "summary_mode": "none", "eval_args": "{'mode': 'full'}", "rerank_top_m": "10"}


def test_full_ranking_reranks_the_retrievers_top_items(tiny_llm_overrides):
    runs = run_comparison(["LLMTRSR", "SASRec"], "tiny", overrides=full_ranking_overrides(tiny_llm_overrides))
    assert [run.model for run in runs] == ["LLMTRSR", "SASRec", "RandomRank"]  # as named; SASRec trained first
    llmtrsr, sasrec = runs[0].test_result, runs[1].test_result
    # The LLM reorders SASRec's top 10 and leaves the rest: the same items are in the top 10.
    assert llmtrsr["recall@10"] == sasrec["recall@10"]
    assert runs[0].config["retriever_checkpoint"] == runs[1].checkpoint


def test_full_ranking_without_a_retriever(capsys, tiny_llm_overrides):
    from recbole_trsr.cli import main
    from tests.conftest import as_arguments

    arguments = ["--dataset=tiny", *as_arguments(full_ranking_overrides(tiny_llm_overrides))]
    capsys.readouterr()
    assert main(["--model=LLMTRSR", *arguments]) == 2
    assert "none is available; add the retriever to the run (--model=LLMTRSR,SASRec)" in capsys.readouterr().err
    assert main(["--model=LLMTRSR", *arguments, "--retriever_checkpoint=missing.pth"]) == 2
    assert "retriever_checkpoint 'missing.pth': no such file" in capsys.readouterr().err
    assert main(["--model=LLMTRSR", *arguments, "--retriever=SASRek"]) == 2  # not advice to add SASRek to --model
    assert "unknown model 'SASRek' (did you mean SASRec?)" in capsys.readouterr().err


def test_retriever_checkpoint_of_another_dataset(capsys, tiny_llm_overrides, tmp_path):
    from recbole_trsr.cli import main
    from tests.conftest import as_arguments, write_tiny_dataset

    write_tiny_dataset(tmp_path / "data", name="other", users=30, items=25, seed=1)
    other = run_comparison(["SASRec"], "other", overrides=tiny_llm_overrides)[0].checkpoint
    arguments = ["--dataset=tiny", *as_arguments(full_ranking_overrides(tiny_llm_overrides))]
    capsys.readouterr()
    assert main(["--model=LLMTRSR", *arguments, f"--retriever_checkpoint={other}"]) == 2
    assert f"retriever_checkpoint '{other}' belongs to dataset 'other', not 'tiny'" in capsys.readouterr().err


def test_model_context_shorter_than_the_minimum_prompt(capsys, tiny_llm_overrides):
    import json
    from pathlib import Path

    from recbole_trsr.cli import main
    from tests.conftest import as_arguments

    config_file = Path(tiny_llm_overrides["llm_path"]) / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "max_position_embeddings": 48}))
    capsys.readouterr()
    arguments = as_arguments({**tiny_llm_overrides, "summary_mode": "none"})
    assert main(["--model=LLMTRSR", "--dataset=tiny", *arguments]) == 2
    assert "the model's context (48 tokens) is shorter than the minimum prompt" in capsys.readouterr().err


PAPER_INSTRUCTION = (  # LLM-TRSR/train.py and test.py of the paper's code, Amazon
    "### User:\nGiven a preference summary of the user, and information related to the historical items the user "
    "has purchased, predict whether the user will click on the given next product. Note that the preference summary "
    "captures long-term interests, while the recent items indicate short term interests. Both of them should be "
    "holistically considered for a more comprehensive understanding of user behavior. Please output 'yes' or 'no'."
)


def paper_prompt(summary, history_items, next_item):
    """The paper's code, step by step: prompt_text + preference_text + history_item_text + next_item_text + ..."""
    preference_text = "\n[Preference Summary]\n" + summary
    history_item_text = "\n[Historical Items]\n" + "\n".join(history_items[-5:])
    next_item_text = "\n[Next Item]\n" + next_item
    return PAPER_INSTRUCTION + preference_text + history_item_text + next_item_text + "\n### Assistant:\n"


def test_the_paper_preset_renders_the_papers_prompt_byte_for_byte(tiny_llm_overrides):
    from recbole.data import create_dataset

    from recbole_trsr.runner import build_config, prepare_data

    config = build_config(
        "LLMTRSR", "tiny", overrides={**tiny_llm_overrides, "preset": "paper", "summary_mode": "none"}
    )
    assert (config["finetune"], config["loss_scope"], config["recent_k"]) == ("full", "prompt", 5)
    _, _, test_data = prepare_data(config, create_dataset(config))
    model = config.model_class(config, test_data._dataset)
    assert (model.scorer.verbalizer.yes, model.scorer.verbalizer.no) == ("yes", "no")
    split = test_data._dataset
    for row in range(3):
        user, end = int(split.inter_feat["user_id"][row]), int(split.inter_feat["history_end"][row])
        item = int(split.inter_feat["item_id"][row])
        prefix, (suffix,) = model.request(user, end, [item])
        history = [model.item_text(i) for i in split.user_sequences[user][:end]]
        expected = paper_prompt("NULL", history, model.item_text(item))
        assert model.tokenizer.decode(prefix + suffix) == expected


def test_an_unknown_preset(capsys, tiny_llm_overrides):
    from recbole_trsr.cli import main
    from tests.conftest import as_arguments

    assert main(["--model=LLMTRSR", "--dataset=tiny", *as_arguments({**tiny_llm_overrides, "preset": "papr"})]) == 2
    assert "unknown preset 'papr'; presets: paper" in capsys.readouterr().err


def test_the_candidate_can_show_its_counts_in_the_other_users_training_parts(tiny_llm_overrides):
    """{popularity}: the candidate's interactions in every other user's training part (what the baselines learn
    from), whatever LLMTRSR's own training budget; the validation and test items of each user are not counted.
    {together}: the other users whose training part holds the candidate and one of the prompt's recent items."""
    import collections
    from pathlib import Path

    import pandas as pd
    from recbole.data import create_dataset

    from recbole_trsr.runner import build_config, prepare_data

    template = "' {item} (bought {popularity} times, {together} with the recent items)\\nAnswer:'"  # as --key= takes it
    overrides = {**tiny_llm_overrides, "summary_mode": "none", "train_users": "5", "candidate_template": template}
    config = build_config("LLMTRSR", "tiny", overrides=overrides)
    train_data, _, test_data = prepare_data(config, create_dataset(config))
    model = config.model_class(config, train_data._dataset)
    inter = pd.read_csv(Path(config["data_path"]) / "tiny.inter", sep="\t")
    inter.columns = ["user", "item", "time"]
    parts = {user: history["item"].tolist()[:-2] for user, history in inter.sort_values("time").groupby("user")}
    split = test_data._dataset
    users, ends = split.inter_feat["user_id"].tolist(), split.inter_feat["history_end"].long().tolist()
    shown_counts = set()
    for user_id, end in list(zip(users, ends, strict=True))[:4]:
        user = split.id2token("user_id", user_id)
        others = [part for other, part in parts.items() if other != user]
        popularity = collections.Counter(item for part in others for item in part)
        recent = {split.id2token("item_id", item) for item in split.prompt_parts(user_id, end)[1]}
        _, suffixes = model.request(user_id, end, list(range(1, split.item_num)))
        for item_id, suffix in enumerate(suffixes, start=1):
            token = split.id2token("item_id", item_id)
            together = sum(token in part and recent_item in part for part in others for recent_item in recent - {token})
            shown = model.tokenizer.decode(suffix)
            assert shown.endswith(f"(bought {popularity[token]} times, {together} with the recent items)\nAnswer:"), (
                user,
                token,
                shown,
            )
            shown_counts.add((popularity[token], together))
    assert len({p for p, _ in shown_counts}) > 1 and len({t for _, t in shown_counts}) > 1  # the test can tell


def test_the_candidates_of_a_batch_tokenized_together_match_one_example_at_a_time(tiny_llm_overrides, monkeypatch):
    """A batch's prompt sections go to the tokenizer in one call and its candidate texts in another, through a
    bounded cache: every example gets the prompt it would get alone, and the cache keeps to its bound."""
    from recbole.data import create_dataset

    from recbole_trsr.model import llmtrsr
    from recbole_trsr.runner import build_config, prepare_data

    monkeypatch.setattr(llmtrsr, "SUFFIX_CACHE_SIZE", 7)
    config = build_config("LLMTRSR", "tiny", overrides={**tiny_llm_overrides, "summary_mode": "none"})
    _, _, test_data = prepare_data(config, create_dataset(config))
    model = config.model_class(config, test_data._dataset)
    split = test_data._dataset
    recent_of = split.prompt_parts
    monkeypatch.setattr(split, "prompt_parts", lambda user, end: (f"Likes gadgets, {user}.", recent_of(user, end)[1]))
    users, ends = split.inter_feat["user_id"].tolist(), split.inter_feat["history_end"].long().tolist()
    examples = [(user, end, list(range(1, split.item_num))) for user, end in zip(users, ends, strict=True)][:5]
    together = model.build_requests(examples)
    assert len(model.suffix_cache) == 7
    for (user, end, items), (prefix, suffixes) in zip(examples, together, strict=True):
        model.suffix_cache.clear()
        assert model.request(user, end, items) == (prefix, suffixes)
        summary, recent = split.prompt_parts(user, end)
        expected = [
            model.tokenizer.encode(
                model.candidate_text(model.item_text(item), popularity, count), add_special_tokens=False
            )
            for item, popularity, count in model.candidate_keys(user, recent, items)
        ]
        assert suffixes == expected
        assert prefix == model.fitter.fit_prefix(model.prefix_sections(summary, recent), max(map(len, expected)))
        assert f"Likes gadgets, {user}." in model.tokenizer.decode(prefix)


def test_a_history_over_its_budget_shows_its_newest_items_whole_under_the_header(tiny_llm_overrides):
    from recbole.data import create_dataset

    from recbole_trsr.runner import build_config, prepare_data
    from recbole_trsr.summary.prompts import numbered

    overrides = {**tiny_llm_overrides, "summary_mode": "none", "recent_max_tokens": "80"}
    config = build_config("LLMTRSR", "tiny", overrides=overrides)
    _, _, test_data = prepare_data(config, create_dataset(config))
    model = config.model_class(config, test_data._dataset)
    split = test_data._dataset
    users, ends = split.inter_feat["user_id"].tolist(), split.inter_feat["history_end"].long().tolist()
    for user, end in list(zip(users, ends, strict=True))[:6]:
        texts = [model.item_text(item) for item in split.prompt_parts(user, end)[1]]
        prefix, _ = model.request(user, end, [1])
        shown = model.tokenizer.decode(prefix).split("[Recent Items]\n", 1)[1].split("[Next Item]")[0]
        lines = shown.removesuffix("\n").split("\n")
        assert lines == numbered(texts[-len(lines) :]).split("\n")  # whole items, the newest, numbered from 1
        assert len(model.fitter.encode(model.recent_section(texts[-len(lines) :]))) <= 80
        assert len(model.fitter.encode(model.recent_section(texts[-len(lines) - 1 :]))) > 80  # no room for one more
        assert len(lines) < len(texts)


def test_scoring_in_one_pass_gives_the_scores_of_the_shared_prefix(capsys, tiny_llm_overrides):
    from recbole.data import create_dataset
    from recbole.utils import init_seed

    from recbole_trsr.cli import main
    from recbole_trsr.runner import build_config, prepare_data
    from tests.conftest import as_arguments

    overrides = {**tiny_llm_overrides, "llm_dtype": "float32", "summary_mode": "none", "score_pass": "one_pass"}
    config = build_config("LLMTRSR", "tiny", overrides=overrides)
    init_seed(config["seed"], config["reproducibility"])
    _, _, test_data = prepare_data(config, create_dataset(config))
    model = config.model_class(config, test_data._dataset).eval()
    batch = next(iter(test_data))[0].to(config["device"])
    assert model.scorer.one_pass
    one_pass = model.predict(batch)
    model.scorer.one_pass = False
    assert (one_pass - model.predict(batch)).abs().max().item() <= 1e-4

    capsys.readouterr()
    arguments = as_arguments({**overrides, "score_pass": "both"})
    assert main(["--model=LLMTRSR", "--dataset=tiny", *arguments]) == 2
    error = capsys.readouterr().err
    assert "score_pass must be shared_prefix or one_pass, not 'both'" in error
    assert len(error.strip().splitlines()) == 1


def test_flex_attention_is_refused_where_it_cannot_train(capsys, tiny_llm_overrides):
    from recbole_trsr.cli import main
    from tests.conftest import as_arguments

    for value, message in (
        ("dense", "one_pass_attention must be mask or flex, not 'dense'"),
        ("flex", "one_pass_attention: flex needs a CUDA device, not cpu: PyTorch's FlexAttention cannot train on it"),
    ):
        capsys.readouterr()
        arguments = as_arguments({**tiny_llm_overrides, "llm_device": "cpu", "one_pass_attention": value})
        assert main(["--model=LLMTRSR", "--dataset=tiny", *arguments]) == 2
        error = capsys.readouterr().err
        assert message in error
        assert len(error.strip().splitlines()) == 1


@pytest.mark.cuda
@pytest.mark.parametrize("compiled", [False, True], ids=["eager-layers", "compiled-layers"])
def test_flex_attention_trains_as_the_dense_mask_on_a_gpu(tiny_llm_overrides, compiled):
    """one_pass_attention: flex gives the dense mask's loss and LoRA gradients (float32, no dropout), and repeats them
    exactly under reproducibility's deterministic kernels, with gradient checkpointing too; with compile_layers,
    FlexAttention compiles inside each layer's graph (on a CPU, inductor's C++ code for that fails to build: torch
    2.13)."""
    from recbole.data import create_dataset, data_preparation
    from transformers import AttentionInterface

    from recbole_trsr.runner import build_config
    from recbole_trsr.seeding import seed_everything

    flex_attention, flex_calls = AttentionInterface._global_mapping["flex_attention"], []

    def counted_flex_attention(*args, **kwargs):  # traced once by a compiled layer: at least one call either way
        flex_calls.append(1)
        return flex_attention(*args, **kwargs)

    overrides = {**tiny_llm_overrides, "llm_dtype": "float32", "lora_dropout": "0.0", "llm_device": "cuda"}
    overrides["compile_layers"] = str(compiled)
    config = build_config("LLMTRSR", "tiny", overrides={**overrides, "one_pass_attention": "flex"})
    seed_everything(config)  # reproducibility, as RecBole's default, on CUDA: the deterministic kernels
    AttentionInterface._global_mapping["flex_attention"] = counted_flex_attention
    try:
        assert torch.are_deterministic_algorithms_enabled()
        train_data, _, _ = data_preparation(config, create_dataset(config))
        model = config.model_class(config, train_data._dataset).to("cuda")
        batch = next(iter(train_data)).to("cuda")

        def loss_and_gradient():
            model.train().zero_grad()
            loss = model.calculate_loss(batch)
            loss.backward()
            return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])

        flex = [loss_and_gradient() for _ in range(2)]
        assert flex_calls  # the one pass did attend through FlexAttention
        model.llm.gradient_checkpointing_enable()
        flex.append(loss_and_gradient())
        model.llm.gradient_checkpointing_disable()
        model.scorer.one_pass_attention = "mask"
        dense_loss, dense_gradient = loss_and_gradient()
    finally:
        AttentionInterface._global_mapping["flex_attention"] = flex_attention
        torch.use_deterministic_algorithms(False)
    assert flex[0][0] == flex[1][0] and torch.equal(flex[0][1], flex[1][1])
    for loss, gradient in (flex[0], flex[2]):
        assert abs(loss - dense_loss) < 1e-5
        assert torch.allclose(gradient, dense_gradient, atol=1e-5)


def test_compiled_layers_train_and_score_as_the_eager_ones(tiny_llm_overrides):
    """compile_layers: True is for a GPU's host; the losses, the adapter's gradients (with gradient checkpointing
    too) and the one-pass scores are the eager model's, in float32 and without dropout, and the shared-prefix passes
    still score beside compiled layers (they run eagerly)."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import init_seed
    from torch._dynamo.utils import counters

    from recbole_trsr.runner import build_config

    overrides = {**tiny_llm_overrides, "llm_dtype": "float32", "lora_dropout": "0.0", "compile_layers": "True"}
    config = build_config("LLMTRSR", "tiny", overrides=overrides)
    init_seed(config["seed"], config["reproducibility"])
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    model = config.model_class(config, train_data._dataset)
    assert model.scorer.layers_compiled
    train_batch = next(iter(train_data)).to(config["device"])
    test_batch = next(iter(test_data))[0].to(config["device"])

    def loss_and_gradient():
        model.train().zero_grad()
        loss = model.calculate_loss(train_batch)
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])

    def scores():
        model.eval()
        shared = model.predict(test_batch)
        model.scorer.one_pass = True
        try:
            return shared, model.predict(test_batch)
        finally:
            model.scorer.one_pass = False

    with torch.compiler.set_stance("force_eager"):
        eager_loss, eager_gradient = loss_and_gradient()
        eager_scores = scores()
    graphs = counters["stats"]["unique_graphs"]
    loss, gradient = loss_and_gradient()
    compiled_scores = scores()
    assert counters["stats"]["unique_graphs"] > graphs  # the layers did compile
    assert abs(loss - eager_loss) < 1e-5
    assert torch.allclose(gradient, eager_gradient, atol=1e-5)
    model.llm.gradient_checkpointing_enable()  # recomputes the compiled layers in backward
    try:
        loss, gradient = loss_and_gradient()
    finally:
        model.llm.gradient_checkpointing_disable()
    assert abs(loss - eager_loss) < 1e-5
    assert torch.allclose(gradient, eager_gradient, atol=1e-5)
    for compiled, eager in zip(compiled_scores, eager_scores, strict=True):
        assert (compiled - eager).abs().max().item() <= 1e-5
