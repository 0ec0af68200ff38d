"""LLMTRSRTrainer: RecBole's Trainer with adapter-only checkpoints, gradient accumulation and resuming.

RecBole's Trainer pickles the whole model's state_dict, which for an LLM is the frozen base model again and
again. This one keeps RecBole's loop (early stopping on ``valid_metric``, its logger and progress bars)
and changes what is saved (see adapter_checkpoint) and how an epoch runs.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import time
from pathlib import Path

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.trainer import Trainer
from recbole.utils import set_color
from torch.nn.utils import clip_grad_norm_
from tqdm import tqdm

from recbole_trsr import distributed
from recbole_trsr.config import NumberKey, check_number_keys
from recbole_trsr.distributed_trainer import instance_attribute, loader_yielding
from recbole_trsr.errors import UserInputError
from recbole_trsr.fit_progress import fit_progress, restore_fit_progress
from recbole_trsr.llm.device_batches import train_examples_per_pass
from recbole_trsr.llm.memory_halving import HalvingSize, is_out_of_memory
from recbole_trsr.model import adapter_checkpoint as checkpoint
from recbole_trsr.model.prompt_prefetch import PromptsAhead, prefetched, prompt_prefetch
from recbole_trsr.progress import ProgressLog
from recbole_trsr.summary.dataset import HISTORY_END

BETA = NumberKey("a number in [0, 1)", whole=False, high=1)


def adam_betas(config) -> tuple[float, float] | None:
    """``adam_betas`` for Adam and AdamW, or None for torch's; anything else is one line."""
    betas = config["adam_betas"]
    if betas is None:
        return None
    if not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(BETA.fits(b) for b in betas)):
        raise UserInputError(f"adam_betas must be two numbers in [0, 1), such as [0.9, 0.95], not {betas!r}")
    if str(config["learner"]).lower() not in ("adam", "adamw"):
        raise UserInputError(f"adam_betas is given, but learner '{config['learner']}' is not adam or adamw")
    return float(betas[0]), float(betas[1])


