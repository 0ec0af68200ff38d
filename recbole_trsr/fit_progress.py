"""What RecBole's fit loop knows of a run (early stopping's count, the best score, the losses, the time spent, the
settings), as plain values for a resume point, and back. Both resumable trainers keep it: LLMTRSR's and RecBole's
own."""

from __future__ import annotations

import time

from recbole_trsr.model.adapter_checkpoint import plain

# Keys that say where a run keeps its files, how it shows progress or how fast it works, not what it learns: free to
# differ between an interrupted run and its resumption. Any other key that differs is named in a warning.
FREE_SETTINGS = frozenset(
    {
        "resume_from",
        "checkpoint_dir",
        "output_dir",
        "data_path",
        "summary_store",
        "llm_cache_dir",
        "summarizer_llm_cache_dir",
        "show_progress",
        "state",
        "checkpoint_seconds",
        "checkpoint_steps",
        "eval_batch_size",
        "summary_batch_size",
        "train_examples_per_pass",
        "prompt_prefetch",
        "parallel_models",
        "summary_server_concurrency",
        "summary_share_timeout",
        "device",
        "gpu_id",
        "use_gpu",
        "worker",
        "nproc",
        "world_size",
        "offset",
        "local_rank",
        "single_spec",
        "ip",
        "port",
        "ddp_timeout",
        "log_wandb",
        "wandb_project",
        "metric_decimal_place",
        "loss_decimal_place",
        "significance_metrics",
        "bootstrap_resamples",
        "save_dataset",
        "save_dataloaders",
        "dataset_save_path",
        "dataloaders_save_path",
    }
)


def settings_of(config) -> dict:
    return {key: plain(value) for key, value in config.final_config_dict.items() if key not in FREE_SETTINGS}


def changed_settings(saved: dict | None, config) -> list[str]:
    """``key saved -> now`` for each setting that differs from the interrupted run's (none for a resume point
    written before settings were kept)."""
    if saved is None:
        return []
    now = settings_of(config)
    return [
        f"{key} {saved.get(key)!r} -> {now.get(key)!r}"
        for key in sorted(set(saved) | set(now))
        if key not in FREE_SETTINGS and saved.get(key) != now.get(key)
    ]


def fit_progress(trainer, stopped: bool) -> dict:
    """``stopped``: early stopping ended the run, so a resume goes straight to the test."""
    return {
        "stopped": stopped,
        "cur_step": trainer.cur_step,
        "best_valid_score": float(trainer.best_valid_score),
        "best_valid_result": {k: float(v) for k, v in (trainer.best_valid_result or {}).items()},
        "train_loss_dict": {int(k): float(v) for k, v in trainer.train_loss_dict.items()},
        "train_seconds": trainer.resumed_train_seconds + time.perf_counter() - trainer.fit_started,
        "settings": settings_of(trainer.config),
    }


def restore_fit_progress(trainer, state: dict) -> None:
    """Where the interrupted run was; a warning names the settings that differ from its own, since the resumed run
    then ends as neither run would have uninterrupted (an optimizer state keeps the old learning rate, say)."""
    if changed := changed_settings(state.get("settings"), trainer.config):
        trainer.logger.warning(
            f"resume_from '{trainer.config['resume_from']}': settings differ from the interrupted run's "
            f"({'; '.join(changed)}): the result will be neither run's"
        )
    trainer.cur_step, trainer.best_valid_score = state["cur_step"], state["best_valid_score"]
    trainer.best_valid_result = state["best_valid_result"] or None
    trainer.train_loss_dict = dict(state["train_loss_dict"])
    trainer.resumed_train_seconds = float(state.get("train_seconds", 0.0))  # absent from older resume points
