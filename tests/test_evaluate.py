"""Test scores after a sweep, on demand (`evaluate`), in status and MLflow (issue 16 item 5)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from hpo_helpers import StudyLockedError, load_configs, run_sweep
from hpo_helpers import study_status as status
from hpo_helpers.results.evaluate import evaluate_study
from hpo_helpers.study.store import StudyLock

from .conftest import PYTHON
from .resume_fixtures import conll_three_columns, dataturks_list, original_style


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "hpo_helpers", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_run_prints_test_scores_and_status_and_evaluate_have_them(project) -> None:
    project.write_hpo(max_trials=1, keep_top_k=1)
    res = _cli(*project.run_args()[3:])
    assert res.returncode == 0, res.stderr[-3000:]
    assert "test (trial 0): F1 " in res.stdout and "macro F1" in res.stdout
    assert "SKILL" in res.stdout and "support" in res.stdout
    st = _cli("status", "--config", str(project.hpo), "--output-dir", str(project.output_dir),
              "--json")
    info = json.loads(st.stdout)
    assert 0.0 <= info["test_f1"] <= 1.0 and "SKILL" in info["test_per_entity"]
    assert info["data"]["splits"]["train"]["documents"] == 16
    assert info["data"]["splits"]["train"]["windows"] > 0
    metrics = json.loads(next(project.output_dir.rglob("trial_0/metrics.json")).read_text())
    assert metrics["test"]["f1"] == info["test_f1"]
    plain = _cli("status", "--config", str(project.hpo), "--output-dir", str(project.output_dir))
    assert "test F1" in plain.stdout and "train: 16 documents" in plain.stdout
    ev = _cli("evaluate", "--config", str(project.hpo), "--output-dir", str(project.output_dir),
              "--trial", "0")
    assert ev.returncode == 0, ev.stderr[-2000:]
    assert f"test (trial 0, best): F1 {info['test_f1']:.4f}" in ev.stdout


@pytest.mark.slow
def test_evaluate_refuses_while_a_sweep_holds_the_study(project) -> None:
    project.write_hpo(max_trials=1, keep_top_k=1)
    cfg = load_configs(project.config_dir, project.hpo)
    run_sweep(cfg, output_dir=project.output_dir)
    db = next(project.output_dir.rglob("study.db"))
    lock = StudyLock(db)  # what a running sweep holds
    try:
        with pytest.raises(StudyLockedError, match="another sweep is already running"):
            evaluate_study(cfg, output_dir=project.output_dir)
    finally:
        lock.close()
    scores, best = evaluate_study(cfg, output_dir=project.output_dir, trial=0)
    assert best == 0 and set(scores) == {0}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["conll", "dataturks", "original"])
def test_one_trial_sweep_on_each_real_world_shape_reports_test_scores(project, kind) -> None:
    data = yaml.safe_load((project.config_dir / "data" / "test.yaml").read_text())
    if kind == "conll":
        path = conll_three_columns(project.root / "r.conll")
        data["tag_column"] = 2
    elif kind == "dataturks":
        path = dataturks_list(project.root / "r.json")
    else:
        path = original_style(project.root / "r.json")
        data["label_map"] = {}
    data.update(path=str(path))
    (project.config_dir / "data" / "test.yaml").write_text(yaml.safe_dump(data))
    project.write_hpo(max_trials=1, keep_top_k=1)
    cfg = load_configs(project.config_dir, project.hpo)
    outcome = run_sweep(cfg, output_dir=project.output_dir)
    scores = outcome.test_scores["0"]
    assert 0.0 <= scores["f1"] <= 1.0 and scores["per_type"]
    info = status(cfg, output_dir=project.output_dir)
    assert info["test_f1"] == scores["f1"]
    files = info["data"]["files"]
    assert all(f["raw_entities"] == f["entities"] + sum(f["dropped"].values()) for f in files)


def test_evaluate_without_a_study_says_run_first(project, tmp_path: Path) -> None:
    from hpo_helpers import HpoHelpersError

    cfg = load_configs(project.config_dir, project.hpo)
    with pytest.raises(HpoHelpersError, match=r"no study hpo_tiny at .*Fix: run the sweep"):
        evaluate_study(cfg, output_dir=tmp_path / "none")


def test_new_hpo_keys_at_defaults_keep_the_study_fingerprint(project) -> None:
    from hpo_helpers.settings.config import load_hpo_config
    from hpo_helpers.study.store import fingerprint

    raw = yaml.safe_load(project.hpo.read_text())
    plain = load_hpo_config(raw)
    with_refit = load_hpo_config({**raw, "refit": True})
    assert fingerprint(plain, "d") == fingerprint(with_refit, "d")
    macro = load_hpo_config({**raw, "objective": {"metric": "macro_f1"}})
    assert fingerprint(macro, "d") != fingerprint(plain, "d")


@pytest.mark.slow
def test_macro_f1_objective_and_test_scores_reach_mlflow(project, tmp_path) -> None:
    from mlflow import MlflowClient

    from hpo_helpers.tracking.setup import setup_mlflow_from_config

    project.write_hpo(max_trials=1, keep_top_k=1, objective={"metric": "macro_f1"})
    cfg = load_configs(project.config_dir, project.hpo)
    setup = setup_mlflow_from_config("quality", project.config_dir, cwd=tmp_path)
    outcome = run_sweep(cfg, output_dir=project.output_dir, tracking=setup)
    trial = outcome.study.best_trial
    history = [v for _, v in sorted(trial.intermediate_values.items())]
    assert trial.value == max(history)
    kept = json.loads(next(project.output_dir.rglob("trial_0/metrics.json")).read_text())
    assert kept["macro_f1"] == pytest.approx(trial.value)  # the best epoch by macro F1
    client = MlflowClient(tracking_uri=setup.tracking_uri)
    child = client.get_run(trial.user_attrs["mlflow_run_id"])
    parent = client.get_run(outcome.study.user_attrs["mlflow_parent_run_id"])
    test = outcome.test_scores["0"]
    for run in (child, parent):
        assert run.data.metrics["test_f1"] == pytest.approx(test["f1"])
        assert run.data.metrics["test_macro_f1"] == pytest.approx(test["macro_f1"])
        assert "test_f1_SKILL" in run.data.metrics
    assert child.data.metrics["val_f1"] >= 0.0
    # The objective's name says macro F1: per epoch, per trial and on the parent.
    assert child.data.metrics["final_macro_f1"] == pytest.approx(trial.value)
    assert "final_f1" not in child.data.metrics
    assert max(m.value for m in client.get_metric_history(child.info.run_id, "val_macro_f1")) \
        == pytest.approx(trial.value)
    assert parent.data.metrics["best_macro_f1"] == pytest.approx(trial.value)
    assert parent.data.params["objective_metric"] == "macro_f1"
