"""migrate-config: the original tool's config folder in our formats (issue 12).

The fixture files below are our own, written after the original project's formats (HPO
``search_space.<name>: {type, values | min, max}``, ``sampling``, ``early_termination``,
``k_fold``, ``checkpoint`` with ``{study_name}``, ``selection``; nested ``training:``; data
``local_path``/``splitting``/``schema``; ``${VAR}`` in ``infrastructure.yaml``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hpo_helpers.config import expand_env, load_hpo_config, load_infrastructure_config
from hpo_helpers.errors import ConfigError
from hpo_helpers.migrate import migrate_config

from .conftest import PYTHON, REPO

OLD_HPO = """\
search_space:
  backbone: {type: choice, values: [tiny]}
  learning_rate: {type: loguniform, min: 1e-3, max: 3e-3}
  batch_size: {type: choice, values: [4, 8]}
  dropout: {type: uniform, min: 0.0, max: 0.2}
  weight_decay: {type: loguniform, min: 0.0001, max: 0.01}
sampling: {algorithm: random, max_trials: 1, timeout_minutes: 20}
early_termination: {policy: bandit, evaluation_interval: 1, slack_factor: 0.2,
                    delay_evaluation: 2}
objective: {metric: macro-f1, goal: maximize}
selection: {accuracy_threshold: 0.015, use_relative_threshold: true, min_accuracy_gain: 0.02}
k_fold: {enabled: false, n_splits: 5, random_seed: 42, shuffle: true, stratified: true}
checkpoint:
  enabled: true
  study_name: "hpo_{backbone}_smoke"
  storage_path: "{study_name}/study.db"
  auto_resume: true
  save_only_best: true
mlflow: {log_best_checkpoint: true}
"""
OLD_TRAIN = """\
training:
  epochs: 1
  batch_size: 4
  gradient_accumulation_steps: 2
  learning_rate: 2e-5
  weight_decay: 0.01
  warmup_steps: 500
  max_grad_norm: 1.0
  metric: macro-f1
  early_stopping: {enabled: true, patience: 3, min_delta: 0.001}
logging: {log_interval: 100}
checkpointing: {save_strategy: steps, save_total_limit: 3}
distributed: {enabled: false}
"""
OLD_DATA = """\
name: resume-ner-mini
version: v1
description: a few resumes
local_path: ../dataset
seed: 11
splitting: {train_test_ratio: 0.8, stratified: true, random_seed: 11}
schema:
  format: json
  annotation_format: character_spans
  entity_types: [NAME, EMAIL, SKILL, DESIGNATION, COMPANY, LOCATION]
"""
OLD_MLFLOW = """\
azure_ml: {enabled: false, workspace_name: resume-ner-ws}
tracking: {training: {enabled: true}}
"""
OLD_INFRA = """\
azure:
  subscription_id: "${AZURE_SUBSCRIPTION_ID}"
  resource_group: "${AZURE_RESOURCE_GROUP}"
  location: "${AZURE_LOCATION:-southeastasia}"
workspace: {name: "${WS_NAME:-resume-ner-ws}"}
compute: {cpu_cluster: {name: cpu-cluster}}
"""


@pytest.fixture
def old_project(tmp_path: Path) -> Path:
    """The original's layout: config/ beside a small dataset/ folder."""
    cfg = tmp_path / "old" / "config"
    for rel, text in (("hpo/smoke.yaml", OLD_HPO), ("train.yaml", OLD_TRAIN),
                      ("data/resume_mini.yaml", OLD_DATA), ("mlflow.yaml", OLD_MLFLOW),
                      ("infrastructure.yaml", OLD_INFRA),
                      ("model/distilbert.yaml", "backbone: distilbert-base-uncased\n")):
        (cfg / rel).parent.mkdir(parents=True, exist_ok=True)
        (cfg / rel).write_text(text)
    data = tmp_path / "old" / "dataset"
    data.mkdir()
    for split, n in (("train", 12), ("validation", 4), ("test", 4)):
        docs = json.loads((REPO / "dataset" / f"{split}.json").read_text())[:n]
        (data / f"{split}.json").write_text(json.dumps(docs))
    return cfg


