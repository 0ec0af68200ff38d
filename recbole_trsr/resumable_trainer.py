"""Resume points for RecBole's own trainers (SASRec, GRU4Rec, any model trained by RecBole's ``Trainer.fit``).

RecBole saves a checkpoint only when validation improves, and its ``resume_checkpoint`` goes on from that epoch with
fresh random states: an interrupted baseline loses the epochs after its best one, and a resumed run is another run.
A baseline on the full ``amazon`` data trains for hours on a CPU, so this keeps a resume point beside RecBole's
checkpoint, rewritten after each epoch's training and after each validation:

    <checkpoint_dir>/<Model>-<time>.pth        RecBole's checkpoint of the best epoch (what the test uses)
    <checkpoint_dir>/<Model>-<time>-last.pth   the resume point: weights, optimizer, early-stopping state and every
                                               rank's random states (torch, CUDA, numpy, Python, the batch order)

``--resume_from=<either file>`` goes on from the resume point and ends with the weights and metrics of an
uninterrupted run. The file holds only tensors and plain values, read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from recbole.trainer import Trainer
from recbole.utils import set_color

from recbole_trsr import distributed
from recbole_trsr.errors import UserInputError
from recbole_trsr.fit_progress import fit_progress, restore_fit_progress
from recbole_trsr.model.adapter_checkpoint import load_plain_state
from recbole_trsr.whole_files import replaced

LAST_SUFFIX = "-last.pth"
NO_CHECKPOINT = (
    "resume_from '{path}': no such checkpoint (an LLMTRSR run's folder <checkpoint_dir>/LLMTRSR-<time>, or another "
    "model's <checkpoint_dir>/<Model>-<time>-last.pth)"
)


def resume_point_of(checkpoint) -> Path:
    """The resume point that belongs to RecBole's checkpoint ``<Model>-<time>.pth`` (or is ``checkpoint`` itself)."""
    path = Path(checkpoint)
    return path if path.name.endswith(LAST_SUFFIX) else path.with_name(path.stem + LAST_SUFFIX)


def best_checkpoint_of(resume_point: Path) -> Path:
    return resume_point.with_name(resume_point.name[: -len(LAST_SUFFIX)] + ".pth")


def load_resume_point(checkpoint) -> dict:
    path = resume_point_of(checkpoint)
    if not path.is_file():
        raise UserInputError(
            f"resume_from '{checkpoint}': {path.name} is missing beside it; only runs that wrote it can resume"
        )
    return load_plain_state(path, "cpu")


def checkpoint_owner(checkpoint) -> tuple[str, str]:
    """(model, dataset) of the run that wrote ``checkpoint``: an LLMTRSR folder or a resume point (or the
    RecBole checkpoint beside it). A damaged file is a one-line error here, before any model trains."""
    path = Path(checkpoint)
    if path.is_dir():
        settings_file = path / "config.yaml"
        try:
            settings = yaml.safe_load(settings_file.read_text())
            return str(settings["model"]), str(settings["dataset"])
        except (OSError, yaml.YAMLError, TypeError, KeyError):
            raise UserInputError(f"resume_from '{checkpoint}': {settings_file} is missing or unreadable") from None
    if not path.is_file() and not resume_point_of(path).is_file():
        raise UserInputError(NO_CHECKPOINT.format(path=checkpoint))
    state = load_resume_point(path)
    return str(state["model"]), str(state["dataset"])


def resumable(trainer_class: type) -> type:
    """``trainer_class`` with resume points, when it trains through RecBole's ``Trainer.fit``; a trainer with a
    loop of its own (LLMTRSR's, which resumes itself, or RecBole's pre-training ones) is returned as it is."""
    if not issubclass(trainer_class, Trainer) or trainer_class.fit is not Trainer.fit:
        return trainer_class
    return type(f"Resumable{trainer_class.__name__}", (ResumableEpochs, trainer_class), {})


def can_resume(trainer_class: type) -> bool:
    """Resume points of ours, or a trainer that resumes itself (LLMTRSR's)."""
    own = trainer_class.resume_checkpoint is not Trainer.resume_checkpoint
    return own or resumable(trainer_class) is not trainer_class


# Random states, as tensors and plain values (torch.load with weights_only reads nothing else) ----------------


def random_states(train_data) -> dict:
    numpy_name, keys, position, has_gauss, gauss = np.random.get_state()
    python_version, python_state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [numpy_name, torch.from_numpy(keys.astype(np.int64)), int(position), int(has_gauss), float(gauss)],
        "python": [python_version, list(python_state), python_gauss],
        "batch_order": train_data.generator.get_state(),
    }


