"""What a study stores besides Optuna's own fields: its name and its user attribute keys.

Every module reads and writes these keys through the constants below, never as bare strings.
"""

from __future__ import annotations

from .layout import default_study_name

__all__ = [
    "ATTEMPT",
    "BEST_EPOCH",
    "CREATED_AT",
    "DATA",
    "DEVICE",
    "ERROR",
    "FINGERPRINT",
    "FOLD_F1",
    "FOLD_F1_MEAN",
    "FOLD_F1_STD",
    "INTERRUPTED",
    "MLFLOW_PARENT_RUN_ID",
    "MLFLOW_RUN_ID",
    "OOM",
    "REFIT",
    "RESUMED_FROM_EPOCH",
    "RESUMED_FROM_FOLD",
    "RESUMED_FROM_STEP",
    "RETRY_OF",
    "RETRY_ROOT",
    "SELECTED_BACKBONE",
    "SESSIONS",
    "TEST_SCORES",
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
DATA = "data"  # the data summary of the last session: split sizes, caps, windows, reports
TEST_SCORES = "test_scores"  # trial number (str) -> test scores of its kept model
REFIT = "refit"  # the finished refit: trial, params, test scores, exported folder
SELECTED_BACKBONE = "selected_backbone"  # selection.json: the model select chose

# Trial attributes: the retry chain
INTERRUPTED = "interrupted"  # on the dead attempt
RETRY_OF = "retry_of"  # the attempt this one continues
RETRY_ROOT = "retry_root"  # the first attempt; its checkpoint folder serves the chain
ATTEMPT = "attempt"
RESUMED_FROM_EPOCH = "resumed_from_epoch"
RESUMED_FROM_STEP = "resumed_from_step"
RESUMED_FROM_FOLD = "resumed_from_fold"  # k-fold: the fold the retry continued
# Trial attributes: results and bookkeeping
ERROR = "error"
OOM = "oom"  # the trial ran out of device memory (issue 13)
BEST_EPOCH = "best_epoch"
FOLD_F1 = "fold_f1"  # k-fold: best F1 of each finished fold, in fold order
FOLD_F1_MEAN = "fold_f1_mean"  # k-fold: their mean (the trial's value)
FOLD_F1_STD = "fold_f1_std"  # k-fold: their population standard deviation
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
