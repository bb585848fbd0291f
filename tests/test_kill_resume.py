"""Kill-and-resume with real processes: SIGKILL mid-trial, SIGTERM, two sweeps at once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hpo_helpers.storage.checkpoints import latest_checkpoint
from hpo_helpers.storage.layout import checkpoint_step

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")
    return env


def _slower_trials(project, n_docs: int = 60, epochs: int = 3) -> None:
    """Enough work per epoch (about a second) for a kill to land inside one."""
    data = project.config_dir / "data" / "test.yaml"
    raw = yaml.safe_load(data.read_text())
    raw["max_train_documents"] = n_docs
    data.write_text(yaml.safe_dump(raw))
    from .conftest import TINY_HPO

    space = dict(TINY_HPO["search_space"], epochs=epochs)
    project.write_hpo(max_trials=3, search_space=space)


def _running_trial(db: Path) -> int | None:
    if not db.exists():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        row = con.execute("SELECT number FROM trials WHERE state='RUNNING'").fetchone()
        con.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"sweep exited early ({proc.returncode}):\n{out[-3000:]}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("timed out waiting for the sweep")


def has_checkpoint(folder: Path) -> bool:
    """A whole checkpoint, as the product judges it (``checkpoint-N.tmp-<pid>`` is one still
    being written, even once its marker is in)."""
    return latest_checkpoint(folder) is not None


def newest_step(folder: Path) -> int:
    newest = latest_checkpoint(folder)
    assert newest is not None, f"no whole checkpoint in {folder}"
    return checkpoint_step(newest)


def _checkpointed(trials: Path, number: int) -> bool:
    return has_checkpoint(trials / f"trial_{number}")


def _load(db: Path):
    return optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{db}")


def test_sigkill_mid_second_trial_then_rerun_loses_nothing(project) -> None:
    _slower_trials(project)
    db = project.output_dir / "tiny" / "study.db"
    trials = project.output_dir / "tiny" / "trials" / "hpo_tiny"
    proc = subprocess.Popen(project.run_args(), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    # Trial 1 running and past its first epoch checkpoint: we are inside epoch 2.
    _wait_for(lambda: _running_trial(db) == 1 and _checkpointed(trials, 1), 240, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    before = _load(db)
    done_before = {t.number: t.value for t in before.get_trials(states=(TrialState.COMPLETE,))}
    assert list(done_before) == [0]
    assert [t.number for t in before.get_trials(states=(TrialState.RUNNING,))] == [1]

    rerun = subprocess.run(project.run_args(), env=_env(), capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "re-queued with the same params" in rerun.stderr
    after = _load(db)
    by_number = {t.number: t for t in after.get_trials()}
    for number, value in done_before.items():  # finished trials untouched
        assert by_number[number].state == TrialState.COMPLETE
        assert by_number[number].value == value
    assert not after.get_trials(states=(TrialState.RUNNING,))
    killed = by_number[1]
    assert killed.state == TrialState.FAIL and killed.user_attrs["interrupted"] is True
    retries = [t for t in after.get_trials() if t.user_attrs.get("retry_of") == 1]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed.params
    assert retry.user_attrs["resumed_from_epoch"] >= 1
    assert len(after.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert "best F1:" in rerun.stdout and str(db) in rerun.stdout


def test_sigterm_saves_records_and_tells_how_to_resume(project) -> None:
    _slower_trials(project, epochs=4)
    db = project.output_dir / "tiny" / "study.db"
    proc = subprocess.Popen(project.run_args(), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: _running_trial(db) == 0, 240, proc)
    time.sleep(1.5)  # somewhere inside an epoch
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out[-3000:]
    assert "To resume, run the same command or cell again" in out
    study = _load(db)
    t0 = study.get_trials()[0]
    assert t0.state == TrialState.FAIL and t0.user_attrs["interrupted"] is True
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == t0.params
    trial0 = project.output_dir / "tiny" / "trials" / "hpo_tiny" / "trial_0"
    assert has_checkpoint(trial0), "an interrupted trial keeps its checkpoint"
    saved_step = newest_step(trial0)
    rerun = subprocess.run(project.run_args("--max-trials", "1"), env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    retry = _load(db).get_trials(states=(TrialState.COMPLETE,))[0]
    assert retry.user_attrs["retry_of"] == 0
    assert retry.user_attrs["resumed_from_step"] == saved_step > 0


def test_second_process_on_the_same_study_is_refused(project) -> None:
    _slower_trials(project)
    db = project.output_dir / "tiny" / "study.db"
    first = subprocess.Popen(project.run_args(), env=_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: _running_trial(db) is not None, 240, first)
        second = subprocess.run(project.run_args(), env=_env(), capture_output=True, text=True,
                                timeout=120)
        assert second.returncode == 2
        assert "another sweep is already running this study" in second.stderr
        assert "Traceback" not in second.stderr
        status = subprocess.run(project.cli("status", "--config", str(project.hpo),
                                            "--output-dir", str(project.output_dir), "--json"),
                                env=_env(), capture_output=True, text=True, timeout=120)
        assert status.returncode == 0, status.stderr
        assert '"n_running": 1' in status.stdout
    finally:
        first.kill()
        first.wait(30)
