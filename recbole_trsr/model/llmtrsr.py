"""LLMTRSR: a causal LLM, fine-tuned with LoRA, answers whether the user buys the candidate next.

The prompt is the paper's: instruction, [Preference Summary] (made by LLMTRSRDataset before training),
[Recent Items] and [Next Item], then the answer. Everything the candidates of an example share is the
prompt's prefix; the candidate and the answer slot are its suffix, scored with a shared KV cache.
"""

from __future__ import annotations

import dataclasses
import threading
import warnings
from collections import OrderedDict

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from recbole_trsr.config import ABOVE_ZERO, NOT_NEGATIVE, POSITIVE, NumberKey, check_flags, check_number_keys
from recbole_trsr.errors import UserInputError
from recbole_trsr.item_text import capped_texts, check_item_texts
from recbole_trsr.llm.attention_kernels import training_attention
from recbole_trsr.llm.device_batches import eval_batch_size, summary_batch_size, train_examples_per_pass
from recbole_trsr.llm.generation import summary_static_cache
from recbole_trsr.llm.loading import LLMSpec, check_source, load_llm, model_skeleton
from recbole_trsr.llm.memory_halving import HalvingSize
from recbole_trsr.llm.prompt_fit import PromptFitter, Section, header_tokens
from recbole_trsr.llm.scoring import (
    YesNoScorer,
    check_flex_attention,
    check_layers_compile,
    check_one_pass_attention,
    pad,
)
from recbole_trsr.model.llmtrsr_trainer import adam_betas, step_settings
from recbole_trsr.model.lora_settings import check_lora_targets, lora_config
from recbole_trsr.model.prompt_prefetch import prompt_prefetch
from recbole_trsr.model.retriever import full_ranking, load_retriever
from recbole_trsr.summary.backends import check_server_url
from recbole_trsr.summary.blocks import SUMMARY_MODES
from recbole_trsr.summary.dataset import HISTORY_END
from recbole_trsr.summary.factory import store_path
from recbole_trsr.summary.prompts import numbered
from recbole_trsr.summary.store import make_store_folder
from recbole_trsr.templates import check_templates, placeholders

SUFFIX_CACHE_SIZE = 2**16  # candidate suffixes kept tokenized

INSTRUCTION = (
    "Given a preference summary of the user, and information related to the historical items the user has "
    "purchased, predict whether the user will buy the given next product. Note that the preference summary "
    "captures long-term interests, while the recent items indicate short term interests. Both of them should "
    "be holistically considered for a more comprehensive understanding of user behavior. Please output 'yes' "
    "or 'no'.\n"
)


# Keys that name one of a few choices, refused before the summaries: a run reads loss_scope and finetune only once
# they are made (hours on a CPU), and would take any other summary_backend for transformers.
CHOICES = {
    "summary_mode": SUMMARY_MODES,
    "summary_backend": ("transformers", "server"),
    "finetune": ("lora", "full"),
    "loss_scope": ("answer", "prompt"),
}


# Number keys read only once the summaries are made, or when the model loads after the comparison's other models.
NUMBER_KEYS = {
    "block_size": POSITIVE,
    "max_blocks": POSITIVE,
    "recent_k": NOT_NEGATIVE,
    "item_max_tokens": POSITIVE,
    "summary_max_new_tokens": POSITIVE,
    "summary_max_tokens": POSITIVE,
    "recent_max_tokens": POSITIVE,
    "max_prompt_tokens": NumberKey("a positive whole number or ~ (the model's context window)", low=1, optional=True),
    "summary_share_timeout": NumberKey("a number of seconds, 0 or more (0 or ~: 1800)", whole=False, optional=True),
    "lora_r": POSITIVE,
    "lora_alpha": ABOVE_ZERO,
    "lora_dropout": NumberKey("a number from 0 up to 1, 1 left out", whole=False, high=1),
    "score_suffixes_per_row": POSITIVE,
    "rerank_top_m": POSITIVE,
}


# True/False keys: a value such as "no" would otherwise be read by its truth, as on.
FLAGS = (
    "summary_numbered",
    "summary_chat_template",
    "summary_partial_block",
    "summary_always_merge",
    "recent_numbered",
    "compile_layers",
    "gradient_checkpointing",
)