def test_our_loader_names_migrate_config_for_an_original_file(old_project: Path) -> None:
    with pytest.raises(ConfigError, match=r"original resume-ner-azureml format \(keys "
                       r"sampling, early_termination, k_fold, mlflow, search_space.*"
                       r"migrate-config"):
        load_hpo_config(old_project / "hpo" / "smoke.yaml")


def test_original_keys_in_our_format_are_pointed_at_ours(tmp_path: Path) -> None:
    from .conftest import TINY_HPO

    raw = {**TINY_HPO, "checkpoint": {**TINY_HPO["checkpoint"], "study_name": "x"},
           "search_space": {**TINY_HPO["search_space"], "backbone": {"type": "choice",
                                                                     "choices": ["tiny"]}}}
    with pytest.raises(ConfigError, match=r"2 problems\n.*checkpoint\.study_name.*top-level key "
                       r"study_name.*\n.*search_space\.backbone.*backbones: \[a, b\]"):
        load_hpo_config(raw)
    raw = {**TINY_HPO, "checkpoint": {**TINY_HPO["checkpoint"],
                                      "storage_path": "{study_name}/study.db"}}
    with pytest.raises(ConfigError, match=r"uses \{study_name\}.*Fix: use '\{backbone\}/study"):
        load_hpo_config(raw)


def test_env_references_expand_with_defaults(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    assert expand_env("${A:-x}/${B}", {"B": "b"}) == "x/b"
    assert expand_env("${A}", {}) == "${A}"  # unset: kept, so its user can name it
    monkeypatch.setenv("WS_NAME", "from-env")
    f = tmp_path / "infrastructure.yaml"
    f.write_text("workspace: {name: '${WS_NAME:-ws}', resource_group: '${RG:-rg-default}'}\n")
    ws = load_infrastructure_config(f).workspace
    assert (ws.name, ws.resource_group) == ("from-env", "rg-default")


def test_migrate_config_refuses_a_non_empty_target(old_project: Path, tmp_path: Path) -> None:
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "x").write_text("")
    with pytest.raises(ConfigError, match="not empty. Fix: give an empty folder, or --force"):
        migrate_config(old_project, tmp_path / "new")
    with pytest.raises(ConfigError, match="no hpo/ folder"):
        migrate_config(tmp_path, tmp_path / "new2")


@pytest.mark.slow
def test_migrated_original_project_runs_a_one_trial_sweep(old_project: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", "secret-sub-0000")
    new = tmp_path / "new" / "config"
    res = subprocess.run([PYTHON, "-m", "hpo_helpers", "migrate-config", str(old_project),
                          str(new)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    report = (new / "MIGRATION.md").read_text()
    for key, why in (("slack_factor", "no slack"), ("objective.metric", "micro F1"),
                     ("training.gradient_accumulation_steps", "not implemented"),
                     ("splitting.stratified", "seeded shuffle"), ("compute", "no Azure"),
                     ("mlflow.log_best_checkpoint", "keep_top_k"),
                     ("checkpoint.study_name", "placeholders"), ("model/distilbert.yaml",
                                                                 "not a config")):
        line = next((ln for ln in report.splitlines() if f"`{key}`" in ln or key in ln), "")
        assert why in line, (key, line)
    assert "not supported: hpo/smoke.yaml early_termination.slack_factor" in res.stdout
    written = "".join(p.read_text() for p in new.rglob("*.yaml"))
    assert "secret-sub-0000" not in written and "${AZURE_SUBSCRIPTION_ID}" in written
    assert "${AZURE_LOCATION" not in written  # location is not supported, not copied
    hpo = yaml.safe_load((new / "hpo" / "smoke.yaml").read_text())
    assert hpo["checkpoint"]["storage_path"] == "{backbone}/study.db"
    assert hpo["backbone"] == "tiny" and hpo["max_trials"] == 1 and hpo["keep_top_k"] == 1
    assert hpo["search_space"]["epochs"] == 1 and hpo["selection"]["min_accuracy_gain"] == 0.02

    out = tmp_path / "out"
    run = subprocess.run([PYTHON, "-m", "hpo_helpers", "run", "--config",
                          str(new / "hpo" / "smoke.yaml"), "--output-dir", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    study = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{out}/tiny/study.db")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 1


def test_migrate_config_refuses_to_write_over_the_old_folder(old_project: Path) -> None:
    with pytest.raises(ConfigError, match="the new folder must differ from the old one"):
        migrate_config(old_project, old_project)
