"""Which runtime we are on: local, Colab, Kaggle or an Azure ML job.

Detection is a pure function of the environment mapping (and, for Colab, of whether
``google.colab`` is importable and whether Drive is mounted under ``root``), so tests simulate
every runtime under ``tmp_path``. No other module reads ``os.environ`` for this.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DRIVE_MOUNT", "DRIVE_MOUNTPOINT", "Runtime", "detect", "environ", "headless_reason"]

# Relative to the runtime's file-system root (tests use a tmp folder).
DRIVE_MOUNTPOINT = ("content", "drive")  # where drive.mount() puts Google Drive
DRIVE_MOUNT = (*DRIVE_MOUNTPOINT, "MyDrive")  # a folder only while Drive is mounted

LOCAL = "local"
COLAB = "colab"
KAGGLE = "kaggle"
AZUREML = "azureml"


@dataclass(frozen=True)
class Runtime:
    """Where the code runs.

    ``root`` is the file-system root that the runtime's fixed folders (``/content``,
    ``/kaggle/working``) hang from; it is ``/`` except in tests.
    """

    kind: str
    root: Path = Path("/")
    drive_mounted: bool = False

    @property
    def is_colab(self) -> bool:
        return self.kind == COLAB


def environ() -> Mapping[str, str]:
    """The process environment; the one place other modules get it from (STYLE 4)."""
    return os.environ


def _colab_importable() -> bool:
    try:
        return importlib.util.find_spec("google.colab") is not None
    except (ImportError, ValueError):
        return False


def detect(
    environ: Mapping[str, str] | None = None,
    *,
    root: Path | str | None = None,
    colab_importable: bool | None = None,
) -> Runtime:
    """Detect the runtime from ``environ`` (defaults to ``os.environ``).

    Colab: ``COLAB_GPU``/``COLAB_RELEASE_TAG`` set or ``google.colab`` importable; Drive counts as
    mounted when ``{root}/content/drive/MyDrive`` is a folder. Kaggle: ``KAGGLE_KERNEL_RUN_TYPE``.
    Azure ML job: ``AZUREML_RUN_ID``. Anything else is local. ``root`` defaults to
    ``HPO_RUNTIME_ROOT`` or ``/``.
    """
    env = os.environ if environ is None else environ
    # HPO_RUNTIME_ROOT moves "/" (for /content, /kaggle) elsewhere: sandboxes and the tests
    # that run real processes on a simulated Colab or Kaggle file system.
    root_path = Path(root if root is not None else env.get("HPO_RUNTIME_ROOT") or "/")
    if colab_importable is None:
        colab_importable = _colab_importable() if environ is None else False
    if env.get("COLAB_GPU") is not None or env.get("COLAB_RELEASE_TAG") or colab_importable:
        mounted = root_path.joinpath(*DRIVE_MOUNT).is_dir()
        return Runtime(COLAB, root_path, drive_mounted=mounted)
    if env.get("KAGGLE_KERNEL_RUN_TYPE"):
        return Runtime(KAGGLE, root_path)
    if env.get("AZUREML_RUN_ID"):
        return Runtime(AZUREML, root_path)
    return Runtime(LOCAL, root_path)


#: Variables that an interactive front end serving the kernel sets (Voila, Jupyter Server).
_FRONT_END_VARS = ("VOILA_BASE_URL", "VOILA_REQUEST_URL", "VOILA_KERNEL_ID", "JPY_SESSION_NAME")


def headless_reason(environ: Mapping[str, str], *, papermill: bool = False,
                    allow_stdin: bool | None = None) -> str | None:
    """Why this run has nobody to click a button, or None for an interactive session.

    ``HPO_HEADLESS=1``; a Kaggle batch commit (``KAGGLE_KERNEL_RUN_TYPE=Batch``); or a kernel
    driven by papermill/nbclient -- parameters injected or input requests refused -- that no
    interactive server (Voila, Jupyter Server) started. ``HPO_HEADLESS=0`` forces interactive.
    """
    flag = environ.get("HPO_HEADLESS", "").strip().lower()
    if flag in ("0", "false", "no"):
        return None
    if flag in ("1", "true", "yes"):
        return "HPO_HEADLESS is set"
    if environ.get("KAGGLE_KERNEL_RUN_TYPE") == "Batch":
        return "Kaggle batch commit"
    if any(environ.get(v) for v in _FRONT_END_VARS):
        return None
    if papermill:
        return "papermill parameters injected"
    if allow_stdin is False:
        return "no front end (kernel refuses input requests, as under papermill)"
    return None
