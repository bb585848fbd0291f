"""What the notebooks' set-up cell calls: install, parameters, project folder, runtime.

The notebooks stay thin (no ``def``, ``class`` or loops): a ``parameters`` cell of literals, a
set-up cell that makes ``hpo_helpers`` importable (a checkout on ``sys.path``, else a
``--no-deps`` install from ``project_source``) and calls :func:`setup`, then a few calls.
This module imports only the standard library at load time: on a fresh VM it runs before the
dependencies are installed.
"""

from __future__ import annotations

import ast
import logging
import os
import shutil
import sys
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.runtime import (
    DRIVE_MOUNT,
    DRIVE_MOUNTPOINT,
    KAGGLE,
    Runtime,
    detect,
    environ,
    headless_reason,
)
from ..storage.layout import COLAB_LOCAL_ROOT, COLAB_PROJECT_ON_DRIVE, KAGGLE_ROOT
from .install import DEFAULT_EXTRAS, install_missing, make_importable

__all__ = ["NOTEBOOK_PARAMETERS", "NotebookSetup", "check_parameters", "default_config_dir",
           "injected_parameters", "project_folder", "setup", "setup_environment"]

logger = logging.getLogger(__name__)

#: The names each notebook's ``parameters`` cell defines (a test keeps them in step).
NOTEBOOK_PARAMETERS: dict[str, tuple[str, ...]] = {
    "01_setup_mlflow": ("project_source", "config_dir", "experiment_name", "tracking_uri"),
    "02_run_hpo": ("project_source", "config_dir", "hpo_config", "backbone", "dataset_path",
                   "output_dir", "max_trials", "experiment_name", "storage_url", "auto_start",
                   "start_fresh", "resume_from"),
    "03_inspect_checkpoints": ("project_source", "config_dir", "hpo_config", "output_dir",
                               "tracking_uri", "storage_url", "backbones", "start_dashboard",
                               "dashboard_port"),
}
#: Parameters that hold a list of names. papermill's ``-p NAME VALUE`` injects a string
#: (``-p backbones '["tiny"]'``); the set-up reads it as the list it spells.
_LIST_PARAMETERS = frozenset({"backbones"})
#: What papermill itself may inject (``--inject-paths``).
_PAPERMILL_NAMES = {"PAPERMILL_INPUT_PATH", "PAPERMILL_OUTPUT_PATH"}
#: papermill's Python translator starts the injected cell with this comment.
_INJECTED_HEADER = "# Parameters"


def injected_parameters(namespace: Mapping[str, Any]) -> set[str] | None:
    """Names papermill injected into this kernel (its ``injected-parameters`` cell, found in
    IPython's input history ``In``), or None when nothing was injected."""
    history = namespace.get("In") or namespace.get("_ih") or []
    cells = [c for c in history if isinstance(c, str) and c.startswith(_INJECTED_HEADER)]
    if not cells:
        return None
    names: set[str] = set()
    for node in ast.parse(cells[-1]).body:
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def check_parameters(namespace: Mapping[str, Any], notebook: str) -> dict[str, Any]:
    """The notebook's parameters from ``namespace`` (its ``globals()``).

    Papermill only warns about a parameter the notebook does not declare; a typo such as
    ``-p max_trails 5`` would then run with the default silently. Here it is an error. Only
    the names papermill injected are checked, so re-running a cell or defining variables of
    one's own is fine.
    """
    declared = NOTEBOOK_PARAMETERS[notebook]
    unknown = sorted((injected_parameters(namespace) or set()) - set(declared) - _PAPERMILL_NAMES)
    if unknown:
        raise ConfigError(f"notebook {notebook}: unknown parameter(s) {', '.join(unknown)}. "
                          f"Fix: use only {', '.join(declared)}.")
    missing = [k for k in declared if k not in namespace]
    if missing:
        raise ConfigError(f"notebook {notebook}: parameter(s) {', '.join(missing)} missing from "
                          "its parameters cell.")
    values = {k: namespace[k] for k in declared}
    for key in _LIST_PARAMETERS & set(declared):
        if isinstance(values[key], str):
            values[key] = _name_list(key, values[key])
            if isinstance(namespace, MutableMapping):  # the notebook's cells read the global
                namespace[key] = values[key]
            logger.info("Parameter %s = %r (read as a list)", key, values[key])
    return values


