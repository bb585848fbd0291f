"""Resumable Optuna hyperparameter search for resume NER (token classification).

The public API is small: :func:`run_local_hpo_sweep` runs or resumes a sweep and returns the
Optuna study; :func:`study_status` tells where a study stands; the errors below are what a user
can cause. Everything else lives in private-by-convention modules, one per concern.
"""

from __future__ import annotations

from .errors import (
    BackboneError,
    CheckpointError,
    ConfigError,
    DataError,
    FingerprintMismatchError,
    HpoHelpersError,
    StudyError,
    StudyLockedError,
    SweepFailedError,
)
from .predict import predict
from .sweep import load_configs, run_local_hpo_sweep, run_sweep
from .sweep import status as study_status

__all__ = [
    "BackboneError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "FingerprintMismatchError",
    "HpoHelpersError",
    "StudyError",
    "StudyLockedError",
    "SweepFailedError",
    "load_configs",
    "predict",
    "run_local_hpo_sweep",
    "run_sweep",
    "study_status",
]
