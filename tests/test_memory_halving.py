"""Under auto, a summary batch, a scoring step or a training pass that runs out of device memory runs again in
halves, with the results of the smaller size, and the run goes on at that size (memory_halving)."""

from __future__ import annotations

import logging

import pytest
import torch

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.generation import GenerationSettings, generate
from recbole_trsr.llm.memory_halving import HalvingSize, is_out_of_memory
from tests.test_llm_generation import PROMPTS
from tests.test_llmtrsr_trainer import adapter_weights, prepared


def out_of_memory():
    return torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


def test_what_counts_as_running_out_of_memory():
    assert is_out_of_memory(out_of_memory())
    assert is_out_of_memory(
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")
    )
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))


def test_a_size_halves_down_to_what_fits_and_stays_there(caplog):
    fits = 4
    ran = []

    def work(chunk):
        ran.append(len(chunk))
        if len(chunk) > fits:
            raise out_of_memory()
        return [item * 10 for item in chunk]

    size = HalvingSize(None, True, "eval_batch_size", "lower eval_batch_size (now 84)", "shorten the prompts")
    with caplog.at_level(logging.WARNING):
        results = [result for _, chunk_results in size.run(list(range(13)), work, str) for result in chunk_results]
    assert results == [item * 10 for item in range(13)]  # every item once, in order
    assert ran == [13, 7, 4, 4, 4, 1] and size.size == 4  # 13 -> 7 -> 4, then 4 at a time to the end
    assert "eval_batch_size (auto) goes on with 4 at a time" in caplog.text

    def other_error(chunk):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="mat1 and mat2"):  # only running out of memory halves
        list(size.run([1, 2], other_error, str))


def test_a_given_size_or_a_single_item_ends_the_run_in_one_line():
    def always(chunk):
        raise out_of_memory()

    given = HalvingSize(8, False, "eval_batch_size", "lower eval_batch_size (now 8)", "shorten the prompts")
    with pytest.raises(
        UserInputError, match=r"^the device ran out of memory in 8 items; lower eval_batch_size \(now 8\)$"
    ):
        list(given.run(list(range(20)), always, lambda chunk: f"{len(chunk)} items"))
    halving = HalvingSize(8, True, "eval_batch_size", "lower eval_batch_size (now 8)", "shorten the prompts")
    with pytest.raises(UserInputError, match=r"^the device ran out of memory in 1 items; shorten the prompts$"):
        list(halving.run(list(range(20)), always, lambda chunk: f"{len(chunk)} items"))
    assert halving.size == 1


def test_summaries_under_auto_halve_to_the_batch_that_fits_with_the_same_texts(tiny_lm, monkeypatch):
    model, tokenizer = tiny_lm
    expected = generate(model, tokenizer, PROMPTS, GenerationSettings(max_new_tokens=12, batch_size=2), progress=False)
    generate_of_model, batches = model.generate, []

    def at_most_two(input_ids, **kwargs):
        batches.append(len(input_ids))
        if len(input_ids) > 2:
            raise out_of_memory()
        return generate_of_model(input_ids=input_ids, **kwargs)

    monkeypatch.setattr(model, "generate", at_most_two)
    settings = GenerationSettings(max_new_tokens=12, batch_size=5, batch_follows_memory=True)
    assert generate(model, tokenizer, PROMPTS, settings, progress=False) == expected
    assert batches == [5, 3, 2, 2, 1] and settings.batch_size == 2
    generate(model, tokenizer, PROMPTS[:3], settings, progress=False)
    assert batches[5:] == [2, 1]  # the next call starts at 2


def test_summaries_are_committed_at_the_halved_batch_size(tmp_path):
    """A kill loses at most one generation batch: after a halving, the prompts go to the store as they fit."""
    from recbole_trsr.summary.store import SummaryStore
    from recbole_trsr.summary.summarizer import Summarizer
    from tests.test_summary import HISTORY, RecordingBackend, item_text

    class HalvesAfterItsFirstBatch(RecordingBackend):
        settings = GenerationSettings(batch_size=4, batch_follows_memory=True)

        def __init__(self):
            super().__init__()
            self.calls = []

        def generate(self, prompts, progress=True):
            self.calls.append(len(prompts))
            self.settings.batch_size = 2  # as generate does when a batch ran out of memory
            return super().generate(prompts)

    backend = HalvesAfterItsFirstBatch()
    summarizer = Summarizer(backend, SummaryStore(tmp_path / "s.db"), item_text, "hierarchical", progress=False)
    summarizer.summarize({f"u{n}": (HISTORY[n:], {1}) for n in range(6)} | {"v": (HISTORY, {4})})
    assert backend.calls[:3] == [4, 2, 2] and max(backend.calls[1:]) == 2


def test_scoring_under_auto_halves_the_users_a_step_with_the_same_metrics(overrides, caplog):
    from recbole.utils import init_seed

    trainer, _, valid_data = prepared({**overrides, "eval_batch_size": "auto"})
    seed = trainer.config["seed"], trainer.config["reproducibility"]
    init_seed(*seed)  # RecBole samples the candidates as it collates each batch
    expected = trainer.evaluate(valid_data, load_best_model=False)
    score_batch, steps = trainer.model.scorer.score_batch, []

    def at_most_two_users(requests):
        steps.append(len(requests))
        if len(requests) > 2:
            raise out_of_memory()
        return score_batch(requests)

    trainer.model.scorer.score_batch = at_most_two_users
    init_seed(*seed)
    with caplog.at_level(logging.WARNING):
        halved = trainer.evaluate(valid_data, load_best_model=False)
    assert halved.keys() == expected.keys() and all(abs(halved[k] - expected[k]) < 1e-9 for k in expected)
    assert steps[:3] == [4, 2, 2] and max(steps[3:]) == 2  # auto scores 4 users a step on a CPU, then 2
    assert "a scoring step of 4 users (84 candidates); eval_batch_size (auto) goes on with 2" in caplog.text


