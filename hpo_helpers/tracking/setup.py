"""MLflow set-up with the API users of the original notebooks know.

``setup_mlflow_cross_platform(experiment_name, ml_client=None)``: an Azure ML workspace when an
``MLClient`` is given, else a local SQLite store chosen by runtime. ``setup_mlflow_from_config(
experiment_name, config_dir)``: the same, driven by ``config/mlflow.yaml`` and
``config/infrastructure.yaml``. Both return a :class:`TrackingSetup` (or None when even local
tracking is impossible) and never raise for tracking problems: one warning names the cause and
the fix, and the search goes on. Azure packages are imported only when Azure is used.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.names import path_component
from ..core.redaction import mask, register_secret
from ..core.runtime import AZUREML, Runtime, detect, environ
from ..settings.config import load_infrastructure_config, load_mlflow_config
from ..storage.paths import mlflow_db_paths
from ..storage.snapshot import restore_if_missing, sqlite_url

__all__ = ["AZURE_TIMEOUT_S", "TrackingSetup", "load_tracking_choice", "notebook_tracking",
           "project_tracking_uri", "save_tracking_choice",
           "setup_mlflow_cross_platform", "setup_mlflow_from_config"]

logger = logging.getLogger(__name__)

_AZURE_PIP = "pip install -r requirements-azure.txt (azure-ai-ml azure-identity azureml-mlflow)"
_ENV = re.compile(r"\$\{(\w+)\}")
#: Cap in seconds on each Azure call (credential, MLClient, workspace lookup): a dead network
#: falls back to local tracking this fast (``azure_ml.timeout_seconds`` in mlflow.yaml).
AZURE_TIMEOUT_S = 5.0
#: MLflow's HTTP timeout per request (one retry) unless ``MLFLOW_HTTP_REQUEST_TIMEOUT`` is set.
SERVER_TIMEOUT_S = 5.0
#: Where notebook 01 leaves its tracking choice for 02 and 03, under the project folder.
TRACKING_CHOICE = Path("outputs") / "tracking.json"
_URL_PASSWORD = re.compile(r"^(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):[^@\s/]*@")


@dataclass(frozen=True)
class TrackingSetup:
    """What tracking was chosen. ``local_db``/``durable_db``: the SQLite store's live file and
    its durable copy (they differ on Colab with Drive, where the sweep snapshots it)."""

    tracking_uri: str
    experiment_name: str
    experiment_id: str
    azure: bool
    local_db: Path | None = None
    durable_db: Path | None = None

    @property
    def snapshots_needed(self) -> bool:
        return self.local_db is not None and self.durable_db not in (None, self.local_db)


def _capped(call: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """``call()``, or :class:`TimeoutError` after ``timeout_s`` (the call is left to finish in
    a daemon thread: Azure's SDK has no cancel, and a hung socket must not hold the search)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"azure-{what}", daemon=True)
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise TimeoutError(f"{what} took longer than {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def save_tracking_choice(setup: TrackingSetup, project_dir: Path | str) -> Path:
    """Write notebook 01's choice (experiment, URI without its password) where 02 and 03 find
    it: ``{project_dir}/outputs/tracking.json`` (on Colab with Drive the project folder is on
    Drive, so the choice survives the VM). The runtime's own local store is saved as
    ``tracking_uri: null``, not as its path on this VM's disk: 02 then opens it the way that
    copies it to the durable folder. Credentials stay in the environment."""
    path = Path(project_dir) / TRACKING_CHOICE
    path.parent.mkdir(parents=True, exist_ok=True)
    uri = None if setup.local_db is not None else _URL_PASSWORD.sub(
        lambda m: f"{m.group('head')}@", setup.tracking_uri)
    data = {"experiment_name": setup.experiment_name, "tracking_uri": uri, "azure": setup.azure}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    logger.info("Tracking choice saved to %s (notebooks 02 and 03 use it)", path)
    return path


def load_tracking_choice(project_dir: Path | str,
                         runtime: Runtime | None = None) -> dict[str, Any] | None:
    """Notebook 01's saved choice (``experiment_name``, ``tracking_uri``, ``azure``) or None.

    A choice saved before the runtime's store was written as ``null`` names that store's
    path on local disk; it reads as ``null`` (the runtime's store, with its durable copy)."""
    path = Path(project_dir) / TRACKING_CHOICE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        logger.warning("Ignoring the tracking choice %s: %s. Fix: re-run notebook 01.", path, exc)
        return None
    if not isinstance(data, dict) or not data.get("experiment_name"):
        return None
    working, _ = mlflow_db_paths(runtime or detect(), cwd=Path(project_dir))
    if data.get("tracking_uri") == f"sqlite:///{working}":
        data["tracking_uri"] = None
    return data


def _stray_folder(uri: str) -> Path | None:
    """The folder MLflow makes when it first connects to ``uri``, where it is not the store's.

    MLflow creates the parent folder of a SQLite store from the URI's text without decoding
    it, so for a quoted path (a folder named ``out ?#%41``) it makes an empty
    ``out%20%3F%23%2541`` beside the real one. Returns the first such folder that does not
    exist yet (removed again after the first connection), or None."""
    if not uri.startswith("sqlite:///"):
        return None
    pasted = Path(uri.removeprefix("sqlite:///")).parent
    real = Path(urllib.parse.unquote(uri.removeprefix("sqlite:///"))).parent
    if pasted == real or pasted.exists():
        return None
    return next(p for p in (*reversed(pasted.parents), pasted) if not p.exists())


def _remove_empty(folder: Path | None) -> None:
    if folder is None or not folder.is_dir():
        return
    for sub in sorted((p for p in folder.rglob("*")), key=lambda p: len(p.parts), reverse=True):
        if not sub.is_dir() or sub.is_symlink() or any(sub.iterdir()):
            return  # something was put there: not MLflow's empty folder, left alone
        sub.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


def _experiment(uri: str, name: str, artifact_root: Path | None) -> str:
    from mlflow import MlflowClient

    stray = _stray_folder(uri)
    try:
        return _experiment_id(MlflowClient(tracking_uri=uri), name, artifact_root)
    finally:
        _remove_empty(stray)


def _experiment_id(client: Any, name: str, artifact_root: Path | None) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    # the experiment's folder: a name such as "../../x" is one safe folder (issue 23)
    location = (artifact_root / path_component(name)).absolute().as_uri() if artifact_root \
        else None
    return client.create_experiment(name, artifact_location=location)


def _activate(setup: TrackingSetup) -> TrackingSetup:
    import mlflow

    mlflow.set_tracking_uri(setup.tracking_uri)
    mlflow.set_experiment(experiment_id=setup.experiment_id)
    logger.info("MLflow tracking: %s, experiment %r (id %s)%s", mask(setup.tracking_uri),
                setup.experiment_name, setup.experiment_id, " [Azure ML]" if setup.azure else "")
    return setup


def _prefer_fast_failure(uri: str) -> None:
    # MLflow retries an unreachable server for minutes by default (and with 2 retries of 15 s
    # a silent server still cost 49.5 s): a tracking outage must cost the search seconds.
    # Users can still set these variables themselves.
    if uri.startswith(("http://", "https://", "azureml://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", f"{SERVER_TIMEOUT_S:g}")


def _explicit(experiment_name: str, tracking_uri: str, timeout_s: float) -> TrackingSetup:
    """The experiment on the server or store ``tracking_uri``; the first contact with a server
    is capped at ``timeout_s`` (one that accepts and never answers must not hold the notebook;
    a database URI is opened as it is: creating MLflow's tables takes its own time)."""
    _prefer_fast_failure(tracking_uri)
    exp_id = _capped(lambda: _experiment(tracking_uri, experiment_name, None), timeout_s,
                     "the first contact with the tracking server") \
        if tracking_uri.startswith(("http://", "https://")) else \
        _experiment(tracking_uri, experiment_name, None)
    return _activate(TrackingSetup(tracking_uri, experiment_name, exp_id, azure=False))


def _restore_from_store(durable_url: str, working: Path) -> None:
    """A fresh machine: MLflow's store comes back from the bucket before MLflow opens it."""
    from ..storage.bucket import MLFLOW_KEY, open_store, restore_database

    try:
        restore_database(open_store(durable_url), MLFLOW_KEY, working)
    except Exception as exc:  # noqa: BLE001 - tracking must never stop the search
        logger.warning("MLflow's store could not be restored from %s (%s): a new local store "
                       "starts", durable_url, mask(f"{type(exc).__name__}: {exc}")[:300])


def _local(experiment_name: str, runtime: Runtime, tracking_uri: str | None,
           cwd: Path | None, durable_url: str | None = None,
           timeout_s: float = AZURE_TIMEOUT_S) -> TrackingSetup | None:
    if tracking_uri:
        try:
            return _explicit(experiment_name, tracking_uri, timeout_s)
        except Exception as exc:  # noqa: BLE001 - tracking must never stop the search
            logger.warning("MLflow tracking URI %s could not be used (%s). Fix: check the URI "
                           "and that the server is up. Falling back to the local store.",
                           mask(tracking_uri), mask(f"{type(exc).__name__}: {exc}")[:300])
    try:
        working, durable = mlflow_db_paths(runtime, cwd=cwd, durable_url=durable_url)
        working.parent.mkdir(parents=True, exist_ok=True)
        if durable_url and not working.exists():
            _restore_from_store(durable_url, working)
        restore_if_missing(working, durable)
        uri = sqlite_url(working)  # quoted: a folder named "out ?#%41" stays one folder
        exp_id = _experiment(uri, experiment_name, working.parent / "artifacts")
        return _activate(TrackingSetup(uri, experiment_name, exp_id, azure=False,
                                       local_db=working, durable_db=durable))
    except Exception as exc:  # noqa: BLE001 - tracking must never stop the search
        logger.warning("MLflow tracking is off: the local SQLite store could not be used (%s). "
                       "Fix: check the disk; the search runs without tracking.",
                       mask(f"{type(exc).__name__}: {exc}")[:300])
        return None


def setup_mlflow_cross_platform(experiment_name: str, ml_client: Any = None, *,
                                workspace_name: str | None = None,
                                tracking_uri: str | None = None,
                                runtime: Runtime | None = None,
                                cwd: Path | str | None = None,
                                timeout_s: float = AZURE_TIMEOUT_S,
                                env: Mapping[str, str] | None = None,
                                durable_url: str | None = None) -> TrackingSetup | None:
    """Point MLflow at Azure ML (``ml_client`` given) or a local store; never raises.

    With ``ml_client``, the tracking URI is the workspace's ``mlflow_tracking_uri``
    (``ml_client.workspaces.get(workspace_name)``, capped at ``timeout_s``; the client's own
    workspace when no name is given). Inside an Azure ML job, the job's
    ``MLFLOW_TRACKING_URI`` is used unless ``tracking_uri`` is given. Any failure falls back
    to local tracking with one warning. ``durable_url`` (default ``HPO_DURABLE_URL``): a bucket
    that holds the local store's snapshots; a missing local store is restored from it first.
    """
    runtime = runtime or detect()
    env = environ() if env is None else env
    durable_url = durable_url or env.get("HPO_DURABLE_URL") or None
    base = Path(cwd) if cwd is not None else None
    job_uri = env.get("MLFLOW_TRACKING_URI") if runtime.kind == AZUREML else None
    if job_uri and not tracking_uri:
        try:
            if job_uri.startswith("azureml://"):
                import azureml.mlflow  # noqa: F401 - registers the azureml:// URI scheme
            _prefer_fast_failure(job_uri)
            exp_id = _experiment(job_uri, experiment_name, None)
            return _activate(TrackingSetup(job_uri, experiment_name, exp_id,
                                           azure=job_uri.startswith("azureml://")))
        except Exception as exc:  # noqa: BLE001 - tracking must never stop the search
            logger.warning("The Azure ML job's MLFLOW_TRACKING_URI could not be used (%s). Fix: "
                           "%s. Falling back to local tracking.",
                           mask(f"{type(exc).__name__}: {exc}")[:300], _AZURE_PIP)
    if ml_client is not None:
        name = workspace_name or getattr(ml_client, "workspace_name", None)
        try:
            workspace = _capped(lambda: ml_client.workspaces.get(name), timeout_s,
                                "Azure ML workspace lookup")
            uri = workspace.mlflow_tracking_uri
            if uri.startswith("azureml://"):
                import azureml.mlflow  # noqa: F401 - registers the azureml:// URI scheme
            _prefer_fast_failure(uri)
            exp_id = _experiment(uri, experiment_name, None)
            return _activate(TrackingSetup(uri, experiment_name, exp_id, azure=True))
        except ImportError as exc:
            logger.warning("Azure ML tracking needs azureml-mlflow (%s). Fix: %s. Falling back "
                           "to local tracking.", exc, _AZURE_PIP)
        except Exception as exc:  # noqa: BLE001 - credential, network, missing workspace
            cause = "credential" if "credential" in type(exc).__name__.lower() or \
                "authentic" in str(exc).lower() else "workspace lookup"
            cause += " (timed out)" if isinstance(exc, TimeoutError) else ""
            logger.warning("Azure ML %s failed for workspace %r (%s). Fix: check `az login` / "
                           "the service principal and the workspace name in "
                           "config/infrastructure.yaml. Falling back to local tracking.",
                           cause, name, mask(f"{type(exc).__name__}: {exc}")[:300])
    return _local(experiment_name, runtime, tracking_uri, base, durable_url, timeout_s)


def _expand(value: Any, env: Mapping[str, str], missing: list[str]) -> Any:
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in env or not env[m.group(1)]:
            missing.append(m.group(1))
            return ""
        register_secret(env[m.group(1)])  # from the environment: masked wherever printed
        return env[m.group(1)]

    return _ENV.sub(sub, value)


def _default_ml_client(subscription_id: str, resource_group: str, workspace: str) -> Any:
    from azure.ai.ml import MLClient
    from azure.identity import DefaultAzureCredential

    return MLClient(DefaultAzureCredential(), subscription_id, resource_group, workspace)


def setup_mlflow_from_config(experiment_name: str, config_dir: Path | str, *,
                             runtime: Runtime | None = None,
                             env: Mapping[str, str] | None = None,
                             tracking_uri: str | None = None,
                             ml_client_factory: Callable[[str, str, str], Any] | None = None,
                             cwd: Path | str | None = None,
                             durable_url: str | None = None) -> TrackingSetup | None:
    """Set up tracking from ``{config_dir}/mlflow.yaml`` (+ ``infrastructure.yaml`` for Azure).

    ``mlflow.yaml``: ``azure_ml: {enabled, workspace_name}`` and ``local: {tracking_uri}``.
    ``infrastructure.yaml``: ``workspace: {name, resource_group, subscription_id}`` where
    ``${AZURE_SUBSCRIPTION_ID}`` / ``${AZURE_RESOURCE_GROUP}`` come from the environment.
    Config errors raise :class:`ConfigError`; tracking problems warn and fall back.
    ``durable_url``: see :func:`setup_mlflow_cross_platform`.
    """
    cdir = Path(config_dir)
    cfg = load_mlflow_config(cdir / "mlflow.yaml")
    azure, local = dataclasses.asdict(cfg.azure_ml), dataclasses.asdict(cfg.local)
    timeout = cfg.azure_ml.timeout_seconds
    uri = tracking_uri or local.get("tracking_uri")
    runtime = runtime or detect()
    env = environ() if env is None else env
    if not azure.get("enabled", False):
        return setup_mlflow_cross_platform(experiment_name, None, tracking_uri=uri,
                                           runtime=runtime, cwd=cwd, env=env,
                                           durable_url=durable_url)
    infra_file = cdir / "infrastructure.yaml"
    infra = dataclasses.asdict(load_infrastructure_config(infra_file).workspace)
    missing: list[str] = []
    workspace = _expand(azure.get("workspace_name") or infra.get("name"), env, missing)
    subscription = _expand(infra.get("subscription_id", "${AZURE_SUBSCRIPTION_ID}"), env,
                           missing)
    group = _expand(infra.get("resource_group", "${AZURE_RESOURCE_GROUP}"), env, missing)
    client = None
    if missing or not workspace:
        logger.warning("Azure ML is enabled but %s not set. Fix: export %s (or put them in "
                       "%s). Falling back to local tracking.",
                       ", ".join(sorted(set(missing))) or "the workspace name is",
                       " and ".join(sorted(set(missing))) or "workspace_name", infra_file)
    else:
        factory = ml_client_factory or _default_ml_client
        try:
            client = _capped(lambda: factory(subscription, group, workspace), float(timeout),
                             "Azure ML credential/MLClient")
        except ImportError as exc:
            logger.warning("Azure ML packages are missing (%s). Fix: %s. Falling back to local "
                           "tracking.", exc.name or exc, _AZURE_PIP)
        except Exception as exc:  # noqa: BLE001 - credential construction failed
            logger.warning("Azure ML credential failed (%s). Fix: `az login` or set the service "
                           "principal variables. Falling back to local tracking.",
                           mask(f"{type(exc).__name__}: {exc}")[:300])
    if client is None:
        return setup_mlflow_cross_platform(experiment_name, None, tracking_uri=uri,
                                           runtime=runtime, cwd=cwd, env=env,
                                           durable_url=durable_url)
    return setup_mlflow_cross_platform(experiment_name, client, workspace_name=workspace,
                                       tracking_uri=uri, runtime=runtime, cwd=cwd,
                                       timeout_s=float(timeout), env=env,
                                       durable_url=durable_url)


def notebook_tracking(experiment_name: str | None, config_dir: Path | str,
                      project_dir: Path | str, *, tracking_uri: str | None = None,
                      save: bool = False) -> TrackingSetup | None:
    """Tracking for a notebook: the given experiment, else notebook 01's saved choice, else
    none -- said as a WARNING, since on a new VM it usually means the choice was lost or 01
    never ran. ``save`` (notebook 01) records the choice for 02 and 03. Never raises for
    tracking problems."""
    choice = None if experiment_name else load_tracking_choice(project_dir)
    if not experiment_name and choice is None:
        logger.warning("MLflow tracking is OFF for this run: no experiment_name, and notebook "
                       "01 saved no choice in %s. Fix: run notebook 01 (its choice is kept in "
                       "the project folder), or set experiment_name.",
                       Path(project_dir) / TRACKING_CHOICE)
        return None
    name = experiment_name or (choice or {})["experiment_name"]
    uri = tracking_uri or (choice or {}).get("tracking_uri")
    setup = setup_mlflow_from_config(name, config_dir, tracking_uri=uri, cwd=project_dir)
    if save and setup is not None:
        save_tracking_choice(setup, project_dir)
    return setup


def project_tracking_uri(project_dir: Path | str, *, tracking_uri: str | None = None,
                         runtime: Runtime | None = None) -> str:
    """The MLflow store a reader (notebook 03) should search: ``tracking_uri``, else notebook
    01's saved choice, else the project's local store (restored from its durable copy first;
    SQLite never opens the Drive file). Never MLflow's default ``./mlflow.db``."""
    if tracking_uri:
        return tracking_uri
    choice = load_tracking_choice(project_dir, runtime)
    if choice and choice.get("tracking_uri"):
        return str(choice["tracking_uri"])
    working, durable = mlflow_db_paths(runtime or detect(), cwd=Path(project_dir))
    working.parent.mkdir(parents=True, exist_ok=True)
    restore_if_missing(working, durable)
    return sqlite_url(working)
