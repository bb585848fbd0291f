"""k-fold CV as a first-class feature (issue 12): stratified folds, fold-level resume."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
import yaml
from optuna.trial import TrialState

from hpo_helpers.data.dataset import Document, kfold_split

from .test_kill_resume import (
    _env,
    _load,
    _running_trial,
    _slower_trials,
    _wait_for,
    has_checkpoint,
)


def _doc(i: int, *types: str) -> Document:
    words = tuple(f"w{i}_{j}" for j in range(len(types) or 1))
    return Document(str(i), words, tuple(f"B-{t}" for t in types) or ("O",))


def test_stratified_folds_spread_each_documents_rarest_type() -> None:
    # 3 documents with the rare type DEGREE (they also hold SKILL), 9 with SKILL only.
    docs = [_doc(i, "SKILL", "DEGREE") for i in range(3)] + [_doc(i, "SKILL")
                                                               for i in range(3, 12)]
    folds = kfold_split(docs, 3, seed=5, stratified=True)
    for _train, held in folds:
        assert sum("B-DEGREE" in d.tags for d in held) == 1  # one rare document per fold
        assert len(held) == 4
    assert sorted(d.id for _t, h in folds for d in h) == sorted(d.id for d in docs)
    assert folds == kfold_split(docs, 3, seed=5, stratified=True), "seeded: the same folds"
    assert folds != kfold_split(docs, 3, seed=6, stratified=True)


@pytest.mark.slow
def test_kfold_sweep_killed_mid_fold_resumes_without_retraining_finished_folds(project) -> None:
    epochs = 3  # the kill lands in fold 2's epochs 2-3: a window of two epochs, even under load
    _slower_trials(project, n_docs=60, epochs=epochs)
    raw = yaml.safe_load(project.hpo.read_text())
    project.write_hpo(**{**raw, "k_folds": 3, "k_fold_stratified": True, "max_trials": 2})
    db = project.output_dir / "tiny" / "study.db"
    trial1 = project.output_dir / "tiny" / "trials" / "hpo_tiny" / "trial_1"
    tracking = f"sqlite:///{project.root / 'mlflow.db'}"
    args = project.run_args("--mlflow-experiment", "kfold", "--tracking-uri", tracking)
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    # Trial 1 inside its third fold (folds 0 and 1 finished, fold 2 has a checkpoint).
    _wait_for(lambda: _running_trial(db) == 1
              and has_checkpoint(trial1 / "fold_2"), 400, proc)
    time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    killed = next(t for t in _load(db).trials if t.number == 1)
    assert killed.state == TrialState.RUNNING and len(killed.user_attrs["fold_f1"]) == 2

    rerun = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    for fold in (1, 2):  # the log says folds 0-1 were skipped, not retrained
        assert f"fold {fold}/3 already finished" in rerun.stderr, rerun.stderr[-3000:]
    assert "fold 1/3 finished" not in rerun.stderr and "fold 2/3 finished" not in rerun.stderr
    study = _load(db)
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 1)
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from_fold"] == 2
    assert retry.user_attrs["fold_f1"][:2] == killed.user_attrs["fold_f1"]
    assert min(retry.intermediate_values) >= 2 * epochs, "folds 0-1 report nothing again"
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 2
    for t in complete:
        scores = t.user_attrs["fold_f1"]
        assert len(scores) == 3
        assert t.value == pytest.approx(sum(scores) / 3)
        assert t.user_attrs["fold_f1_mean"] == pytest.approx(t.value)
        assert t.user_attrs["fold_f1_std"] >= 0
    status = subprocess.run(project.cli("status", "--config", str(project.hpo), "--output-dir",
                                        str(project.output_dir)), env=_env(),
                            capture_output=True, text=True, timeout=120)
    assert "folds F1 [" in status.stdout, status.stdout + status.stderr
    info = json.loads(subprocess.run(
        project.cli("status", "--config", str(project.hpo), "--output-dir",
                    str(project.output_dir), "--json"), env=_env(), capture_output=True,
        text=True, timeout=120).stdout)
    best = study.best_trial
    assert info["best_fold_f1"] == best.user_attrs["fold_f1"]
    assert info["best_fold_f1_std"] == pytest.approx(best.user_attrs["fold_f1_std"])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking)
    exp = client.get_experiment_by_name("kfold")
    runs = client.search_runs([exp.experiment_id], "metrics.cv_f1_mean > -1")
    assert len(runs) == 2  # the two COMPLETE trials' child runs
    for run in runs:
        folds = client.get_metric_history(run.info.run_id, "fold_f1")
        assert sorted(m.step for m in folds) == [0, 1, 2]


def test_new_fields_at_their_defaults_keep_an_existing_studys_fingerprint(project) -> None:
    from hpo_helpers.settings.config import load_hpo_config
    from hpo_helpers.study.store import fingerprint

    from .conftest import TINY_HPO

    old = fingerprint(load_hpo_config({**TINY_HPO, "k_folds": 3}), "data")
    assert old["objective"] == {"metric": "f1", "direction": "maximize", "k_folds": 3}
    same = load_hpo_config({**TINY_HPO, "k_folds": 3, "k_fold_stratified": False,
                            "backbones": ["tiny", "minilm"],
                            "selection": {"accuracy_threshold": 0.02}})
    assert fingerprint(same, "data") == old
    changed = load_hpo_config({**TINY_HPO, "k_folds": 3, "k_fold_stratified": True})
    assert fingerprint(changed, "data")["objective"]["k_fold_stratified"] is True


@pytest.mark.parametrize(("key", "value", "match"), [
    ("k_fold_stratified", "yes", r"'k_fold_stratified' = 'yes' must be true or false"),
    ("selection", {"accuracy_threshold": 2}, r"'selection\.accuracy_threshold' = 2.0 is out of "
                                             r"range \(must be <= 1\)"),
    ("selection", {"min_gain": 0.1}, r"unknown key\(s\) selection\.min_gain"),
    ("backbones", "tiny", r"'backbones' = 'tiny' must be a list"),
])
def test_new_kfold_and_selection_keys_are_checked(key, value, match) -> None:
    from hpo_helpers.core.errors import ConfigError
    from hpo_helpers.settings.config import load_hpo_config

    from .conftest import TINY_HPO

    with pytest.raises(ConfigError, match=match):
        load_hpo_config({**TINY_HPO, key: value})


def test_each_of_several_backbones_is_a_checked_name() -> None:
    from hpo_helpers.core.errors import ConfigError
    from hpo_helpers.settings.config import load_hpo_config

    from .conftest import TINY_HPO

    with pytest.raises(ConfigError, match=r"key 'backbones\[1\]'.*\.\./x"):
        load_hpo_config({**TINY_HPO, "backbones": ["tiny", "../x"]})
