"""What RecBole's fit loop knows of a run (early stopping's count, the best score, the losses, the time spent), as
plain values for a resume point, and back. Both resumable trainers keep it: LLMTRSR's and RecBole's own."""

from __future__ import annotations

import time


def fit_progress(trainer, stopped: bool) -> dict:
    """``stopped``: early stopping ended the run, so a resume goes straight to the test."""
    return {
        "stopped": stopped,
        "cur_step": trainer.cur_step,
        "best_valid_score": float(trainer.best_valid_score),
        "best_valid_result": {k: float(v) for k, v in (trainer.best_valid_result or {}).items()},
        "train_loss_dict": {int(k): float(v) for k, v in trainer.train_loss_dict.items()},
        "train_seconds": trainer.resumed_train_seconds + time.perf_counter() - trainer.fit_started,
    }


def restore_fit_progress(trainer, state: dict) -> None:
    trainer.cur_step, trainer.best_valid_score = state["cur_step"], state["best_valid_score"]
    trainer.best_valid_result = state["best_valid_result"] or None
    trainer.train_loss_dict = dict(state["train_loss_dict"])
    trainer.resumed_train_seconds = float(state.get("train_seconds", 0.0))  # absent from older resume points
