"""Yes/no scoring with a shared prefix equals scoring every full prompt on its own."""

from __future__ import annotations

import copy

import pytest
import torch

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.scoring import CACHE, YesNoScorer, resolve_verbalizer
from tests.conftest import score_tolerance

PREFIX = (
    "Given a preference summary of the user, and information related to the historical items the user has "
    "purchased, predict whether the user will buy the given next product. Please output 'yes' or 'no'.\n"
    "[Preference Summary] The user buys affordable drugstore makeup, mostly lip products, and some skin care.\n"
    "[Historical Items]\n1. title: Red lipstick; brand: Maybelline\n2. title: Lip liner; price: 4.99\n"
)
CANDIDATES = [
    "[Next Item] title: Pink lip gloss; brand: NYX\nAnswer:",
    "[Next Item] title: Cordless drill 18V\nAnswer:",
    "[Next Item] title: Moisturizer SPF 30; categories: Beauty, Skin Care, Face; price: 12.50\nAnswer:",
    "[Next Item] title: Pink lip gloss; brand: NYX\nAnswer:",  # a repeated candidate
    "[Next Item] x\nAnswer:",
]


def full_prompt_ids(tokenizer):
    prefix = tokenizer(PREFIX)["input_ids"]
    return [prefix + tokenizer.encode(text, add_special_tokens=False) for text in CANDIDATES]


def test_verbalizer_of_the_default_tokenizer(default_llm):
    _, tokenizer = default_llm
    verbalizer = resolve_verbalizer(tokenizer)
    assert (verbalizer.yes, verbalizer.no) == (" yes", " no")
    assert (verbalizer.yes_id, verbalizer.no_id) == (9805, 787)
    assert tokenizer.decode([verbalizer.yes_id]) == " yes"
    assert resolve_verbalizer(tokenizer, "Yes", "No").yes_id == tokenizer.encode(" Yes", add_special_tokens=False)[0]
    # The paper's prompt ends in a line break and reads the tokens "yes"/"no" without a leading space.
    bare = resolve_verbalizer(tokenizer, leading_space=False)
    assert (bare.yes, bare.no) == ("yes", "no") and tokenizer.decode([bare.yes_id]) == "yes"
    assert resolve_verbalizer(tokenizer, leading_space=True) == verbalizer


def test_answer_words_that_are_not_single_tokens(default_llm):
    _, tokenizer = default_llm
    with pytest.raises(UserInputError, match="no single-token answer for 'absolutely'/'nope'"):
        resolve_verbalizer(tokenizer, "absolutely", "nope")


@pytest.mark.parametrize("which", ["tiny_lm", "default_llm"])
def test_shared_prefix_equals_full_prompts(request, which):
    model, tokenizer = request.getfixturevalue(which)
    scorer = YesNoScorer(model, tokenizer)
    shared = scorer.score(PREFIX, CANDIDATES)
    separate = scorer.score_full_prompts(full_prompt_ids(tokenizer), batch_size=2)
    assert shared.shape == (len(CANDIDATES),)
    assert (shared - separate).abs().max().item() <= score_tolerance(model)
    assert (shared[0] - shared[3]).abs().item() <= score_tolerance(model, float32=0.0)  # one candidate, twice
    assert ((shared > 0) & (shared < 1)).all()


def test_scores_match_the_full_softmax_of_the_model(default_llm):
    model, tokenizer = default_llm
    scorer = YesNoScorer(model, tokenizer)
    ids = full_prompt_ids(tokenizer)[1]
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=model.device)).logits[0, -1].float()
    expected = torch.softmax(logits[[9805, 787]], dim=-1)[0]
    score = scorer.score(PREFIX, [CANDIDATES[1]])[0].item()
    assert score == pytest.approx(expected.item(), abs=score_tolerance(model, float32=1e-5))


def test_empty_candidate_list(tiny_lm):
    scorer = YesNoScorer(*tiny_lm)
    assert scorer.score(PREFIX, []).shape == (0,)
    assert scorer.score_full_prompts([]).shape == (0,)


def test_prompt_longer_than_the_context_window(tiny_lm):
    scorer = YesNoScorer(*tiny_lm)
    with pytest.raises(UserInputError, match="exceeds the model's context window of 2048"):
        scorer.score("word " * 2050, CANDIDATES[:1])


def several_users(tokenizer):
    """(prefix ids, candidate suffix ids) of four users: prefixes of three lengths, 5, 2, 0 and 1 candidates."""
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    return [
        (encode(PREFIX), [encode(text) for text in CANDIDATES]),
        (encode("[Preference Summary] short\n"), [encode(text) for text in CANDIDATES[1:3]]),
        (encode("no candidates for this user\n"), []),
        (encode(PREFIX + PREFIX), [encode(CANDIDATES[4])]),
    ]


