"""Durability on simulated Colab/Kaggle layouts: Drive-safe SQLite, fresh VMs, corruption."""

from __future__ import annotations

import json
import logging
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo_helpers import load_configs, run_sweep
from hpo_helpers.core.runtime import detect
from hpo_helpers.storage.checkpoints import latest_checkpoint

from .test_kill_resume import _env, _running_trial, _slower_trials, _wait_for, has_checkpoint

DRIVE = ("content", "drive", "MyDrive")
DURABLE = ("content", "drive", "MyDrive", "resume-ner-checkpoints", "hpo", "tiny")
WORKING = ("content", "resume-ner", "outputs", "hpo", "tiny")

AUDITED = """
import json, sys
opened = []
def hook(event, args):
    if event == "sqlite3.connect":
        opened.append(str(args[0]))
sys.addaudithook(hook)
from hpo_helpers.frontends.cli import main
try:
    rc = main(sys.argv[2:])
finally:
    open(sys.argv[1], "w").write(json.dumps(opened))
sys.exit(rc)
"""


def _colab(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "vm"
    root.joinpath(*DRIVE).mkdir(parents=True)
    env = _env()
    env.update(COLAB_RELEASE_TAG="test", HPO_RUNTIME_ROOT=str(root))
    return root, env


def _colab_args(project, *extra: str) -> list[str]:
    return project.cli("run", "--config", str(project.hpo), *extra)


def _kill_then_lose_the_vm(project, root: Path, env: dict[str, str], ready, timeout: float,
                           check=None) -> None:
    """Run the sweep on simulated Colab, SIGKILL it once ``ready()``, then delete the VM's
    local disk (Drive survives); ``check()`` runs between the kill and the deletion."""
    proc = subprocess.Popen(_colab_args(project), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=root / "content")
    _wait_for(ready, timeout, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    if check is not None:
        check()
    shutil.rmtree(root / "content" / "resume-ner")  # the VM is gone; Drive survives


@pytest.mark.slow
def test_colab_never_opens_sqlite_on_drive(project, tmp_path) -> None:
    root, env = _colab(tmp_path)
    log = tmp_path / "opened.json"
    cmd = [sys.executable, "-c", AUDITED, str(log), "run", "--config", str(project.hpo),
           "--mlflow-experiment", "colab"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                         cwd=root / "content")
    assert res.returncode == 0, res.stderr[-3000:]
    opened = json.loads(log.read_text())
    drive = str(root.joinpath(*DRIVE))
    assert opened, "the audit hook saw no SQLite connection"
    assert not [p for p in opened if p.startswith(drive) or drive in p], opened
    assert root.joinpath(*DURABLE, "study.db").is_file()
    assert (root / "content/drive/MyDrive/resume-ner-checkpoints/mlruns/mlflow.db").is_file()
    durable = optuna.load_study(study_name="hpo_tiny",
                                storage=f"sqlite:///{root.joinpath(*DURABLE, 'study.db')}")
    assert len(durable.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert "Disk kept: checkpoints" in res.stderr


@pytest.mark.slow
def test_fresh_vm_continues_the_trial_from_the_drive_mirror(project, tmp_path) -> None:
    _slower_trials(project)
    root, env = _colab(tmp_path)
    working_db = root.joinpath(*WORKING, "study.db")
    mirror = root.joinpath(*DURABLE, "trials", "hpo_tiny")
    _kill_then_lose_the_vm(project, root, env, lambda: _running_trial(working_db) == 1
                           and has_checkpoint(mirror / "trial_1"), 240)
    res = subprocess.run(_colab_args(project), env=env, capture_output=True, text=True,
                         timeout=300, cwd=root / "content")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Restored the study from the durable copy" in res.stderr
    assert "Checkpoint restored from the durable mirror" in res.stderr
    study = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{working_db}")
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 1)
    assert retry.state == TrialState.COMPLETE, (retry.user_attrs, res.stderr[-5000:])
    assert retry.user_attrs["resumed_from_epoch"] >= 1
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert not any(mirror.glob("trial_*/checkpoint-*")), "finished trials leave no mirror"


def _run(project, runtime=None, max_trials: int = 1):
    import dataclasses

    cfg = load_configs(project.config_dir, project.hpo)
    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=max_trials))
    return run_sweep(cfg, output_dir=None if runtime else project.output_dir, runtime=runtime)


