"""Helpers the notebooks call: environment set-up and strict papermill parameters.

The notebooks stay thin (no ``def``, ``class`` or loops): a ``parameters`` cell of literals,
a set-up cell that calls :func:`setup_environment` and :func:`check_parameters`, and a few calls.
"""

from __future__ import annotations

import builtins
import logging
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError
from .layout import DRIVE_MOUNT, DRIVE_MOUNTPOINT
from .runtime import Runtime, detect

__all__ = ["NOTEBOOK_PARAMETERS", "check_parameters", "setup_environment"]

logger = logging.getLogger(__name__)

#: The names each notebook's ``parameters`` cell defines (a test keeps them in step).
NOTEBOOK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "01_setup_mlflow": ("project_dir", "config_dir", "experiment_name", "tracking_uri"),
    "02_run_hpo": ("project_dir", "config_dir", "hpo_config", "backbone", "dataset_path",
                   "output_dir", "max_trials", "experiment_name", "storage_url", "auto_start",
                   "start_fresh"),
    "03_inspect_checkpoints": ("project_dir", "config_dir", "hpo_config", "output_dir",
                               "tracking_uri", "storage_url", "backbones", "start_dashboard",
                               "dashboard_port"),
}
_IPYTHON_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def check_parameters(namespace: Mapping[str, Any], notebook: str) -> dict[str, Any]:
    """The notebook's parameters from ``namespace`` (its ``globals()``); unknown names fail.

    Papermill only warns about a parameter the notebook does not declare; a typo such as
    ``-p max_trails 5`` would then run with the default silently. Here it is an error.
    """
    declared = NOTEBOOK_PARAMETERS[notebook]
    unknown = sorted(
        k for k, v in namespace.items()
        if not k.startswith("_") and k not in declared and k not in _IPYTHON_NAMES
        and not hasattr(builtins, k) and not isinstance(v, (types.ModuleType, type))
        and not callable(v)
    )
    if unknown:
        raise ConfigError(f"notebook {notebook}: unknown parameter(s) {', '.join(unknown)}. "
                          f"Fix: use only {', '.join(declared)}.")
    missing = [k for k in declared if k not in namespace]
    if missing:
        raise ConfigError(f"notebook {notebook}: parameter(s) {', '.join(missing)} missing from "
                          "its parameters cell.")
    return {k: namespace[k] for k in declared}


def _mount_drive(mountpoint: str) -> None:
    from google.colab import drive  # only on Colab

    drive.mount(mountpoint)


def setup_environment(*, mount_drive: bool = True, runtime: Runtime | None = None,
                      mount: Callable[[str], None] | None = None) -> Runtime:
    """Prepare the notebook's runtime: on Colab mount Google Drive (unless asked not to).

    Locally and on Kaggle this only reports the runtime. ``mount`` replaces Colab's
    ``drive.mount`` (tests). Returns the runtime as detected after mounting.
    """
    rt = runtime or detect()
    if rt.is_colab and mount_drive and not rt.drive_mounted:
        mountpoint = rt.root.joinpath(*DRIVE_MOUNTPOINT)
        try:
            (mount or _mount_drive)(str(mountpoint))
        except Exception as exc:  # noqa: BLE001 - the sweep still runs, session-only
            logger.warning("Google Drive could not be mounted (%s): checkpoints will live only "
                           "as long as this session.", exc)
        rt = Runtime(rt.kind, rt.root,
                     drive_mounted=rt.root.joinpath(*DRIVE_MOUNT).is_dir())
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S", stream=sys.stdout, force=True)
    logger.info("Runtime: %s%s", rt.kind,
                f" (Drive {'mounted' if rt.drive_mounted else 'not mounted'})"
                if rt.is_colab else "")
    return rt
