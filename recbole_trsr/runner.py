"""Train and test several models on one dataset, one split and the same sampled test candidates."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import pandas as pd
import torch
from recbole.data import create_dataset, data_preparation
from recbole.data.dataloader import FullSortEvalDataLoader
from recbole.utils import get_trainer, init_logger

from recbole_trsr import distributed
from recbole_trsr.candidates import CandidateLog
from recbole_trsr.comparison import Row, comparison_settings
from recbole_trsr.config import TRSRConfig
from recbole_trsr.datasets import check_dataset_files
from recbole_trsr.distributed_trainer import split_across_ranks
from recbole_trsr.errors import UserInputError, first_line
from recbole_trsr.memory import PeakMemory
from recbole_trsr.model.adapter_checkpoint import LAST, check_resume_folder, load_trainer_state
from recbole_trsr.model.retriever import NO_RETRIEVER, check_retriever_checkpoint, full_ranking
from recbole_trsr.model_list import model_variant
from recbole_trsr.parallel_models import groups_by_model, run_side_by_side_models, side_by_side
from recbole_trsr.per_user import PerUserMetrics
from recbole_trsr.registry import get_model_class, plugin_model_names
from recbole_trsr.resumable_trainer import can_resume, checkpoint_owner, resumable
from recbole_trsr.seeding import seed_everything
from recbole_trsr.subset import apply_user_subset
from recbole_trsr.summary.share import processes
from recbole_trsr.tie_break import ties_broken
from recbole_trsr.user_budget import check_user_budgets, restrict_evaluation
from recbole_trsr.whole_files import writable_folder

RANDOM_BASELINE = "RandomRank"


@dataclass
class ModelRun:
    """What one model's run produced, for the comparison table."""

    model: str
    test_result: dict
    best_valid_result: dict | None
    train_seconds: float
    epochs: int
    test_seconds: float
    test_users: int
    peak_rss_mb: float
    peak_cuda_mb: float
    checkpoint: str
    candidates: CandidateLog = field(repr=False)
    config: TRSRConfig = field(repr=False)
    train_users: int = 0
    train_examples: int = 0
    per_user: pd.DataFrame | None = field(default=None, repr=False)

    def row(self) -> Row:
        """This run as a line of the comparison."""
        facts = {
            "train_users": self.train_users,
            "train_examples": self.train_examples,
            "train_s": round(self.train_seconds, 1),
            "epochs": self.epochs,
            "s_per_epoch": round(self.train_seconds / self.epochs, 1) if self.epochs else None,
            "test_users": self.test_users,
            "test_s": round(self.test_seconds, 1),
            "test_ms_per_user": round(1000 * self.test_seconds / max(self.test_users, 1), 2),
            "peak_rss_mb": round(self.peak_rss_mb),
            "peak_cuda_mb": round(self.peak_cuda_mb) if self.peak_cuda_mb else None,
            "candidates": self.candidates.digest(),
        }
        return Row(self.model, is_baseline(self.config), self.per_user, facts)


def is_baseline(config) -> bool:
    """A reference for the paired tests: RecBole's models, and plugin models without an LLM that say so."""
    return config["model"] not in plugin_model_names() or getattr(config.model_class, "comparison_baseline", False)


def start_model_logger(config) -> None:
    """RecBole's init_logger, once per model: its basicConfig call is a no-op while handlers remain."""
    # RecBole makes its folders with exists-then-makedirs: ranks started together race there, and the loser fails
    for folder in (os.path.join("log", config["model"]), config["checkpoint_dir"]):
        os.makedirs(folder, exist_ok=True)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    init_logger(config)


def trainer_class_of(config) -> type:
    return resumable(get_trainer(config["MODEL_TYPE"], config["model"]))


def resume_paths(value) -> list[str]:
    """``resume_from`` as a list of checkpoints: one path, or a list of them (one per model to resume)."""
    if value is None:
        return []
    paths = [str(path) for path in value] if isinstance(value, (list, tuple)) else [str(value)]
    if len(set(paths)) != len(paths):
        raise UserInputError(f"resume_from names a checkpoint twice: {paths}")
    return paths


