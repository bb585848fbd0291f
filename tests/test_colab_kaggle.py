"""Notebooks where users open them (issue 14): set-up, parameters, headless runs, Azure caps."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import tomllib

from hpo_helpers import ConfigError
from hpo_helpers.core.runtime import Runtime, detect, headless_reason
from hpo_helpers.frontends.install import DIST_NAME, wheelhouse
from hpo_helpers.frontends.notebook import check_parameters, injected_parameters, project_folder
from hpo_helpers.tracking.setup import (
    load_tracking_choice,
    project_tracking_uri,
    save_tracking_choice,
    setup_mlflow_cross_platform,
    setup_mlflow_from_config,
)

from .conftest import REPO

NOTEBOOKS = REPO / "notebooks"


# -- project_source ------------------------------------------------------------------------------

def test_wheelhouse_is_a_folder_of_wheels_without_a_project(tmp_path: Path) -> None:
    assert wheelhouse(str(tmp_path)) is None
    (tmp_path / "hpo_helpers-0.1.0-py3-none-any.whl").write_bytes(b"")
    assert wheelhouse(str(tmp_path)) == tmp_path
    assert wheelhouse(str(REPO)) is None  # a project folder is installed, not searched
    assert wheelhouse("git+https://github.com/u/resume-ner@v1") is None


# -- parameters ----------------------------------------------------------------------------------

def _ns(**values):
    return {"project_source": None, "config_dir": None, "experiment_name": "x",
            "tracking_uri": None, **values}


def test_only_injected_names_are_checked() -> None:
    ns = _ns(In=["", "# Parameters\nexperiment_name = 'y'\n"], params={}, runtime=1, mine=2)
    assert injected_parameters(ns) == {"experiment_name"}
    assert check_parameters(ns, "01_setup_mlflow")["experiment_name"] == "x"
    assert injected_parameters(_ns(In=["x = 1"])) is None


def test_an_injected_typo_is_an_error() -> None:
    ns = _ns(In=["# Parameters\nexperimnt_name = 'y'\n"])
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) experimnt_name\. Fix: use "):
        check_parameters(ns, "01_setup_mlflow")


def test_a_missing_declared_parameter_is_an_error() -> None:
    ns = _ns()
    del ns["tracking_uri"]
    with pytest.raises(ConfigError, match=r"parameter\(s\) tracking_uri missing"):
        check_parameters(ns, "01_setup_mlflow")


def test_setup_cell_twice_and_variables_before_it(tmp_path: Path, monkeypatch) -> None:
    """In one kernel: own variables, papermill parameters, the set-up cell run twice."""
    monkeypatch.setenv("HPO_PROJECT_DIR", str(tmp_path / "project"))
    nb = nbformat.read(NOTEBOOKS / "01_setup_mlflow.ipynb", as_version=4)
    setup_cell = nb.cells[2]
    nb.cells.insert(1, nbformat.v4.new_code_cell("my_own = 42\nimport json"))
    nb.cells.insert(4, nbformat.v4.new_code_cell(setup_cell.source))
    src = tmp_path / "twice.ipynb"
    nbformat.write(nb, src)
    pm.execute_notebook(str(src), str(tmp_path / "out.ipynb"), kernel_name="python3",
                        parameters={"experiment_name": "twice",
                                    "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}"},
                        cwd=str(NOTEBOOKS), progress_bar=False)
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    errors = [o for c in out.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    choice = load_tracking_choice(tmp_path / "project")
    assert choice == {"experiment_name": "twice", "tracking_uri": f"sqlite:///{tmp_path / 'm.db'}",
                      "azure": False}


def test_papermill_from_the_project_root_finds_the_project(tmp_path: Path, monkeypatch) -> None:
    """``papermill notebooks/01_setup_mlflow.ipynb out.ipynb`` run from the checkout root."""
    monkeypatch.setenv("HPO_PROJECT_DIR", str(tmp_path / "project"))
    pm.execute_notebook(str(NOTEBOOKS / "01_setup_mlflow.ipynb"), str(tmp_path / "o.ipynb"),
                        kernel_name="python3", cwd=str(REPO), progress_bar=False,
                        parameters={"experiment_name": "root"})
    text = str(nbformat.read(tmp_path / "o.ipynb", as_version=4))
    assert "Project folder: " in text and "TrackingSetup(" in text
    assert (tmp_path / "project" / "config" / "hpo" / "smoke.yaml").is_file()
    assert (tmp_path / "project" / "mlruns" / "mlflow.db").is_file()


# -- project folder ------------------------------------------------------------------------------

def test_project_folder_per_runtime(tmp_path: Path) -> None:
    assert project_folder(Runtime("local", tmp_path), {"HPO_PROJECT_DIR": str(tmp_path)}) == (
        tmp_path, "HPO_PROJECT_DIR")
    # From this checkout the package finds its checkout root, whatever the runtime.
    assert project_folder(Runtime("colab", tmp_path), {})[0] == REPO


# -- headless --------------------------------------------------------------------------------------

@pytest.mark.parametrize(("env", "papermill", "stdin", "expected"), [
    ({"KAGGLE_KERNEL_RUN_TYPE": "Batch"}, False, True, "Kaggle batch commit"),
    ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, False, True, None),
    ({}, True, False, "papermill parameters injected"),
    ({}, False, False, "no front end"),
    ({}, False, True, None),
    ({"VOILA_BASE_URL": "/"}, True, False, None),  # Voila: someone is looking
    ({"HPO_HEADLESS": "1"}, False, True, "HPO_HEADLESS is set"),
    ({"HPO_HEADLESS": "0"}, True, False, None),
])
def test_headless_detection(env, papermill, stdin, expected) -> None:
    reason = headless_reason(env, papermill=papermill, allow_stdin=stdin)
    assert reason == expected or (expected and reason.startswith(expected))


# -- tracking -----------------------------------------------------------------------------

def test_tracking_choice_has_no_password(tmp_path: Path) -> None:
    from hpo_helpers.tracking.setup import TrackingSetup

    setup = TrackingSetup("postgresql://me:s3cret@db:5432/ml", "exp", "1", azure=False)
    path = save_tracking_choice(setup, tmp_path)
    assert "s3cret" not in path.read_text()
    assert load_tracking_choice(tmp_path)["tracking_uri"] == "postgresql://me@db:5432/ml"
    assert project_tracking_uri(tmp_path) == "postgresql://me@db:5432/ml"


def test_project_store_is_the_default_reader_uri(tmp_path: Path) -> None:
    uri = project_tracking_uri(tmp_path / "p", runtime=Runtime("local", tmp_path))
    assert uri == f"sqlite:///{tmp_path / 'p' / 'mlruns' / 'mlflow.db'}"


@pytest.fixture
def blackhole():
    """A loopback port that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield srv.getsockname()
    srv.close()


