"""The sweep through its public API, on real SQLite files and the tiny backbone."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo_helpers import (
    FingerprintMismatchError,
    StudyLockedError,
    SweepFailedError,
    load_configs,
    run_local_hpo_sweep,
    run_sweep,
    study_status,
)
from hpo_helpers.core.runtime import detect
from hpo_helpers.study.store import StudyLock


def _sweep(project, **kw):
    return run_local_hpo_sweep(None, project.config_dir, None, project.hpo, None,
                               project.output_dir, **kw)


def _db(project) -> Path:
    return project.output_dir / "tiny" / "study.db"


def test_sweep_runs_then_reports_all_done_and_status_matches(project, caplog) -> None:
    study = _sweep(project)
    assert study.study_name == "hpo_tiny"
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2
    assert all(0.0 <= t.value <= 1.0 for t in complete)
    assert all("val_per_entity_f1" in t.user_attrs for t in complete)
    # DECISIONS: kept models live in a study-unique folder, models/<study>-<created>/trial_<n>
    (models,) = (project.output_dir / "tiny" / "models").glob("hpo_tiny-*")
    assert any(models.glob("trial_*/config.json"))
    assert not any((project.output_dir / "tiny" / "trials" / "hpo_tiny").iterdir())
    with caplog.at_level(logging.INFO):
        again = _sweep(project)
    assert "All trials already completed (2/2)" in caplog.text
    assert len(again.get_trials()) == len(study.get_trials())
    info = study_status(load_configs(project.config_dir, project.hpo),
                        output_dir=project.output_dir)
    assert info["n_complete"] == 2 and info["n_running"] == 0
    assert info["best_value"] == pytest.approx(study.best_value)
    assert info["checkpoint_path"] == str(_db(project))
    # Raising max_trials continues the same study.
    more = _sweep(project, max_trials=3)
    assert len(more.get_trials(states=(TrialState.COMPLETE,))) == 3


def test_auto_resume_false_starts_a_new_study_and_keeps_the_old(project) -> None:
    _sweep(project)
    project.write_hpo(checkpoint={"enabled": True, "auto_resume": False,
                                  "storage_path": "{backbone}/study.db"}, max_trials=1)
    new = _sweep(project)
    assert new.study_name.startswith("hpo_tiny_") and new.study_name != "hpo_tiny"
    names = optuna.get_all_study_names(f"sqlite:///{_db(project)}")
    assert set(names) == {"hpo_tiny", new.study_name}
    old = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{_db(project)}")
    assert len(old.get_trials(states=(TrialState.COMPLETE,))) == 2


def test_changed_search_space_refuses_resume_and_says_what_changed(project) -> None:
    _sweep(project, max_trials=1)
    from .conftest import TINY_HPO

    space = dict(TINY_HPO["search_space"])
    space["learning_rate"] = {"type": "loguniform", "low": 1e-5, "high": 1e-4}
    project.write_hpo(search_space=space)
    with pytest.raises(FingerprintMismatchError,
                       match=r"search_space\.learning_rate: .*0\.001.* -> .*1e-05.*auto_resume"):
        _sweep(project)


def test_corrupt_database_is_set_aside_never_deleted(project, caplog) -> None:
    db = _db(project)
    db.parent.mkdir(parents=True)
    garbage = b"this is not a database" * 100
    db.write_bytes(garbage)
    with caplog.at_level(logging.ERROR):
        study = _sweep(project, max_trials=1)
    aside = [p for p in db.parent.iterdir() if p.name.startswith("study.db.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage
    assert "not an SQLite database" in caplog.text and "a new study starts" in caplog.text
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 1


def test_truncated_database_is_set_aside(project, caplog) -> None:
    _sweep(project, max_trials=1)
    db = _db(project)
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    with caplog.at_level(logging.ERROR):
        _sweep(project, max_trials=1)
    assert any(p.name.startswith("study.db.corrupt-") for p in db.parent.iterdir())
    assert "is damaged" in caplog.text


def test_second_sweep_on_a_locked_study_is_refused(project) -> None:
    db = _db(project)
    lock = StudyLock(db)
    try:
        with pytest.raises(StudyLockedError, match=r"another sweep is already running this study "
                                                   r"\(pid \d+ on .*\).*Fix: stop the other"):
            _sweep(project)
    finally:
        lock.close()
    _sweep(project, max_trials=1)  # the lock is free again


def test_failing_trials_stop_the_sweep_after_the_cap_and_keep_finished_ones(
        project, monkeypatch) -> None:
    _sweep(project, max_trials=1)
    def broken_fit(**kwargs):
        raise RuntimeError("CUDA error: device-side assert triggered")

    project.write_hpo(max_failed_trials=2, max_trials=3)
    with pytest.raises(SweepFailedError, match=r"2 trials failed in a row .*device-side assert"):
        run_sweep(load_configs(project.config_dir, project.hpo), output_dir=project.output_dir,
                  fit=broken_fit)
    study = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{_db(project)}")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 1
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 2 and all("device-side assert" in t.user_attrs["error"] for t in failed)


def test_time_budget_does_not_start_a_trial_that_cannot_finish(project) -> None:
    project.write_hpo(timeout_minutes=0.001, max_trials=5)
    cfg = load_configs(project.config_dir, project.hpo)
    outcome = run_sweep(cfg, output_dir=project.output_dir)
    assert len(outcome.study.get_trials(states=(TrialState.COMPLETE,))) == 1
    assert outcome.stop_reason.startswith("Time budget")


def test_checkpoint_disabled_keeps_nothing_on_disk(project) -> None:
    project.write_hpo(checkpoint={"enabled": False}, max_trials=1)
    study = _sweep(project)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 1
    assert not project.output_dir.exists()


def test_colab_fresh_vm_restores_the_durable_copy_and_resumes(project, tmp_path) -> None:
    root = tmp_path / "vm"
    (root / "content" / "drive" / "MyDrive").mkdir(parents=True)
    runtime = detect({"COLAB_RELEASE_TAG": "x"}, root=root)
    cfg = load_configs(project.config_dir, project.hpo)
    first = run_sweep(cfg, runtime=runtime)
    durable = root / "content/drive/MyDrive/resume-ner-checkpoints/hpo/tiny/study.db"
    working = root / "content/resume-ner/outputs/hpo/tiny/study.db"
    assert durable.is_file() and working.is_file() and first.paths.snapshots_needed
    import shutil

    shutil.rmtree(root / "content" / "resume-ner")  # the VM is gone, Drive survives
    import dataclasses

    cfg3 = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=3))
    second = run_sweep(cfg3, runtime=runtime)
    assert second.resumed
    assert len(second.study.get_trials(states=(TrialState.COMPLETE,))) == 3
    durable_study = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{durable}")
    assert len(durable_study.get_trials(states=(TrialState.COMPLETE,))) == 3