def check_resume_from(config) -> None:
    """``resume_from`` names checkpoints, each of one model: this entry keeps the one of its model, if any (the
    others' entries train afresh); run_comparison checks that each checkpoint is left to exactly one entry."""
    config.resume_from_given = resume_paths(config["resume_from"])
    mine = []
    for path in config.resume_from_given:
        model, dataset = checkpoint_owner(path)
        if model != config["model"]:
            continue
        if dataset != config["dataset"]:
            raise UserInputError(
                f"resume_from '{path}' is a checkpoint of {model} on '{dataset}', not on '{config['dataset']}'"
            )
        mine.append(path)
    if len(mine) > 1:
        raise UserInputError(
            f"resume_from names {len(mine)} checkpoints of {config['model']} ({', '.join(mine)}); "
            "resume each in a run of its own and join the tables with --add_to"
        )
    config["resume_from"] = mine[0] if mine else None
    if not mine:
        return
    path = mine[0]
    trainer_class = trainer_class_of(config)
    if not can_resume(trainer_class):
        raise UserInputError(
            f"resume_from '{path}': {config['model']}'s trainer ({trainer_class.__name__}) cannot resume"
        )
    # checkpoint_owner read a resume point file whole, so a damaged one has failed already; of LLMTRSR's folder it
    # read only the config, so its trainer state is read now, not after the model loads
    if os.path.isdir(path):
        load_trainer_state(check_resume_folder(path) / LAST, "cpu")


def check_checkpoint_paths(config) -> None:
    """Paths a model reads only after minutes of work are checked before any model trains."""
    if config["resume_from"]:
        check_resume_from(config)
    if config["retriever_checkpoint"]:
        check_retriever_checkpoint(config["retriever_checkpoint"])


def build_config(model_name, dataset, config_files=None, overrides=None) -> TRSRConfig:
    """The config of one ``--model`` entry: a model name, optionally with its own ``[key=value;...]``."""
    model_name, own_settings = model_variant(model_name)
    overrides = {**(overrides or {}), **own_settings}
    config = TRSRConfig(get_model_class(model_name), dataset, config_files, overrides)
    check_dataset_files(config)
    if hasattr(config.model_class, "check_config"):  # what a plugin model reads after minutes of other work
        config.model_class.check_config(config)
    check_checkpoint_paths(config)
    apply_user_subset(config)
    check_user_budgets(config)
    comparison_settings(config)
    return config


def prepare_data(config, dataset):
    """RecBole's data_preparation, with validation and test restricted to the run's ``eval_users``."""
    build = dataset.build
    dataset.build = lambda: restrict_evaluation(config, build())
    try:
        return data_preparation(config, dataset)
    finally:
        del dataset.build  # the class's method again


def training_size(train_data) -> tuple[int, int]:
    """(users, examples) of a training split: an example is one target with its history (negatives aside)."""
    split = train_data._dataset
    return int(torch.unique(split.inter_feat[split.uid_field]).numel()), len(split)


def run_model(config: TRSRConfig, label: str | None = None) -> ModelRun:
    """RecBole's run_recbole for one config, timed, with the test candidates recorded."""
    seed_everything(config)
    start_model_logger(config)
    logger = logging.getLogger()
    logger.debug(config)  # the whole config: the log file has it at DEBUG, the console stays readable
    with PeakMemory() as memory:
        dataset = create_dataset(config)
        logger.info(dataset)
        train_data, valid_data, test_data = prepare_data(config, dataset)
        seed_everything(config)  # every rank draws one process's batches
        distributed.seed_dropout(config["seed"])
        model = built_model(config, train_data._dataset, label)
        logger.debug(model)
        trainer = split_across_ranks(trainer_class_of(config))(config, model)

        started = time.perf_counter()
        _, best_valid_result = trainer.fit(train_data, valid_data, saved=True, show_progress=config["show_progress"])
        # a resumed run adds the training time before its resume point
        train_seconds = time.perf_counter() - started + getattr(trainer, "resumed_train_seconds", 0.0)

        # RecBole draws test negatives from numpy's global state while it iterates; re-seeding here gives
        # every model the same candidates, whatever its training consumed.
        seed_everything(config)
        log = CandidateLog(dataset, sampled=not isinstance(test_data, FullSortEvalDataLoader))
        per_user = PerUserMetrics(dataset)
        started = time.perf_counter()
        with log.recording(trainer), per_user.recording(trainer), ties_broken(trainer, dataset, config["seed"]):
            test_result = trainer.evaluate(
                test_data,
                load_best_model=os.path.exists(trainer.saved_model_file),
                show_progress=config["show_progress"],
            )
        test_seconds = time.perf_counter() - started
    logger.info(f"test result: {dict(test_result)}")
    epochs = len(trainer.train_loss_dict)
    learned = epochs or is_baseline(config)  # CountRank counts over the training split without an epoch
    train_users, train_examples = training_size(train_data) if learned else (0, 0)
    return ModelRun(
        model=label or config["model"],
        test_result=dict(test_result),
        best_valid_result=dict(best_valid_result) if best_valid_result else None,
        train_seconds=train_seconds,
        epochs=epochs,
        test_seconds=test_seconds,
        test_users=test_data.sample_size,
        peak_rss_mb=memory.rss_mb,
        peak_cuda_mb=memory.cuda_mb,
        checkpoint=trainer.saved_model_file,
        candidates=log,
        config=config,
        train_users=train_users,
        train_examples=train_examples,
        per_user=per_user.frame(trainer.evaluator) if distributed.current().first else None,  # rank 0 collects
    )


