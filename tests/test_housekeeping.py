"""Reconciling folders with the study, keeping top-k models, and the study schema (no sweeps)."""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo_helpers.settings.schema import INTERRUPTED, RETRY_OF, RETRY_ROOT, retry_root, study_name
from hpo_helpers.storage.durable import DurableWrites
from hpo_helpers.storage.layout import StudyLayout
from hpo_helpers.study.store import requeue
from hpo_helpers.sweep.housekeeping import keep_top_k, reconcile, send_waiting_models


def _layout(tmp_path: Path) -> StudyLayout:
    return StudyLayout.for_study("hpo_x", working_dir=tmp_path / "work",
                                 durable_dir=tmp_path / "drive", created_at="2026-01-01T00:00:00")


def _study(tmp_path: Path) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(study_name="hpo_x", storage=f"sqlite:///{tmp_path / 's.db'}",
                               direction="maximize")


def test_study_name_and_retry_root(tmp_path: Path) -> None:
    assert study_name("tiny") == "hpo_tiny" and study_name("tiny", "mine") == "mine"
    study = _study(tmp_path)
    t = study.ask()
    assert retry_root(t) == t.number
    t.set_user_attr(RETRY_ROOT, 7)
    assert retry_root(t) == 7


def test_reconcile_removes_finished_trials_checkpoints_only(tmp_path: Path, caplog) -> None:
    lay = _layout(tmp_path)
    study = _study(tmp_path)
    done = study.ask()
    study.tell(done, 0.5)  # COMPLETE, killed before its folder was dropped
    pruned = study.ask()
    study.tell(pruned, state=TrialState.PRUNED)
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)  # not retried
    killed = study.ask()
    killed.set_user_attr(INTERRUPTED, True)
    study.tell(killed, state=TrialState.FAIL)
    frozen = study.trials[killed.number]
    requeue(study, frozen)  # its retry continues from trial_<killed>
    for n in range(4):
        (lay.trial_dir(n) / "checkpoint-1").mkdir(parents=True)
        (lay.mirror_of(lay.trial_dir(n)) / "checkpoint-1").mkdir(parents=True, exist_ok=True)
    stranger = lay.trials_root / "trial_99"
    stranger.mkdir()
    notes = lay.trials_root / "notes"
    notes.mkdir()
    kept = lay.kept_model_dir(0)
    kept.mkdir(parents=True)
    with caplog.at_level(logging.WARNING):
        removed = reconcile(study, lay)
    assert sorted(p.relative_to(tmp_path).parts[0] + "/" + p.name for p in removed) == [
        f"{side}/trial_{n}" for side in ("drive", "work") for n in range(3)]
    assert [p.name for p in lay.mirror_root.iterdir()] == ["trial_3"]
    assert sorted(p.name for p in lay.trials_root.iterdir()) == ["notes", "trial_3", "trial_99"]
    assert lay.trial_dir(3).is_dir() and kept.is_dir()
    assert "left alone" in caplog.text and "trial_99" in caplog.text
    retry = [t for t in study.trials if t.state == TrialState.WAITING]
    assert retry and retry[0].user_attrs[RETRY_OF] == killed.number


def test_kfold_trial_keeps_its_best_folds_model(tmp_path: Path) -> None:
    lay = _layout(tmp_path)
    study = _study(tmp_path)
    numbers = []
    for value in (0.2, 0.9, 0.5):
        t = study.ask()
        study.tell(t, value)
        numbers.append(t.number)
        trial = lay.trial_dir(t.number)
        best_fold = StudyLayout.best_model_dir(StudyLayout.fold_dir(trial, 1, 2))
        best_fold.mkdir(parents=True)
        (best_fold / "config.json").write_text(str(value))
        keep_top_k(study, lay, 2, t.number, best_fold)
    assert lay.kept_model_numbers() == {1, 2}
    assert (lay.kept_model_dir(1) / "config.json").read_text() == "0.9"
    assert lay.models_root.name == "hpo_x-20260101-000000"


def test_waiting_models_are_sent_dropped_or_left_by_the_next_session(tmp_path: Path) -> None:
    lay = _layout(tmp_path)
    study = _study(tmp_path)
    for value in (0.2, 0.9, 0.5, 0.7):  # trials 0..3; the top 2 are 1 and 3
        study.tell(study.ask(), value)
    for n in (0, 1, 3):  # waiting on local disk when the last session ended
        (lay.local_model_dir(n)).mkdir(parents=True)
        (lay.local_model_dir(n) / "config.json").write_text(str(n))
    (lay.kept_model_dir(3)).mkdir(parents=True)  # 3 reached Drive; its local copy is left over
    (lay.kept_model_dir(3) / "config.json").write_text("3")
    assert lay.kept_models() == {0: lay.local_model_dir(0), 1: lay.local_model_dir(1),
                                 3: lay.kept_model_dir(3)}
    gone = DurableWrites(tmp_path / "absent")  # Drive still away: 1 waits, 0 and 3's go
    send_waiting_models(study, lay, 2, gone)
    assert lay.waiting_model_numbers() == {1} and len(gone.pending) == 1
    send_waiting_models(study, lay, 2, DurableWrites(tmp_path))  # Drive back
    assert lay.waiting_model_numbers() == set() and lay.kept_model_numbers() == {1, 3}
    assert (lay.kept_model_dir(1) / "config.json").read_text() == "1"


def test_sweep_start_removes_what_a_finished_trial_left_behind(project, caplog) -> None:
    import dataclasses

    from hpo_helpers import load_configs, run_sweep

    cfg = load_configs(project.config_dir, project.hpo)
    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=1))
    run_sweep(cfg, output_dir=project.output_dir)
    trials = project.output_dir / "tiny" / "trials" / "hpo_tiny"
    leftover = trials / "trial_0" / "checkpoint-7"  # a kill between the trial's end and clean-up
    leftover.mkdir(parents=True)
    (trials / "mine").mkdir()
    with caplog.at_level(logging.INFO):
        run_sweep(cfg, output_dir=project.output_dir)
    assert not (trials / "trial_0").exists() and (trials / "mine").is_dir()
    assert "Removed checkpoints of finished trial" in caplog.text
    assert "No trial of hpo_tiny explains" in caplog.text
    models = list((project.output_dir / "tiny" / "models").glob("hpo_tiny-*/trial_0"))
    assert len(models) == 1, "kept models are never touched"
