"""MLflow tracking against a real MLflow SQLite store (Azure's MLClient is the only fake)."""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient
from optuna.trial import TrialState

from hpo_helpers import load_configs, run_sweep
from hpo_helpers.core.redaction import mask
from hpo_helpers.core.runtime import detect
from hpo_helpers.tracking.setup import setup_mlflow_cross_platform, setup_mlflow_from_config

from .test_kill_resume import _checkpointed, _env, _running_trial, _slower_trials, _wait_for

SECRET = "s3cr3t-Pa55word"


def _runs(uri: str, experiment: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("hpo.kind") == "sweep"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Workspace:
    def __init__(self, uri: str) -> None:
        self.mlflow_tracking_uri = uri


class FakeMLClient:
    """Stands in for azure.ai.ml.MLClient: Azure is unreachable from here."""

    def __init__(self, uri: str | None = None, error: Exception | None = None) -> None:
        self.workspace_name = "ws"
        outer = self

        class Workspaces:
            def get(self, name):
                if error is not None:
                    raise error
                outer.asked = name
                return _Workspace(uri)

        self.workspaces = Workspaces()


@pytest.mark.slow
def test_killed_and_resumed_sweep_is_one_sweep_in_mlflow(project, tmp_path) -> None:
    _slower_trials(project)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = project.run_args("--mlflow-experiment", "resume-ner", "--tracking-uri", uri)
    db = project.output_dir / "tiny" / "study.db"
    trials = project.output_dir / "tiny" / "trials" / "hpo_tiny"
    proc = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    _wait_for(lambda: _running_trial(db) == 1 and _checkpointed(trials, 1), 240, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    rerun = subprocess.run(args, env=_env(), capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]

    study = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{db}")
    client, parents, children = _runs(uri, "resume-ner")
    assert len(parents) == 1
    parent = parents[0]
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    finished = [c for c in children if c.info.status == "FINISHED"]
    assert sorted(int(c.data.tags["trial_number"]) for c in finished) == \
        sorted(t.number for t in complete)
    for t in complete:
        child = client.get_run(t.user_attrs["mlflow_run_id"])
        assert child.info.status == "FINISHED"
        assert child.data.metrics["final_f1"] == pytest.approx(t.value)
        assert child.data.params["learning_rate"] == str(t.params["learning_rate"])
        history = client.get_metric_history(child.info.run_id, "val_f1")
        assert [m.step for m in history] == [1, 2, 3]
    killed = client.get_run(study.trials[1].user_attrs["mlflow_run_id"])
    assert killed.info.status == "KILLED" and killed.data.tags["interrupted"] == "true"
    retry = next(t for t in complete if t.user_attrs.get("retry_of") == 1)
    retry_run = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert retry_run.data.tags["retry_of_trial"] == "1"
    assert retry_run.data.tags["retry_of_run"] == killed.info.run_id
    m = parent.data.metrics
    assert m["n_trials"] == len(study.trials)
    assert m["n_completed_trials"] == len(complete)
    assert m["best_value"] == pytest.approx(study.best_value) == pytest.approx(m["best_f1"])
    assert parent.data.tags["best_trial_run_id"] == study.best_trial.user_attrs["mlflow_run_id"]
    assert parent.data.params["resumed_from_checkpoint"] == "false"
    assert parent.data.tags["resumed_from_checkpoint"] == "true"
    assert m["resume_count"] == 1
    # The seed's query finds the sweep and its checkpoint.
    import mlflow

    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=["resume-ner"],
                               filter_string="params.checkpoint_enabled = 'true'")
    assert list(found["run_id"]) == [parent.info.run_id]
    assert Path(found["params.checkpoint_path"][0]).is_file()


def test_azure_workspace_uri_is_used_and_runs_land_there(project, tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'azure.db'}"
    fake = FakeMLClient(uri)
    setup = setup_mlflow_cross_platform("az-exp", ml_client=fake, workspace_name="my-ws")
    assert setup.azure and setup.tracking_uri == uri and fake.asked == "my-ws"
    cfg = load_configs(project.config_dir, project.hpo)
    import dataclasses

    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=1))
    run_sweep(cfg, output_dir=project.output_dir, tracking=setup)
    _, parents, children = _runs(uri, "az-exp")
    assert len(parents) == 1 and len(children) == 1
    assert children[0].info.status == "FINISHED"


