"""What the more faithful Colab/Kaggle simulation found (issue 22 item 6), one test each, in
this process. The end-to-end runs on the simulated images are in ``test_vm_e2e.py``."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import tomllib

from hpo_helpers.core.runtime import Runtime
from hpo_helpers.frontends import notebook
from hpo_helpers.frontends.notebook import check_parameters
from hpo_helpers.settings.config import load_configs
from hpo_helpers.tracking.setup import (
    TRACKING_CHOICE,
    notebook_tracking,
    save_tracking_choice,
    setup_mlflow_cross_platform,
)

from .conftest import REPO, make_project

# -- the tracking choice survives the VM, and tracking off is loud ---------------------------


@pytest.fixture
def colab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    """A Colab VM under tmp_path with Drive mounted; the package is not in a checkout."""
    (tmp_path / "vm" / "content" / "drive" / "MyDrive").mkdir(parents=True)
    monkeypatch.setenv("COLAB_RELEASE_TAG", "test")
    monkeypatch.setenv("HPO_RUNTIME_ROOT", str(tmp_path / "vm"))
    monkeypatch.setattr(notebook, "_checkout", lambda: None)  # opened alone, installed
    monkeypatch.setattr(notebook, "default_config_dir", lambda: REPO / "config")
    return Runtime("colab", tmp_path / "vm", drive_mounted=True)


def test_01s_choice_of_the_local_store_reopens_it_with_its_drive_copy(project, colab) -> None:
    setup = setup_mlflow_cross_platform("exp", runtime=colab, cwd=project.root)
    assert setup is not None and setup.snapshots_needed  # live on /content, copied to Drive
    save_tracking_choice(setup, project.root)
    saved = json.loads((project.root / TRACKING_CHOICE).read_text())
    assert saved == {"experiment_name": "exp", "tracking_uri": None, "azure": False}
    again = notebook_tracking(None, project.config_dir, project.root)  # what 02 does
    assert again is not None and again.snapshots_needed
    assert again.durable_db == colab.root / "content/drive/MyDrive/resume-ner-checkpoints/mlruns" \
        / "mlflow.db"


def test_a_choice_saved_with_the_vms_local_path_reads_as_the_runtime_store(project,
                                                                          colab) -> None:
    """Choices written before the fix name /content/resume-ner/mlruns/mlflow.db."""
    path = project.root / TRACKING_CHOICE
    path.parent.mkdir(parents=True)
    local = colab.root / "content/resume-ner/mlruns/mlflow.db"
    path.write_text(json.dumps({"experiment_name": "exp", "tracking_uri": f"sqlite:///{local}",
                                "azure": False}))
    setup = notebook_tracking(None, project.config_dir, project.root)
    assert setup is not None and setup.snapshots_needed


def test_tracking_off_for_want_of_a_choice_is_a_warning(project, caplog) -> None:
    with caplog.at_level(logging.INFO):
        assert notebook_tracking(None, project.config_dir, project.root) is None
    (record,) = [r for r in caplog.records if "tracking is OFF" in r.getMessage()]
    assert record.levelno == logging.WARNING and "run notebook 01" in record.getMessage()


# -- the project folder (config, data, the choice) lives on Drive ------------------------------


def test_on_colab_with_drive_the_project_folder_is_on_drive(colab, capsys) -> None:
    ns = {k: None for k in notebook.NOTEBOOK_PARAMETERS["01_setup_mlflow"]}
    env = notebook.setup(ns, "01_setup_mlflow", install=False, runtime=colab, env={})
    project = colab.root / "content/drive/MyDrive/resume-ner"
    assert env.project_dir == project and (project / "config/hpo/smoke.yaml").is_file()
    assert (project / "dataset").is_dir() and not (colab.root / "content/resume-ner").exists()
    assert "Google Drive is not mounted" not in capsys.readouterr().out  # the set-up's log


def test_on_colab_without_drive_the_loss_is_said_loudly(colab, capsys) -> None:
    shutil.rmtree(colab.root / "content" / "drive")
    rt = Runtime("colab", colab.root)

    def refused(mountpoint: str) -> None:
        raise OSError("mount refused")

    ns = {k: None for k in notebook.NOTEBOOK_PARAMETERS["01_setup_mlflow"]}
    env = notebook.setup(ns, "01_setup_mlflow", install=False, runtime=rt, env={},
                         mount=refused)
    assert env.project_dir == colab.root / "content/resume-ner"
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "LOST with the VM" in x]
    assert " WARNING " in line and "config/, dataset/" in line


# -- ipywidgets: Colab's 7.7 is kept ---------------------------------------------------------


def test_the_widgets_extra_accepts_colabs_ipywidgets() -> None:
    from packaging.requirements import Requirement

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    (req,) = [Requirement(r) for r in extras["widgets"]]
    assert req.name == "ipywidgets" and req.specifier.contains("7.7.1")


def test_installing_keeps_the_kernels_own_packages(monkeypatch, tmp_path: Path) -> None:
    import importlib.metadata as md

    from hpo_helpers.frontends import install

    monkeypatch.setattr(install, "missing_requirements", lambda extras: ["surely-missing>=1"])
    seen: list[str] = []

    def run(args) -> None:
        args = list(args)
        seen.append(Path(args[args.index("--constraint") + 1]).read_text())

    install.install_missing(extras=("widgets",), run=run)
    pins = set(seen[0].split())
    assert f"ipywidgets=={md.version('ipywidgets')}" in pins
    assert f"ipykernel=={md.version('ipykernel')}" in pins
    assert f"torch=={md.version('torch')}" in pins


# -- an explicit tracking URI that fails falls back to the local store, fast ------------------


def test_a_silent_tracking_server_falls_back_to_the_local_store_within_the_cap(
        tmp_path: Path, caplog) -> None:
    with socket.socket() as srv:  # accepts connections, never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(16)
        host, port = srv.getsockname()
        t0 = time.time()
        setup = setup_mlflow_cross_platform("exp", tracking_uri=f"http://{host}:{port}",
                                            runtime=Runtime("local", tmp_path), cwd=tmp_path,
                                            timeout_s=2.0, env={})
    assert setup is not None and setup.tracking_uri == \
        f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (fallback,) = [r for r in caplog.records if "Falling back to the local store" in r.message]
    assert fallback.created - t0 < 2.0 + 1.5  # the cap (then MLflow makes its tables)


# -- papermill's -p gives a list parameter as a string ---------------------------------------


def test_a_list_parameter_given_as_a_string_is_read_as_a_list() -> None:
    names = notebook.NOTEBOOK_PARAMETERS["03_inspect_checkpoints"]
    ns = {**{k: None for k in names}, "backbones": '["tiny"]',
          "In": ["", "# Parameters\nbackbones = '[\"tiny\"]'\n"]}
    assert check_parameters(ns, "03_inspect_checkpoints")["backbones"] == ["tiny"]
    assert ns["backbones"] == ["tiny"]  # what the notebook's cells read
    ns["backbones"] = "tiny, minilm"
    assert check_parameters(ns, "03_inspect_checkpoints")["backbones"] == ["tiny", "minilm"]


# -- after a sweep whose budget a notebook raised ---------------------------------------------


@pytest.fixture(scope="module")
def raised(tmp_path_factory: pytest.TempPathFactory):
    """A tiny study of 2 trials whose config says max_trials: 1 (the notebook raised it)."""
    from hpo_helpers.sweep.run import run_sweep

    project = make_project(tmp_path_factory.mktemp("raised"))
    project.write_hpo(max_trials=1, keep_top_k=3)
    cfg = load_configs(project.config_dir, project.hpo)
    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=2))
    outcome = run_sweep(cfg, output_dir=project.output_dir)
    assert outcome.stop_reason == "Sweep complete: 2/2 trials COMPLETE"
    return project


def test_status_compares_with_the_budget_the_study_ran_with(raised) -> None:
    res = subprocess.run(raised.cli("status", "--config", str(raised.hpo), "--output-dir",
                                    str(raised.output_dir)), capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "COMPLETE 2/2 " in res.stdout, res.stdout
    assert "budget 2 trials: set by the study's last run (the config says 1" in res.stdout


def test_selection_after_a_sweep_of_another_backbone_than_the_configs(raised) -> None:
    from hpo_helpers.results.selection import selection_markdown

    other = raised.config_dir / "hpo" / "other.yaml"
    other.write_text(raised.hpo.read_text().replace("backbone: tiny", "backbone: minilm"))
    text = selection_markdown(raised.config_dir, "hpo/other.yaml",
                              output_dir=raised.output_dir, seconds=0.2)
    assert "no finished study" not in text and "tiny" in text, text


def test_kept_models_beyond_the_top_k_go_when_the_next_session_starts(raised) -> None:
    """A session killed after a trial's model was kept but before the models it pushed out
    were removed (or keep_top_k lowered): the next session removes them, even with nothing
    left to run."""
    from hpo_helpers.sweep.run import run_sweep

    models = sorted(raised.output_dir.glob("tiny/models/*/trial_*"))
    assert len(models) == 2
    raised.write_hpo(max_trials=2, keep_top_k=1)
    outcome = run_sweep(load_configs(raised.config_dir, raised.hpo),
                        output_dir=raised.output_dir)
    assert outcome.trials_run == 0
    assert len(sorted(raised.output_dir.glob("tiny/models/*/trial_*"))) == 1