@pytest.mark.parametrize("path", ["shared-prefix-attention", "masked", "one-pass"])
def test_several_users_in_one_batch_equal_one_at_a_time(tiny_lm, path):
    model, tokenizer = tiny_lm
    scorer = YesNoScorer(model, tokenizer, one_pass=path == "one-pass")
    assert scorer.shared_prefix_attention  # a Llama goes through transformers' attention interface
    scorer.shared_prefix_attention = path != "masked"
    requests = several_users(tokenizer)
    batched = scorer.score_batch(requests)
    for (prefix, suffixes), scores in zip(requests, batched, strict=True):
        alone = scorer.score_full_prompts([prefix + suffix for suffix in suffixes]) if suffixes else torch.empty(0)
        assert scores.shape == (len(suffixes),)
        assert torch.isfinite(scores).all()
        if suffixes:
            assert (scores - alone).abs().max().item() <= 1e-4
    # With gradients on, the passes take the model's own attention with masks, and training's single pass puts
    # each user's prefix and suffixes in one row; the answers are the same.
    active = [request for request in requests if request[1]]
    expected = torch.cat([scores for scores in batched if len(scores)])
    for states_of in (scorer.answer_states, scorer.one_pass_answer_states):
        with torch.enable_grad():
            states = states_of([prefix for prefix, _ in active], [suffixes for _, suffixes in active])
        assert (scorer.answer_probability(states).detach() - expected).abs().max().item() <= 1e-4
    assert model.config._attn_implementation == "sdpa"  # the model's own attention is back


@pytest.mark.parametrize("one_pass", [False, True], ids=["shared-prefix", "one-pass"])
def test_a_scoring_step_runs_each_layer_once_in_one_pass(tiny_lm, one_pass):
    """score_pass: one_pass sends a step's users and candidates through every layer together (what a GPU that waits
    on its host needs); the shared prefix runs the opening, the prefixes and the candidates apart."""
    from recbole_trsr.model.llmtrsr import INSTRUCTION

    model, tokenizer = tiny_lm
    scorer = YesNoScorer(model, tokenizer, one_pass=one_pass)
    opening = tokenizer(INSTRUCTION)["input_ids"]
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    requests = [
        (opening + encode(PREFIX), [encode(text) for text in CANDIDATES]),
        (opening + encode("[Recent Items]\n1. a lipstick\n[Next Item]"), [encode(CANDIDATES[2])]),
    ]
    calls = []
    hook = scorer.backbone().layers[0].register_forward_hook(lambda *args: calls.append(1))
    scorer.score_batch(requests)
    hook.remove()
    assert len(calls) == (1 if one_pass else 3)


@pytest.mark.parametrize("heads", [(4, 2), (3, 1)], ids=["grouped-heads", "repeated-heads"])
def test_flex_attention_scores_as_the_dense_mask(tiny_lm, heads):
    """one_pass_attention: flex runs the one pass through FlexAttention with a block mask (for a GPU); its scores are
    those of the dense mask and of whole prompts. The users' rows differ in width, and one shape comes again. With
    3 query heads (not a power of two, as SmolLM2's 9), transformers repeats the key heads instead of grouping."""
    from recbole_trsr.llm.random_models import TINY_LLAMA, random_causal_lm

    _, tokenizer = tiny_lm
    shape = {**TINY_LLAMA, "hidden_size": 16 * heads[0], "num_attention_heads": heads[0]}
    model = random_causal_lm({**shape, "num_key_value_heads": heads[1]}, vocab_size=len(tokenizer))
    requests = several_users(tokenizer)
    dense = YesNoScorer(model, tokenizer, one_pass=True)
    flex = YesNoScorer(model, tokenizer, one_pass=True, one_pass_attention="flex")
    for batch in (requests, requests[:2], requests[1:], requests):
        expected = torch.cat(dense.score_batch(batch))
        got = torch.cat(flex.score_batch(batch))
        assert (got - expected).abs().max().item() <= 1e-5
    alone = flex.score_full_prompts([requests[0][0] + suffix for suffix in requests[0][1]])
    assert (flex.score_batch(requests[:1])[0] - alone).abs().max().item() <= 1e-4
    assert model.config._attn_implementation == "sdpa"  # the model's own attention is back
    with pytest.raises(UserInputError, match="one_pass_attention must be mask or flex, not 'dense'"):
        YesNoScorer(model, tokenizer, one_pass_attention="dense")


