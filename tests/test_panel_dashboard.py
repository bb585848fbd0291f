"""The resume panel's buttons (real sweeps) and optuna-dashboard served on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

import optuna
from optuna.trial import TrialState

from hpo_helpers.frontends.dashboard import start_dashboard
from hpo_helpers.frontends.widgets import ResumePanel


def _panel(project, **kw) -> ResumePanel:
    return ResumePanel(config_dir=project.config_dir, hpo_config=project.hpo,
                       output_dir=project.output_dir, **kw)


def _db(project):
    return project.output_dir / "tiny" / "study.db"


def test_new_study_panel_then_resume_button_runs_in_background(project) -> None:
    panel = _panel(project)
    assert panel.action.value == "<b>New study hpo_tiny: 0 of 2 trials</b>"
    assert panel.stop_button.disabled  # nothing to stop yet
    panel.resume_button.click()
    assert panel.running or panel.outcome is not None
    outcome = panel.wait(300)
    assert panel.error is None and outcome is not None
    assert outcome.stop_reason == "Sweep complete: 2/2 trials COMPLETE"
    assert (panel.trials.value, panel.trials.max) == (2, 2)
    assert panel.steps.value == panel.steps.max > 0
    assert "Best F1 so far" in panel.best.value
    assert not panel.resume_button.disabled and panel.stop_button.disabled
    again = _panel(project)
    assert again.action.value == "<b>All 2 trials already complete</b>"


def test_stop_after_this_trial_is_graceful(project) -> None:
    project.write_hpo(max_trials=3)
    panel = _panel(project)
    panel.resume_button.click()
    deadline = time.monotonic() + 120
    while panel.steps.value == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    panel.stop_button.click()
    outcome = panel.wait(300)
    assert outcome.stop_reason.startswith("Stopped as asked after the running trial (1/3")
    study = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{_db(project)}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE]
    assert _panel(project).action.value == "<b>Resume: 1 of 3 trials complete</b>"


def test_start_fresh_archives_and_never_deletes(project) -> None:
    panel = _panel(project, max_trials=1)
    panel.resume(block=True)
    db = _db(project)
    old_trials = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{db}").trials
    panel.fresh_button.click()
    panel.wait(300)
    archived = [p for p in db.parent.iterdir() if p.name.startswith("study.db.archived-")]
    assert len(archived) == 1
    kept = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{archived[0]}")
    assert [(t.number, t.value) for t in kept.trials] == [(t.number, t.value) for t in old_trials]
    models = db.parent / "models"
    assert any(p.name.startswith("hpo_tiny-") and ".archived-" in p.name  # study-unique folder
               for p in models.iterdir())
    fresh = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{db}")
    assert len(fresh.get_trials(states=(TrialState.COMPLETE,))) == 1
    assert fresh.trials[0].datetime_start > old_trials[0].datetime_complete


ADDER = """
import sys, time, optuna
study = optuna.load_study(study_name="dash", storage=sys.argv[1])
for i in range(40):
    study.add_trial(optuna.trial.create_trial(params={"x": float(i)},
        distributions={"x": optuna.distributions.FloatDistribution(-100, 100)}, value=float(i)))
    time.sleep(0.05)
"""


def test_dashboard_lists_the_study_while_another_process_adds_trials(tmp_path) -> None:
    db = tmp_path / "study.db"
    from hpo_helpers.storage.snapshot import enable_wal

    enable_wal(db)
    url = f"sqlite:///{db}"
    study = optuna.create_study(study_name="dash", storage=url, direction="maximize")
    study.enqueue_trial({"x": 1.0})
    study.optimize(lambda t: t.suggest_float("x", -100, 100), n_trials=2)
    dash = start_dashboard(db)
    writer = subprocess.Popen([sys.executable, "-c", ADDER, url])
    try:
        assert dash.url.startswith("http://127.0.0.1:")
        seen: list[int] = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            done = writer.poll() is not None
            with urllib.request.urlopen(f"{dash.url}/api/studies", timeout=10) as r:
                summaries = json.load(r)["study_summaries"]
            assert [s["study_name"] for s in summaries] == ["dash"]
            sid = summaries[0]["study_id"]
            with urllib.request.urlopen(f"{dash.url}/api/studies/{sid}", timeout=10) as r:
                seen.append(len(json.load(r)["trials"]))
            if done and seen[-1] == 42:
                break
            time.sleep(0.2)
        assert writer.wait(60) == 0  # the writer never failed on a locked database
        assert seen[-1] == 42 and seen[0] < 42
    finally:
        writer.kill()
        dash.stop()