class ModelBuildFailed(UserInputError):
    """A model of the comparison that its settings cannot build, found once the models before it have run."""


def built_model(config: TRSRConfig, dataset, label: str | None):
    """The model of ``config`` on its device. RecBole's models read their hyper-parameters only here, after the
    models before them in ``--model`` have trained: ``SASRec[hidden_size=abc]`` was a traceback that told neither
    which entry failed nor how to keep the rows so far."""
    try:
        return config.model_class(config, dataset).to(config["device"])
    except UserInputError as error:
        raise ModelBuildFailed(str(error)) from error
    except (TypeError, ValueError, KeyError) as error:
        name = label or config["model"]
        raise ModelBuildFailed(
            f"{name} cannot be built from its settings ({type(error).__name__}: {first_line(error)})"
        ) from error


def check_one_resumes(entries) -> None:
    """A ``resume_from`` checkpoint goes on in exactly one entry of the run: the one of its model."""
    for path in {path for _, config in entries for path in getattr(config, "resume_from_given", [])}:
        resuming = [name for name, config in entries if config["resume_from"] == path]
        if not resuming:
            model, _ = checkpoint_owner(path)
            raise UserInputError(f"resume_from '{path}' is a checkpoint of {model}, which is not in --model")
        if len(resuming) > 1:
            raise UserInputError(
                f"resume_from '{path}' fits {len(resuming)} entries of --model ({', '.join(resuming)}); "
                "resume the interrupted one alone and add it to the table with --add_to"
            )


def retriever_needed(config) -> str | None:
    """The model whose checkpoint this config still waits for (LLMTRSR's retriever under full ranking)."""
    if config["retriever"] and not config["retriever_checkpoint"] and full_ranking(config):
        return config["retriever"]
    return None


def run_comparison(
    model_names, dataset, config_files=None, overrides=None, on_run=None, debug: bool = False
) -> list[ModelRun]:
    """Run every model (plus the random ranking) and return their runs in the order named, the random row last.

    All configs are built and all files checked before the first model trains, so a typo in the last
    model's name does not cost the first model's training. The random ranking runs first: it takes seconds,
    and its candidates are every other row's. A retriever that another model of the run reranks is trained
    next, and its checkpoint is handed on. The others run one after another, or under ``parallel_models`` in
    processes of their own at the same time. ``on_run(runs so far)`` is called as each model finishes.
    """
    names = list(dict.fromkeys(entry.strip() for entry in model_names))
    if RANDOM_BASELINE not in names:
        names.append(RANDOM_BASELINE)
    entries = [(name, build_config(name, dataset, config_files, overrides)) for name in names]
    check_one_resumes(entries)
    for _, config in entries:
        if processes(config)[1] != distributed.current().size:
            raise UserInputError(
                f"world_size {processes(config)[1]}: this process is not one of that many ranks; "
                "run_recbole_trsr.py --nproc=N starts them"
            )
    for folder in {config["checkpoint_dir"] for _, config in entries}:
        # RecBole makes it when the model's trainer is built: after the data and, in a comparison, other models
        writable_folder(folder, f"checkpoint_dir '{folder}' cannot be made a writable folder")
    retrievers = {retriever_needed(config) for _, config in entries} - {None}
    for retriever in retrievers:
        get_model_class(retriever)  # an unknown name is that error, not advice to add it to --model
        if retriever not in names:  # only the plain retriever: a variant is another model
            raise UserInputError(NO_RETRIEVER.format(retriever=retriever))
    entries.sort(key=lambda entry: (entry[0] != RANDOM_BASELINE, entry[0] not in retrievers))
    first = [entry for entry in entries if entry[0] == RANDOM_BASELINE or entry[0] in retrievers]
    rest = [entry for entry in entries if entry not in first]
    together = side_by_side(dict(entries)[RANDOM_BASELINE]) and len(groups_by_model(rest)) > 1
    runs = []

    def finished(new_runs):
        runs.extend(new_runs)
        runs.sort(key=lambda run: names.index(run.model))
        if on_run:
            on_run(runs)

    for name, config in first if together else entries:
        hand_on_retriever(config, runs)
        finished([run_model(config, label=name)])
    if together:
        for _, config in rest:
            hand_on_retriever(config, runs)
        run_side_by_side_models(rest, run_model, finished, debug=debug)
    return runs


def hand_on_retriever(config, runs: list[ModelRun]) -> None:
    """The checkpoint of the retriever that ``config`` reranks, from the runs so far (the retriever ran first)."""
    retriever = retriever_needed(config)
    if retriever:
        config["retriever_checkpoint"] = next(run.checkpoint for run in runs if run.model == retriever)
