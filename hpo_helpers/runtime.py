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

from .layout import DRIVE_MOUNT

__all__ = ["Runtime", "detect", "environ"]

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
