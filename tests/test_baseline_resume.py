"""RecBole's own models resume an interrupted run from their last resume point and end where an uninterrupted run
ends: the same weights, epochs and test metrics. Bad resume_from values end in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from recbole.trainer import Trainer

from recbole_trsr import safe_pickle
from recbole_trsr.resumable_trainer import resume_point_of
from recbole_trsr.runner import build_config, run_comparison, run_model
from tests.conftest import as_arguments

# Dropout on (SASRec's defaults), so that a resume that lost torch's generator state would end elsewhere.
SETTINGS = {"epochs": "4", "stopping_step": "10"}
# Weights are compared up to float rounding. On 2 threads a process's first training can round differently from
# its later ones: 1e-7 apart after the first epoch in 3 of 100 fresh processes, never between later runs (0 of 62)
# nor on 1 thread (0 of 39). A resume that lost its random states ends 5e-3 away.
ROUNDING = 1e-6


def settings(tiny_overrides: dict, folder: str) -> dict:
    return {**tiny_overrides, **SETTINGS, "checkpoint_dir": str(Path(tiny_overrides["checkpoint_dir"]) / folder)}


def best_weights(run) -> dict:
    return torch.load(run.checkpoint, map_location="cpu", weights_only=False, pickle_module=safe_pickle)["state_dict"]


def last_weights(run) -> dict:
    return torch.load(resume_point_of(run.checkpoint), map_location="cpu", weights_only=True)["state_dict"]


def assert_same_run(resumed, uninterrupted) -> None:
    assert resumed.epochs == uninterrupted.epochs
    assert resumed.test_result == uninterrupted.test_result
    assert resumed.per_user.equals(uninterrupted.per_user)
    # the best epoch's weights (the test's) and the last epoch's, whichever epoch validation picked
    for weights in (best_weights, last_weights):
        a, b = weights(resumed), weights(uninterrupted)
        assert a.keys() == b.keys()
        assert all(torch.allclose(a[key], b[key], rtol=0, atol=ROUNDING) for key in a)


class Killed(Exception):
    pass


def killed_at(monkeypatch, method: str, epoch: int) -> None:
    """RecBole's ``Trainer.<method>`` stops ``epoch`` as a killed process would: training after two of its batches
    (whose batches, negatives and dropout masks were drawn), validation at its start."""
    original = getattr(Trainer, method)
    seen = {"epochs": 0, "batches": 0}

    def dying(self, data, epoch_idx=None, loss_func=None, show_progress=False):
        if seen["epochs"] < epoch:
            seen["epochs"] += 1
            return (
                original(self, data, epoch_idx, loss_func, show_progress)
                if epoch_idx is not None
                else original(self, data, show_progress=show_progress)
            )
        if method == "_valid_epoch":
            raise Killed

        def loss_then_killed(interaction):
            seen["batches"] += 1
            if seen["batches"] > 2:
                raise Killed
            return self.model.calculate_loss(interaction)

        return original(self, data, epoch_idx, loss_then_killed, show_progress)

    monkeypatch.setattr(Trainer, method, dying)


@pytest.mark.parametrize("method", ["_train_epoch", "_valid_epoch"])
def test_an_interrupted_baseline_resumes_to_the_run_it_would_have_been(monkeypatch, tiny_overrides, method, capsys):
    uninterrupted = run_model(build_config("SASRec", "tiny", [], settings(tiny_overrides, "whole")))
    with monkeypatch.context() as patch:
        killed_at(patch, method, epoch=2)
        with pytest.raises(Killed):
            run_model(build_config("SASRec", "tiny", [], settings(tiny_overrides, "killed")))
    (checkpoint,) = (Path(tiny_overrides["checkpoint_dir"]) / "killed").glob("SASRec-*-last.pth")
    # Killed in training: it goes on from the second epoch's validation; in validation, from the trained epoch.
    resumed = run_comparison(
        ["SASRec", "GRU4Rec"], "tiny", overrides={**settings(tiny_overrides, "killed"), "resume_from": str(checkpoint)}
    )
    assert_same_run(resumed[0], uninterrupted)
    assert resumed[0].checkpoint == str(checkpoint).replace("-last.pth", ".pth")  # the interrupted run's files
    assert resumed[1].model == "GRU4Rec" and resumed[1].epochs == 4  # the other model trained afresh
    assert "settings differ" not in capsys.readouterr().err  # RecBole's logger writes its warnings there


@pytest.mark.parametrize("together", ["False", "True"])
def test_models_interrupted_together_resume_in_one_run(monkeypatch, tiny_overrides, together):
    # Under parallel_models several models train at once, so a stopped run leaves several resume points.
    models = ["SASRec", "GRU4Rec"]
    uninterrupted = {
        model: run_model(build_config(model, "tiny", [], settings(tiny_overrides, "whole"))) for model in models
    }
    killed = settings(tiny_overrides, "killed")
    for model, epoch in zip(models, (1, 2), strict=True):
        with monkeypatch.context() as patch:
            killed_at(patch, "_train_epoch", epoch=epoch)
            with pytest.raises(Killed):
                run_model(build_config(model, "tiny", [], killed))
    checkpoints = [str(next(Path(killed["checkpoint_dir"]).glob(f"{model}-*-last.pth"))) for model in models]
    overrides = {**killed, "resume_from": str(checkpoints[::-1]), "parallel_models": together}
    resumed = run_comparison(models, "tiny", overrides=overrides)
    # side by side, each model's process has half the threads: its float sums run in another order (about 1e-9,
    # within ROUNDING)
    for run, checkpoint in zip(resumed[:2], checkpoints, strict=True):
        assert run.checkpoint == checkpoint.replace("-last.pth", ".pth")  # went on in the interrupted run's files
        assert_same_run(run, uninterrupted[run.model])


def test_a_run_stopped_while_saving_its_best_epoch_keeps_the_last_best_whole(monkeypatch, tiny_overrides):
    scores = iter([0.1, 0.2, 0.3, 0.4])  # every epoch better: each validation saves the best checkpoint

    def rising(self, valid_data, show_progress=False):
        score = next(scores)
        return score, {"ndcg@10": score}

    save, best_saves = torch.save, []

    def stopped_in_the_second_best_save(state, path, *args, **kwargs):
        if "-last" not in str(path):  # RecBole's best checkpoint, not a resume point
            best_saves.append(path)
            if len(best_saves) == 2:  # as a process killed while writing: the file is cut short
                Path(path).write_bytes(b"PK\x03\x04 cut short")
                raise Killed
        return save(state, path, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_valid_epoch", rising)
    monkeypatch.setattr(torch, "save", stopped_in_the_second_best_save)
    with pytest.raises(Killed):
        run_model(build_config("SASRec", "tiny", [], settings(tiny_overrides, "cut")))
    (best,) = (Path(tiny_overrides["checkpoint_dir"]) / "cut").glob("SASRec-*[0-9].pth")
    assert torch.load(best, map_location="cpu", weights_only=False, pickle_module=safe_pickle)["epoch"] == 0


def test_a_run_that_stopped_early_does_not_train_on_after_a_resume(monkeypatch, tiny_overrides):
    scores = iter([0.5, 0.4, 0.3])  # worse after the first epoch: stopping_step 0 stops at the second

    def falling(self, valid_data, show_progress=False):
        score = next(scores)
        return score, {"ndcg@10": score}

    monkeypatch.setattr(Trainer, "_valid_epoch", falling)
    stopped = run_model(build_config("SASRec", "tiny", [], {**settings(tiny_overrides, "a"), "stopping_step": "0"}))
    assert stopped.epochs == 2
    best = Path(stopped.checkpoint).read_bytes()
    resumed = run_model(
        build_config("SASRec", "tiny", [], {**settings(tiny_overrides, "a"), "resume_from": stopped.checkpoint})
    )
    assert resumed.epochs == 2 and resumed.test_result == stopped.test_result
    # train_s counts the training before the resume point: nearly all of the stopped run's (only its end follows)
    assert resumed.train_seconds >= 0.8 * stopped.train_seconds
    assert Path(stopped.checkpoint).read_bytes() == best  # the best epoch's weights, not the last epoch's


def one_line_error(capsys, overrides: dict, model: str, resume_from) -> str:
    from recbole_trsr.cli import main

    capsys.readouterr()
    arguments = [f"--model={model}", "--dataset=tiny", *as_arguments(overrides), f"--resume_from={resume_from}"]
    assert main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1, error
    return error


def test_bad_resume_points_end_in_one_line(capsys, tiny_overrides, tmp_path):
    overrides = {**tiny_overrides, "epochs": "1"}
    assert "no such checkpoint" in one_line_error(capsys, overrides, "SASRec", tmp_path / "nowhere.pth")
    run = run_model(build_config("SASRec", "tiny", [], overrides))
    error = one_line_error(capsys, overrides, "GRU4Rec", run.checkpoint)
    assert "is a checkpoint of SASRec, which is not in --model" in error
    resume_point = resume_point_of(run.checkpoint)
    both = f"['{run.checkpoint}', '{resume_point}']"  # the two files of one resume point
    assert "resume_from names 2 checkpoints of SASRec" in one_line_error(capsys, overrides, "SASRec,GRU4Rec", both)
    again = f"['{run.checkpoint}', '{run.checkpoint}']"
    assert "names a checkpoint twice" in one_line_error(capsys, overrides, "SASRec", again)
    resume_point.write_bytes(resume_point.read_bytes()[:200])
    assert "-last.pth is damaged" in one_line_error(capsys, overrides, "SASRec", run.checkpoint)
    resume_point.unlink()  # RecBole's checkpoint alone, as runs before resume points left it
    assert "-last.pth is missing beside it" in one_line_error(capsys, overrides, "SASRec", run.checkpoint)
