"""LLMTRSRTrainer: adapter-only checkpoints, the best epoch for the test, resuming, gradient accumulation."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from recbole_trsr.cli import main
from recbole_trsr.errors import UserInputError
from recbole_trsr.model.prompt_prefetch import prompt_prefetch
from recbole_trsr.runner import build_config, run_comparison
from recbole_trsr.seeding import seed_everything
from tests.conftest import as_arguments


def prepared(overrides):
    """Config, model, trainer and data of LLMTRSR on 'tiny', seeded as the runner seeds them."""
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_trainer, init_seed

    config = build_config("LLMTRSR", "tiny", overrides=overrides)
    init_seed(config["seed"], config["reproducibility"])
    train_data, valid_data, _ = data_preparation(config, create_dataset(config))
    init_seed(config["seed"], config["reproducibility"])
    model = config.model_class(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    return trainer, train_data, valid_data


def adapter_weights(trainer) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {name: value.clone() for name, value in get_peft_model_state_dict(trainer.model.llm).items()}


@pytest.fixture
def overrides(tiny_llm_overrides):
    return {**tiny_llm_overrides, "summary_mode": "none", "epochs": "2", "stopping_step": "5", "checkpoint_steps": "1"}


def test_checkpoint_holds_the_adapter_and_config_not_the_base_model(overrides):
    run = run_comparison(["LLMTRSR"], "tiny", overrides=overrides)[0]
    folder = Path(run.checkpoint)
    assert (folder / "config.yaml").is_file() and "summary_mode: none" in (folder / "config.yaml").read_text()
    for name in ("best", "last"):
        with safe_open(folder / name / "adapter_model.safetensors", "pt") as weights:
            keys = list(weights.keys())
        assert keys and all("lora_" in key for key in keys)  # no frozen base weight is ever written
    assert (folder / "last" / "trainer_state.pt").is_file()
    assert not list(folder.rglob("*.pth")) and not list(folder.rglob("model.safetensors"))


def test_the_test_uses_the_best_epochs_adapter(overrides):
    trainer, train_data, valid_data = prepared(overrides)
    trainer.fit(train_data, valid_data, saved=True)
    with torch.no_grad():  # whatever the live adapter holds now, the test must read the saved best one
        for parameter in trainer.model.parameters():
            if parameter.requires_grad:
                parameter.add_(1.0)
    trainer.evaluate(valid_data, load_best_model=True)
    with safe_open(f"{trainer.saved_model_file}/best/adapter_model.safetensors", "pt") as best:
        saved = {key: best.get_tensor(key) for key in best.keys()}
    live = adapter_weights(trainer)
    assert saved.keys() == live.keys() and all(torch.equal(saved[k], live[k]) for k in saved)


def interrupted_in_the_second_epoch(overrides, batches: int):
    """The trainer of a run killed at its second epoch's third batch, its resume point written."""
    interrupted, train_data, valid_data = prepared(overrides)
    calls = {"count": 0}
    original = interrupted.passes  # called once per batch, however many passes the batch takes

    def killed_in_the_second_epoch(interaction, size):
        calls["count"] += 1
        if calls["count"] == batches + 3:
            raise KeyboardInterrupt
        return original(interaction, size)

    interrupted.passes = killed_in_the_second_epoch
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit(train_data, valid_data, saved=True)
    return interrupted


@pytest.mark.parametrize("prefetch", ["False", "True"])
def test_an_interrupted_run_resumes_to_the_same_adapter(overrides, prefetch, caplog):
    overrides = {**overrides, "prompt_prefetch": prefetch}
    trainer, train_data, valid_data = prepared(overrides)
    trainer.fit(train_data, valid_data, saved=True)
    uninterrupted = adapter_weights(trainer)

    interrupted = interrupted_in_the_second_epoch(overrides, len(train_data))
    resumed, train_data, valid_data = prepared({**overrides, "resume_from": interrupted.saved_model_file})
    assert (resumed.start_epoch, resumed.resume_batches) == (1, 2)
    resumed.fit(train_data, valid_data, saved=True)
    final = adapter_weights(resumed)
    assert final.keys() == uninterrupted.keys()
    assert all(torch.allclose(final[k], uninterrupted[k], atol=1e-6) for k in final)
    assert resumed.saved_model_file == interrupted.saved_model_file
    assert "settings differ" not in caplog.text


