"""The notebooks, executed by papermill with a real kernel on the smoke settings."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import papermill as pm
import pytest

from hpo_helpers.frontends.notebook import NOTEBOOK_PARAMETERS

from .conftest import REPO

NOTEBOOKS = REPO / "notebooks"
NAMES = sorted(NOTEBOOK_PARAMETERS)


@pytest.fixture(autouse=True)
def _project_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Kernels inherit HPO_PROJECT_DIR: a notebook run from the checkout writes its outputs,
    mlruns and tracking choice into the test's folder, not into the checkout."""
    monkeypatch.setenv("HPO_PROJECT_DIR", str(tmp_path / "project"))


def _execute(name: str, out: Path, **params) -> nbformat.NotebookNode:
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out), parameters=params,
                        cwd=str(NOTEBOOKS), kernel_name="python3", progress_bar=False,
                        execution_timeout=600)
    return nbformat.read(out, as_version=4)


def _outputs(nb: nbformat.NotebookNode) -> list[dict]:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def _text(nb: nbformat.NotebookNode) -> str:
    parts = []
    for o in _outputs(nb):
        parts.append(o.get("text", ""))
        parts += [str(v) for k, v in o.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(parts)


@pytest.mark.parametrize("name", NAMES)
def test_committed_without_outputs_and_thin(name: str) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    declared = [t.id for node in ast.parse(tagged[0].source).body for t in node.targets]
    assert tuple(declared) == NOTEBOOK_PARAMETERS[name]
    for node in ast.parse(tagged[0].source).body:  # literals only
        ast.literal_eval(node.value)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        assert not cell.get("outputs") and cell.get("execution_count") is None
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.For, ast.While,
                                         ast.Lambda)), f"{name}: logic belongs in hpo_helpers"


def test_01_sets_up_local_tracking(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    nb = _execute("01_setup_mlflow", tmp_path / "01.ipynb", config_dir=str(REPO / "config"),
                  experiment_name="nb-test", tracking_uri=uri)
    assert not [o for o in _outputs(nb) if o.get("output_type") == "error"]
    assert "TrackingSetup(tracking_uri='sqlite:///" in _text(nb)


def _widget_state(nb: nbformat.NotebookNode) -> dict:
    return nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]


@pytest.mark.slow
def test_02_runs_then_resumes_and_03_inspects(project, tmp_path: Path) -> None:
    common = dict(config_dir=str(project.config_dir), hpo_config=str(project.hpo),
                  output_dir=str(project.output_dir), auto_start=True, max_trials=2,
                  experiment_name="nb-sweep")
    first = _execute("02_run_hpo", tmp_path / "02a.ipynb", **common)
    text = _text(first)
    assert not [o for o in _outputs(first) if o.get("output_type") == "error"]
    assert "New study hpo_tiny" in text and "Sweep complete: 2/2" in text
    progress = [s["state"] for s in _widget_state(first).values()
                if s["model_name"] == "IntProgressModel"]
    trials_bar = next(p for p in progress if p["description"].startswith("Trials"))
    assert trials_bar["value"] == trials_bar["max"] == 2
    assert any(p["description"].startswith("Trial ") and p["value"] == p["max"] > 0
               for p in progress)

    second = _execute("02_run_hpo", tmp_path / "02b.ipynb", **{**common, "max_trials": 3})
    text2 = _text(second)
    assert "Resuming: Resume: 2 of 3 trials complete" in text2
    assert "Resumed study hpo_tiny" in text2 and "Sweep complete: 3/3" in text2

    third = _execute("03_inspect_checkpoints", tmp_path / "03.ipynb",
                     config_dir=str(project.config_dir), hpo_config=str(project.hpo),
                     output_dir=str(project.output_dir))
    assert not [o for o in _outputs(third) if o.get("output_type") == "error"]
    pngs = [o for o in _outputs(third) if "image/png" in o.get("data", {})]
    assert len(pngs) >= 3
    html = _text(third)
    assert "param_learning_rate" in html and "COMPLETE" in html and "hpo_tiny" in html
    assert "micro average" in html and "macro average" in html  # the chosen model's test table
    assert "# Model selection: tiny" in html  # the selection cell (issue 12)


def test_02_wrong_parameter_name_is_an_error(project, tmp_path: Path) -> None:
    with pytest.raises(pm.PapermillExecutionError, match=r"unknown parameter\(s\) max_trails"):
        _execute("02_run_hpo", tmp_path / "bad.ipynb", config_dir=str(project.config_dir),
                 hpo_config=str(project.hpo), max_trails=3)


def test_02_parameters_from_a_yaml_file_via_the_papermill_cli(project, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"config_dir": str(project.config_dir),
                                  "hpo_config": str(project.hpo),
                                  "output_dir": str(project.output_dir), "auto_start": True,
                                  "max_trials": 1}))
    res = subprocess.run([sys.executable, "-m", "papermill", str(NOTEBOOKS / "02_run_hpo.ipynb"),
                          str(tmp_path / "out.ipynb"), "-f", str(params), "--cwd",
                          str(NOTEBOOKS), "-k", "python3"], capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Sweep complete: 1/1" in _text(nbformat.read(tmp_path / "out.ipynb", as_version=4))
