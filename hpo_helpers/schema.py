"""What a study stores besides Optuna's own fields: its name and its user attribute keys.

Every module reads and writes these keys through the constants below, never as bare strings.
"""

from __future__ import annotations

from .layout import default_study_name

__all__ = [
    "ATTEMPT",
    "BEST_EPOCH",
    "CREATED_AT",
    "DEVICE",
    "ERROR",
    "FINGERPRINT",
    "FOLD_F1",
    "INTERRUPTED",
    "MLFLOW_PARENT_RUN_ID",
    "MLFLOW_RUN_ID",
    "OOM",
    "RESUMED_FROM_EPOCH",
    "RESUMED_FROM_STEP",
    "RETRY_OF",
    "RETRY_ROOT",
    "SESSIONS",
    "VAL_PER_ENTITY_F1",
    "VAL_PRECISION",
    "VAL_RECALL",
    "WORKER",
    "retry_root",
    "study_name",
]

# Study attributes
FINGERPRINT = "fingerprint"  # search space, objective and dataset the study was made for
CREATED_AT = "created_at"  # "%Y-%m-%dT%H:%M:%S"; names the kept-models folder
SESSIONS = "sessions"  # how many sessions opened the study
MLFLOW_PARENT_RUN_ID = "mlflow_parent_run_id"

# Trial attributes: the retry chain
INTERRUPTED = "interrupted"  # on the dead attempt
RETRY_OF = "retry_of"  # the attempt this one continues
RETRY_ROOT = "retry_root"  # the first attempt; its checkpoint folder serves the chain
ATTEMPT = "attempt"
RESUMED_FROM_EPOCH = "resumed_from_epoch"
RESUMED_FROM_STEP = "resumed_from_step"
# Trial attributes: results and bookkeeping
ERROR = "error"
OOM = "oom"  # the trial ran out of device memory (issue 13)
BEST_EPOCH = "best_epoch"
FOLD_F1 = "fold_f1"
VAL_PER_ENTITY_F1 = "val_per_entity_f1"
VAL_PRECISION = "val_precision"
VAL_RECALL = "val_recall"
WORKER = "worker"
DEVICE = "device"  # the device of a trial run beside others (devices: issue 13)
MLFLOW_RUN_ID = "mlflow_run_id"


def study_name(backbone: str, configured: str | None = None) -> str:
    """The study's name: ``configured`` (``study_name`` in the config) or ``hpo_<backbone>``."""
    return default_study_name(backbone, configured)


def retry_root(trial: object) -> int:
    """The first attempt of ``trial``'s retry chain (its own number for a first attempt)."""
    return int(trial.user_attrs.get(RETRY_ROOT, trial.number))  # type: ignore[attr-defined]