def chosen(config, key: str, default: str | None = None) -> str:
    """The value of one of CHOICES' keys (``default`` when it is ~); anything else is one line."""
    value = default if config[key] is None else config[key]
    choices = CHOICES[key]
    if value not in choices:
        raise UserInputError(f"{key} {value!r} is not {', '.join(choices[:-1])} or {choices[-1]}")
    return value


def answer_leading_space(config) -> bool | None:
    """``answer_leading_space``: None (auto: " yes" and " no" when they are single tokens), True or False."""
    value = config["answer_leading_space"]
    if value is None or value == "auto":
        return None
    if value in (True, False):
        return bool(value)
    raise UserInputError(f"answer_leading_space must be auto, True or False, not {value!r}")


def check_training_negatives(config) -> None:
    """LLMTRSR learns its 'no' from sampled negatives; without them every label is 'yes' (and RecBole's loader then
    has no label field for the loss)."""
    negatives = config["train_neg_sample_args"] or {}
    if negatives.get("distribution") in (None, "none") or not POSITIVE.fits(negatives.get("sample_num")):
        raise UserInputError(
            "LLMTRSR learns 'no' from sampled negatives: train_neg_sample_args needs a distribution (uniform or "
            f"popularity) and a sample_num of 1 or more, not {config['train_neg_sample_args']!r}"
        )


def score_in_one_pass(config) -> bool:
    """``score_pass``: one_pass scores as training runs (YesNoScorer.one_pass_answer_states), shared_prefix through
    the prefix's cache."""
    value = config["score_pass"]
    if value not in ("shared_prefix", "one_pass"):
        raise UserInputError(f"score_pass must be shared_prefix or one_pass, not {value!r}")
    return value == "one_pass"


def one_pass_attention(config, model=None) -> str:
    """``one_pass_attention``: mask (the model's attention with a dense mask) or flex (FlexAttention, CUDA only)."""
    value = check_one_pass_attention(config["one_pass_attention"])
    if value == "flex":
        check_flex_attention(model, LLMSpec.from_config(config).resolved_device())
    return value


