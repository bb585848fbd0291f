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

from hpo_helpers.core.errors import ConfigError
from hpo_helpers.frontends.migrate import migrate_config
from hpo_helpers.settings.config import (
    expand_env,
    load_configs,
    load_hpo_config,
    load_infrastructure_config,
)

from .conftest import PYTHON, compact_dataset, compact_split

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
    compact = compact_dataset(tmp_path / "demo-data")
    for split, n in (("train", 12), ("validation", 4), ("test", 4)):
        docs = json.loads((compact / f"{split}.json").read_text())[:n]
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
    for key, why in (("slack_factor", "no slack"), ("objective.metric", "macro F1"),
                     ("training.gradient_accumulation_steps", "not implemented"),
                     ("splitting.stratified", "seeded shuffle"), ("compute", "no Azure"),
                     ("mlflow.log_best_checkpoint", "keep_top_k"),
                     ("checkpoint.study_name", "the name of the original's study"),
                     ("model/distilbert.yaml", "not a config")):
        line = next((ln for ln in report.splitlines() if f"`{key}`" in ln or key in ln), "")
        assert why in line, (key, line)
    assert "not supported: hpo/smoke.yaml early_termination.slack_factor" in res.stdout
    written = "".join(p.read_text() for p in new.rglob("*.yaml"))
    assert "secret-sub-0000" not in written and "${AZURE_SUBSCRIPTION_ID}" in written
    assert "${AZURE_LOCATION" not in written  # location is not supported, not copied
    hpo = yaml.safe_load((new / "hpo" / "smoke.yaml").read_text())
    assert hpo["checkpoint"]["storage_path"] == "{backbone}/study.db"
    assert hpo["backbone"] == "tiny" and hpo["max_trials"] == 1 and hpo["keep_top_k"] == 1
    assert hpo["objective"] == {"metric": "macro_f1"} and hpo["study_name"] == "hpo_tiny_smoke"
    assert hpo["search_space"]["epochs"] == 1 and hpo["selection"]["min_accuracy_gain"] == 0.02

    out = tmp_path / "out"
    run = subprocess.run([PYTHON, "-m", "hpo_helpers", "run", "--config",
                          str(new / "hpo" / "smoke.yaml"), "--output-dir", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    study = optuna.load_study(study_name="hpo_tiny_smoke",
                              storage=f"sqlite:///{out}/tiny/study.db")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 1


def test_migrate_config_refuses_to_write_over_the_old_folder(old_project: Path) -> None:
    with pytest.raises(ConfigError, match="the new folder must differ from the old one"):
        migrate_config(old_project, old_project)


# ---------------------------------------------------------------------------------------------
# Issue 21 item 6: migration from the original tool is faithful


def _with_old(cfg: Path, rel: str, **changes) -> None:
    """Rewrite one old config file with top-level keys changed (None removes a key)."""
    raw = yaml.safe_load((cfg / rel).read_text())
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
        else:
            raw[key] = value
    (cfg / rel).write_text(yaml.safe_dump(raw))


@pytest.mark.parametrize("old,ours", [("macro-f1", "macro_f1"), ("macro_f1", "macro_f1"),
                                      ("F1_Macro", "macro_f1"), ("Macro F1", "macro_f1"),
                                      ("f1", "f1"), ("micro-f1", "f1")])
def test_the_original_metric_keeps_its_meaning(old_project: Path, tmp_path: Path, old: str,
                                               ours: str) -> None:
    _with_old(old_project, "hpo/smoke.yaml", objective={"metric": old, "goal": "maximize"})
    migrate_config(old_project, tmp_path / "new")
    hpo = yaml.safe_load((tmp_path / "new" / "hpo" / "smoke.yaml").read_text())
    assert hpo["objective"] == {"metric": ours}
    assert load_hpo_config(tmp_path / "new" / "hpo" / "smoke.yaml").objective.metric == ours


def test_training_metric_is_the_objective_when_the_hpo_file_names_none(old_project: Path,
                                                                       tmp_path: Path) -> None:
    _with_old(old_project, "hpo/smoke.yaml", objective=None)  # train.yaml: metric: macro-f1
    report = migrate_config(old_project, tmp_path / "new")
    hpo = yaml.safe_load((tmp_path / "new" / "hpo" / "smoke.yaml").read_text())
    assert hpo["objective"] == {"metric": "macro_f1"}
    assert ("train.yaml", "training.metric", "mapped") in [e[:3] for e in report.entries]


def test_an_unknown_metric_is_refused_in_one_line_and_nothing_is_written(old_project: Path,
                                                                         tmp_path: Path) -> None:
    _with_old(old_project, "hpo/smoke.yaml", objective={"metric": "accuracy"})
    new = tmp_path / "new"
    res = subprocess.run([PYTHON, "-m", "hpo_helpers", "migrate-config", str(old_project),
                          str(new)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "hpo/smoke.yaml: objective.metric 'accuracy' is not a metric" in lines[0]
    assert "Fix: write macro-f1" in lines[0]
    assert not new.exists() or not any(new.rglob("*"))


def _conll_starting_with_a_bracket(folder: Path) -> None:
    """CoNLL files whose first token is '[': auto takes them for JSON, conll reads them."""
    folder.mkdir(parents=True)
    body = "[ O\nJane B-NAME\nDoe I-NAME\n] O\nPython B-SKILL\n\n"
    for split in ("train", "validation", "test"):
        (folder / f"{split}.conll").write_text(body * 3)


def test_format_is_auto_unless_only_the_original_format_reads_the_files(
        old_project: Path, tmp_path: Path) -> None:
    migrate_config(old_project, tmp_path / "new")  # json files: auto reads them as json too
    data = yaml.safe_load((tmp_path / "new" / "data" / "resume_mini.yaml").read_text())
    assert "format" not in data and load_configs(
        tmp_path / "new", tmp_path / "new" / "hpo" / "smoke.yaml").data.format == "auto"
    assert "json -> auto, which reads these files as json too" in (
        tmp_path / "new" / "MIGRATION.md").read_text()

    _conll_starting_with_a_bracket(tmp_path / "old" / "conll_data")
    _with_old(old_project, "data/resume_mini.yaml", local_path="../conll_data",
              schema={"format": "conll", "entity_types": ["NAME", "SKILL"]})
    migrate_config(old_project, tmp_path / "new2")
    data = yaml.safe_load((tmp_path / "new2" / "data" / "resume_mini.yaml").read_text())
    assert data["format"] == "conll"
    assert "kept: auto would read train.conll as" in (tmp_path / "new2" / "MIGRATION.md"
                                                      ).read_text()


def test_the_data_seed_still_picks_the_dataset_tiny_subfolder(old_project: Path,
                                                              tmp_path: Path) -> None:
    from hpo_helpers.data.dataset import load_data

    tiny = tmp_path / "old" / "dataset_tiny"
    for seed, n in ((0, 8), (1, 5)):
        (tiny / f"seed{seed}").mkdir(parents=True)
        for split in ("train", "validation", "test"):
            docs = compact_split(split)[:n]
            (tiny / f"seed{seed}" / f"{split}.json").write_text(json.dumps(docs))
    _with_old(old_project, "data/resume_mini.yaml", local_path="../dataset_tiny", seed=1,
              splitting={"train_test_ratio": 0.8, "random_seed": 42})
    new = tmp_path / "new"
    migrate_config(old_project, new)
    data = yaml.safe_load((new / "data" / "resume_mini.yaml").read_text())
    assert data["path"] == "old/dataset_tiny/seed1" and data["split_seed"] == 42
    assert "seed 1 picked the subfolder seed1" in (new / "MIGRATION.md").read_text()
    cfg = load_configs(new, new / "hpo" / "smoke.yaml")
    assert len(load_data(cfg).train) == 5  # seed1's files, as the original read them

    # any other folder: the original read it as it is; seed is no split seed either
    _with_old(old_project, "data/resume_mini.yaml", local_path="../dataset", seed=1)
    report = migrate_config(old_project, tmp_path / "new2")
    data = yaml.safe_load((tmp_path / "new2" / "data" / "resume_mini.yaml").read_text())
    assert data["path"] == "old/dataset" and data["split_seed"] == 42
    assert any(e[1] == "seed" and e[2] == "not supported" and "not one" in e[3]
               for e in report.entries)


def _original_study(db: Path, name: str, project) -> None:
    """A study the original tool left: one COMPLETE trial, no fingerprint (it kept none)."""
    import dataclasses
    import sqlite3

    from hpo_helpers import run_sweep
    from hpo_helpers.settings.schema import FINGERPRINT

    cfg = load_configs(project.config_dir, project.hpo)
    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=1,
                                                           study_name=name))
    out = run_sweep(cfg, output_dir=project.root / "made")
    made = out.paths.working_db
    con = sqlite3.connect(made)
    con.execute("DELETE FROM study_user_attributes WHERE key = ?", (FINGERPRINT,))
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    db.parent.mkdir(parents=True, exist_ok=True)
    made.replace(db)


def test_a_study_the_original_left_under_another_name_is_named_not_abandoned(
        old_project: Path, tmp_path: Path) -> None:
    db = tmp_path / "old" / "outputs" / "hpo" / "distilbert" / "study.db"
    db.parent.mkdir(parents=True)
    optuna.create_study(study_name="hpo_distilbert_v9", storage=f"sqlite:///{db}")
    report = migrate_config(old_project, tmp_path / "new")
    assert any(f"{db} holds study hpo_distilbert_v9 (0 trials)" in n
               and "set study_name: hpo_distilbert_v9" in n for n in report.studies)
    assert "WARNING: " in report.summary()
    assert "hpo_distilbert_v9" in (tmp_path / "new" / "MIGRATION.md").read_text()


@pytest.mark.slow
def test_the_originals_study_name_layout_is_found_and_continued(old_project: Path,
                                                                tmp_path: Path,
                                                                project) -> None:
    """The original's storage_path "{study_name}/study.db" with a custom study_name: the
    study is at outputs/hpo/hpo_tiny_smoke/study.db; migrate-config names it and the command
    it prints adopts it (copied; the original untouched) and continues it."""
    from hpo_helpers.storage.durable import sha256

    db = tmp_path / "old" / "outputs" / "hpo" / "hpo_tiny_smoke" / "study.db"
    _original_study(db, "hpo_tiny_smoke", project)
    before = sha256(db)
    new = tmp_path / "new" / "config"
    res = subprocess.run([PYTHON, "-m", "hpo_helpers", "migrate-config", str(old_project),
                          str(new)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    line = next(ln for ln in res.stdout.splitlines() if "WARNING: the original's study" in ln)
    assert f"hpo_tiny_smoke (1 trials) is at {db}" in line and "left untouched" in line
    command = line[line.index("python -m hpo_helpers run"):line.index(" (it is copied")]
    assert command.endswith(f"--output-dir {tmp_path / 'old' / 'outputs' / 'hpo'}")
    argv = [PYTHON, *command.split()[1:], "--max-trials", "2"]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Adopted the study found at the seed's old location" in run.stderr
    study = optuna.load_study(study_name="hpo_tiny_smoke", storage="sqlite:///" + str(
        tmp_path / "old" / "outputs" / "hpo" / "tiny" / "study.db"))
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert sha256(db) == before, "the original's file is never modified"
