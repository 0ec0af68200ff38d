"""Yes/no scoring of candidates: P(yes) / (P(yes) + P(no)) at the answer position, one forward pass, no generation.

A user's prompt prefix (instruction, summary, recent items) is the same for all of their candidates. It is
encoded once; its KV cache is shared by every candidate suffix (candidate text plus answer slot), which is
all that is run per candidate: the batch's suffixes are packed into one row, and each attends to its user's
prefix and, within itself, causally (``shared_prefix_attention``). Several users go through in one batch; the
instruction that opens every prompt is encoded once and kept for later batches. Logits are computed only at
the answer position, and only for the two verbalizer tokens: the final hidden state times the two rows of
the output embedding.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, fields

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from transformers.modeling_outputs import BaseModelOutputWithPast

from recbole_trsr.errors import UserInputError
from recbole_trsr.llm.attention_kernels import avoid_planned_attention
from recbole_trsr.llm.shared_prefix_attention import (
    SHARED_PREFIX_ATTENTION,
    SuffixLayout,
    attention_implementation,
    supports_shared_prefix_attention,
)

# transformers 5.2x renamed the KV cache argument and output field from past_key_values to cache; the old name
# logs a deprecation warning on every run and goes away in 5.40.
CACHE = "cache" if "cache" in {field.name for field in fields(BaseModelOutputWithPast)} else "past_key_values"


@dataclass(frozen=True)
class Verbalizer:
    """The token ids read at the answer position, and the text form they were resolved from."""

    yes_id: int
    no_id: int
    yes: str
    no: str


def single_token_id(tokenizer, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def resolve_verbalizer(tokenizer, yes: str = "yes", no: str = "no", leading_space: bool | None = None) -> Verbalizer:
    """The answer tokens: " yes"/" no" (after "Answer:", the usual case) or, failing that, "yes"/"no";
    ``leading_space`` True or False asks for one form only (the paper's prompt ends in a line break, then "yes").

    Each must be one token and the two must differ; otherwise the yes/no probability cannot be read from
    one position and the error says so.
    """
    prefixes = (" ", "") if leading_space is None else (" ",) if leading_space else ("",)
    for prefix in prefixes:
        yes_id = single_token_id(tokenizer, prefix + yes)
        no_id = single_token_id(tokenizer, prefix + no)
        if yes_id is not None and no_id is not None and yes_id != no_id:
            return Verbalizer(yes_id, no_id, prefix + yes, prefix + no)
    pieces = {word: tokenizer.tokenize(" " + word) for word in (yes, no)}
    raise UserInputError(
        f"the tokenizer has no single-token answer for '{yes}'/'{no}' (with or without a leading space): "
        f"' {yes}' -> {pieces[yes]}, ' {no}' -> {pieces[no]}; choose other answer words"
    )


def pad(sequences, pad_id: int, device):
    """(tokens, lengths, attention mask) of token lists padded on the right to one width.

    Padded on the host and copied once: a copy per sequence cost a GPU a transfer per prompt."""
    sizes = [len(sequence) for sequence in sequences]
    width = max(sizes)
    rows = [list(sequence) + [pad_id] * (width - size) for sequence, size in zip(sequences, sizes, strict=True)]
    tokens = torch.tensor(rows, device=device)
    lengths = torch.tensor(sizes, device=device)
    mask = torch.arange(width, device=device)[None, :] < lengths[:, None]
    return tokens, lengths, mask.long()


def gather_index(rows: list[int], columns: list[int], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Where a pass's answer states lie, on the device before the pass is queued: indexing its output with host
    lists copies them after it, and the copy waits for the whole pass before the host can queue more."""
    return torch.tensor(rows, dtype=torch.long, device=device), torch.tensor(columns, dtype=torch.long, device=device)


ONE_PASS_ATTENTION = ("mask", "flex")  # how the one pass attends: see one_pass_answer_states


def segment_attends(query_part, key_part, query, key):
    """Whether the token at ``query`` (of ``query_part``) attends to the one at ``key`` (of ``key_part``), elementwise.

    Part 0 (a prefix) is read by every later token of its row; a part k > 0 (a candidate) only by its own later
    tokens; -1 is padding, read by nothing but itself, which reads the prefix and itself (never a row of -inf, never
    NaN)."""
    causal_read = (query >= key) & (key_part >= 0) & ((key_part == 0) | (key_part == query_part))
    return causal_read | ((query == key) & (query_part < 0))


def segment_mask(parts: list[list[int]], device) -> torch.Tensor:
    """(rows, width, width): which tokens each token of a row attends to (``segment_attends``), from each token's
    part in the row. Made on the device in a few operations whatever the rows, not a copy per candidate."""
    part = torch.tensor(parts, device=device)
    place = torch.arange(part.shape[1], device=device)
    return segment_attends(part[:, :, None], part[:, None, :], place[:, None], place[None, :])


def segment_block_mask(parts: list[list[int]], device):
    """``segment_mask`` as FlexAttention's BlockMask (``one_pass_attention: flex``): the same tokens attend, and the
    kernel skips every block of 128 x 128 that the mask hides wholly: above the diagonal, and in scoring (21
    candidates a row) most blocks where one candidate would read another."""
    from torch.nn.attention.flex_attention import create_block_mask

    part = torch.tensor(parts, device=device)
    rows, width = part.shape
    return create_block_mask(
        lambda row, head, query, key: segment_attends(part[row, query], part[row, key], query, key),
        rows,
        None,
        width,
        width,
        device=device,
    )


def check_one_pass_attention(value) -> str:
    """``one_pass_attention`` if it is one of ``ONE_PASS_ATTENTION``."""
    if value not in ONE_PASS_ATTENTION:
        raise UserInputError(f"one_pass_attention must be mask or flex, not {value!r}")
    return value


def check_flex_attention(model, device) -> None:
    """``one_pass_attention: flex`` needs torch's FlexAttention, a model whose attention transformers runs through it,
    and CUDA: FlexAttention has no backward on a CPU, and the one pass is training's forward."""
    try:
        import torch.nn.attention.flex_attention  # noqa: F401
    except ImportError:
        raise UserInputError(f"one_pass_attention: flex needs torch 2.5 or later, not {torch.__version__}") from None
    if torch.device(device).type != "cuda":
        raise UserInputError(
            f"one_pass_attention: flex needs a CUDA device, not {device}: PyTorch's FlexAttention cannot train on it"
        )
    if model is None:
        return
    if not getattr(model, "_supports_flex_attn", False):
        raise UserInputError(f"one_pass_attention: flex: transformers has no FlexAttention for {type(model).__name__}")
    if getattr(model.config, "attention_dropout", 0.0):
        raise UserInputError(
            f"one_pass_attention: flex: the model's attention_dropout is {model.config.attention_dropout}, and "
            "transformers' FlexAttention takes none; use one_pass_attention: mask"
        )


def one_pass_rows(prefixes: list[list[int]], suffix_lists, pad_id: int):
    """The one pass's rows (``YesNoScorer.one_pass_answer_states``): each example's prefix then its suffixes,
    right-padded to one width. Token ids, positions (each suffix goes on from its prefix's end), parts (0 prefix, k
    the k-th suffix, -1 padding) and the (row, column) of every suffix's answer, in order."""
    tokens, positions, parts, answers = [], [], [], []
    for row, (prefix, suffixes) in enumerate(zip(prefixes, suffix_lists, strict=True)):
        tokens.append(list(prefix))
        positions.append(list(range(len(prefix))))
        parts.append([0] * len(prefix))
        for part, suffix in enumerate(suffixes, start=1):
            tokens[row] += suffix
            positions[row] += range(len(prefix), len(prefix) + len(suffix))
            parts[row] += [part] * len(suffix)
            answers.append((row, len(tokens[row]) - 1))
    width = max(map(len, tokens))
    for row_tokens, row_positions, row_parts in zip(tokens, positions, parts, strict=True):
        padding = width - len(row_tokens)
        row_tokens += [pad_id] * padding
        row_positions += [0] * padding
        row_parts += [-1] * padding
    return tokens, positions, parts, answers


def common_opening(prefixes: list[list[int]]) -> int:
    """How many tokens all prefixes open with (none for a single prefix; each keeps at least one of its own)."""
    if len(prefixes) < 2:
        return 0
    shortest, common = min(len(prefix) for prefix in prefixes), 0
    while common < shortest - 1 and all(prefix[common] == prefixes[0][common] for prefix in prefixes):
        common += 1
    return common


def check_layers_compile() -> None:
    """compile_layers keeps the shared-prefix passes eager through ``torch.compiler.set_stance`` (torch 2.6)."""
    if not hasattr(torch.compiler, "set_stance"):
        raise UserInputError(f"compile_layers needs torch 2.6 or later, not {torch.__version__}")


def weights_state(model) -> tuple:
    """A value that changes whenever the model's outputs may: a parameter replaced or changed in place (an
    optimizer step, ``load_state_dict``, ``.to()``), or peft adapters switched, disabled or merged."""
    parameters = tuple((parameter.data_ptr(), parameter._version) for parameter in model.parameters())
    adapters = tuple(
        (tuple(layer.active_adapters), layer.disable_adapters, layer.merged)
        for layer in model.modules()
        if isinstance(layer, BaseTunerLayer)
    )
    return parameters, adapters


@dataclass
class Opening:
    """The KV cache (batch of one) of tokens that opened a batch's prompts, and the weights it was made with."""

    tokens: list[int]
    weights: tuple
    cache: object

    def serves(self, prefixes: list[list[int]]) -> bool:
        """Whether every prefix opens with these tokens and goes on past them."""
        size = len(self.tokens)
        return all(len(prefix) > size and prefix[:size] == self.tokens for prefix in prefixes)


class YesNoScorer:
    """Scores candidate suffixes after a shared prefix with a causal LM (a transformers or peft model)."""

    def __init__(
        self,
        model,
        tokenizer,
        yes: str = "yes",
        no: str = "no",
        suffixes_per_row: int = 7,
        leading_space=None,
        one_pass: bool = False,
        one_pass_attention: str = "mask",
    ):
        self.model = model
        self.suffixes_per_row = suffixes_per_row
        self.one_pass = one_pass  # scoring as training runs: see one_pass_answer_states
        if check_one_pass_attention(one_pass_attention) == "flex":
            # transformers' compiled FlexAttention compiles anew for a new count of blocks, of rows (1, then any) and,
            # as dynamo guards on it, for gradients on or off: 5 graphs for scoring alone on a CPU. Past torch's limit
            # of 8 a function it would fall back to FlexAttention's slow unfused form.
            torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        self.one_pass_attention = one_pass_attention
        self.layers_compiled = False
        self.tokenizer = tokenizer
        self.verbalizer = resolve_verbalizer(tokenizer, yes, no, leading_space)
        self.context_window = int(getattr(model.config, "max_position_embeddings", 0) or 2**31)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.shared_prefix_attention = supports_shared_prefix_attention(base)
        self.kept_opening: Opening | None = None
        avoid_planned_attention(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def backbone(self):
        """The decoder stack that returns final (normed) hidden states, below the output embedding."""
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return model.get_decoder()

    def compile_layers(self) -> None:
        """Compiles each decoder layer with torch.compile, for every shape (``compile_layers``).

        For the one pass of training and of one-pass scoring: a compiled layer runs as a few fused kernels instead of
        the ~330 operators (forward and backward, with LoRA) that a GPU's host dispatches one by one. Each layer on
        its own, not the whole model: the layers share their code, so one graph serves all of them, and the compile
        took 39 s on 2 CPU cores for a 30-layer model where the whole model took 350 s. On 2 CPU cores a host-bound
        30-layer stand-in trained at 0.9x to 1.6x the rows/s, the default model at about 1x; a GPU's gain is not
        measured yet. The shared-prefix passes stay eager
        (``answer_states``): their attention reads a cache and a layout through transformers' kwargs."""
        check_layers_compile()
        for layer in self.backbone().layers:
            layer.compile(dynamic=True)
        self.layers_compiled = True

    def answer_probability(self, hidden: torch.Tensor) -> torch.Tensor:
        """P(yes) / (P(yes) + P(no)) from final hidden states at answer positions, shape (n, hidden)."""
        head = self.model.get_output_embeddings()
        rows = [self.verbalizer.yes_id, self.verbalizer.no_id]
        # In float32: a bfloat16 logit of magnitude ~20 is rounded to steps of 0.125, which alone moves
        # P(yes) by up to 0.03; the two rows of the head cost nothing to upcast.
        logits = hidden.float() @ head.weight[rows].float().T
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[rows].float()
        return torch.softmax(logits, dim=-1)[:, 0]

    def check_length(self, tokens: int) -> None:
        if tokens > self.context_window:
            raise UserInputError(
                f"a prompt of {tokens} tokens exceeds the model's context window of {self.context_window}; "
                "lower the section budgets so that truncation keeps prompts inside it"
            )

    def score_ids(self, prefix_ids: list[int], suffix_ids: list[list[int]]) -> torch.Tensor:
        """Scores of every suffix after one shared prefix (float32, on CPU); see ``score_batch``."""
        return self.score_batch([(prefix_ids, suffix_ids)])[0]

    @torch.inference_mode()
    def score_batch(self, requests: list[tuple[list[int], list[list[int]]]]) -> list[torch.Tensor]:
        """Scores for several users at once: one forward over their prefixes, one over all their suffixes.

        ``requests`` holds (prefix ids, candidate suffix ids) per user. Repeated suffixes of a user run once.
        A user with no candidates gets an empty tensor.
        """
        uniques = [list(dict.fromkeys(tuple(suffix) for suffix in suffixes)) for _, suffixes in requests]
        for (prefix, suffixes), unique in zip(requests, uniques, strict=True):
            if not prefix or any(not suffix for suffix in suffixes):
                raise ValueError("the prefix and every candidate suffix need at least one token")
            if unique:
                self.check_length(len(prefix) + max(len(suffix) for suffix in unique))
        active = [index for index, unique in enumerate(uniques) if unique]
        probabilities = {}
        if active:
            flat = self._score_active([requests[i][0] for i in active], [uniques[i] for i in active])
            offset = 0
            for index in active:
                probabilities[index] = flat[offset : offset + len(uniques[index])]
                offset += len(uniques[index])
        results = []
        for index, (_, suffixes) in enumerate(requests):
            if not suffixes:
                results.append(torch.empty(0))
                continue
            row_of = {suffix: row for row, suffix in enumerate(uniques[index])}
            results.append(probabilities[index][[row_of[tuple(suffix)] for suffix in suffixes]])
        return results

    def _score_active(self, prefixes: list[list[int]], uniques: list[list[tuple[int, ...]]]) -> torch.Tensor:
        states_of = self.one_pass_answer_states if self.one_pass else self.answer_states
        return self.answer_probability(states_of(prefixes, uniques)).cpu()

    def shared_opening(self, prefixes: list[list[int]]):
        """(length, KV cache of batch 1) of the tokens that every prefix opens with; (0, None) if there are none.

        The same opening (LLMTRSR's instruction) begins every prompt of an evaluation. At inference it is kept
        and reused by each later batch whose prefixes all open with it (and go on past it), for as long as the
        weights stay those it was encoded with. With gradients on (training) it is encoded every time.
        """
        keep = not torch.is_grad_enabled() and not self.model.training
        weights = weights_state(self.model) if keep else None
        kept = self.kept_opening
        if keep and kept is not None and kept.weights == weights and kept.serves(prefixes):
            return len(kept.tokens), copy.deepcopy(kept.cache)  # the prefix pass extends its copy, not the kept one
        common = common_opening(prefixes)
        if not common:
            return 0, None
        opening = prefixes[0][:common]
        output = self.backbone()(input_ids=torch.tensor([opening], device=self.device), use_cache=True)
        cache = getattr(output, CACHE)
        if keep:
            self.kept_opening = Opening(opening, weights, copy.deepcopy(cache))
        return common, cache

    def lse_attention(self) -> bool:
        """Whether the passes attend in parts merged through their log-sum-exps (``shared_prefix_attention``).

        Only without gradients: with them (training) the model's own attention runs with masks, since PyTorch's
        fused kernel then saves no attention weights and recomputes them in backward. Merging parts needs the
        log-sum-exp's gradient, which that kernel lacks, and explicit weights for a ~600-token prefix took about
        half of a training pass's activation memory.
        """
        return self.shared_prefix_attention and not torch.is_grad_enabled()

    def encode_prefixes(self, prefixes: list[list[int]]):
        """(KV cache, attention mask, lengths as a host list) of the prefixes, right-padded to one width.

        The tokens that open every prefix (the instruction, in LLMTRSR's prompts) run once and their cache is
        shared by the batch, and by later batches (``shared_opening``), as an inference server's prefix cache
        would do; each prefix's own part follows, padded on its right, so the padding sits between a prefix
        and its candidates (the mask hides it, positions skip it).
        """
        backbone, device = self.backbone(), self.device
        common, cache = self.shared_opening(prefixes)
        if cache is not None:
            cache.batch_select_indices(torch.zeros(len(prefixes), dtype=torch.long, device=device))
        tokens, _, own_mask = pad([prefix[common:] for prefix in prefixes], self.pad_id, device)
        mask = torch.cat([own_mask.new_ones(len(prefixes), common), own_mask], dim=1)
        positions = common + torch.arange(tokens.shape[1], device=device).expand_as(tokens)
        if self.lse_attention():  # the opening, then causally the own part: no dense mask
            with attention_implementation(backbone.config, SHARED_PREFIX_ATTENTION):
                output = backbone(
                    input_ids=tokens, position_ids=positions, use_cache=True, opening=common, **{CACHE: cache}
                )
        else:
            output = backbone(
                input_ids=tokens, attention_mask=mask, position_ids=positions, use_cache=True, **{CACHE: cache}
            )
        cache = getattr(output, CACHE)
        # From the host, not the device's copy: reading that would wait for the prefix pass just queued, before the
        # suffix pass could be built and queued behind it.
        return cache, mask, [len(prefix) for prefix in prefixes]

    def answer_states(self, prefixes: list[list[int]], suffix_lists) -> torch.Tensor:
        """Final hidden states at the answer position of every suffix, in order: (sum of suffixes, hidden).

        One forward over the padded prefixes, then one over all users' suffixes packed into one row, each
        suffix reading its user's cached prefix, the cache never copied per candidate (models outside
        transformers' attention interface take rows with a dense mask instead). Gradients flow when called outside
        inference mode, but training takes ``one_pass_answer_states``: one pass, not two or three.
        """
        with torch.compiler.set_stance("force_eager") if self.layers_compiled else contextlib.nullcontext():
            cache, prefix_mask, prefix_lengths = self.encode_prefixes(prefixes)
            if self.lse_attention():
                return self._suffix_states(cache, prefix_mask, prefix_lengths, suffix_lists)
            return self._suffix_states_masked(cache, prefix_mask, prefix_lengths, suffix_lists)

    def one_pass_answer_states(self, prefixes: list[list[int]], suffix_lists) -> torch.Tensor:
        """``answer_states`` in one pass instead of three (the shared opening, the prefixes, then their suffixes):
        training's forward, and scoring's with ``one_pass``.

        Each example is one row, its prefix then its suffixes, right-padded. A prefix token attends causally within
        the prefix, a suffix token to the prefix and causally within itself: one mask, the model's own attention (or,
        with ``one_pass_attention: flex``, FlexAttention with the mask's block form, which skips the blocks it hides).
        The linear layers' arithmetic is that of the three passes but for the opening, now run once per example
        (8 to 9 % more tokens a row on ``amazon``, padding included). Every layer runs once forward and once
        backward instead of three times: a small model's training pass on a GPU cost nearly the same whatever its
        size (RESULTS.md, 2026-11-27), the time of launching each layer's operators, and with LoRA a 30-layer model
        dispatches about 330 operators a layer per pass (benchmarks/host_operators.py).

        Scoring this way dispatches 2,737 operators a step against 8,301 for ``answer_states`` (30 layers with
        LoRA, 64 users of 21 candidates), but attends densely: every token of a row against the row's whole width
        under the mask, 1.38x the arithmetic of the shared prefix on ``amazon``-like prompts. On 2 CPU cores, bound
        by their arithmetic, it scored 0.73x the candidates/s of ``answer_states`` (RESULTS.md, 2026-11-28); a GPU
        that waits on its host may not be bound so.
        """
        tokens, positions, parts, answers = one_pass_rows(prefixes, suffix_lists, self.pad_id)
        device, backbone = self.device, self.backbone()
        if self.one_pass_attention == "flex":
            mask, attention = segment_block_mask(parts, device), "flex_attention"
        else:
            mask, attention = segment_mask(parts, device)[:, None], backbone.config._attn_implementation
        answer_at = gather_index([row for row, _ in answers], [column for _, column in answers], device)
        with attention_implementation(backbone.config, attention):
            hidden = backbone(
                input_ids=torch.tensor(tokens, device=device),
                attention_mask=mask,
                position_ids=torch.tensor(positions, device=device),
                use_cache=False,
            ).last_hidden_state
        return hidden[answer_at]

    def pack(self, rows, prefix_lengths: list[int]):
        """Token rows, each a list of (owner, suffix): tokens, positions after the owner's prefix, suffix spans.

        Built on the host and moved in one copy each: a copy per suffix cost a GPU a transfer per candidate.
        """
        width = max(sum(len(suffix) for _, suffix in row) for row in rows)
        tokens = [[self.pad_id] * width for _ in rows]
        positions = [[0] * width for _ in rows]
        starts = prefix_lengths
        spans = []  # (row, start, end) of every suffix, in order
        for row, pieces in enumerate(rows):
            start = 0
            for owner, suffix in pieces:
                end = start + len(suffix)
                tokens[row][start:end] = suffix
                positions[row][start:end] = range(starts[owner], starts[owner] + len(suffix))
                spans.append((row, start, end))
                start = end
        device = self.device
        return torch.tensor(tokens, device=device), torch.tensor(positions, device=device), spans

    def _suffix_states(self, cache, prefix_mask, prefix_lengths, suffix_lists) -> torch.Tensor:
        """The suffix pass with ``shared_prefix_attention``: exact work, every user's suffixes in one row.

        One row rather than one per user: rows padded to the longest user's would run padding through
        every layer (2 % of the tokens with 21 candidates of ~40 tokens, more when users' counts differ).
        """
        backbone = self.backbone()
        row = [(user, suffix) for user, suffixes in enumerate(suffix_lists) for suffix in suffixes]
        tokens, positions, spans = self.pack([row], prefix_lengths)
        layout = SuffixLayout.build(cache, prefix_mask, suffix_lists)
        answer_at = gather_index([row for row, _, _ in spans], [end - 1 for _, _, end in spans], self.device)
        with attention_implementation(backbone.config, SHARED_PREFIX_ATTENTION):
            hidden = backbone(
                input_ids=tokens, position_ids=positions, use_cache=False, suffix_layout=layout
            ).last_hidden_state
        return hidden[answer_at]

    def _suffix_states_masked(self, cache, prefix_mask, prefix_lengths, suffix_lists) -> torch.Tensor:
        """The suffix pass for other models: the model's own attention with a mask that keeps suffixes apart."""
        backbone, device = self.backbone(), self.device
        # Rows of at most `suffixes_per_row` suffixes: a packed row computes attention densely over its
        # prefix and all its suffixes, so shorter rows waste less; each extra row copies its prefix's cache.
        rows = [
            [(user, suffix) for suffix in suffixes[start : start + self.suffixes_per_row]]
            for user, suffixes in enumerate(suffix_lists)
            for start in range(0, len(suffixes), self.suffixes_per_row)
        ]
        owners = torch.tensor([row[0][0] for row in rows], device=device)
        if len(rows) > len(suffix_lists):
            cache.batch_select_indices(owners)
        tokens, positions, spans = self.pack(rows, prefix_lengths)
        width = tokens.shape[1]
        parts = [[-1] * width for _ in rows]  # each suffix its own part: it sees itself causally
        for part, (row, start, end) in enumerate(spans, start=1):
            parts[row][start:end] = [part] * (end - start)
        seen_prefix = prefix_mask.bool()[owners][:, None, None, :].expand(-1, 1, width, -1)
        allowed = torch.cat([seen_prefix, segment_mask(parts, device)[:, None]], dim=-1)
        answer_at = gather_index([row for row, _, _ in spans], [end - 1 for _, _, end in spans], device)
        hidden = backbone(
            input_ids=tokens, attention_mask=allowed, position_ids=positions, **{CACHE: cache}
        ).last_hidden_state
        return hidden[answer_at]

    @torch.inference_mode()
    def score_full_prompts(self, prompt_ids: list[list[int]], batch_size: int = 21) -> torch.Tensor:
        """Reference scoring: each whole prompt on its own, batched with right padding (no shared prefix)."""
        if not prompt_ids:
            return torch.empty(0)
        self.check_length(max(len(ids) for ids in prompt_ids))
        backbone, device = self.backbone(), self.device
        scores = []
        for start in range(0, len(prompt_ids), batch_size):
            batch = prompt_ids[start : start + batch_size]
            tokens, lengths, mask = pad(batch, self.pad_id, device)
            hidden = backbone(input_ids=tokens, attention_mask=mask, use_cache=False).last_hidden_state
            scores.append(self.answer_probability(hidden[torch.arange(len(batch), device=device), lengths - 1]))
        return torch.cat(scores).cpu()

    def score(self, prefix: str, candidates: list[str]) -> torch.Tensor:
        """Text form of ``score_ids``: the prefix and each candidate suffix are tokenized separately."""
        prefix_ids = self.tokenizer(prefix)["input_ids"]
        suffix_ids = [self.tokenizer.encode(text, add_special_tokens=False) for text in candidates]
        return self.score_ids(prefix_ids, suffix_ids)