class LLMTRSRTrainer(Trainer):
    splits_batches = True  # on several ranks, each takes whole examples of a batch (see passes)

    def __init__(self, config, model):
        super().__init__(config, model)
        self.ranks = distributed.current()
        self.accumulation, self.checkpoint_steps, self.checkpoint_seconds = step_settings(config)
        self.last_resume_point_at = time.monotonic()  # the clock of checkpoint_seconds; _train_epoch restarts it
        self.pass_size = self.training_pass_size(config, model.scorer.device)
        self.trained_weights = [weight for weight in model.parameters() if weight.requires_grad]  # for BeforeBatch
        self.prefetch_prompts = prompt_prefetch(config, model.scorer.device)
        self.saved_model_file = str(Path(self.saved_model_file).with_suffix(""))  # a folder, not a .pth
        self.resume_batches, self.resume_loss = 0, 0.0
        self.resumed_train_seconds, self.fit_started = 0.0, time.perf_counter()  # train_s counts what came before
        self.loss_scaler = self.build_loss_scaler()
        if config["resume_from"]:
            self.resume_checkpoint(config["resume_from"])

    def _build_optimizer(self, **kwargs):
        """RecBole's optimizers, with ``adam_betas`` for Adam and AdamW (the paper's code uses (0.9, 0.95))."""
        optimizer = super()._build_optimizer(**kwargs)
        betas = adam_betas(self.config)
        if betas is not None:
            for group in optimizer.param_groups:
                group["betas"] = betas
        return optimizer

    def build_loss_scaler(self) -> torch.amp.GradScaler:
        """float16 gradients underflow without loss scaling; for any other dtype the scaler does nothing."""
        weights = self.model.llm.get_input_embeddings().weight.dtype
        half = weights == torch.float16 and self.device.type == "cuda"
        if half and any(p.dtype == torch.float16 for p in self.model.llm.parameters() if p.requires_grad):
            raise UserInputError(
                "llm_dtype float16 cannot train float16 weights (finetune full): set llm_dtype to bfloat16 or float32"
            )
        # 2**10, not torch's 2**16: a short run could otherwise spend its first steps skipped as overflows.
        return torch.amp.GradScaler("cuda", init_scale=2.0**10, enabled=half)

    @property
    def folder(self) -> Path:
        return Path(self.saved_model_file)

    # Saving and loading -------------------------------------------------------------------------------

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        """RecBole calls this when validation improves: keep that epoch's adapter as the best."""
        folder = Path(kwargs.pop("saved_model_file", self.saved_model_file))
        if epoch < 0 and (folder / checkpoint.BEST).is_dir():
            return  # RecBole's "resumed after the last epoch" save: the best adapter is already there
        path = checkpoint.save(self.model.llm, folder, checkpoint.BEST)
        if verbose:
            self.logger.info(set_color("Saving best adapter", "blue") + f": {path}")

    def save_resume_point(self, epoch: int, batches_done: int, epoch_loss: float, stopped: bool = False) -> None:
        # Each rank draws its own dropout masks: every rank's generator states are kept, so that each goes on
        # with its own stream after a resume.
        rng_states = distributed.everyone(
            (torch.get_rng_state(), torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])
        )
        # The ranks hold the same adapter and optimizer state: one copy per machine is written.
        if distributed.writes_checkpoints(self.config):
            state = {
                "epoch": epoch,
                "batches_done": batches_done,
                "epoch_loss": float(epoch_loss),
                **fit_progress(self, stopped),
                "optimizer": self.optimizer.state_dict(),
                "loss_scaler": self.loss_scaler.state_dict(),
                "examples_per_pass": self.pass_size.size,  # as halved so far under auto
                "torch_rng": [cpu for cpu, _ in rng_states],  # one per rank
                "cuda_rng": [cuda for _, cuda in rng_states],
            }
            checkpoint.save(self.model.llm, self.folder, checkpoint.LAST, state)
        self.last_resume_point_at = time.monotonic()  # after the save: its own time is not training

    def resume_point_due(self, steps: int) -> bool:
        """After this epoch's ``steps``-th optimizer step: every ``checkpoint_steps`` steps, or once
        ``checkpoint_seconds`` of training have passed since the last resume point. A save costs about 0.1 s (an
        adapter and its optimizer state), so a fixed count of steps would save several times a second on a GPU.
        Rank 0's clock decides for every rank: saving gathers every rank's generator states."""
        by_steps = bool(self.checkpoint_steps) and steps % self.checkpoint_steps == 0
        if not self.checkpoint_seconds:
            return by_steps
        by_time = time.monotonic() - self.last_resume_point_at >= self.checkpoint_seconds
        return distributed.from_first(by_steps or by_time)

    def resume_checkpoint(self, resume_file):
        """Go on from the last save point of ``resume_file`` (a checkpoint folder), into the same folder."""
        folder = checkpoint.check_resume_folder(resume_file)
        # On the CPU first: RNG states must stay CPU byte tensors; the optimizer moves its state to the parameters.
        state = checkpoint.load_trainer_state(folder / checkpoint.LAST, "cpu")
        checkpoint.load_adapter(self.model.llm, folder / checkpoint.LAST)
        try:
            self.optimizer.load_state_dict(state["optimizer"])
            if state.get("loss_scaler") and self.loss_scaler.is_enabled():
                self.loss_scaler.load_state_dict(state["loss_scaler"])
            self.start_epoch, self.resume_batches = state["epoch"], state["batches_done"]
            if state.get("stopped"):
                self.start_epoch, self.resume_batches = self.epochs, 0
            self.resume_loss = state["epoch_loss"]
            restore_fit_progress(self, state)
            self.resume_rng = self.saved_rng_of_this_rank(state)
            self.resume_pass_size(state.get("examples_per_pass"))
        except (KeyError, ValueError) as error:
            raise UserInputError(f"{folder}: the trainer state does not fit this run ({error})") from None
        self.saved_model_file = str(folder)
        self.logger.info(f"Resuming {folder} at epoch {self.start_epoch}, after {self.resume_batches} batches of it")

    def resume_pass_size(self, saved: int | None) -> None:
        """A pass size that auto had halved before the save point stays halved: the resumed run trains on as the
        interrupted one would have, and does not run out of memory again to find it."""
        if self.pass_size.follows_memory and saved and (self.pass_size.size is None or saved < self.pass_size.size):
            self.pass_size.size = saved

    def saved_rng_of_this_rank(self, state) -> tuple | None:
        """(CPU, CUDA) generator states saved by this rank; None when the save had another number of ranks."""
        cpu, cuda = state["torch_rng"], state.get("cuda_rng", [])
        if torch.is_tensor(cpu):  # saved by one process before the states were kept per rank
            cpu, cuda = [cpu], [cuda]
        if len(cpu) != self.ranks.size:
            self.logger.warning(
                f"the resume point was saved by {len(cpu)} ranks, this run has {self.ranks.size}: dropout masks are "
                "drawn afresh from the seed (the weights go on from the save point)"
            )
            return None
        return cpu[self.ranks.rank], (cuda[self.ranks.rank] if len(cuda) == len(cpu) else [])

    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if load_best_model:
            best = Path(model_file or self.saved_model_file) / checkpoint.BEST
            checkpoint.load_adapter(self.model.llm, best)
            self.logger.info(f"Loading the best adapter from {best}")
        log = ProgressLog("evaluation", len(eval_data), " batches", enabled=not show_progress)
        predict = self.model.predict

        def logged_predict(interaction):
            scores = predict(interaction)
            log.update()
            return scores

        with (
            instance_attribute(self.model, "predict", logged_predict),
            self.prompts_built_ahead(eval_data) as eval_data,
        ):
            result = super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
        self.model.fitter.log_truncation(self.logger)
        return result

    @contextlib.contextmanager
    def prompts_built_ahead(self, eval_data):
        """``eval_data`` whose next batch's prompts are built on the prefetch thread while the device scores the
        current one (prompt_prefetch). Sampled candidates only: full ranking's come from the retriever's scores."""
        if not self.prefetch_prompts or not eval_data or isinstance(eval_data, FullSortEvalDataLoader):
            yield eval_data
            return
        ahead = PromptsAhead(True)

        def build(batch):
            interaction = batch[0]  # (interaction, rows, positive users, positive items)
            if len(interaction) <= self.test_batch_size:  # a longer one RecBole scores in parts, each built then
                self.model.build_ahead(interaction)

        try:
            yield loader_yielding(eval_data, lambda: prefetched(eval_data, build, ahead), len(eval_data))
        finally:
            ahead.close()
            self.model.built_ahead.clear()  # an evaluation that ended early leaves its next batch's prompts

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self.fit_started = time.perf_counter()
        if saved and distributed.writes_checkpoints(self.config):
            checkpoint.write_config(self.folder, self.config)  # once: every save of this run shares it

        def after_validation(epoch_idx, valid_score):
            if saved:  # the best score and early-stopping count are final for this epoch now; past the limit, it stops
                self.save_resume_point(epoch_idx + 1, 0, 0.0, stopped=self.cur_step > self.stopping_step)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        return super().fit(train_data, valid_data, verbose, saved, show_progress, after_validation)

    # One epoch --------------------------------------------------------------------------------------

    def restore_rng(self, epoch_seed: int) -> None:
        """Dropout continues where the save point left it."""
        if self.resume_rng is None:
            distributed.seed_dropout(epoch_seed + self.resume_batches)
            return
        cpu_rng, cuda_rng = self.resume_rng
        torch.set_rng_state(cpu_rng)
        if cuda_rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_rng)

    def passes(self, interaction, size: int | None):
        """The batch as forward/backward passes of at most ``train_examples_per_pass`` examples (a prompt prefix
        with its positive and negatives), each with its share of the batch's rows. Activations, and so memory,
        grow with the tokens of one pass; the gradient is the batch's (exactly, for the answer-token loss).
        On several ranks, this rank's contiguous share of the examples, weighted for DDP's average."""
        if not size and self.ranks.size == 1:
            yield interaction, 1.0
            return
        examples: dict[tuple[int, int], list[int]] = {}
        users = interaction[self.model.USER_ID].tolist()
        ends = interaction[HISTORY_END].long().tolist()
        for row, key in enumerate(zip(users, ends, strict=True)):
            examples.setdefault(key, []).append(row)
        groups = list(examples.values())
        mine = self.ranks.share(len(groups))
        groups = groups[mine.start : mine.stop]
        limit = size or max(len(groups), 1)
        for start in range(0, len(groups), limit):
            rows = [row for group in groups[start : start + limit] for row in group]
            yield interaction[torch.tensor(rows)], len(rows) * self.ranks.size / len(interaction)

    def prepared_passes(self, interaction, with_prompts: bool = True) -> tuple[int | None, list[tuple]]:
        """(the pass size, (part, share, prompts) of each pass of a batch): ``passes`` with each part's
        ``LLMTRSR.requests``, built from the batch on the host, where reading its ids costs no wait on the device.
        The size is read once: a batch prepared ahead before the size was halved is prepared again."""
        size = self.pass_size.size
        passes = self.passes(interaction, size)
        return size, [(part, share, self.model.requests(part) if with_prompts else None) for part, share in passes]

    @staticmethod
    def next_batch(batches, ahead: PromptsAhead, prepare):
        """((index, batch) or None at the end, its prepared passes to come)."""
        upcoming = next(batches, None)
        return upcoming, (ahead.start(prepare, upcoming[1]) if upcoming is not None else None)

    def training_pass_size(self, config, device) -> HalvingSize:
        """Examples a pass: ``train_examples_per_pass``; under auto halved when the device runs out of memory, on one
        process (on several, the ranks would wait on the one that runs a batch again), and unless the batch would
        have to keep a copy of every weight's gradient to run again (finetune: full with gradient accumulation)."""
        per_pass = train_examples_per_pass(config, device)
        copies_all_gradients = config["finetune"] == "full" and self.accumulation > 1
        follows = config["train_examples_per_pass"] == "auto" and self.ranks.size == 1 and not copies_all_gradients
        lower = (
            f"lower train_examples_per_pass (now {per_pass or '~, a whole batch'}) "
            f"or train_batch_size (now {config['train_batch_size']})"
        )
        shorten = (
            "one example at a time does not fit: set gradient_checkpointing to True, or shorten the prompts "
            "(max_prompt_tokens, summary_max_tokens, recent_max_tokens)"
        )
        return HalvingSize(per_pass, follows, "train_examples_per_pass", lower, shorten)

    @contextlib.contextmanager
    def gradient_average(self, now: bool = True):
        """One process: nothing to average (SplitAcrossRanks averages over ranks); yields a term for the loss."""
        yield 0.0

    def examples_in(self, part) -> int:
        """Examples (a prompt prefix with its positive and negatives) among a pass's rows."""
        return len(set(zip(part[self.model.USER_ID].tolist(), part[HISTORY_END].tolist(), strict=True)))

    def train_batch(self, parts, step_now: bool, fetch_next, loss_func=None) -> float:
        """Forward and backward of each pass of a batch; the batch's loss. ``fetch_next`` starts building the next
        batch's prompts on the host while the device runs the last backward."""
        pass_losses, self.running_pass = [], None
        for index, (part, share, prompts) in enumerate(parts):
            last = index == len(parts) - 1
            self.running_pass = part  # named, and counted for halving, if it runs out of device memory
            with self.gradient_average(now=step_now and last) as touch_all:
                part = part.to(self.device)
                loss = self.model.calculate_loss(part, prompts) if loss_func is None else loss_func(part)
                if last:
                    fetch_next()
                self.loss_scaler.scale(loss * share / self.accumulation + touch_all).backward()
            pass_losses.append(loss.detach().float() * share)
        # Read once a batch, after every backward is queued: reading a pass's loss (or checking it for NaN) before
        # its backward made the host wait for the forward on a GPU. A NaN still stops the run before the step.
        batch_loss = torch.stack(pass_losses).sum() if pass_losses else torch.zeros(())
        self._check_nan(batch_loss)
        if not parts:  # this rank has no example in the batch, but the others wait for its part
            fetch_next()
            if step_now:
                with self.gradient_average(now=True) as touch_all:
                    if torch.is_tensor(touch_all):
                        self.loss_scaler.scale(touch_all).backward()
        return batch_loss.item()

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.model.train()
        # Each epoch's order and negatives follow from the seed and the epoch alone, so an interrupted
        # epoch replays the same batches up to its save point and goes on from there.
        seed = self.config["seed"] + epoch_idx
        train_data.generator.manual_seed(seed)
        np.random.seed(seed)
        distributed.seed_dropout(seed)
        skip = self.resume_batches if epoch_idx == self.start_epoch else 0
        total_loss = self.resume_loss if skip else 0.0
        bar = (
            tqdm(train_data, total=len(train_data), ncols=100, desc=set_color(f"Train {epoch_idx:>5}", "pink"))
            if show_progress
            else None
        )
        self.optimizer.zero_grad()
        steps = 0
        log = ProgressLog(f"train epoch {epoch_idx}", len(train_data), " batches", enabled=not show_progress)
        log.done = skip
        batches = enumerate(bar if show_progress else train_data)
        for _ in itertools.islice(batches, skip):
            pass  # collated all the same: the negatives of later batches come out as before
        self.last_resume_point_at = time.monotonic()  # validation and the replay above are not training time
        ahead = PromptsAhead(self.prefetch_prompts)
        prepare = functools.partial(self.prepared_passes, with_prompts=loss_func is None)
        try:
            upcoming, prepared = self.next_batch(batches, ahead, prepare)
            if skip and upcoming is not None:
                self.restore_rng(seed)
            while upcoming is not None:
                batch_idx, batch = upcoming
                prepared_size, parts = prepared.result()
                step_now = not ((batch_idx + 1) % self.accumulation and batch_idx + 1 < len(train_data))
                following = []  # the next batch, fetched once while the device runs this batch's last backward

                def fetch_next(following=following):
                    if not following:
                        following.append(self.next_batch(batches, ahead, prepare))

                before = BeforeBatch(self.trained_weights) if self.pass_size.can_halve() else None
                while True:
                    if prepared_size != self.pass_size.size:  # prepared ahead of a halving
                        prepared_size, parts = prepare(batch)
                    try:
                        batch_loss = self.train_batch(parts, step_now, fetch_next, loss_func)
                        break
                    except RuntimeError as error:
                        failed = self.running_pass
                        if failed is None or not is_out_of_memory(error):
                            raise
                    # out of the except block: the failed pass's tensors are freed with the error, and its gradients
                    # with the restore, before halving hands their memory back
                    if before is not None:
                        before.restore()
                    self.pass_size.halve(self.examples_in(failed), f"a training pass of {len(failed)} rows")
                upcoming, prepared = following[0] if following else self.next_batch(batches, ahead, prepare)
                total_loss += batch_loss
                log.update(loss=f"{total_loss / (batch_idx + 1):.4f}")
                if not step_now:
                    continue
                if self.clip_grad_norm:
                    self.loss_scaler.unscale_(self.optimizer)
                    clip_grad_norm_(self.model.parameters(), **self.clip_grad_norm)
                self.loss_scaler.step(self.optimizer)  # skipped, with a smaller scale after, when a gradient overflowed
                self.loss_scaler.update()
                self.optimizer.zero_grad()
                steps += 1
                if show_progress:
                    bar.set_postfix_str(f"loss {total_loss / (batch_idx + 1):.4f}")
                if batch_idx + 1 < len(train_data) and self.resume_point_due(steps):
                    self.save_resume_point(epoch_idx, batch_idx + 1, total_loss)
        finally:
            ahead.close()
        self.resume_batches = 0
        self.save_resume_point(epoch_idx, len(train_data), total_loss)
        self.model.fitter.log_truncation(self.logger)
        return total_loss


