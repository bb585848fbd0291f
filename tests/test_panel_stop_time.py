"""The panel's "Stop now" button (#14 item 3) and its clock and plot (#14 item 11)."""

from __future__ import annotations

import time

import optuna
from optuna.trial import TrialState

from hpo_helpers.frontends.widgets import ResumePanel, _Clock
from hpo_helpers.storage.checkpoints import latest_checkpoint
from hpo_helpers.storage.layout import checkpoint_step

from .test_kill_resume import _slower_trials


def _panel(project, **kw) -> ResumePanel:
    return ResumePanel(config_dir=project.config_dir, hpo_config=project.hpo,
                       output_dir=project.output_dir, **kw)


def _study(project) -> optuna.Study:
    return optuna.load_study(study_name="hpo_tiny",
                             storage=f"sqlite:///{project.output_dir / 'tiny' / 'study.db'}")


def test_stop_now_checkpoints_the_step_and_resume_continues_from_it(project) -> None:
    _slower_trials(project)
    panel = _panel(project)
    assert panel.stop_now_button.disabled  # nothing to stop yet
    panel.resume_button.click()
    deadline = time.monotonic() + 120
    while panel.steps.value < 2 and time.monotonic() < deadline:
        time.sleep(0.005)
    clicked, total = panel.steps.value, panel.steps.max
    assert "left ~" in panel.times.value and "Trial:" in panel.times.value
    panel.stop_now_button.click()
    outcome = panel.wait(300)
    assert panel.error is None and outcome.interrupted
    assert outcome.stop_reason.startswith("Interrupted by the Stop now button: state saved")
    study = _study(project)
    first = study.trials[0]
    assert first.state == TrialState.FAIL and first.user_attrs.get("interrupted") is True
    assert [t.state for t in study.trials[1:]] == [TrialState.WAITING]  # re-queued
    ckpt = latest_checkpoint(project.output_dir / "tiny" / "trials" / "hpo_tiny" / "trial_0")
    step = checkpoint_step(ckpt)
    assert clicked <= step < total * 3, (clicked, step, total)  # the exact step, mid-trial
    assert not panel.resume_button.disabled and panel.stop_now_button.disabled

    panel.resume_button.click()
    outcome = panel.wait(600)
    assert panel.error is None and not outcome.interrupted
    retry = next(t for t in _study(project).trials if t.user_attrs.get("retry_of") == 0)
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from_step"] == step
    assert "(ended)" in panel.times.value
    assert [n for n, _ in panel._scores] == sorted(n for n, _ in panel._scores)


def test_clock_estimates_from_measured_step_times(monkeypatch) -> None:
    now = [100.0]
    monkeypatch.setattr("hpo_helpers.frontends.widgets.time.monotonic", lambda: now[0])
    clock = _Clock()
    clock.trial_started()
    clock.step(1, 11)  # timing starts at the first step seen (a resumed trial starts mid-way)
    now[0] += 10
    clock.step(6, 11)  # 2 s per step, 5 steps left
    text = clock.text(0, 3)
    assert "<b>Trial:</b> elapsed 0:10, left ~0:10" in text
    assert "elapsed 0:10 left ~0:50" in text  # this trial 10 s + 2 more trials of 20 s
    now[0] += 10
    clock.trial_finished(True)
    assert "left ~0:40" in clock.text(1, 3)
    assert clock.text(3, 3, ended=True).endswith("(ended)")
