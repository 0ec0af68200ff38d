"""Attention for candidate suffixes that read their user's cached prefix, without copying it or masking densely.

The candidate suffixes of a batch's users are packed into one row of tokens, user after user. A suffix token
attends to two things: its user's prefix (cached keys and values, shared by all of that user's suffixes)
and, causally, the earlier tokens of its own suffix. A dense mask over the packed row would score every
suffix token against every other suffix and copy each prefix's cache for its suffixes. Here the two parts
run apart and are merged exactly through their log-sum-exps:

- prefix part: all of a user's suffix queries against the user's prefix keys at once;
- own part: the suffixes laid out as slots of equal length, each attending causally within its slot.

The prefix pass uses it too: each prefix attends to the batch's shared opening and, causally, to its own
right-padded tokens, again two parts merged rather than one dense mask. The function is registered with
transformers' ``AttentionInterface`` and selected only for these two passes (``attention_implementation``),
so the model's own attention serves everything else. Models whose attention
goes through that interface (Llama, Qwen2, Mistral, Phi-3, GPT-2, ... in transformers 5) qualify unless
they cap attention logits; ``supports_shared_prefix_attention`` tells. Attention dropout is not applied
(the scored models have none) and neither are sliding windows (prompts here are far shorter than any).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
from transformers import AttentionInterface

SHARED_PREFIX_ATTENTION = "recbole_trsr_shared_prefix"


@dataclass
class SuffixLayout:
    """Where the suffix tokens sit: packed in one row, user after user, and as ``count`` x ``length`` slots per user.

    prefix_cache:  the prefix pass's KV cache, (users, kv heads, prefix width, head dim) per layer
    prefix_bias:   (users, 1, 1, prefix width) 0 where a prefix token is read, -inf on the prefixes' padding
    slot_tokens:   (users, count * length) index of each slot position into the packed row
                   (slot padding, at each slot's end, points at the row's first token)
    token_slots:   (row width,) index of each packed token into the flattened slots
    """

    prefix_cache: object
    prefix_bias: torch.Tensor
    slot_tokens: torch.Tensor
    token_slots: torch.Tensor
    count: int
    length: int

    @classmethod
    def build(cls, prefix_cache, prefix_valid, suffix_lists) -> SuffixLayout:
        """The layout of ``suffix_lists`` (per user, the suffix token lists in packing order)."""
        device = prefix_valid.device
        users = len(suffix_lists)
        count = max(len(suffixes) for suffixes in suffix_lists)
        length = max(len(suffix) for suffixes in suffix_lists for suffix in suffixes)
        # Whole-array operations, not a few small tensor operations per suffix: those cost a GPU's host about
        # 10 dispatches a candidate, some 12,000 for a batch of 64 users with 21 candidates each.
        sizes = torch.tensor([len(suffix) for suffixes in suffix_lists for suffix in suffixes])
        slots = torch.tensor(
            [user * count + slot for user, suffixes in enumerate(suffix_lists) for slot in range(len(suffixes))]
        )
        starts = sizes.cumsum(0) - sizes
        width = int(sizes.sum())
        token_slots = torch.arange(width) + torch.repeat_interleave(slots * length - starts, sizes)
        slot_tokens = torch.zeros(users * count * length, dtype=torch.long)
        slot_tokens[token_slots] = torch.arange(width)
        dtype = prefix_cache.layers[0].keys.dtype  # the queries' dtype: the mask is added to their scores
        bias = torch.zeros(prefix_valid.shape, device=device, dtype=dtype)
        bias = bias.masked_fill(~prefix_valid.bool(), float("-inf"))
        return cls(
            prefix_cache,
            bias[:, None, None],
            slot_tokens.view(users, count * length).to(device),
            token_slots.to(device),
            count,
            length,
        )


def attention_with_lse(query, key, value, scale: float, mask=None, causal: bool = False):
    """softmax(q k^T * scale + mask) v and the log-sum-exp of each query's scores, so that parts merge exactly.

    Keys and values may have fewer heads than the queries (grouped-query attention: query head h reads key
    head h // group). For inference on a CPU, PyTorch's fused flash kernel gives both results and takes
    grouped heads as they are (the public ``scaled_dot_product_attention`` drops the log-sum-exp). Elsewhere
    the scores are made explicitly. Training does not come here (``YesNoScorer.lse_attention``): the kernel's
    log-sum-exp has no gradient, and explicit weights would be kept for backward.
    """
    fused = query.device.type == "cpu" and query.dtype in (torch.float32, torch.bfloat16)
    if fused and not torch.is_grad_enabled():
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            query, key, value, 0.0, causal, attn_mask=mask, scale=scale
        )
    return explicit_attention_with_lse(query, key, value, scale, mask, causal)


def explicit_attention_with_lse(query, key, value, scale: float, mask=None, causal: bool = False):
    """``attention_with_lse`` with the scores made explicitly, in float32: what a GPU runs."""
    group = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(group, dim=1), value.repeat_interleave(group, dim=1)
    scores = (query @ key.transpose(-1, -2)).float() * scale
    if mask is not None:
        scores = scores + mask
    if causal:
        scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), float("-inf"))
    lse = scores.logsumexp(-1)
    weights = (scores - lse[..., None]).exp().to(value.dtype)
    return weights @ value, lse


def merged(first, second):
    """The attention output over the keys of two parts, from each part's (output, log-sum-exp).

    The second part's share of the softmax mass is sigmoid(lse2 - lse1); one interpolation applies it.
    """
    (first_output, first_lse), (second_output, second_lse) = first, second
    share = torch.sigmoid(second_lse - first_lse)[..., None].to(first_output.dtype)
    return torch.lerp(first_output, second_output, share)


def shared_prefix_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers attention function: (batch, heads, tokens, dim) in, (batch, tokens, heads, dim) out.

    The candidate pass passes ``suffix_layout``; the prefix pass passes ``opening``, the length of the cached
    opening that every row shares, after which each row's own tokens (right-padded) attend causally.
    """
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    if "suffix_layout" in kwargs:
        return suffix_attention(module, query, key, value, scaling, kwargs["suffix_layout"]), None
    opening = kwargs["opening"]
    own = attention_with_lse(query, key[:, :, opening:], value[:, :, opening:], scaling, causal=True)
    if opening:
        own = merged(attention_with_lse(query, key[:, :, :opening], value[:, :, :opening], scaling), own)
    else:
        own = own[0]
    return own.transpose(1, 2), None


def suffix_attention(module, query, key, value, scaling: float, layout: SuffixLayout):
    """The candidate pass: (1, heads, width, dim) packed queries in, (1, width, heads, dim) out."""
    _, heads, width, dim = query.shape
    users, count, length = layout.prefix_bias.shape[0], layout.count, layout.length

    def to_slots(states):  # (1, h, width, dim) -> (users, h, count * length, dim), gathered token by token
        return states[0].transpose(0, 1)[layout.slot_tokens].permute(0, 2, 1, 3)

    def per_slot(states):  # (users, h, count * length, dim) -> (users * count, h, length, dim)
        return states.unflatten(2, (count, length)).transpose(1, 2).flatten(0, 1)

    prefix = layout.prefix_cache.layers[module.layer_idx]
    queries = to_slots(query)
    # Part 1, every suffix query against its user's prefix; part 2, causally within its own slot (slot padding
    # sits at the end, so causality hides it).
    prefix_part = attention_with_lse(queries, prefix.keys, prefix.values, scaling, mask=layout.prefix_bias)
    own_output, own_lse = attention_with_lse(
        per_slot(queries), per_slot(to_slots(key)), per_slot(to_slots(value)), scaling, causal=True
    )
    own_output = own_output.view(users, count, heads, length, dim).transpose(1, 2).reshape_as(prefix_part[0])
    own_lse = own_lse.view(users, count, heads, length).transpose(1, 2).reshape_as(prefix_part[1])
    output = merged(prefix_part, (own_output, own_lse))
    # Back to the packed row, (1, width, heads, dim).
    output = output.transpose(1, 2).reshape(users * count * length, heads, dim)
    return output[layout.token_slots].view(1, width, heads, dim)


AttentionInterface.register(SHARED_PREFIX_ATTENTION, shared_prefix_attention)


def supports_shared_prefix_attention(model) -> bool:
    """Whether the model's attention layers call transformers' attention interface (and pass its kwargs on)
    with plain softmax attention (no capped logits, which this function does not apply)."""
    config = model.config
    return (
        bool(getattr(model, "_supports_attention_backend", False))
        and hasattr(config, "_attn_implementation")
        and not getattr(config, "attn_logit_softcapping", None)
    )


@contextmanager
def attention_implementation(config, name: str):
    """Runs the model with another registered attention function, then restores the configured one."""
    previous = config._attn_implementation
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = previous
