"""Notebook 02's panel in a real browser: Voila serves it, Debian's chromium clicks Resume."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import papermill as pm
import pytest

from hpo_helpers import load_configs, run_sweep

from .conftest import REPO

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def voila_panel(project, tmp_path):
    """Notebook 02 parameterised by papermill (not run) and served by Voila on loopback."""
    project.write_hpo(max_trials=3)
    cfg = load_configs(project.config_dir, project.hpo)
    run_sweep(dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=1)),
              output_dir=project.output_dir)
    nb = tmp_path / "panel.ipynb"
    pm.execute_notebook(str(REPO / "notebooks" / "02_run_hpo.ipynb"), str(nb), prepare_only=True,
                        parameters={"config_dir": str(project.config_dir),
                                    "hpo_config": str(project.hpo),
                                    "output_dir": str(project.output_dir)})
    port = _free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "voila", str(nb), "--no-browser", f"--port={port}",
         "--Voila.ip=127.0.0.1", "--ServerApp.token=", "--VoilaConfiguration.show_tracebacks=True"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "api", timeout=2)
            break
        except urllib.error.HTTPError:
            break  # the server answers (an error page is an answer): Voila is up
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"voila exited: {proc.stdout.read()[-3000:]}")
            time.sleep(0.5)
    try:
        yield url
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


def _panel_page(browser, url: str):
    """The served panel, loaded and showing its plan."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.goto(url, timeout=180_000)
    expect(page.get_by_text("Resume: 1 of 3 trials complete").first).to_be_visible(
        timeout=180_000)
    return page


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed "
                    "(.ci/run installs it with apt)")
def test_click_resume_in_a_real_browser(voila_panel, tmp_path) -> None:
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = _panel_page(browser, voila_panel)
            page.screenshot(path=str(ARTIFACTS / "panel-before.png"), full_page=True)
            page.get_by_role("button", name="Resume").click()
            expect(page.get_by_text("Resuming: Resume: 1 of 3").first).to_be_visible(
                timeout=60_000)
            expect(page.get_by_text("Sweep complete: 3/3 trials COMPLETE").first).to_be_visible(
                timeout=300_000)
            expect(page.get_by_text("Trials 3/3").first).to_be_visible(timeout=10_000)
            page.screenshot(path=str(ARTIFACTS / "panel-after.png"), full_page=True)
        finally:
            browser.close()
    shutil.copy(ARTIFACTS / "panel-after.png", tmp_path / "panel-after.png")


@pytest.fixture
def slow_trials(project):
    """More documents per epoch, so a click lands inside a trial (before ``voila_panel``)."""
    from .test_kill_resume import _slower_trials

    _slower_trials(project)


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed "
                    "(.ci/run installs it with apt)")
def test_stop_now_in_a_real_browser_then_resume_continues(slow_trials, voila_panel, project,
                                                          tmp_path) -> None:
    import optuna
    from optuna.trial import TrialState
    from playwright.sync_api import expect, sync_playwright

    from hpo_helpers.storage.checkpoints import latest_checkpoint
    from hpo_helpers.storage.layout import checkpoint_step

    ARTIFACTS.mkdir(exist_ok=True)
    db = f"sqlite:///{project.output_dir / 'tiny' / 'study.db'}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = _panel_page(browser, voila_panel)
            page.get_by_role("button", name="Resume").click()
            expect(page.get_by_text("Trial:").first).to_be_visible(timeout=120_000)  # stepping
            page.get_by_role("button", name="Stop now").click()
            expect(page.get_by_text("Interrupted by the Stop now button").first).to_be_visible(
                timeout=120_000)
            page.screenshot(path=str(ARTIFACTS / "panel-stopped.png"), full_page=True)
            study = optuna.load_study(study_name="hpo_tiny", storage=db)
            stopped = study.trials[1]
            assert stopped.state == TrialState.FAIL and stopped.user_attrs["interrupted"]
            ckpt = latest_checkpoint(project.output_dir / "tiny" / "trials" / "hpo_tiny"
                                     / "trial_1")
            assert ckpt is not None
            step = checkpoint_step(ckpt)
            page.get_by_role("button", name="Resume").click()
            expect(page.get_by_text("Sweep complete: 3/3 trials COMPLETE").first).to_be_visible(
                timeout=300_000)
            page.screenshot(path=str(ARTIFACTS / "panel-resumed.png"), full_page=True)
        finally:
            browser.close()
    study = optuna.load_study(study_name="hpo_tiny", storage=db)
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 1)
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["resumed_from_step"] == step