# Read here once the model has loaded; LLMTRSR.check_config checks them before any model of a comparison trains.
STEP_KEYS = {
    "gradient_accumulation_steps": NumberKey("a positive whole number", low=1, optional=True),
    "checkpoint_steps": NumberKey("a whole number of optimizer steps, 0 or more", optional=True),
    "checkpoint_seconds": NumberKey("a number of seconds, 0 or more", whole=False, optional=True),
}


def step_settings(config) -> tuple[int, int, float]:
    """(``gradient_accumulation_steps``, ``checkpoint_steps``, ``checkpoint_seconds``); ~ is 1, 0 (none), 0 (none)."""
    check_number_keys(config, STEP_KEYS)
    accumulation, steps, seconds = (config[key] for key in STEP_KEYS)
    return 1 if accumulation is None else accumulation, steps or 0, float(seconds or 0)


class BeforeBatch:
    """What a batch's passes change before the optimizer steps: the gradients (those of the earlier batches of an
    accumulated step) and the generators that dropout draws from. A batch that ran out of device memory runs again
    from here, as it would have run at the smaller pass size from the start."""

    def __init__(self, trained_weights):
        self.gradients = [(weight, None if weight.grad is None else weight.grad.clone()) for weight in trained_weights]
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []

    def restore(self) -> None:
        for weight, gradient in self.gradients:
            weight.grad = None if gradient is None else gradient.clone()  # kept whole for a further halving
        torch.set_rng_state(self.cpu_rng)
        if self.cuda_rng:
            torch.cuda.set_rng_state_all(self.cuda_rng)
