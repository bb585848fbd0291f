"""Where a study's files live on each runtime.

Two folders matter. The *durable* folder survives the session (Drive on Colab,
``/kaggle/working`` on Kaggle, the output folder locally); the *working* folder is on local disk
and holds the live SQLite database and trial checkpoints. Where they are the same folder (local,
Kaggle, Azure ML) nothing is copied. :func:`resolve` is a pure function of its arguments.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ConfigError
from ..core.names import backbone_path_name
from ..core.runtime import AZUREML, COLAB, KAGGLE, Runtime
from .layout import (
    COLAB_LOCAL_ROOT,
    DRIVE_ROOT,
    HPO_DIR,
    JOB_OUTPUTS,
    KAGGLE_ROOT,
    MLFLOW_DB,
    StudyLayout,
)

__all__ = ["StudyPaths", "check_backbone_slug", "mlflow_db_paths", "resolve"]

logger = logging.getLogger(__name__)

DRIVE_DIR = (*DRIVE_ROOT, "hpo")
COLAB_LOCAL_DIR = (*COLAB_LOCAL_ROOT, *HPO_DIR)
KAGGLE_DIR = (*KAGGLE_ROOT, *HPO_DIR)


@dataclass(frozen=True)
class StudyPaths:
    """Resolved locations of one study.

    ``durable_db`` is where the study survives; ``working_db`` is the file SQLite opens.
    ``session_only`` is true on Colab without Drive: everything dies with the VM.
    ``durable_url``: a bucket (``durable_url``) holds the durable copy; the durable folder is
    then the working folder on local disk, which ``bucket.BucketSync`` sends there.
    """

    runtime: str
    durable_dir: Path
    working_dir: Path
    durable_db: Path
    working_db: Path
    session_only: bool = False
    durable_url: str | None = None

    @property
    def snapshots_needed(self) -> bool:
        """True when the working database must be copied to the durable folder."""
        return self.durable_db != self.working_db

    def layout(self, study_name: str, created_at: str | None = None) -> StudyLayout:
        """The folders of ``study_name`` stored in this database (see ``layout``); looks on
        disk for a kept-models folder made before study-unique folders."""
        durable = self.durable_db.parent
        legacy = StudyLayout.legacy_models_dir(durable, study_name).is_dir()
        return StudyLayout.for_study(study_name, working_dir=self.working_db.parent,
                                     durable_dir=durable, created_at=created_at,
                                     legacy_models=legacy, cache_root=self.durable_dir)


check_backbone_slug = backbone_path_name  # the name ``{backbone}`` stands for in paths


def resolve(
    runtime: Runtime,
    *,
    backbone: str,
    storage_path: str,
    output_dir: Path | str | None = None,
    cwd: Path | str | None = None,
    durable_url: str | None = None,
) -> StudyPaths:
    """Resolve the durable and working study paths.

    ``storage_path`` is relative (validated by the config loader) and may hold ``{backbone}``.
    ``output_dir``, when given, is the durable root on every runtime; relative paths are taken
    against ``cwd`` (default: the current folder). With ``durable_url`` (a bucket) the
    durable folder is the working folder on local disk on every runtime (Colab included: no
    Drive copy), and the bucket holds its durable copy.
    """
    relative = Path(storage_path.format(backbone=backbone_path_name(backbone)))
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
        if durable_url:
            working_root = durable_root = explicit or working_root
        elif explicit is not None:
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
        durable_root = explicit or base.joinpath(*HPO_DIR)
        working_root = durable_root
    else:
        durable_root = explicit or base.joinpath(*HPO_DIR)
        working_root = durable_root

    return StudyPaths(
        runtime=runtime.kind,
        durable_dir=durable_root,
        working_dir=working_root,
        durable_db=durable_root / relative,
        working_db=working_root / relative,
        session_only=session_only,
        durable_url=durable_url or None,
    )


def mlflow_db_paths(runtime: Runtime, *, cwd: Path | str | None = None,
                    durable_url: str | None = None) -> tuple[Path, Path]:
    """``(working, durable)`` paths of the local MLflow SQLite store for ``runtime``.

    Local: ``./mlruns/mlflow.db``; an Azure ML job: ``./outputs/mlruns/mlflow.db`` (the job
    keeps only ``./outputs``); Kaggle: ``/kaggle/working/resume-ner/mlruns``;
    Colab: live copy on local disk, durable copy on Drive when it is mounted (not with a
    ``durable_url``: the bucket gets its snapshots). MLflow's database is always its own file,
    never the study's.
    """
    base = Path(cwd) if cwd is not None else Path.cwd()
    root = runtime.root
    if runtime.kind == COLAB:
        working = root.joinpath(*COLAB_LOCAL_ROOT, *MLFLOW_DB)
        durable = root.joinpath(*DRIVE_ROOT, *MLFLOW_DB) \
            if runtime.drive_mounted and not durable_url else working
        return working, durable
    if runtime.kind == KAGGLE:
        db = root.joinpath(*KAGGLE_ROOT, *MLFLOW_DB)
        return db, db
    if runtime.kind == AZUREML:  # only ./outputs survives a job (without MLFLOW_TRACKING_URI)
        db = base.joinpath(*JOB_OUTPUTS, *MLFLOW_DB)
        return db, db
    db = base.joinpath(*MLFLOW_DB)
    return db, db