class _HangingWorkspaces:
    def __init__(self, addr) -> None:
        self.addr = addr

    def get(self, name):
        with socket.create_connection(self.addr) as s:  # no timeout: hangs like a dead network
            s.sendall(b"GET /workspaces HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(1)
        raise AssertionError("the blackhole answered")


class _FakeMLClient:
    workspace_name = "ws"

    def __init__(self, addr) -> None:
        self.workspaces = _HangingWorkspaces(addr)


@pytest.fixture
def fallback_clock(monkeypatch):
    """Records when the local fallback starts (creating MLflow's tables takes its own time)."""
    import hpo_helpers.tracking.setup as ms

    times: list[float] = []
    real = ms._local

    def local(*args, **kwargs):
        times.append(time.monotonic())
        return real(*args, **kwargs)

    monkeypatch.setattr(ms, "_local", local)
    return times


def test_azure_workspace_lookup_on_a_dead_network_falls_back_within_the_cap(
        tmp_path: Path, blackhole, caplog, fallback_clock) -> None:
    t0 = time.monotonic()
    setup = setup_mlflow_cross_platform("az", _FakeMLClient(blackhole), timeout_s=1.0,
                                        runtime=Runtime("local", tmp_path), cwd=tmp_path, env={})
    assert fallback_clock[0] - t0 < 1.0 + 0.5
    assert setup is not None and not setup.azure and setup.tracking_uri.startswith("sqlite:///")
    assert "workspace lookup (timed out) failed" in caplog.text


def test_azure_credential_on_a_dead_network_falls_back_within_the_cap(
        project, tmp_path: Path, blackhole, caplog, fallback_clock) -> None:
    (project.config_dir / "mlflow.yaml").write_text(
        "azure_ml: {enabled: true, workspace_name: ws, timeout_seconds: 1}\n")

    def factory(sub, group, ws):  # a credential that dials the blackhole
        with socket.create_connection(blackhole) as s:
            s.recv(1)

    env = {"AZURE_SUBSCRIPTION_ID": "s", "AZURE_RESOURCE_GROUP": "g"}
    t0 = time.monotonic()
    setup = setup_mlflow_from_config("az", project.config_dir, env=env, ml_client_factory=factory,
                                     runtime=Runtime("local", tmp_path), cwd=tmp_path)
    assert fallback_clock[0] - t0 < 1.0 + 0.5
    assert setup is not None and not setup.azure
    assert "took longer than 1 s" in caplog.text


def test_azure_timeout_must_be_positive(project) -> None:
    (project.config_dir / "mlflow.yaml").write_text(
        "azure_ml: {enabled: true, timeout_seconds: 0}\n")
    with pytest.raises(ConfigError,
                       match=r"'azure_ml\.timeout_seconds' = 0\.0 is out of range \(must be > 0\)"):
        setup_mlflow_from_config("az", project.config_dir, env={})


def test_mlflow_tracking_uri_of_an_azure_ml_job_is_honoured(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'job' / 'mlflow.db'}"
    (tmp_path / "job").mkdir()
    rt = detect({"AZUREML_RUN_ID": "run-1"}, root=tmp_path)
    setup = setup_mlflow_cross_platform("job", runtime=rt, cwd=tmp_path,
                                        env={"MLFLOW_TRACKING_URI": uri})
    assert setup.tracking_uri == uri
    assert not (tmp_path / "mlruns").exists()


# -- README links -------------------------------------------------------------------------

def test_readme_links_are_built_from_the_one_repository_url() -> None:
    url = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Repository"]
    readme = (REPO / "README.md").read_text()
    slug = re.sub(r"^https://github\.com/", "", url)
    for name in ("01_setup_mlflow", "02_run_hpo", "03_inspect_checkpoints"):
        assert (f"https://colab.research.google.com/github/{slug}/blob/main/notebooks/"
                f"{name}.ipynb") in readme
    assert f"https://kaggle.com/kernels/welcome?src={url}/blob/main/notebooks/02_run_hpo.ipynb" \
        in readme
    others = set(re.findall(r"github\.com/([\w.-]+/[\w.-]+)", readme)) - {slug}
    assert not others, f"repository URLs other than pyproject's: {others}"


def test_unset_source_outside_a_checkout_is_a_one_line_error(tmp_path: Path) -> None:
    """The set-up cell itself, with no site-packages (so no hpo_helpers) and no source."""
    import subprocess
    import sys

    nb = nbformat.read(NOTEBOOKS / "02_run_hpo.ipynb", as_version=4)
    code = "project_source = None\n" + nb.cells[2].source
    res = subprocess.run([sys.executable, "-I", "-S", "-c", code], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 1 and last.startswith("ModuleNotFoundError: hpo_helpers is not "
                                                    "installed") and "set project_source" in last



# -- installing into the kernel ------------------------------------------------------------------

@pytest.fixture
def fake_metadata(monkeypatch):
    import importlib.metadata as md

    real = md.requires
    reqs = ["PyYAML>=6", "surely-not-installed-pkg>=1; extra == \"widgets\"",
            "another-missing-pkg; extra == \"plots\"",
            "hpo-helpers[widgets]; extra == \"notebooks\"", "papermill; extra == \"notebooks\""]
    monkeypatch.setattr(md, "requires",
                        lambda name: reqs if name == DIST_NAME else real(name))


def test_missing_requirements_follow_the_extras(fake_metadata) -> None:
    from hpo_helpers.frontends.install import missing_requirements

    assert missing_requirements(("widgets",)) == ["surely-not-installed-pkg>=1"]
    assert missing_requirements(("notebooks",)) == ["surely-not-installed-pkg>=1"]
    assert missing_requirements(()) == []  # PyYAML is there: nothing to do, pip not run


def test_install_pins_torch_and_uses_only_the_wheelhouse(fake_metadata, tmp_path: Path) -> None:
    import importlib.metadata as md

    from hpo_helpers.frontends.install import install_missing

    (tmp_path / "x-1-py3-none-any.whl").write_bytes(b"")
    calls: list[list[str]] = []

    def run(args) -> None:
        args = list(args)
        constraint = Path(args[args.index("--constraint") + 1]).read_text()
        calls.append([*args, constraint])

    assert install_missing(extras=("widgets", "plots"), source=str(tmp_path), run=run) == []
    (args,) = calls
    assert args[:3] == ["--no-index", "--find-links", str(tmp_path)]
    assert f"torch=={md.version('torch')}\n" in args[-1]
    assert {"surely-not-installed-pkg>=1", "another-missing-pkg"} <= set(args)


def test_03_reads_the_project_store_and_writes_nothing_where_it_runs(tmp_path: Path,
                                                                      monkeypatch) -> None:
    project = tmp_path / "project"
    monkeypatch.setenv("HPO_PROJECT_DIR", str(project))
    work = tmp_path / "work"
    work.mkdir()
    nb = work / "03.ipynb"
    nb.write_text((NOTEBOOKS / "03_inspect_checkpoints.ipynb").read_text())
    pm.execute_notebook(str(nb), str(tmp_path / "out.ipynb"), kernel_name="python3",
                        cwd=str(work), progress_bar=False, parameters={"backbones": ["tiny"]})
    assert sorted(p.name for p in work.iterdir()) == ["03.ipynb"]
    assert (project / "mlruns" / "mlflow.db").is_file()  # the project's store was searched


def test_a_project_source_path_that_does_not_exist_is_a_one_line_error(tmp_path: Path) -> None:
    """The set-up cell, run where hpo_helpers is not importable (``python -S``: no site)."""
    nb = nbformat.read(NOTEBOOKS / "02_run_hpo.ipynb", as_version=4)
    cell = next(c.source for c in nb.cells if "project_source" in c.source
                and "find_spec" in c.source)
    code = "project_source = '/kaggle/input/nope/hpo_helpers-0.1.0-py3-none-any.whl'\n" + cell
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, env=env)
    assert res.returncode == 1
    last = res.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"FileNotFoundError: project_source '/kaggle/input/nope/hpo_helpers-0\.1"
                        r"\.0-py3-none-any\.whl' does not exist\. Fix: give an existing wheel.*",
                        last), res.stderr
    assert "pip" not in res.stderr.replace("wheel", "")


def test_azure_ml_job_without_a_tracking_uri_keeps_its_store_under_outputs(tmp_path) -> None:
    from hpo_helpers.storage.paths import mlflow_db_paths

    rt = detect({"AZUREML_RUN_ID": "job-1"}, root=tmp_path)
    assert rt.kind == "azureml"
    assert mlflow_db_paths(rt, cwd=tmp_path) == (tmp_path / "outputs/mlruns/mlflow.db",) * 2
    setup = setup_mlflow_cross_platform("job", runtime=rt, cwd=tmp_path, env={})
    assert setup.tracking_uri == f"sqlite:///{tmp_path / 'outputs/mlruns/mlflow.db'}"
