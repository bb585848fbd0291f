"""Resumable Optuna hyperparameter search for resume NER (token classification).

The public API is small: :func:`run_local_hpo_sweep` runs or resumes a sweep and returns the
Optuna study; :func:`study_status` tells where a study stands; the errors below are what a user
can cause. Everything else lives in private-by-convention modules, one per concern.
"""

from __future__ import annotations

from typing import Any

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

# The sweep API is imported on first use (PEP 562), so that ``hpo_helpers.notebook`` -- the
# set-up cell -- imports on a fresh VM before the heavy dependencies are installed (issue 14).
_LAZY = {"load_configs": ("sweep", "load_configs"),
         "run_local_hpo_sweep": ("sweep", "run_local_hpo_sweep"),
         "run_sweep": ("sweep", "run_sweep"), "study_status": ("sweep", "status"),
         "predict": ("prediction", "predict")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(f".{module}", __name__), attr)
    raise AttributeError(f"module 'hpo_helpers' has no attribute {name!r}")


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
