"""Where a study's files live on each runtime.

Two folders matter. The *durable* folder survives the session (Drive on Colab,
``/kaggle/working`` on Kaggle, the output folder locally); the *working* folder is on local disk
and holds the live SQLite database and trial checkpoints. Where they are the same folder (local,
Kaggle, Azure ML) nothing is copied. :func:`resolve` is a pure function of its arguments.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError
from .runtime import AZUREML, COLAB, KAGGLE, Runtime

__all__ = ["StudyPaths", "check_backbone_slug", "mlflow_db_paths", "resolve"]

logger = logging.getLogger(__name__)

_SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
DRIVE_ROOT = ("content", "drive", "MyDrive", "resume-ner-checkpoints")
COLAB_LOCAL_ROOT = ("content", "resume-ner")
KAGGLE_ROOT = ("kaggle", "working", "resume-ner")
DRIVE_DIR = (*DRIVE_ROOT, "hpo")
COLAB_LOCAL_DIR = (*COLAB_LOCAL_ROOT, "outputs", "hpo")
KAGGLE_DIR = (*KAGGLE_ROOT, "outputs", "hpo")


@dataclass(frozen=True)
class StudyPaths:
    """Resolved locations of one study.

    ``durable_db`` is where the study survives; ``working_db`` is the file SQLite opens.
    ``session_only`` is true on Colab without Drive: everything dies with the VM.
    """

    runtime: str
    durable_dir: Path
    working_dir: Path
    durable_db: Path
    working_db: Path
    session_only: bool = False

    @property
    def snapshots_needed(self) -> bool:
        """True when the working database must be copied to the durable folder."""
        return self.durable_db != self.working_db

    def trials_dir(self, study_name: str) -> Path:
        """Folder of the epoch checkpoints of ``study_name``'s trials (local disk)."""
        return self.working_db.parent / "trials" / study_name

    def models_dir(self, study_name: str) -> Path:
        """Folder of the best models of the top-k trials (durable)."""
        return self.durable_db.parent / "models" / study_name


def check_backbone_slug(backbone: str) -> str:
    """Refuse a backbone name that could escape the output folder through ``{backbone}``."""
    if not _SLUG.match(backbone) or ".." in backbone:
        raise ConfigError(
            f"backbone name {backbone!r} cannot be used in a path: it must be letters, digits, "
            "'_', '-' or '.', start with a letter or digit, and contain no '..' or '/'. "
            "Fix: use a registry name such as 'minilm' or 'tiny'."
        )
    return backbone


def resolve(
    runtime: Runtime,
    *,
    backbone: str,
    storage_path: str,
    output_dir: Path | str | None = None,
    cwd: Path | str | None = None,
) -> StudyPaths:
    """Resolve the durable and working study paths.

    ``storage_path`` is relative (validated by the config loader) and may hold ``{backbone}``.
    ``output_dir``, when given, is the durable root on every runtime; relative paths are taken
    against ``cwd`` (default: the current folder).
    """
    check_backbone_slug(backbone)
    relative = Path(storage_path.format(backbone=backbone))
    if relative.is_absolute() or ".." in relative.parts:
        raise ConfigError(
            f"checkpoint.storage_path {storage_path!r} resolves to {str(relative)!r}, outside the "
            "output folder. Fix: use a relative path such as '{backbone}/study.db'."
        )
    base = Path(cwd) if cwd is not None else Path.cwd()
    root = runtime.root
    explicit = None if output_dir is None else (base / Path(output_dir)).absolute()
    session_only = False

    if runtime.kind == COLAB:
        working_root = root.joinpath(*COLAB_LOCAL_DIR)
        if explicit is not None:
            durable_root = explicit
        elif runtime.drive_mounted:
            durable_root = root.joinpath(*DRIVE_DIR)
        else:
            durable_root = working_root
            session_only = True
            logger.warning(
                "Google Drive is not mounted: the study lives in %s and dies with this Colab "
                "session. Mount Drive (notebook 01, or drive.mount('/content/drive')) to keep it.",
                working_root,
            )
    elif runtime.kind == KAGGLE:
        durable_root = explicit or root.joinpath(*KAGGLE_DIR)
        working_root = durable_root
    elif runtime.kind == AZUREML:
        durable_root = explicit or (base / "outputs" / "hpo")
        working_root = durable_root
    else:
        durable_root = explicit or (base / "outputs" / "hpo")
        working_root = durable_root

    return StudyPaths(
        runtime=runtime.kind,
        durable_dir=durable_root,
        working_dir=working_root,
        durable_db=durable_root / relative,
        working_db=working_root / relative,
        session_only=session_only,
    )


def mlflow_db_paths(runtime: Runtime, *, cwd: Path | str | None = None) -> tuple[Path, Path]:
    """``(working, durable)`` paths of the local MLflow SQLite store for ``runtime``.

    Local and Azure ML: ``./mlruns/mlflow.db``; Kaggle: ``/kaggle/working/resume-ner/mlruns``;
    Colab: live copy on local disk, durable copy on Drive when it is mounted. MLflow's database
    is always its own file, never the study's.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    root = runtime.root
    if runtime.kind == COLAB:
        working = root.joinpath(*COLAB_LOCAL_ROOT, "mlruns", "mlflow.db")
        durable = root.joinpath(*DRIVE_ROOT, "mlruns", "mlflow.db") if runtime.drive_mounted \
            else working
        return working, durable
    if runtime.kind == KAGGLE:
        db = root.joinpath(*KAGGLE_ROOT, "mlruns", "mlflow.db")
        return db, db
    db = base / "mlruns" / "mlflow.db"
    return db, db
