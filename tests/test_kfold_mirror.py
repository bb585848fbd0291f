"""k-fold with the Drive mirror on: a SIGKILL mid-fold, a fresh VM, kept models (issue 10)."""

from __future__ import annotations

import subprocess

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from .test_durability import DURABLE, WORKING, _colab, _colab_args, _kill_then_lose_the_vm
from .test_kill_resume import _running_trial, _slower_trials, has_checkpoint


@pytest.mark.slow
def test_kfold_sweep_survives_a_kill_mid_fold_on_a_fresh_vm(project, tmp_path) -> None:
    _slower_trials(project, epochs=3)
    raw = yaml.safe_load(project.hpo.read_text())
    project.write_hpo(**{**raw, "k_folds": 2, "max_trials": 2, "keep_top_k": 2})
    root, env = _colab(tmp_path)
    working_db = root.joinpath(*WORKING, "study.db")
    mirror = root.joinpath(*DURABLE, "trials", "hpo_tiny")

    def mirrored_so_far() -> None:
        assert (mirror / "trial_0" / "fold_0" / "fold_result.json").is_file()
        assert (mirror / "trial_0" / "fold_0" / "best-model" / "config.json").is_file()
        assert not (mirror / "fold_1").exists(), "fold folders belong under their trial"

    # Fold 0 is done and the second fold has a checkpoint on Drive: kill mid-fold 1.
    _kill_then_lose_the_vm(project, root, env, lambda: _running_trial(working_db) == 0
                           and has_checkpoint(mirror / "trial_0" / "fold_1"), 300,
                           mirrored_so_far)
    res = subprocess.run(_colab_args(project), env=env, capture_output=True, text=True,
                         timeout=400, cwd=root / "content")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Checkpoint restored from the durable mirror" in res.stderr
    study = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{working_db}")
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 0)
    assert retry.state == TrialState.COMPLETE, res.stderr[-5000:]
    assert len(retry.user_attrs["fold_f1"]) == 2
    assert min(retry.intermediate_values) >= 3, "fold 0 was finished: the retry skips it"
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2
    (models,) = root.joinpath(*DURABLE, "models").glob("hpo_tiny-*")
    kept = sorted(p.name for p in models.iterdir())
    assert kept == sorted(f"trial_{t.number}" for t in complete), kept
    assert all((models / k / "config.json").is_file() for k in kept)
    assert not any(mirror.glob("trial_*/**/checkpoint-*")), "finished trials leave no mirror"
