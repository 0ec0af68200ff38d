"""Any RecBole trainer on several ranks, with the batches, candidates and metrics of one process.

Every rank iterates the same loader, so the same seed gives every rank the same batches, negatives and test
candidates that one process draws. In training each rank takes a contiguous share of each batch's rows; its loss
is weighted by that share so that DistributedDataParallel's average is the gradient of the whole batch (RecBole's
own hook: a pass through the DDP module before each backward). In evaluation each rank scores a contiguous share
of the batches; rank 0 gathers the scores and replays every batch through RecBole's collector and evaluator in
one process's order, so the metrics are one process's metrics. The first process of each machine writes the
checkpoints there.
"""

from __future__ import annotations

import contextlib
import os

import torch
from torch.nn.parallel import DistributedDataParallel

from recbole_trsr import distributed


@contextlib.contextmanager
def instance_attribute(obj, name: str, value):
    """``obj.name = value`` within the block; afterwards the instance attribute it had, or none (the class's)."""
    had, old = name in vars(obj), vars(obj).get(name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        if had:
            setattr(obj, name, old)
        else:
            vars(obj).pop(name, None)


def loader_yielding(loader, batches, length: int):
    """A copy of ``loader`` whose iteration is ``batches()``; still a ``type(loader)``, which RecBole's evaluate
    checks to pick full ranking or sampled candidates."""
    cls = type(loader)
    yielding = type(
        f"Yielding{cls.__name__}", (cls,), {"__iter__": lambda self: batches(), "__len__": lambda self: length}
    )
    copy = object.__new__(yielding)
    copy.__dict__.update(loader.__dict__)
    return copy


def stored_batches(loader, batches: list):
    """``loader`` that yields ``batches`` (already collated) instead of collating again."""
    return loader_yielding(loader, lambda: iter(batches), len(batches))


class NoCollection:
    """Collector and evaluator of a rank's own scoring pass: rank 0 collects every batch afterwards."""

    def eval_batch_collect(self, *args):
        pass

    def model_collect(self, model):
        pass

    def get_data_struct(self):
        return None

    def evaluate(self, struct):
        return {}


class SplitAcrossRanks:
    """Mixed in before a RecBole trainer class by ``split_across_ranks``. The trainer class may say
    ``splits_batches = True`` (its own _train_epoch takes its share of each batch: LLMTRSRTrainer) or
    ``splits_evaluation = False`` (every rank scores every batch: RandomRank, whose scores follow one generator).
    """

    def __init__(self, config, model):
        super().__init__(config, model)
        self.ranks = distributed.current()
        self.trainable = [parameter for parameter in self.model.parameters() if parameter.requires_grad]
        if self.trainable:  # DDP refuses a model with nothing to train
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.distributed_model = DistributedDataParallel(self.model, device_ids=ids)
        # RecBole names the checkpoint by the second it was made: every rank uses rank 0's name, in its own
        # machine's checkpoint_dir (a resumed run's folder stays where it was given).
        folder, name = os.path.split(self.saved_model_file)
        name = distributed.from_first(name)
        if os.path.abspath(folder) == os.path.abspath(self.checkpoint_dir):
            self.saved_model_file = os.path.join(folder, name)

    # Training -------------------------------------------------------------------------------------------

    def zero_loss(self):
        """A zero that reaches every trained parameter, so that each one takes part in the gradient average."""
        return sum((parameter.sum() * 0 for parameter in self.trainable), torch.zeros((), device=self.device))

    @contextlib.contextmanager
    def gradient_average(self, now: bool = True):
        """Around one backward: with ``now``, DDP averages the gradients (those accumulated before too) over the
        ranks, and the loss must add the yielded zero; otherwise they accumulate on this rank."""
        if not self.trainable:
            yield 0.0
        elif now:
            self.set_reduce_hook()  # RecBole's: a pass through the DDP module arms its reducer for this backward
            yield self.zero_loss()
        else:
            with self.distributed_model.no_sync():
                yield 0.0

    def batch_share(self, interaction):
        """(this rank's rows of a training batch, their loss weight): DDP divides the sum by the ranks."""
        rows = self.ranks.share(len(interaction))
        return interaction[torch.arange(rows.start, rows.stop)], len(rows) * self.ranks.size / len(interaction)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.ranks.size == 1 or getattr(self, "splits_batches", False) or not self.trainable:
            return super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        loss_func = loss_func or self.model.calculate_loss

        def share_loss(interaction):
            # RecBole's loop calls backward on what this returns, once per batch
            self.set_reduce_hook()
            part, weight = self.batch_share(interaction)
            if not len(part):
                return self.zero_loss()
            losses = loss_func(part)
            if isinstance(losses, tuple):
                return tuple(loss * weight for loss in losses[:-1]) + (losses[-1] * weight + self.zero_loss(),)
            return losses * weight + self.zero_loss()

        return super()._train_epoch(train_data, epoch_idx, share_loss, show_progress)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        result = super().fit(train_data, valid_data, verbose, saved, show_progress, callback_fn)
        distributed.barrier()  # the best checkpoint is on each machine's disk before any rank loads it for the test
        return result

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        if distributed.writes_checkpoints(self.config):
            super()._save_checkpoint(epoch, verbose, **kwargs)

    # Evaluation -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if self.ranks.size == 1 or not getattr(self, "splits_evaluation", True) or not eval_data:
            return super().evaluate(eval_data, load_best_model, model_file, show_progress)
        batches = list(eval_data)  # each rank draws every batch's candidates, in one process's order
        mine = self.ranks.share(len(batches))
        outputs = []
        with self.recording_scores(outputs), self.not_collecting():
            super().evaluate(
                stored_batches(eval_data, batches[mine.start : mine.stop]), load_best_model, model_file, show_progress
            )
        gathered = distributed.gather_to_first(outputs)
        result = None
        if self.ranks.first:
            with self.replaying_scores([output for rank_outputs in gathered for output in rank_outputs]):
                result = super().evaluate(stored_batches(eval_data, batches), load_best_model=False)
        return distributed.from_first(result)

    SCORING = ("predict", "full_sort_predict")

    @contextlib.contextmanager
    def recording_scores(self, outputs: list):
        """Each scoring call of the block, as (method name, scores), in order."""

        def recording(name, method):
            def recorded(interaction):
                scores = method(interaction)
                outputs.append((name, scores.detach().cpu()))  # gloo sends CPU tensors
                return scores

            return recorded

        with contextlib.ExitStack() as stack:
            for name in self.SCORING:
                stack.enter_context(instance_attribute(self.model, name, recording(name, getattr(self.model, name))))
            yield

    @contextlib.contextmanager
    def replaying_scores(self, recorded: list):
        """The block's scoring calls answer with ``recorded``, in order. A model without full_sort_predict raised
        NotImplementedError when it was recorded and RecBole scored with predict: so it does again here."""
        upcoming = [0]

        def replay(interaction, name):
            recorded_name, scores = recorded[upcoming[0]]
            if recorded_name != name:
                raise NotImplementedError(name)
            upcoming[0] += 1
            return scores.to(self.device)

        with contextlib.ExitStack() as stack:
            for name in self.SCORING:
                stack.enter_context(
                    instance_attribute(self.model, name, lambda interaction, name=name: replay(interaction, name))
                )
            # Nothing is scored: no prompts to build ahead either (LLMTRSRTrainer's prompt_prefetch).
            stack.enter_context(instance_attribute(self, "prefetch_prompts", False))
            yield

    @contextlib.contextmanager
    def not_collecting(self):
        with (
            instance_attribute(self, "eval_collector", NoCollection()),
            instance_attribute(self, "evaluator", NoCollection()),
        ):
            yield


def split_across_ranks(trainer_class: type) -> type:
    """``trainer_class`` for the ranks of this process's group (itself in one process)."""
    if distributed.current().size == 1:
        return trainer_class
    return type(f"Distributed{trainer_class.__name__}", (SplitAcrossRanks, trainer_class), {})