class LLMTRSR(SequentialRecommender):
    """LLM-TRSR's recommender: P(yes) of a LoRA-tuned causal LM ranks the candidates."""

    input_type = InputType.POINTWISE
    takes_presets = True  # properties/presets/ set up this model; the other models of a run keep their settings

    @staticmethod
    def check_config(config) -> None:
        """The models this config loads exist, checked before any model of a comparison trains."""
        for key in CHOICES:
            chosen(config, key, "lora" if key == "finetune" else None)
        check_number_keys(config, NUMBER_KEYS)
        check_flags(config, FLAGS)
        answer_leading_space(config)
        adam_betas(config)
        check_templates(config)
        summary_batch_size(config)  # a bad value ends the run now, not after the summarizer has loaded
        step_settings(config)
        summary_static_cache(config)
        train_examples_per_pass(config, "cpu")  # the same for the value's checks on any device
        prompt_prefetch(config, "cpu")
        eval_batch_size(config["eval_batch_size"], 21, "cpu")  # auto is resolved by now; a given value is checked
        score_in_one_pass(config)
        one_pass_attention(config)
        if config["compile_layers"]:
            check_layers_compile()
        check_training_negatives(config)
        check_item_texts(config)
        if config["summary_mode"] != "none":
            make_store_folder(store_path(config))
            if config["summary_backend"] == "server":
                check_server_url(config["summary_server_url"])
        specs = [LLMSpec.from_config(config)]
        if config["summary_mode"] != "none" and config["summary_backend"] != "server":
            specs.append(LLMSpec.from_config(config, "summarizer_llm_", "llm_"))
        for spec in specs:
            spec.resolved_dtype()  # and the device, which auto's dtype follows
            spec.resolved_device()
            check_source(spec)
        skeleton = model_skeleton(specs[0])  # the recommender's modules, and its attention kernel checked
        if len(specs) > 1 and specs[1] != specs[0]:
            model_skeleton(specs[1])
        if chosen(config, "finetune", "lora") == "lora":
            check_lora_targets(config, skeleton)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        from peft import get_peft_model

        self.texts = dataset  # summaries, histories and item texts stay on the dataset
        if full_ranking(config):  # before the LLM loads: a missing retriever should fail fast
            self.retriever = load_retriever(config, dataset)
            self.rerank_top_m = config["rerank_top_m"]
        self.label_field = config["LABEL_FIELD"]
        self.scoring_users = self.scoring_size(config)
        self.loss_scope = chosen(config, "loss_scope")
        spec = LLMSpec.from_config(config)
        if config["finetune"] == "full" and spec.dtype == "auto" and spec.resolved_device().type == "cuda":
            # Every weight takes the optimizer's steps in its own dtype, with no float32 copy: bfloat16's 8 bits
            # round away a step below about 1/512 to 1/256 of the weight (most steps at the paper's lr 1e-4), and
            # float16 cannot train under the loss scaler. 135M weights and Adam's state in float32 take about 2 GB.
            spec = dataclasses.replace(spec, dtype="float32")
        loaded = getattr(dataset, "loaded_llm", None)
        # The summarizer's model, when it is the same one: its summaries are done, so LoRA may wrap it now.
        base, self.tokenizer = loaded[1:] if loaded is not None and loaded[0] == spec else load_llm(spec)
        self.gradient_checkpointing = config["gradient_checkpointing"]
        if self.gradient_checkpointing:
            base.gradient_checkpointing_enable()
        self.finetune = chosen(config, "finetune", "lora")
        if self.finetune == "full":  # every weight trains; checkpoints hold the whole model
            self.llm = base.requires_grad_(True)
        else:  # lora
            lora = lora_config(config)
            with warnings.catch_warnings():  # peft reads transformers' deprecated alias; nothing for a user to do
                warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated", FutureWarning)
                self.llm = get_peft_model(base, lora)
        self.scorer = YesNoScorer(
            self.llm,
            self.tokenizer,
            suffixes_per_row=config["score_suffixes_per_row"],
            leading_space=answer_leading_space(config),
            one_pass=score_in_one_pass(config),
            one_pass_attention=one_pass_attention(config, base),
        )
        if config["compile_layers"]:
            self.scorer.compile_layers()
        self.fitter = PromptFitter(self.tokenizer, config["max_prompt_tokens"] or self.scorer.context_window)
        self.templates = {
            "instruction": config["instruction_template"] or INSTRUCTION,
            "summary": config["summary_section_template"],
            "recent": config["recent_section_template"],
            "candidate": config["candidate_template"],
        }
        self.templates["next_item"] = config["next_item_template"] or "[Next Item]"
        self.missing_summary = config["summary_missing_text"] or ""  # the paper's code writes NULL
        self.recent_numbered = config["recent_numbered"] is not False
        self.budgets = {"summary": config["summary_max_tokens"], "recent": config["recent_max_tokens"]}
        self.headers = {
            "summary": header_tokens(self.fitter, self.templates["summary"], "summary"),
            "recent": header_tokens(self.fitter, self.templates["recent"], "items"),
        }
        self.capped_text = capped_texts(dataset.item_texts, self.tokenizer, config["item_max_tokens"])
        self.candidate_fields = placeholders(self.templates["candidate"])
        # An item's suffix repeats across prompts and epochs; with per-user counts its keys grow with the users, so
        # the cache is bounded (the least recently used go first).
        self.suffix_cache: OrderedDict[tuple[int, int, int], list[int]] = OrderedDict()
        # Requests of scoring batches built ahead on the trainer's prefetch thread (see build_ahead), by their rows;
        # that thread and this one share the caches above, so one builds at a time.
        self.built_ahead: dict[tuple, tuple] = {}
        self.building = threading.Lock()
        shortest = len(self.fitter.encode(self.templates["instruction"] + self.candidate_text("x")))
        if shortest >= self.fitter.max_tokens:
            raise UserInputError(
                f"the model's context ({self.fitter.max_tokens} tokens) is shorter than the minimum prompt "
                f"({shortest} tokens of instruction, candidate and answer slot)"
            )

    # Prompts ------------------------------------------------------------------------------------------

    def item_text(self, item_id: int) -> str:
        return self.capped_text(str(self.texts.field2id_token[self.ITEM_ID][item_id]))

    def candidate_text(self, text: str, popularity: int = 0, together: int = 0) -> str:
        return self.templates["candidate"].format(item=text, popularity=popularity, together=together)

    def prefix_sections(self, summary: str, recent: list[int]) -> list[Section]:
        summary = summary or self.missing_summary
        recent = [self.item_text(item) for item in recent]
        sections = [Section(self.templates["instruction"])]
        if summary:
            text = self.templates["summary"].format(summary=summary)
            sections.append(Section(text, self.budgets["summary"], 1, keep=self.headers["summary"]))
        if recent:
            sections.append(
                Section(
                    self.recent_section(recent),
                    self.budgets["recent"],
                    0,
                    keep=self.headers["recent"],
                    lines=recent,
                    render=self.recent_section,
                )
            )
        sections.append(Section(self.templates["next_item"]))
        return sections

    def recent_section(self, texts) -> str:
        """The recent-items section of these item texts, oldest first (numbered from 1 when recent_numbered)."""
        return self.templates["recent"].format(items=numbered(texts) if self.recent_numbered else "\n".join(texts))

    def candidate_keys(self, user: int, recent: list[int], items: list[int]) -> list[tuple[int, int, int]]:
        """(item, popularity, together) of each candidate: what its text shows for this user."""
        counts = self.texts.candidate_counts
        zeros = [0] * len(items)
        popularity = counts.popularity(user, items).tolist() if "popularity" in self.candidate_fields else zeros
        together = counts.together(user, recent, items).tolist() if "together" in self.candidate_fields else zeros
        return list(zip(items, popularity, together, strict=True))

    def encode_candidates(self, keys: list[tuple[int, int, int]]) -> list[list[int]]:
        """Token ids of each key's candidate text. The texts not in the cache are tokenized in one call: one call
        per candidate cost 0.13 to 0.17 ms of a CPU core, which alone would hold scoring under 8,000 candidates/s
        on any GPU."""
        missing = []
        for key in dict.fromkeys(keys):
            if key in self.suffix_cache:
                self.suffix_cache.move_to_end(key)
            else:
                missing.append(key)
        texts = [
            self.candidate_text(self.item_text(item), popularity, together) for item, popularity, together in missing
        ]
        fresh = dict(zip(missing, self.fitter.encode_many(texts), strict=True))
        ids = [fresh[key] if key in fresh else self.suffix_cache[key] for key in keys]
        self.suffix_cache.update(fresh)
        while len(self.suffix_cache) > SUFFIX_CACHE_SIZE:
            self.suffix_cache.popitem(last=False)
        return ids

    def build_requests(self, examples) -> list[tuple[list[int], list[list[int]]]]:
        """(prefix ids, suffix ids per item) of each (user, history end, candidate items) example: what the scorer
        and the loss take. The prompt sections of all examples go to the tokenizer in one call and their candidates
        in another (see ``encode_candidates``), not one call per text."""
        parts = [self.texts.prompt_parts(user, history_end) for user, history_end, _ in examples]
        keys = [
            self.candidate_keys(user, recent, items)
            for (user, _, items), (_, recent) in zip(examples, parts, strict=True)
        ]
        with self.building:
            suffixes = iter(self.encode_candidates([key for example in keys for key in example]))
            own = [[next(suffixes) for _ in example_keys] for example_keys in keys]
            sections = [self.prefix_sections(summary, recent) for summary, recent in parts]
            prefixes = self.fitter.fit_prefixes(sections, [max(map(len, example)) for example in own])
        return list(zip(prefixes, own, strict=True))

    def request(self, user: int, history_end: int, items: list[int]) -> tuple[list[int], list[list[int]]]:
        """(prefix ids, suffix ids per item) of one example."""
        return self.build_requests([(user, history_end, items)])[0]

    def batch_rows(self, interaction) -> tuple[tuple[int, ...], ...]:
        """(users, history ends, items) of a batch's rows: what its prompts are made of."""
        return (
            tuple(interaction[self.USER_ID].tolist()),
            tuple(interaction[HISTORY_END].long().tolist()),
            tuple(interaction[self.ITEM_ID].tolist()),
        )

    def requests(self, interaction):
        """(prefix, suffixes) per distinct example of a batch, and where each row's score comes from: built ahead
        for these rows, or now."""
        rows = self.batch_rows(interaction)
        built = self.built_ahead.pop(rows, None)
        return built if built is not None else self.requests_of_rows(*rows)

    def build_ahead(self, interaction) -> None:
        """Builds ``requests`` of the interaction's rows for when a batch of the same rows comes to be scored: the
        trainer calls it on its prefetch thread while the device scores the batch before (see prompt_prefetch)."""
        rows = self.batch_rows(interaction)
        self.built_ahead[rows] = self.requests_of_rows(*rows)

    def requests_of_rows(self, users, ends, items):
        examples: dict[tuple[int, int], list[int]] = {}
        for row, key in enumerate(zip(users, ends, strict=True)):
            examples.setdefault(key, []).append(row)
        requests = self.build_requests(
            [(user, end, [items[row] for row in rows]) for (user, end), rows in examples.items()]
        )
        return requests, list(examples.values())

    # RecBole's interface ------------------------------------------------------------------------------

    def calculate_loss(self, interaction, prompts=None):
        """``prompts``: the interaction's ``requests``, when the trainer has built them ahead (prompt_prefetch)."""
        with training_attention(self.scorer.device):
            return self.training_loss(interaction, prompts)

    def training_loss(self, interaction, prompts=None):
        requests, places = prompts or self.requests(interaction)
        labels = interaction[self.label_field].tolist()
        verbalizer = self.scorer.verbalizer
        targets = [verbalizer.yes_id if labels[row] > 0.5 else verbalizer.no_id for rows in places for row in rows]
        targets = torch.tensor(targets, device=self.device)
        head = self.llm.get_output_embeddings()
        if self.loss_scope == "answer":
            # A positive and its negatives share their prefix: it runs once, in one pass with their candidates.
            answer_states = self.scorer.one_pass_answer_states(*map(list, zip(*requests, strict=True)))
            return F.cross_entropy(head(answer_states).float(), targets)
        # The paper's loss: every prompt token is a next-token target too, averaged with the answers, so each
        # candidate's whole prompt runs.
        prompts = [prefix + suffix for prefix, suffixes in requests for suffix in suffixes]
        tokens, lengths, mask = pad(prompts, self.scorer.pad_id, self.device)
        hidden = self.scorer.backbone()(input_ids=tokens, attention_mask=mask).last_hidden_state
        answer_logits = head(hidden[torch.arange(len(prompts), device=self.device), lengths - 1])
        logits = head(hidden[:, :-1]).float()
        token_targets = tokens[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), token_targets.reshape(-1), reduction="sum")
        total = total + F.cross_entropy(answer_logits.float(), targets, reduction="sum")
        return total / ((token_targets != -100).sum() + len(prompts))

    def predict(self, interaction):
        requests, places = self.requests(interaction)
        scores = torch.empty(len(interaction), device=self.device)
        for rows, result in zip(places, self.scored(requests), strict=True):
            scores[rows] = result.to(self.device)
        return scores

    @staticmethod
    def scoring_size(config) -> HalvingSize:
        """Users scored together within one of RecBole's evaluation batches: all of them, halved when the device
        runs out of memory under eval_batch_size: auto (memory_halving)."""
        lower = f"lower eval_batch_size (now {config['eval_batch_size']})"
        shorten = "shorten the prompts (max_prompt_tokens, summary_max_tokens, recent_max_tokens)"
        if full_ranking(config):
            lower += f" or rerank_top_m (now {config['rerank_top_m']})"
            shorten += f" or lower rerank_top_m (now {config['rerank_top_m']})"
        follows = getattr(config, "eval_batch_size_auto", False)  # TRSRConfig has turned auto into rows
        return HalvingSize(None, follows, "eval_batch_size", lower, f"one user at a time does not fit: {shorten}")

    def scored(self, requests) -> list[torch.Tensor]:
        """``YesNoScorer.score_batch`` in as many steps as the device's memory needs (scoring_size)."""

        def step(users) -> str:
            candidates = sum(len(suffixes) for _, suffixes in users)
            return f"a scoring step of {len(users)} user{'s' * (len(users) != 1)} ({candidates} candidates)"

        return [
            score for _, scores in self.scoring_users.run(requests, self.scorer.score_batch, step) for score in scores
        ]

    def full_sort_predict(self, interaction):
        """The retriever ranks every item; its top ``rerank_top_m`` are reordered by P(yes), above the rest.

        Below them every item keeps the retriever's score, so the order of the rest is the retriever's.
        """
        scores = self.retriever.full_sort_predict(interaction).float()
        scores[:, 0] = -torch.inf  # the padding item
        top = scores.topk(min(self.rerank_top_m, scores.shape[1] - 1), dim=1).indices
        users = interaction[self.USER_ID].tolist()
        ends = interaction[HISTORY_END].long().tolist()
        requests = self.build_requests(list(zip(users, ends, top.tolist(), strict=True)))
        reranked = torch.stack(self.scored(requests)).to(scores.device)
        ceiling = scores.max(dim=1, keepdim=True).values + 1.0
        return scores.scatter(1, top, ceiling + reranked)