def _name_list(key: str, text: str) -> list[str]:
    """``'["tiny", "minilm"]'``, ``"['tiny']"`` or ``'tiny,minilm'`` as a list of names."""
    try:
        parsed: Any = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        parsed = [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(parsed, str):
        parsed = [parsed]
    if not isinstance(parsed, (list, tuple)) or not all(isinstance(p, str) for p in parsed):
        raise ConfigError(f"notebook parameter {key} = {text[:80]!r} is not a list of names. "
                          f"Fix: -p {key} '[\"tiny\", \"minilm\"]' (or -y '{key}: [tiny]').")
    return list(parsed)


def _checkout() -> Path | None:
    """The checkout this package runs from (``pyproject.toml`` and ``config/`` beside it)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "config").is_dir() else None


def project_folder(runtime: Runtime, env: Mapping[str, str] | None = None,
                   cwd: Path | str | None = None) -> tuple[Path, str]:
    """``(folder, why)``: the project folder that config, data, outputs and ``mlruns`` hang
    from -- ``HPO_PROJECT_DIR`` when set, the checkout when the package runs from one, else the
    runtime's own: on Colab ``MyDrive/resume-ner`` when Drive is mounted (the user's configs,
    data and tracking choice must outlive the VM; the live databases stay on local disk all
    the same), else ``/content/resume-ner``; ``/kaggle/working/resume-ner``; the current folder
    locally."""

    env = environ() if env is None else env
    if env.get("HPO_PROJECT_DIR"):
        return Path(env["HPO_PROJECT_DIR"]).absolute(), "HPO_PROJECT_DIR"
    checkout = _checkout()
    if checkout is not None:
        return checkout, "checkout"
    if runtime.is_colab and runtime.drive_mounted:
        return runtime.root.joinpath(*COLAB_PROJECT_ON_DRIVE), "Colab: on Google Drive"
    if runtime.is_colab:
        return runtime.root.joinpath(*COLAB_LOCAL_ROOT), "Colab working root, NOT on Drive"
    if runtime.kind == KAGGLE:
        return runtime.root.joinpath(*KAGGLE_ROOT), "Kaggle working root"
    return Path(cwd if cwd is not None else Path.cwd()).absolute(), "current folder"


def default_config_dir() -> Path:
    """The default configs: the wheel's package data, or ``config/`` of the checkout."""
    shipped = Path(__file__).resolve().parents[1] / "default_config"
    if shipped.is_dir():
        return shipped
    checkout = _checkout()
    if checkout is None:
        raise ConfigError("the default configs are missing from this installation of "
                          "hpo_helpers. Fix: reinstall it from a wheel or the project folder.")
    return checkout / "config"


def _prepare_project(project: Path) -> None:
    """First use of a project folder: copy the default configs and write the demo data."""
    config = project / "config"
    if not config.exists():
        shutil.copytree(default_config_dir(), config,
                        ignore=shutil.ignore_patterns("__pycache__", "__init__.py"))
        logger.info("Default configs copied to %s (edit them there)", config)
    dataset = project / "dataset"
    if not dataset.exists():
        from ..data.demo import write_dataset

        write_dataset(dataset)
        logger.info("Demo dataset written to %s (set dataset_path for your own data)", dataset)