def test_zero_length_database_is_set_aside(project, caplog) -> None:
    db = project.output_dir / "tiny" / "study.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    with caplog.at_level(logging.ERROR):
        out = _run(project)
    assert "zero-length file" in caplog.text and "a new study starts" in caplog.text
    assert [p.stat().st_size for p in db.parent.glob("study.db.corrupt-*")] == [0]
    assert len(out.study.get_trials(states=(TrialState.COMPLETE,))) == 1


def _colab_runtime(tmp_path: Path):
    root = tmp_path / "vm"
    root.joinpath(*DRIVE).mkdir(parents=True)
    return root, detect({"COLAB_GPU": "1"}, root=root)


def test_half_copied_snapshot_is_set_aside_and_the_good_one_used(project, tmp_path,
                                                                 caplog) -> None:
    root, rt = _colab_runtime(tmp_path)
    _run(project, rt)
    durable = root.joinpath(*DURABLE, "study.db")
    partial = durable.with_name("study.db.tmp-4242")
    partial.write_bytes(durable.read_bytes()[:1000])  # a copy cut off by a kill
    shutil.rmtree(root / "content" / "resume-ner")  # fresh VM
    with caplog.at_level(logging.WARNING):
        out = _run(project, rt, max_trials=2)
    assert "a snapshot copy cut off midway" in caplog.text
    assert len(list(durable.parent.glob("study.db.tmp-4242.partial-*"))) == 1
    assert out.resumed and len(out.study.get_trials(states=(TrialState.COMPLETE,))) == 2


@pytest.mark.parametrize("damage", ["truncated", "garbage", "zero-length"])
def test_damaged_drive_snapshot_on_a_fresh_vm_is_kept_aside(project, tmp_path, caplog,
                                                            damage) -> None:
    root, rt = _colab_runtime(tmp_path)
    _run(project, rt)
    durable = root.joinpath(*DURABLE, "study.db")
    data = durable.read_bytes()
    bad = {"truncated": data[: len(data) // 2], "garbage": b"\x00garbage" * 500,
           "zero-length": b""}[damage]
    durable.write_bytes(bad)
    shutil.rmtree(root / "content" / "resume-ner")
    with caplog.at_level(logging.ERROR):
        out = _run(project, rt)
    aside = list(durable.parent.glob("study.db.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == bad
    assert "Durable copy" in caplog.text and "is damaged" in caplog.text
    assert not out.resumed  # no good copy anywhere: a new study, the damaged file kept


def test_damaged_working_copy_is_replaced_by_the_drive_snapshot(project, tmp_path,
                                                                caplog) -> None:
    root, rt = _colab_runtime(tmp_path)
    _run(project, rt)
    working = root.joinpath(*WORKING, "study.db")
    time.sleep(0.05)
    working.write_bytes(b"garbage" * 100)
    durable = root.joinpath(*DURABLE, "study.db")
    durable.touch()  # the local file is damaged, not newer
    import os

    os.utime(working, (1, 1))
    with caplog.at_level(logging.ERROR):
        out = _run(project, rt, max_trials=2)
    assert out.resumed and len(out.study.get_trials(states=(TrialState.COMPLETE,))) == 2


@pytest.mark.slow
def test_checkpoint_with_other_params_is_set_aside_and_the_trial_restarts(project,
                                                                          caplog) -> None:
    _slower_trials(project, epochs=3)
    db = project.output_dir / "tiny" / "study.db"
    proc = subprocess.Popen(project.run_args(), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    trial0 = project.output_dir / "tiny" / "trials" / "hpo_tiny" / "trial_0"
    _wait_for(lambda: _running_trial(db) == 0 and has_checkpoint(trial0),
              240, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    state_file = latest_checkpoint(trial0) / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["params"]["learning_rate"] = 0.5  # not this trial's
    state_file.write_text(json.dumps(state))
    res = subprocess.run(project.run_args("--max-trials", "1"), env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "was written for params" in res.stderr and "starts over from epoch 0" in res.stderr
    assert [p.name for p in trial0.parent.iterdir() if ".mismatch-" in p.name]
    retry = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{db}").get_trials(
        states=(TrialState.COMPLETE,))[0]
    assert "resumed_from_epoch" not in retry.user_attrs