def _azure_config(project, enabled: bool = True) -> None:
    (project.config_dir / "mlflow.yaml").write_text(
        f"azure_ml:\n  enabled: {str(enabled).lower()}\n  workspace_name: ws\n")


ENV = {"AZURE_SUBSCRIPTION_ID": "sub", "AZURE_RESOURCE_GROUP": "rg"}


@pytest.mark.parametrize("case,env,factory,expected", [
    ("no env vars", {}, None, r"AZURE_RESOURCE_GROUP, AZURE_SUBSCRIPTION_ID not set"),
    ("no packages", ENV, None, r"Azure ML packages are missing .*pip install"),
    ("credential raises", ENV,
     lambda s, g, w: (_ for _ in ()).throw(type("ClientAuthenticationError", (Exception,), {})(
         "DefaultAzureCredential failed to retrieve a token")),
     r"Azure ML credential failed"),
    ("workspace lookup raises", ENV,
     lambda s, g, w: FakeMLClient(error=LookupError("ResourceNotFound: workspace ws")),
     r"Azure ML workspace lookup failed for workspace 'ws'"),
])
def test_azure_failures_fall_back_to_local_with_one_warning(project, tmp_path, caplog, case,
                                                            env, factory, expected) -> None:
    _azure_config(project)
    with caplog.at_level(logging.WARNING):
        setup = setup_mlflow_from_config("exp", project.config_dir, env=env,
                                         ml_client_factory=factory, cwd=tmp_path)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    import re

    assert re.search(expected, warnings[0].getMessage()), warnings[0].getMessage()
    assert setup is not None and not setup.azure
    assert setup.tracking_uri == f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"


def test_azure_is_not_imported_when_disabled(project, tmp_path) -> None:
    code = (
        "import sys; from hpo_helpers.tracking.setup import setup_mlflow_from_config as s; "
        f"s('exp', {str(project.config_dir)!r}, cwd={str(tmp_path)!r}); "
        "print(any(m.startswith(('azure', 'azureml')) for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_setup_twice_is_harmless_and_local_store_is_its_own_file(project, tmp_path) -> None:
    a = setup_mlflow_from_config("twice", project.config_dir, cwd=tmp_path)
    b = setup_mlflow_from_config("twice", project.config_dir, cwd=tmp_path)
    assert a.experiment_id == b.experiment_id
    assert a.local_db == tmp_path / "mlruns" / "mlflow.db"


def test_colab_store_lives_locally_and_is_snapshotted_to_drive(project, tmp_path) -> None:
    root = tmp_path / "vm"
    (root / "content" / "drive" / "MyDrive").mkdir(parents=True)
    rt = detect({"COLAB_GPU": "1"}, root=root)
    setup = setup_mlflow_cross_platform("colab", runtime=rt)
    assert setup.local_db == root / "content/resume-ner/mlruns/mlflow.db"
    assert setup.durable_db == root / "content/drive/MyDrive/resume-ner-checkpoints/mlruns/mlflow.db"
    cfg = load_configs(project.config_dir, project.hpo)
    import dataclasses

    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=1))
    run_sweep(cfg, runtime=rt, tracking=setup)
    _, parents, children = _runs(f"sqlite:///{setup.durable_db}", "colab")
    assert len(parents) == 1 and len(children) == 1