@dataclass(frozen=True)
class NotebookSetup:
    """What the set-up cell found: ``params`` are the notebook's parameters; ``headless`` is
    the reason a run has no front end (papermill, a Kaggle batch commit), or None."""

    runtime: Runtime
    project_dir: Path
    config_dir: Path
    params: dict[str, Any]
    headless: str | None = None
    installed: tuple[str, ...] = field(default_factory=tuple)

    def start_now(self, auto_start: bool | None) -> bool:
        """Whether 02 starts the sweep without a click: ``auto_start`` when set, else when the
        run is headless (logged); an interactive session waits for Resume."""
        if auto_start is not None:
            return bool(auto_start)
        if self.headless:
            logger.info("Headless run (%s): starting the sweep without waiting for a click",
                        self.headless)
            return True
        return False

    def continue_from(self, resume_from: str | Path | None, hpo_config: Any, *,
                      backbone: str | None = None,
                      output_dir: str | Path | None = None) -> list[str]:
        """Before the tracking cell: continue from an earlier run's output (``resume_from``,
        relative to the project folder; else the config's ``resume_from``; on Kaggle with
        neither, the newest attached output when ``/kaggle/working`` has no study). Copies the
        study, the newest checkpoints, kept models and MLflow's store in, verified; returns
        the earlier study files used (see README, "Move a search")."""
        from ..settings.config import load_configs
        from ..sweep.backbones import backbone_list
        from ..sweep.transfer import take_earlier_output

        cfg = load_configs(self.config_dir, hpo_config)
        used = [take_earlier_output(cfg, resume_from, backbone=name, output_dir=output_dir,
                                    runtime=self.runtime, cwd=self.project_dir)
                for name in backbone_list(cfg, backbone)]
        return [u for u in used if u]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hpo-helpers")
    except PackageNotFoundError:
        return "(not installed: checkout)"


def _kernel_allows_stdin() -> bool | None:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    kernel = getattr(shell, "kernel", None)
    return None if kernel is None else bool(getattr(kernel, "_allow_stdin", True))


def _configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", datefmt="%H:%M:%S", stream=sys.stdout, force=True)
    from ..core.redaction import mask_log_handlers

    mask_log_handlers()  # no password in a saved notebook's output


def setup(namespace: Mapping[str, Any], notebook: str, *, install: bool = True,
          extras: tuple[str, ...] = DEFAULT_EXTRAS, runtime: Runtime | None = None,
          env: Mapping[str, str] | None = None, mount: Callable[[str], None] | None = None,
          run: Callable[[Any], None] | None = None) -> NotebookSetup:
    """The set-up cell: check the parameters, install what is missing, mount Drive on Colab,
    resolve (and on first use fill) the project folder and make it the working folder, so
    that relative paths mean what they mean to the CLI run from the project folder.

    Safe to run again: nothing is installed or copied twice.
    """
    _configure_logging()
    params = check_parameters(namespace, notebook)
    env = environ() if env is None else env
    source = params.get("project_source")
    installed: list[str] = []
    if install:
        installed = install_missing(extras=extras, source=source, run=run)
        if installed:
            logger.info("Installed into this kernel: %s", ", ".join(installed))
    make_importable()
    logger.info("hpo_helpers %s from %s", _version(), Path(__file__).parents[1])
    rt = setup_environment(runtime=runtime, mount=mount)
    project, why = project_folder(rt, env)
    project.mkdir(parents=True, exist_ok=True)
    _prepare_project(project)
    if Path.cwd() != project:
        os.chdir(project)
    logger.info("Project folder: %s (%s)", project, why)
    if rt.is_colab and not rt.drive_mounted and why.startswith("Colab"):
        logger.warning("Google Drive is not mounted: config/, dataset/ and notebook 01's "
                       "tracking choice in %s are on this VM's local disk and are LOST with the "
                       "VM, edits included. Fix: mount Drive (re-run this cell and allow it); "
                       "the project folder is then MyDrive/resume-ner.", project)
    config_dir = project / (params.get("config_dir") or "config")
    reason = headless_reason(env, papermill=injected_parameters(namespace) is not None,
                             allow_stdin=_kernel_allows_stdin())
    return NotebookSetup(rt, project, config_dir, params, reason, tuple(installed))


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
    _configure_logging()
    logger.info("Runtime: %s%s", rt.kind,
                f" (Drive {'mounted' if rt.drive_mounted else 'not mounted'})"
                if rt.is_colab else "")
    return rt
