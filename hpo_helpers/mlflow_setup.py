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
import logging
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import load_infrastructure_config, load_mlflow_config
from .paths import mlflow_db_paths
from .redaction import mask
from .runtime import Runtime, detect, environ
from .snapshot import restore_if_missing

__all__ = ["TrackingSetup", "setup_mlflow_cross_platform", "setup_mlflow_from_config"]

logger = logging.getLogger(__name__)

_AZURE_PIP = "pip install -r requirements-azure.txt (azure-ai-ml azure-identity azureml-mlflow)"
_ENV = re.compile(r"\$\{(\w+)\}")


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


def _experiment(uri: str, name: str, artifact_root: Path | None) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return exp.experiment_id
    location = (artifact_root / name).absolute().as_uri() if artifact_root else None
    return client.create_experiment(name, artifact_location=location)


def _activate(setup: TrackingSetup) -> TrackingSetup:
    import mlflow

    mlflow.set_tracking_uri(setup.tracking_uri)
    mlflow.set_experiment(experiment_id=setup.experiment_id)
    logger.info("MLflow tracking: %s, experiment %r (id %s)%s", mask(setup.tracking_uri),
                setup.experiment_name, setup.experiment_id, " [Azure ML]" if setup.azure else "")
    return setup


def _prefer_fast_failure(uri: str) -> None:
    # MLflow retries an unreachable server for minutes by default; a tracking outage must cost
    # the search seconds. Users can still set these variables themselves.
    if uri.startswith(("http://", "https://", "azureml://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")


def _local(experiment_name: str, runtime: Runtime, tracking_uri: str | None,
           cwd: Path | None) -> TrackingSetup | None:
    try:
        if tracking_uri:
            _prefer_fast_failure(tracking_uri)
            exp_id = _experiment(tracking_uri, experiment_name, None)
            return _activate(TrackingSetup(tracking_uri, experiment_name, exp_id, azure=False))
        working, durable = mlflow_db_paths(runtime, cwd=cwd)
        working.parent.mkdir(parents=True, exist_ok=True)
        restore_if_missing(working, durable)
        uri = f"sqlite:///{working}"
        exp_id = _experiment(uri, experiment_name, working.parent / "artifacts")
        return _activate(TrackingSetup(uri, experiment_name, exp_id, azure=False,
                                       local_db=working, durable_db=durable))
    except Exception as exc:  # noqa: BLE001 - tracking must never stop the search
        where = mask(tracking_uri) if tracking_uri else "the local SQLite store"
        logger.warning("MLflow tracking is off: %s could not be used (%s). Fix: check the "
                       "tracking URI / that the server is up; the search runs without tracking.",
                       where, mask(f"{type(exc).__name__}: {exc}")[:300])
        return None


def setup_mlflow_cross_platform(experiment_name: str, ml_client: Any = None, *,
                                workspace_name: str | None = None,
                                tracking_uri: str | None = None,
                                runtime: Runtime | None = None,
                                cwd: Path | str | None = None) -> TrackingSetup | None:
    """Point MLflow at Azure ML (``ml_client`` given) or a local store; never raises.

    With ``ml_client``, the tracking URI is the workspace's ``mlflow_tracking_uri``
    (``ml_client.workspaces.get(workspace_name)``; the client's own workspace when no name is
    given). Any failure there falls back to local tracking with one warning.
    """
    runtime = runtime or detect()
    base = Path(cwd) if cwd is not None else None
    if ml_client is not None:
        name = workspace_name or getattr(ml_client, "workspace_name", None)
        try:
            workspace = ml_client.workspaces.get(name)
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
            logger.warning("Azure ML %s failed for workspace %r (%s). Fix: check `az login` / "
                           "the service principal and the workspace name in "
                           "config/infrastructure.yaml. Falling back to local tracking.",
                           cause, name, mask(f"{type(exc).__name__}: {exc}")[:300])
    return _local(experiment_name, runtime, tracking_uri, base)


def _expand(value: Any, env: Mapping[str, str], missing: list[str]) -> Any:
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in env or not env[m.group(1)]:
            missing.append(m.group(1))
            return ""
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
                             cwd: Path | str | None = None) -> TrackingSetup | None:
    """Set up tracking from ``{config_dir}/mlflow.yaml`` (+ ``infrastructure.yaml`` for Azure).

    ``mlflow.yaml``: ``azure_ml: {enabled, workspace_name}`` and ``local: {tracking_uri}``.
    ``infrastructure.yaml``: ``workspace: {name, resource_group, subscription_id}`` where
    ``${AZURE_SUBSCRIPTION_ID}`` / ``${AZURE_RESOURCE_GROUP}`` come from the environment.
    Config errors raise :class:`ConfigError`; tracking problems warn and fall back.
    """
    cdir = Path(config_dir)
    cfg = load_mlflow_config(cdir / "mlflow.yaml")
    azure, local = dataclasses.asdict(cfg.azure_ml), dataclasses.asdict(cfg.local)
    uri = tracking_uri or local.get("tracking_uri")
    runtime = runtime or detect()
    if not azure.get("enabled", False):
        return setup_mlflow_cross_platform(experiment_name, None, tracking_uri=uri,
                                           runtime=runtime, cwd=cwd)
    env = environ() if env is None else env
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
            client = factory(subscription, group, workspace)
        except ImportError as exc:
            logger.warning("Azure ML packages are missing (%s). Fix: %s. Falling back to local "
                           "tracking.", exc.name or exc, _AZURE_PIP)
        except Exception as exc:  # noqa: BLE001 - credential construction failed
            logger.warning("Azure ML credential failed (%s). Fix: `az login` or set the service "
                           "principal variables. Falling back to local tracking.",
                           mask(f"{type(exc).__name__}: {exc}")[:300])
    if client is None:
        return setup_mlflow_cross_platform(experiment_name, None, tracking_uri=uri,
                                           runtime=runtime, cwd=cwd)
    return setup_mlflow_cross_platform(experiment_name, client, workspace_name=workspace,
                                       tracking_uri=uri, runtime=runtime, cwd=cwd)