def restore_random_states(states: dict, train_data) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    numpy_name, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((numpy_name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    python_version, python_state, python_gauss = states["python"]
    random.setstate((python_version, tuple(python_state), python_gauss))
    train_data.generator.set_state(states["batch_order"])


class ResumableEpochs:
    """Mixed in before a RecBole trainer class by ``resumable``."""

    def __init__(self, config, model):
        super().__init__(config, model)
        self.pending_resume: dict | None = None  # applied when the first epoch of this run starts
        self.resumed_train_seconds = 0.0  # training time before the resume point, for the comparison's train_s
        self.writes_resume_points = False
        if config["resume_from"]:
            self.resume_checkpoint(config["resume_from"])

    @property
    def resume_point(self) -> Path:
        return resume_point_of(self.saved_model_file)

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        self.train_data, self.writes_resume_points = train_data, saved
        self.fit_started = time.perf_counter()

        def after_validation(epoch_idx, valid_score):
            # RecBole calls this after early stopping has counted this epoch; it stops when the count passes the limit
            if saved:
                self.save_resume_point(epoch_idx + 1, stopped=self.cur_step > self.stopping_step)
            if callback_fn:
                callback_fn(epoch_idx, valid_score)

        return super().fit(train_data, valid_data, verbose, saved, show_progress, after_validation)

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        pending, self.pending_resume = self.pending_resume, None
        if pending is not None:
            self.restore_rank_states(pending["random_states"], train_data, epoch_idx)
            if pending["trained_loss"] is not None:  # trained before the interruption; its validation comes next
                loss = pending["trained_loss"]
                return tuple(loss) if len(loss) > 1 else loss[0]
        loss = super()._train_epoch(train_data, epoch_idx, loss_func, show_progress)
        if self.writes_resume_points:
            self.save_resume_point(epoch_idx, trained_loss=loss)
        return loss

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        final = kwargs.pop("saved_model_file", self.saved_model_file)
        # RecBole saves the current weights as epoch -1 when a run starts past its last epoch: after a resume that
        # would put the last epoch's weights in place of the best one's.
        if epoch < 0 and os.path.exists(final):
            return
        if not self.config["single_spec"] and self.config["local_rank"] != 0:
            return  # RecBole's rule: the first process of each machine writes
        # Beside it, then renamed: a run stopped while saving (Ctrl-C, or a model's process stopped with its run)
        # keeps the previous best checkpoint whole, which its resume tests.
        with replaced(final) as staging:
            super()._save_checkpoint(epoch, False, saved_model_file=staging, **kwargs)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {final}")

    def save_resume_point(self, epoch: int, trained_loss=None, stopped: bool = False) -> None:
        """``epoch``: the next epoch to train, or with ``trained_loss`` the epoch just trained and not yet validated."""
        states = distributed.everyone(random_states(self.train_data))  # each rank draws its own dropout masks
        if not distributed.writes_checkpoints(self.config):
            return  # the ranks hold the same weights: one copy per machine
        losses = trained_loss if isinstance(trained_loss, tuple) else (trained_loss,)
        state = {
            "model": self.config["model"],
            "dataset": self.config["dataset"],
            "epoch": epoch,
            "trained_loss": None if trained_loss is None else [float(loss) for loss in losses],
            **fit_progress(self, stopped),
            "state_dict": self.model.state_dict(),
            "other_parameter": self.model.other_parameter(),
            "optimizer": self.optimizer.state_dict(),
            "random_states": states,
        }
        with replaced(self.resume_point) as staging:  # a run killed while saving keeps the previous one whole
            torch.save(state, staging)

    def resume_checkpoint(self, resume_file):
        """Go on from the resume point of ``resume_file``, writing into the interrupted run's files."""
        path = resume_point_of(resume_file)
        state = load_resume_point(path)
        if (state["model"], state["dataset"]) != (self.config["model"], self.config["dataset"]):
            raise UserInputError(
                f"resume_from '{resume_file}' is a checkpoint of {state['model']} on '{state['dataset']}', "
                f"not of {self.config['model']} on '{self.config['dataset']}'"
            )
        try:
            self.model.load_state_dict(state["state_dict"])
            self.model.load_other_parameter(state["other_parameter"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, KeyError, ValueError) as error:
            detail = str(error).strip().splitlines()[-1].strip() if str(error).strip() else type(error).__name__
            raise UserInputError(
                f"resume_from '{resume_file}' does not fit this model (other settings or another subset?): {detail}"
            ) from None
        self.start_epoch = self.epochs if state["stopped"] else state["epoch"]
        restore_fit_progress(self, state)
        self.pending_resume = state
        self.saved_model_file = str(best_checkpoint_of(path))
        done = "stopped early" if state["stopped"] else f"at epoch {self.start_epoch}"
        self.logger.info(f"Resuming {path} {done}")

    def restore_rank_states(self, saved: list, train_data, epoch_idx: int) -> None:
        """This rank's saved states; when the save had another number of ranks, the shared ones and fresh dropout."""
        ranks = distributed.current()
        if len(saved) == ranks.size:
            restore_random_states(saved[ranks.rank], train_data)
            return
        # numpy's and Python's generators and the batch order are alike on every rank: any rank's will do
        self.logger.warning(
            f"the resume point was saved by {len(saved)} ranks, this run has {ranks.size}: dropout masks are drawn "
            "afresh from the seed (the weights, batches and negatives go on from the resume point)"
        )
        restore_random_states(saved[0], train_data)
        distributed.seed_dropout(self.config["seed"] + epoch_idx)