def test_unreachable_tracking_server_warns_once_and_the_sweep_finishes(project, caplog,
                                                                       monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://user:{SECRET}@127.0.0.1:{_free_port()}"
    with caplog.at_level(logging.WARNING):
        setup = setup_mlflow_cross_platform("exp", tracking_uri=uri)
        cfg = load_configs(project.config_dir, project.hpo)
        outcome = run_sweep(cfg, output_dir=project.output_dir, tracking=setup)
    # issue 22 item 6: the local store takes over (tracking is not simply off)
    assert setup is not None and setup.tracking_uri.startswith("sqlite:///")
    assert len(outcome.study.get_trials(states=(TrialState.COMPLETE,))) == 2
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING
                and "learned nothing" not in r.getMessage().lower()]
    assert len(warnings) == 1 and "Falling back to the local store" in warnings[0].getMessage()
    assert SECRET not in caplog.text


@pytest.mark.slow
def _serves(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_tracking_server_dying_mid_sweep_warns_once_and_the_sweep_finishes(project, tmp_path,
                                                                           caplog,
                                                                           monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'srv.db'}", "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while not _serves(f"{uri}/health") and time.monotonic() < deadline:
            time.sleep(0.5)
        setup = setup_mlflow_cross_platform("srv", tracking_uri=uri)
        # the server's store, not the local fallback that a server still starting would give
        assert setup is not None and setup.tracking_uri == uri, "mlflow server did not start"
        caplog.clear()
        import threading

        db = project.output_dir / "tiny" / "study.db"

        def kill_after_first_trial() -> None:
            while time.monotonic() < deadline + 300:
                con = None
                try:
                    import sqlite3

                    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                    n = con.execute("SELECT count(*) FROM trials WHERE state='COMPLETE'").fetchone()
                    if n and n[0] >= 1:
                        import os

                        os.killpg(server.pid, signal.SIGKILL)
                        return
                except Exception:  # noqa: BLE001 - the file may not exist yet
                    pass
                finally:
                    if con is not None:
                        con.close()
                time.sleep(0.05)

        watcher = threading.Thread(target=kill_after_first_trial, daemon=True)
        watcher.start()
        project.write_hpo(max_trials=3)
        cfg = load_configs(project.config_dir, project.hpo)
        with caplog.at_level(logging.WARNING):
            outcome = run_sweep(cfg, output_dir=project.output_dir, tracking=setup)
        watcher.join(5)
        assert len(outcome.study.get_trials(states=(TrialState.COMPLETE,))) == 3
        warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and "MLflow tracking failed" in warnings[0].getMessage()
    finally:
        import os

        try:
            os.killpg(server.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.wait(30)


def test_no_secret_reaches_params_tags_or_logs(project, tmp_path, caplog, monkeypatch) -> None:
    monkeypatch.setenv("AZURE_CLIENT_SECRET", SECRET)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", SECRET)
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    with caplog.at_level(logging.DEBUG, logger="hpo_helpers"):
        setup = setup_mlflow_cross_platform("sec", tracking_uri=uri)
        cfg = load_configs(project.config_dir, project.hpo)
        run_sweep(cfg, output_dir=project.output_dir, tracking=setup)
    client, parents, children = _runs(uri, "sec")
    for run in parents + children:
        blob = " ".join([*run.data.params.values(), *run.data.tags.values()])
        assert SECRET not in blob
    assert SECRET not in caplog.text


@pytest.mark.parametrize("raw,expected", [
    ("postgresql+psycopg://bob:hunter2@db:5432/x", "postgresql+psycopg://bob:***@db:5432/x"),
    ("https://acct.blob.core.windows.net/c?sv=1&sig=abc%2Fdef&se=2", "https://acct.blob.core."
     "windows.net/c?sv=1&sig=***&se=2"),
    ("AccountKey=abcd==;EndpointSuffix=core", "AccountKey=***;EndpointSuffix=core"),
    ("client_secret: xyz", "client_secret: ***"),
    ("sqlite:////tmp/a.db", "sqlite:////tmp/a.db"),
])
def test_mask(raw: str, expected: str) -> None:
    assert mask(raw) == expected
