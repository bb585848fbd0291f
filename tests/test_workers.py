"""Several trials at once in one sweep (issue 13): devices, exact budget, SIGKILL and resume."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from .test_kill_resume import _checkpointed, _env, _load, _slower_trials, _wait_for


def test_worker_devices_auto_on_a_cpu_machine_is_one_default_worker() -> None:
    import torch

    from hpo_helpers.training.device import worker_devices

    if torch.cuda.device_count() > 1:
        pytest.skip("several GPUs here: auto gives one worker per GPU")
    assert worker_devices("auto") == [None]
    assert worker_devices("cpu, cpu") == [torch.device("cpu")] * 2


@pytest.mark.parametrize("spec", ["0,1", "cuda:7", "tpu", "cpu,"])
def test_worker_devices_refuses_devices_that_are_not_here(spec) -> None:
    import torch

    from hpo_helpers.core.errors import ConfigError
    from hpo_helpers.training.device import worker_devices

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has the GPUs")
    with pytest.raises(ConfigError, match=r"train.yaml: key 'devices' = .* is not a device here "
                                          r"\(\d+ CUDA GPUs?\)\. Fix: use auto, GPU numbers"):
        worker_devices(spec, "train.yaml")


def test_cli_devices_not_here_exits_2_before_the_study_opens(project) -> None:
    res = subprocess.run(project.run_args("--devices", "0,1"), env=_env(), capture_output=True,
                         text=True, timeout=120)
    if res.returncode == 0:
        pytest.skip("this machine has two GPUs")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "key 'devices' = '0,1'" in res.stderr and "cpu,cpu" in res.stderr
    assert not (project.output_dir / "tiny" / "study.db").exists()


def _running(db: Path) -> list[int]:
    if not db.exists():
        return []
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        rows = con.execute("SELECT number FROM trials WHERE state='RUNNING'").fetchall()
        con.close()
    except sqlite3.Error:
        return []
    return sorted(r[0] for r in rows)




@pytest.mark.slow
def test_two_cpu_workers_sigkilled_mid_trials_resume_both_and_stop_at_max_trials(project):
    from optuna.trial import TrialState

    _slower_trials(project)  # max_trials 3, 3 epochs, about a second an epoch
    db = project.output_dir / "tiny" / "study.db"
    trials = project.output_dir / "tiny" / "trials" / "hpo_tiny"
    args = project.run_args("--devices", "cpu,cpu")
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    # Both workers inside a trial, each past its first epoch checkpoint.
    _wait_for(lambda: _running(db) == [0, 1] and _checkpointed(trials, 0)
              and _checkpointed(trials, 1), 300, proc)
    proc.send_signal(signal.SIGSTOP)  # frozen mid-trials: status reads what the kill leaves
    st = subprocess.run(project.cli("status", "--config", str(project.hpo), "--output-dir",
                                    str(project.output_dir), "--json"),
                        env=_env(), capture_output=True, text=True, timeout=120)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert st.returncode == 0, st.stderr[-2000:]
    running = json.loads(st.stdout)["running"]
    assert sorted(r["trial"] for r in running) == [0, 1]
    assert {r["device"] for r in running} == {"cpu"}
    before = _load(db)
    assert [t.number for t in before.get_trials(states=(TrialState.RUNNING,))] == [0, 1]
    assert not before.get_trials(states=(TrialState.COMPLETE,))

    rerun = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = _load(db)
    by_number = {t.number: t for t in after.get_trials()}
    assert len(after.get_trials(states=(TrialState.COMPLETE,))) == 3  # exact: no overshoot
    assert not after.get_trials(states=(TrialState.RUNNING,))
    assert not after.get_trials(states=(TrialState.WAITING,))
    for killed in (0, 1):
        assert by_number[killed].state == TrialState.FAIL
        assert by_number[killed].user_attrs["interrupted"] is True
        retries = [t for t in after.get_trials() if t.user_attrs.get("retry_of") == killed]
        assert len(retries) == 1, retries
        retry = retries[0]
        assert retry.state == TrialState.COMPLETE
        assert retry.params == by_number[killed].params
        assert retry.user_attrs.get("resumed_from_epoch", 0) >= 1, (  # its own checkpoint
            killed, rerun.stderr[-3000:])
        assert retry.user_attrs["device"] == "cpu"
    # Nothing ran past the budget: 2 interrupted + 2 retries + 1 new trial.
    assert len(after.get_trials()) == 5
    assert "2 trial workers: cpu, cpu" in rerun.stderr


def test_two_workers_run_trials_at_once_on_their_devices_and_stop_at_max_trials(
        project, monkeypatch) -> None:
    import threading
    import time

    from optuna.trial import TrialState

    from hpo_helpers import load_configs, run_sweep
    from hpo_helpers.training.device import default_device
    from hpo_helpers.training.train import FitResult

    lock, now, most, seen = threading.Lock(), [0], [0], []

    def fit(**kwargs):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
            seen.append((threading.current_thread().name, str(default_device())))
        time.sleep(0.4)
        with lock:
            now[0] -= 1
        return FitResult(best_f1=0.5)

    project.write_hpo(max_trials=3)
    train = project.config_dir / "train.yaml"
    train.write_text(train.read_text() + "\ndevices: cpu,cpu\n")
    study = run_sweep(load_configs(project.config_dir, project.hpo),
                      output_dir=project.output_dir, fit=fit).study
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 3  # no overshoot
    assert most[0] == 2  # two trials at once
    assert {name.split("-")[2] for name, _ in seen} == {"0", "1"}  # hpo-worker-<i>-<device>
    assert {device for _, device in seen} == {"cpu"}
    assert {t.user_attrs["device"] for t in study.get_trials()} == {"cpu"}


def test_the_panel_shows_one_row_per_running_trial(project, monkeypatch) -> None:
    import threading
    import time

    import hpo_helpers.training.train as train_mod
    from hpo_helpers.frontends.widgets import ResumePanel
    from hpo_helpers.training.train import FitResult

    def fit(**kwargs):
        kwargs["on_step"](1, 2)
        time.sleep(0.4)
        kwargs["on_step"](2, 2)
        return FitResult(best_f1=0.5)

    monkeypatch.setattr(train_mod, "fit", fit)  # the panel runs the default fit
    project.write_hpo(max_trials=3)
    train = project.config_dir / "train.yaml"
    train.write_text(train.read_text() + "\ndevices: cpu,cpu\n")
    panel = ResumePanel(config_dir=project.config_dir, hpo_config=project.hpo,
                        output_dir=project.output_dir)
    shown, lock = [], threading.Lock()
    show = panel._show_rows

    def watch() -> None:
        show()
        with lock:
            shown.append(sorted(bar.description for bar in panel.running_rows.children))

    monkeypatch.setattr(panel, "_show_rows", watch)
    panel.resume(block=True)
    assert panel.outcome is not None and not panel.outcome.interrupted
    assert ["Trial 0", "Trial 1"] in shown  # both workers' trials, one row each
    assert shown[-1] == []  # one trial or none running: the single "Trial steps" bar suffices