@pytest.fixture
def overrides(tiny_llm_overrides):
    # On the CPU wherever the suite runs: the sizes auto picks there, and exact equality of adapters.
    return {**tiny_llm_overrides, "summary_mode": "none", "epochs": "1", "gpu_id": "''", "llm_device": "cpu"}


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_training_under_auto_halves_the_pass_and_trains_the_same_adapter(overrides, where):
    """The batch that ran out of memory runs again from its own start: the gradients of the earlier batch of its
    accumulated step kept, those of the failed pass dropped, and dropout's masks drawn again from the same state."""
    overrides = {**overrides, "gradient_accumulation_steps": "2", "prompt_prefetch": "True"}  # dropout on

    def trained(fails: bool):
        trainer, train_data, _ = prepared(overrides)
        trainer.pass_size.size = None  # auto on a GPU: a whole batch in one pass
        calculate_loss, armed, passes = trainer.model.calculate_loss, {"now": False}, []
        layer_zero = [p for name, p in trainer.model.llm.named_parameters() if "layers.0." in name and p.requires_grad]

        def raise_when_armed(gradient):  # layer 0's gradient comes last: the later layers' are added by then
            if armed["now"]:
                raise out_of_memory()
            return gradient

        layer_zero[0].register_hook(raise_when_armed)

        def second_batch_in_passes_of_two(interaction, prompts=None):
            passes.append(trainer.examples_in(interaction))
            if len(passes) == 1:  # the first batch trained whole, in one pass
                if not fails:
                    trainer.pass_size.size = 2
                return calculate_loss(interaction, prompts)
            loss = calculate_loss(interaction, prompts)  # dropout has drawn its masks
            too_large = fails and passes[-1] > 2
            if too_large and where == "forward":
                raise out_of_memory()
            armed["now"] = too_large
            return loss

        trainer.model.calculate_loss = second_batch_in_passes_of_two
        trainer._train_epoch(train_data, 0)
        return adapter_weights(trainer), passes, trainer.pass_size.size

    expected, expected_passes, _ = trained(fails=False)
    halved, halved_passes, size = trained(fails=True)
    assert size == 2 and halved_passes[0] == expected_passes[0] == 4  # train_batch_size 16: 4 examples of 4 rows
    assert halved_passes[1] == 4 and halved_passes[2:] == expected_passes[1:]  # the second batch in passes of 2
    assert all(torch.equal(halved[key], expected[key]) for key in expected)


def test_training_with_a_given_pass_size_is_not_halved(overrides):
    trainer, train_data, _ = prepared({**overrides, "train_examples_per_pass": "2"})

    def out_of_memory_loss(interaction, prompts=None):
        raise out_of_memory()

    trainer.model.calculate_loss = out_of_memory_loss
    with pytest.raises(UserInputError, match=r"in a training pass of 8 rows; lower train_examples_per_pass \(now 2\)"):
        trainer._train_epoch(train_data, 0)


def test_a_resumed_run_keeps_the_pass_size_that_auto_had_halved(overrides, monkeypatch):
    import recbole_trsr.model.llmtrsr_trainer as trainer_module
    from recbole_trsr.model.adapter_checkpoint import write_config

    as_given = trainer_module.train_examples_per_pass

    def as_on_a_gpu(config, device):  # auto: a whole batch in one pass
        return None if config["train_examples_per_pass"] == "auto" else as_given(config, device)

    monkeypatch.setattr(trainer_module, "train_examples_per_pass", as_on_a_gpu)
    trainer, train_data, _ = prepared(overrides)
    calculate_loss = trainer.model.calculate_loss

    def at_most_two_examples(interaction, prompts=None):
        if trainer.examples_in(interaction) > 2:
            raise out_of_memory()
        return calculate_loss(interaction, prompts)

    trainer.model.calculate_loss = at_most_two_examples
    write_config(trainer.folder, trainer.config)  # as fit does first
    trainer._train_epoch(train_data, 0)  # leaves its resume point at the epoch's end
    assert trainer.pass_size.size == 2
    resumed, _, _ = prepared({**overrides, "resume_from": trainer.saved_model_file})
    assert resumed.pass_size.size == 2
    given, _, _ = prepared({**overrides, "resume_from": trainer.saved_model_file, "train_examples_per_pass": "3"})
    assert given.pass_size.size == 3  # a size the user gives is theirs


@pytest.mark.cuda
def test_a_real_cuda_out_of_memory_halves_and_hands_the_memory_back():
    """The CUDA allocator's own error halves the size, and what the failed chunk held is free again: capped at 2 GiB
    beyond what it holds, this process fits 4 items of 2/5 GiB, and only if the failed attempts' items were let go."""
    device = torch.device("cuda")
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(device).total_memory
    budget = 2 * 2**30
    per_item = budget // 5
    torch.cuda.set_per_process_memory_fraction((torch.cuda.memory_reserved(device) + budget) / total, device)
    try:

        def allocated(chunk):
            held = [torch.empty(per_item, dtype=torch.uint8, device=device) for _ in chunk]  # one by one
            return len(held)

        size = HalvingSize(None, True, "eval_batch_size", "lower eval_batch_size", "shorten the prompts")
        counts = [count for _, count in size.run(list(range(16)), allocated, str)]
        assert size.size == 4 and counts == [4, 4, 4, 4]  # 16 -> 8 -> 4
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