def test_resuming_with_other_settings_names_them(overrides, caplog):
    # The optimizer's saved state would keep the old learning rate without a word: the run would be neither's.
    _, train_data, _ = prepared(overrides)
    interrupted = interrupted_in_the_second_epoch(overrides, len(train_data))
    changed = {"learning_rate": "0.02", "lora_dropout": "0.1", "eval_batch_size": "3", "checkpoint_seconds": "5"}
    prepared({**overrides, **changed, "resume_from": interrupted.saved_model_file})
    assert (
        f"resume_from '{interrupted.saved_model_file}': settings differ from the interrupted run's "
        "(learning_rate 0.01 -> 0.02; lora_dropout 0.05 -> 0.1): the result will be neither run's"
    ) in caplog.text  # where and how fast a run works may change


@pytest.mark.parametrize(("seconds", "every_step"), [("1e-9", True), ("1e9", False)])
def test_resume_points_follow_the_seconds_of_training(overrides, seconds, every_step):
    """Under checkpoint_seconds a resume point is saved at the first optimizer step after that much training, not
    at a fixed count of steps (several saves a second on a GPU)."""
    settings = {**overrides, "epochs": "1", "checkpoint_steps": "0", "checkpoint_seconds": seconds}
    trainer, train_data, valid_data = prepared(settings)
    saved_after = []  # (epoch, batches done of it) at each resume point
    save = trainer.save_resume_point

    def recorded(epoch, batches_done, epoch_loss, stopped=False):
        saved_after.append((epoch, batches_done))
        return save(epoch, batches_done, epoch_loss, stopped)

    trainer.save_resume_point = recorded
    trainer.fit(train_data, valid_data, saved=True)
    batches = len(train_data)
    assert batches >= 3
    within_the_epoch = [done for epoch, done in saved_after if epoch == 0 and 0 < done < batches]
    assert within_the_epoch == (list(range(1, batches)) if every_step else [])
    assert (0, batches) in saved_after  # the epoch's end, whatever the clock


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("checkpoint_seconds", "-1", "checkpoint_seconds must be a number of seconds, 0 or more, not -1"),
        ("checkpoint_seconds", "soon", "checkpoint_seconds must be a number of seconds, 0 or more, not 'soon'"),
        ("checkpoint_seconds", "False", "checkpoint_seconds must be a number of seconds, 0 or more, not False"),
        ("checkpoint_steps", "2.5", "checkpoint_steps must be a whole number of optimizer steps, 0 or more, not 2.5"),
    ],
)
def test_resume_point_intervals_reject_what_is_not_one(capsys, overrides, key, value, message):
    capsys.readouterr()
    settings = {name: setting for name, setting in overrides.items() if name != key}  # the fixture sets steps
    assert main(["--model=LLMTRSR", "--dataset=tiny", *as_arguments(settings), f"--{key}={value}"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith(message)
    assert len(error.splitlines()) == 1


def test_a_run_that_stopped_early_does_not_train_on_after_a_resume(monkeypatch, overrides):
    from recbole.trainer import Trainer

    scores = iter([0.5, 0.4])  # worse in the second epoch: stopping_step 0 stops there

    def falling(self, valid_data, show_progress=False):
        score = next(scores)
        return score, {"ndcg@10": score}

    monkeypatch.setattr(Trainer, "_valid_epoch", falling)
    settings = {**overrides, "epochs": "4", "stopping_step": "0", "checkpoint_steps": "0"}
    stopped, train_data, valid_data = prepared(settings)
    stopped.fit(train_data, valid_data, saved=True)
    assert len(stopped.train_loss_dict) == 2
    best = (Path(stopped.saved_model_file) / "best" / "adapter_model.safetensors").read_bytes()

    resumed, train_data, valid_data = prepared({**settings, "resume_from": stopped.saved_model_file})
    resumed.fit(train_data, valid_data, saved=True)
    assert len(resumed.train_loss_dict) == 2  # no epoch after the stop
    assert (Path(stopped.saved_model_file) / "best" / "adapter_model.safetensors").read_bytes() == best


def test_prompts_built_ahead_on_a_thread_train_the_same_adapter(overrides):
    runs = {}
    for prefetch in ("False", "True"):
        trainer, train_data, valid_data = prepared({**overrides, "prompt_prefetch": prefetch})
        built_on = set()
        requests = trainer.model.requests

        def recorded(interaction, requests=requests, built_on=built_on, model=trainer.model):
            if model.training:  # validation scores on the main thread either way
                built_on.add(threading.current_thread().name)
            return requests(interaction)

        trainer.model.requests = recorded
        trainer.fit(train_data, valid_data, saved=True)  # dropout on: its masks must come out the same
        runs[prefetch] = (built_on, dict(trainer.train_loss_dict), trainer.best_valid_score, adapter_weights(trainer))
    (main_built, main_losses, main_score, main_adapter), (ahead_built, ahead_losses, ahead_score, ahead_adapter) = (
        runs.values()
    )
    assert main_built == {"MainThread"} and ahead_built == {"prompts-ahead_0"}
    assert len(main_losses) == 2 and ahead_losses == main_losses and ahead_score == main_score
    assert all(torch.equal(ahead_adapter[key], main_adapter[key]) for key in main_adapter)


def test_scoring_with_prompts_built_ahead_gives_the_same_metrics(overrides):
    from recbole.utils import init_seed

    trainer, _, valid_data = prepared({**overrides, "prompt_prefetch": "False", "eval_batch_size": "42"})
    seed = trainer.config["seed"], trainer.config["reproducibility"]
    init_seed(*seed)  # RecBole samples the candidates as it collates each batch
    alone = trainer.evaluate(valid_data, load_best_model=False)
    trainer.prefetch_prompts = True
    built_on, requests_of_rows = [], trainer.model.requests_of_rows

    def recorded(*rows):
        built_on.append(threading.current_thread().name)
        return requests_of_rows(*rows)

    trainer.model.requests_of_rows = recorded
    init_seed(*seed)
    ahead = trainer.evaluate(valid_data, load_best_model=False)
    assert ahead == alone
    assert len(built_on) == len(valid_data) and set(built_on) == {"prompts-ahead_0"}  # none built twice, or here
    assert trainer.model.built_ahead == {}

    built_on.clear()
    trainer.test_batch_size = 20  # fewer rows than a user's 21 candidates: RecBole scores each batch in parts
    init_seed(*seed)
    in_parts = trainer.evaluate(valid_data, load_best_model=False)
    assert set(built_on) == {"MainThread"}  # each part built as it is scored, none on the thread for nothing
    assert in_parts.keys() == alone.keys() and all(abs(in_parts[k] - alone[k]) < 1e-9 for k in alone)


def test_prompt_prefetch_follows_the_device_and_rejects_other_values(capsys, overrides):
    assert prompt_prefetch({"prompt_prefetch": "auto"}, "cpu") is False  # the model's arithmetic takes every core
    assert prompt_prefetch({"prompt_prefetch": "auto"}, "cuda:0") is True
    assert prompt_prefetch({"prompt_prefetch": True}, "cpu") is True
    capsys.readouterr()
    assert main(["--model=LLMTRSR", "--dataset=tiny", *as_arguments(overrides), "--prompt_prefetch=sometimes"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.endswith("prompt_prefetch must be True, False or auto, not 'sometimes'")
    assert len(error.splitlines()) == 1


def test_gradient_accumulation_steps_the_optimizer_once_per_group(overrides):
    trainer, train_data, _ = prepared({**overrides, "gradient_accumulation_steps": "3", "epochs": "1"})
    steps = {"count": 0}
    step = trainer.optimizer.step

    def counted(*args, **kwargs):
        steps["count"] += 1
        return step(*args, **kwargs)

    trainer.optimizer.step = counted
    trainer._train_epoch(train_data, 0)
    assert steps["count"] == -(-len(train_data) // 3)  # the last, shorter group steps too


def test_resume_from_a_missing_or_damaged_checkpoint(capsys, overrides, tmp_path):
    arguments = ["--model=LLMTRSR", "--dataset=tiny", *as_arguments(overrides)]
    capsys.readouterr()
    assert main([*arguments, f"--resume_from={tmp_path / 'nowhere'}"]) == 2
    error = capsys.readouterr().err.strip()
    assert f"error: resume_from '{tmp_path / 'nowhere'}': no such checkpoint" in error
    assert len(error.splitlines()) == 1

    run = run_comparison(["LLMTRSR"], "tiny", overrides={**overrides, "epochs": "1"})[0]
    state = Path(run.checkpoint) / "last" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])
    assert main([*arguments, f"--resume_from={run.checkpoint}"]) == 2
    assert "trainer_state.pt is damaged" in capsys.readouterr().err


def test_gradient_accumulation_must_be_positive(overrides):
    with pytest.raises(UserInputError, match="gradient_accumulation_steps"):
        prepared({**overrides, "gradient_accumulation_steps": "0.5"})


def test_full_fine_tuning_trains_every_weight_and_saves_the_whole_model(overrides):
    from recbole_trsr.model.adapter_checkpoint import load_adapter

    settings = {**overrides, "finetune": "full", "epochs": "1", "learner": "adamw", "adam_betas": "[0.9, 0.95]"}
    trainer, train_data, _ = prepared(settings)
    assert all(parameter.requires_grad for parameter in trainer.model.parameters())
    assert {group["betas"] for group in trainer.optimizer.param_groups} == {(0.9, 0.95)}
    before = {name: p.detach().clone() for name, p in trainer.model.llm.named_parameters()}
    trainer._train_epoch(train_data, 0)
    trainer._save_checkpoint(0)
    changed = [name for name, p in trainer.model.llm.named_parameters() if not torch.equal(p, before[name])]
    assert any("mlp" in name for name in changed) and any("embed" in name for name in changed)
    best = Path(trainer.saved_model_file) / "best"
    assert (best / "model.safetensors").is_file() and not (best / "adapter_config.json").exists()
    trained = {name: p.detach().clone() for name, p in trainer.model.llm.named_parameters()}
    for parameter in trainer.model.llm.parameters():
        parameter.data.zero_()
    load_adapter(trainer.model.llm, best)
    assert all(torch.equal(p, trained[name]) for name, p in trainer.model.llm.named_parameters())


def test_bad_fine_tuning_settings(overrides):
    with pytest.raises(UserInputError, match="finetune 'half' is not lora or full"):
        prepared({**overrides, "finetune": "half"})
    with pytest.raises(UserInputError, match="adam_betas must be two numbers"):
        prepared({**overrides, "adam_betas": "[0.9]"})
    with pytest.raises(UserInputError, match="adam_betas is given, but learner 'sgd' is not adam or adamw"):
        prepared({**overrides, "learner": "sgd", "adam_betas": "[0.9, 0.95]"})


def test_passes_of_fewer_examples_give_the_batchs_gradient(overrides):
    # float32 on any device: the passes differ in their padding, which half precision rounds apart.
    trainer, train_data, _ = prepared({**overrides, "lora_dropout": "0.0", "llm_dtype": "float32"})
    batch = next(iter(train_data))
    gradients = []
    for limit in (None, 1, 3):
        trainer.model.zero_grad()
        parts = list(trainer.passes(batch, limit))
        assert sum(share for _, share in parts) == pytest.approx(1.0)
        prefixes = len(batch) // (1 + trainer.config["train_neg_sample_args"]["sample_num"])  # a positive, negatives
        assert len(parts) == (1 if limit is None else -(-prefixes // limit))
        for part, share in parts:
            (trainer.model.calculate_loss(part) * share).backward()
        gradients.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
    assert torch.allclose(gradients[0], gradients[1], atol=1e-6) and torch.allclose(
        gradients[0], gradients[2], atol=1e-6
    )


def test_a_resume_point_of_another_number_of_ranks_draws_dropout_afresh(overrides, caplog):
    trainer, _, _ = prepared(overrides)
    one, other = torch.get_rng_state(), torch.manual_seed(7).get_state()
    assert torch.equal(trainer.saved_rng_of_this_rank({"torch_rng": one})[0], one)  # saved before states per rank
    assert torch.equal(trainer.saved_rng_of_this_rank({"torch_rng": [one], "cuda_rng": [[]]})[0], one)
    assert trainer.saved_rng_of_this_rank({"torch_rng": [one, other], "cuda_rng": [[], []]}) is None
    assert "saved by 2 ranks, this run has 1: dropout masks are drawn afresh" in caplog.text


@pytest.mark.cuda
def test_a_training_step_on_a_gpu_repeats_exactly_under_reproducibility(overrides):
    trainer, train_data, _ = prepared({**overrides, "lora_dropout": "0.0"})
    seed_everything(trainer.config)  # reproducibility: True, as RecBole's default, takes deterministic kernels
    try:
        batch = next(iter(train_data))
        gradients = []
        for _ in range(2):
            trainer.model.zero_grad()
            trainer.model.calculate_loss(batch).backward()
            gradients.append(torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None]))
        assert torch.equal(gradients[0], gradients[1])
    finally:
        torch.use_deterministic_algorithms(False)
