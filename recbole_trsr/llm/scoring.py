"""Yes/no scoring of candidates: P(yes) / (P(yes) + P(no)) at the answer position, one forward pass, no generation.

A user's prompt prefix (instruction, summary, recent items) is the same for all of their candidates. It is
encoded once; its KV cache is shared by every candidate suffix (candidate text plus answer slot), which is
all that is run per candidate: the suffixes are packed into one row that attends to the prefix and, within
each suffix, causally. Several users go through in one batch. Logits are computed only at the
answer position, and only for the two verbalizer tokens: the final hidden state times the two rows of the
output embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recbole_trsr.errors import UserInputError


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


def resolve_verbalizer(tokenizer, yes: str = "yes", no: str = "no") -> Verbalizer:
    """The answer tokens: " yes"/" no" (after "Answer:", the usual case) or, failing that, "yes"/"no".

    Each must be one token and the two must differ; otherwise the yes/no probability cannot be read from
    one position and the error says so.
    """
    for prefix in (" ", ""):
        yes_id = single_token_id(tokenizer, prefix + yes)
        no_id = single_token_id(tokenizer, prefix + no)
        if yes_id is not None and no_id is not None and yes_id != no_id:
            return Verbalizer(yes_id, no_id, prefix + yes, prefix + no)
    pieces = {word: tokenizer.tokenize(" " + word) for word in (yes, no)}
    raise UserInputError(
        f"the tokenizer has no single-token answer for '{yes}'/'{no}' (with or without a leading space): "
        f"' {yes}' -> {pieces[yes]}, ' {no}' -> {pieces[no]}; choose other answer words"
    )


def pad(sequences, pad_id: int, device, left: bool = False):
    """(tokens, lengths, attention mask) of token lists padded to one width, on the right or the left."""
    lengths = torch.tensor([len(sequence) for sequence in sequences], device=device)
    width = int(lengths.max())
    tokens = torch.full((len(sequences), width), pad_id, device=device)
    for row, sequence in enumerate(sequences):
        start = width - len(sequence) if left else 0
        tokens[row, start : start + len(sequence)] = torch.tensor(sequence, device=device)
    columns = torch.arange(width, device=device)[None, :]
    mask = columns >= (width - lengths)[:, None] if left else columns < lengths[:, None]
    return tokens, lengths, mask.long()


class YesNoScorer:
    """Scores candidate suffixes after a shared prefix with a causal LM (a transformers or peft model)."""

    def __init__(self, model, tokenizer, yes: str = "yes", no: str = "no", suffixes_per_row: int = 7):
        self.model = model
        self.suffixes_per_row = suffixes_per_row
        self.tokenizer = tokenizer
        self.verbalizer = resolve_verbalizer(tokenizer, yes, no)
        self.context_window = int(getattr(model.config, "max_position_embeddings", 0) or 2**31)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def backbone(self):
        """The decoder stack that returns final (normed) hidden states, below the output embedding."""
        model = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        return model.get_decoder()

    def answer_probability(self, hidden: torch.Tensor) -> torch.Tensor:
        """P(yes) / (P(yes) + P(no)) from final hidden states at answer positions, shape (n, hidden)."""
        head = self.model.get_output_embeddings()
        rows = [self.verbalizer.yes_id, self.verbalizer.no_id]
        logits = hidden @ head.weight[rows].T
        if getattr(head, "bias", None) is not None:
            logits = logits + head.bias[rows]
        return torch.softmax(logits.float(), dim=-1)[:, 0]

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
        return self.answer_probability(self.answer_states(prefixes, uniques)).cpu()

    def encode_prefixes(self, prefixes: list[list[int]]):
        """(KV cache, attention mask, lengths) of the prefixes, left-padded to one width.

        The tokens that open every prefix (the instruction, in LLMTRSR's prompts) run once for the whole
        batch and their cache is shared, as an inference server's prefix cache would do; each prefix's own
        part follows, padded on its left, so the padding sits between the common part and the rest.
        """
        backbone, device = self.backbone(), self.device
        common = 0
        if len(prefixes) > 1:
            shortest = min(len(prefix) for prefix in prefixes)
            while common < shortest - 1 and all(prefix[common] == prefixes[0][common] for prefix in prefixes):
                common += 1
        cache = None
        if common:
            cache = backbone(input_ids=torch.tensor([prefixes[0][:common]], device=device), use_cache=True)
            cache = cache.past_key_values
            cache.batch_select_indices(torch.zeros(len(prefixes), dtype=torch.long, device=device))
        tokens, lengths, own_mask = pad([prefix[common:] for prefix in prefixes], self.pad_id, device, left=True)
        mask = torch.cat([own_mask.new_ones(len(prefixes), common), own_mask], dim=1)
        positions = common + (own_mask.cumsum(dim=1) - 1).clamp(min=0)
        cache = backbone(
            input_ids=tokens, attention_mask=mask, position_ids=positions, past_key_values=cache, use_cache=True
        ).past_key_values
        return cache, mask, common + lengths

    def answer_states(self, prefixes: list[list[int]], suffix_lists) -> torch.Tensor:
        """Final hidden states at the answer position of every suffix, in order: (sum of suffixes, hidden).

        One forward over the left-padded prefixes, then one over each user's suffixes packed into rows that
        attend to their own user's cached prefix and, causally, within each suffix only: the prefix's KV cache
        is never copied per candidate, and every matrix product stays large. Gradients flow when called
        outside inference mode, so training shares the prefix of a positive and its negatives too.
        """
        backbone, device = self.backbone(), self.device
        cache, prefix_mask, prefix_lengths = self.encode_prefixes(prefixes)

        # Rows of at most `suffixes_per_row` suffixes: a packed row computes attention densely over its
        # prefix and all its suffixes, so shorter rows waste less; each extra row copies its prefix's cache.
        rows = [
            (user, suffixes[start : start + self.suffixes_per_row])
            for user, suffixes in enumerate(suffix_lists)
            for start in range(0, len(suffixes), self.suffixes_per_row)
        ]
        owners = torch.tensor([user for user, _ in rows], device=device)
        if len(rows) > len(prefixes):
            cache.batch_select_indices(owners)
        prefix_width = prefix_mask.shape[1]
        width = max(sum(len(suffix) for suffix in group) for _, group in rows)
        tokens = torch.full((len(rows), width), self.pad_id, device=device)
        positions = torch.zeros((len(rows), width), dtype=torch.long, device=device)
        allowed = torch.zeros((len(rows), 1, width, prefix_width + width), dtype=torch.bool, device=device)
        allowed[:, 0, :, :prefix_width] = prefix_mask.bool()[owners][:, None, :]
        diagonal = torch.arange(width, device=device)
        allowed[:, 0, diagonal, prefix_width + diagonal] = True  # padding queries see themselves, never NaN
        answer_rows, answer_columns = [], []
        for row, (user, group) in enumerate(rows):
            start = 0
            for suffix in group:
                end = start + len(suffix)
                tokens[row, start:end] = torch.tensor(suffix, device=device)
                positions[row, start:end] = prefix_lengths[user] + torch.arange(len(suffix), device=device)
                block = allowed[row, 0, start:end, prefix_width + start : prefix_width + end]
                block.copy_(torch.ones_like(block).tril())
                answer_rows.append(row)
                answer_columns.append(end - 1)
                start = end
        hidden = backbone(
            input_ids=tokens, attention_mask=allowed, position_ids=positions, past_key_values=cache
        ).last_hidden_state
        return hidden[answer_rows, answer_columns]

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