def test_a_training_pass_runs_each_layer_once_for_all_its_users(tiny_lm):
    """On a GPU a small model's training pass cost about the same whatever its size: launching each layer's
    operators (RESULTS.md). The opening, the prefixes and the candidates of a pass go through every layer together,
    not in three passes."""
    from recbole_trsr.model.llmtrsr import INSTRUCTION

    model, tokenizer = tiny_lm
    scorer = YesNoScorer(model, tokenizer)
    opening = tokenizer(INSTRUCTION)["input_ids"]
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    prefixes = [opening + encode(PREFIX), opening + encode("[Recent Items]\n1. a lipstick\n[Next Item]")]
    suffix_lists = [[encode(text) for text in CANDIDATES[:4]], [encode(text) for text in CANDIDATES[1:5]]]
    calls = []
    hook = scorer.backbone().layers[0].register_forward_hook(lambda *args: calls.append(1))
    with torch.enable_grad():
        scorer.one_pass_answer_states(prefixes, suffix_lists).sum().backward()
    hook.remove()
    assert len(calls) == 1


@pytest.mark.parametrize("causal", [False, True])
def test_explicit_attention_equals_the_fused_kernel(causal):
    # The explicit scores serve devices without the CPU kernel (and so are not reached by scoring on a CPU).
    from recbole_trsr.llm.shared_prefix_attention import attention_with_lse, explicit_attention_with_lse

    generator = torch.Generator().manual_seed(0)
    query = torch.randn(2, 6, 5, 16, generator=generator)
    key, value = torch.randn(2, 2, 2, 7, 16, generator=generator)  # grouped-query: 3 query heads per key head
    mask = torch.zeros(2, 1, 1, 7).masked_fill(torch.rand(2, 1, 1, 7, generator=generator) < 0.3, float("-inf"))
    mask[..., 0] = 0.0
    if causal:
        key, value, mask = key[:, :, :5], value[:, :, :5], None
    with torch.no_grad():
        fused = attention_with_lse(query, key, value, 0.25, mask=mask, causal=causal)
        explicit = explicit_attention_with_lse(query, key, value, 0.25, mask=mask, causal=causal)
    for got, expected in zip(explicit, fused, strict=True):
        assert torch.allclose(got, expected, atol=1e-5)


def test_scoring_and_training_passes_log_no_deprecation(tiny_lm, monkeypatch):
    """Every LLMTRSR run scored through a cache argument that transformers deprecates (and will remove)."""
    import logging

    warned = []
    monkeypatch.setattr(logging.Logger, "warning_once", lambda self, *args, **kwargs: warned.append(str(args)))
    model, tokenizer = tiny_lm
    scorer = YesNoScorer(model, tokenizer)
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    requests = [(encode(PREFIX), [encode(text) for text in CANDIDATES[:2]])]
    for shared_prefix_attention in (True, False):
        scorer.shared_prefix_attention = shared_prefix_attention
        scorer.score_batch(requests)
        with torch.enable_grad():
            scorer.one_pass_answer_states([requests[0][0]], [requests[0][1]])
    assert not [message for message in warned if "deprecated" in message]


def test_a_model_that_caps_attention_logits_scores_through_its_own_attention(tiny_lm, monkeypatch):
    model, tokenizer = tiny_lm
    monkeypatch.setattr(model.config, "attn_logit_softcapping", 30.0, raising=False)
    scorer = YesNoScorer(model, tokenizer)
    assert not scorer.shared_prefix_attention
    separate = scorer.score_full_prompts(full_prompt_ids(tokenizer))
    assert (scorer.score(PREFIX, CANDIDATES) - separate).abs().max().item() <= 1e-4


@pytest.mark.parametrize("which", ["tiny_lm", "default_llm"])
def test_users_whose_prompts_open_alike_share_that_opening_and_score_the_same(request, monkeypatch, which):
    from recbole_trsr.model.llmtrsr import INSTRUCTION

    model, tokenizer = request.getfixturevalue(which)
    scorer = YesNoScorer(model, tokenizer)
    opening = tokenizer(INSTRUCTION)["input_ids"]
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    requests = [
        (opening + encode(PREFIX), [encode(text) for text in CANDIDATES[:4]]),
        (opening + encode("[Recent Items]\n1. a lipstick\n[Next Item]"), [encode(text) for text in CANDIDATES[2:]]),
        (opening[:-3], [encode(CANDIDATES[0])]),  # a prompt that is all opening, and shorter than the rest
    ]
    common_runs = []
    backbone_forward = scorer.backbone().forward

    def spy(*args, **kwargs):
        common_runs.append(kwargs["input_ids"].shape)
        return backbone_forward(*args, **kwargs)

    monkeypatch.setattr(scorer.backbone(), "forward", spy)
    batched = scorer.score_batch(requests)
    assert common_runs[0] == (1, len(opening) - 4)  # the opening ran once, for all three users
    for (prefix, suffixes), scores in zip(requests, batched, strict=True):
        alone = scorer.score_full_prompts([prefix + suffix for suffix in suffixes])
        assert (scores - alone).abs().max().item() <= score_tolerance(model)


def opening_runs(scorer, monkeypatch) -> list:
    """Records the token count of each opening's pass (batch 1, a cache started afresh) of the scorer's backbone."""
    runs = []
    backbone = scorer.backbone()
    forward = backbone.forward

    def spy(*args, **kwargs):
        if kwargs.get("use_cache") and kwargs.get(CACHE) is None and len(kwargs["input_ids"]) == 1:
            runs.append(kwargs["input_ids"].shape[1])
        return forward(*args, **kwargs)

    monkeypatch.setattr(backbone, "forward", spy)
    return runs


def opening_requests(tokenizer):
    from recbole_trsr.model.llmtrsr import INSTRUCTION

    opening = tokenizer(INSTRUCTION)["input_ids"]
    encode = lambda text: tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
    first = [
        (opening + encode(PREFIX), [encode(text) for text in CANDIDATES[:3]]),
        (opening + encode("[Recent Items]\n1. a lipstick\n"), [encode(text) for text in CANDIDATES[2:]]),
    ]
    later = [
        (opening + encode("[Preference Summary] hardware\n"), [encode(text) for text in CANDIDATES[1:4]]),
        (opening + encode("[Preference Summary] skin care\n"), [encode(CANDIDATES[4])]),
    ]
    return opening, first, later


def assert_equal_to_full_prompts(scorer, requests, batched):
    for (prefix, suffixes), scores in zip(requests, batched, strict=True):
        alone = scorer.score_full_prompts([prefix + suffix for suffix in suffixes])
        assert (scores - alone).abs().max().item() <= 1e-4


def test_later_batches_reuse_the_opening_until_the_weights_change(tiny_lm, monkeypatch):
    import copy

    model, tokenizer = tiny_lm
    model = copy.deepcopy(model)  # the weights change below
    scorer = YesNoScorer(model, tokenizer)
    opening, first, later = opening_requests(tokenizer)
    runs = opening_runs(scorer, monkeypatch)
    scorer.score_batch(first)
    before = scorer.score_batch(later)
    assert runs == [len(opening)]  # encoded for the first batch, reused by the later one
    assert_equal_to_full_prompts(scorer, later, before)

    with torch.no_grad():
        for layer in model.model.layers:  # in place, as an optimizer step does
            layer.self_attn.v_proj.weight.mul_(4.0)
    after = scorer.score_batch(later)
    assert len(runs) == 2  # the kept opening was made with other weights: encoded again
    assert_equal_to_full_prompts(scorer, later, after)
    assert max((x - y).abs().max().item() for x, y in zip(before, after, strict=True)) > 1e-3


def test_a_kept_opening_follows_the_adapter_in_use(tiny_lm, monkeypatch):
    import copy

    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny_lm
    lora = LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(copy.deepcopy(model), lora).eval()
    scorer = YesNoScorer(peft_model, tokenizer)
    _, first, later = opening_requests(tokenizer)
    with_adapter = scorer.score_batch(first)
    with peft_model.disable_adapter():
        without = scorer.score_batch(first)
        assert_equal_to_full_prompts(scorer, first, without)
    assert max((x - y).abs().max().item() for x, y in zip(with_adapter, without, strict=True)) > 1e-3
    assert_equal_to_full_prompts(scorer, later, scorer.score_batch(later))  # the adapter is back


def test_answer_probability_is_not_rounded_to_the_models_half_precision(tiny_lm):
    """In bfloat16 a logit near 20 has steps of 0.125; P(yes) must come from float32 logits of the same states."""
    model, tokenizer = tiny_lm
    scorer = YesNoScorer(copy.deepcopy(model).to(torch.bfloat16), tokenizer)
    rows = [scorer.verbalizer.yes_id, scorer.verbalizer.no_id]
    weight = scorer.model.get_output_embeddings().weight[rows].float()
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(64, weight.shape[1], generator=generator)
    states = (states * 20 / (states @ weight[0]).abs()[:, None]).to(torch.bfloat16)  # logits of yes near +-20
    expected = torch.softmax(states.float() @ weight.T, dim=-1)[:, 0]
    assert (scorer.answer_probability(states) - expected).abs().max().item() <= 1e-6
