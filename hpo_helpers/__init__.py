"""Resumable Optuna hyperparameter search for resume NER (token classification).

The public API is what ``__all__`` lists: notebooks, benchmarks and the README's examples use
only these names (and the command line, ``python -m hpo_helpers``). Everything else lives in
layer subpackages (``core``, ``storage``, ``settings``, ``data``, ``study``, ``tracking``,
``training``, ``results``, ``sweep``, ``frontends``; ``docs/layout.md`` draws them) whose
modules may change between versions.

- Run: :func:`run_sweep` (loaded configs: :func:`load_configs`) or the seed's
  :func:`run_local_hpo_sweep`; :class:`SweepEvents` receives progress, :class:`SweepOutcome`
  says what happened. :func:`study_status` tells where a study stands.
- Notebooks: :func:`notebook_setup` (the set-up cell), :func:`notebook_tracking`,
  :class:`ResumePanel`, :func:`inspect_all` with :func:`default_roots` and
  :func:`find_study_files`, :func:`selection_markdown`, :func:`start_dashboard`.
- Results: :func:`predict`, :func:`evaluate_study`.
- Tracking: :func:`setup_mlflow_from_config`, :func:`setup_mlflow_cross_platform`,
  :func:`project_tracking_uri`.
- Errors: every exception a user can cause derives from :class:`HpoHelpersError`.
"""

from __future__ import annotations

from typing import Any

from .core.errors import (
    BackboneError,
    BundleError,
    CheckpointError,
    ConfigError,
    DataError,
    DeviceError,
    DurableStoreError,
    FingerprintMismatchError,
    HpoHelpersError,
    StudyError,
    StudyLockedError,
    SweepFailedError,
    TrialOutOfMemoryError,
)

# Loaded on first use (PEP 562): the notebooks' set-up cell imports this package on a fresh VM
# before the heavy dependencies (torch, optuna, mlflow) are installed.
_LAZY = {
    "ResumePanel": ("frontends.widgets", "ResumePanel"),
    "SweepEvents": ("sweep.events", "SweepEvents"),
    "SweepOutcome": ("sweep.events", "SweepOutcome"),
    "default_roots": ("results.inspection", "default_roots"),
    "evaluate_study": ("results.evaluate", "evaluate_study"),
    "find_study_files": ("results.inspection", "find_study_files"),
    "inspect_all": ("results.inspection", "inspect_all"),
    "load_configs": ("settings.config", "load_configs"),
    "notebook_setup": ("frontends.notebook", "setup"),
    "notebook_tracking": ("tracking.setup", "notebook_tracking"),
    "predict": ("results.prediction", "predict"),
    "project_tracking_uri": ("tracking.setup", "project_tracking_uri"),
    "run_local_hpo_sweep": ("sweep.run", "run_local_hpo_sweep"),
    "run_sweep": ("sweep.run", "run_sweep"),
    "selection_markdown": ("results.selection", "selection_markdown"),
    "setup_mlflow_cross_platform": ("tracking.setup", "setup_mlflow_cross_platform"),
    "setup_mlflow_from_config": ("tracking.setup", "setup_mlflow_from_config"),
    "start_dashboard": ("frontends.dashboard", "start_dashboard"),
    "study_status": ("study.status", "status"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hpo_helpers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BackboneError",
    "BundleError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "DurableStoreError",
    "FingerprintMismatchError",
    "HpoHelpersError",
    "ResumePanel",
    "StudyError",
    "StudyLockedError",
    "SweepEvents",
    "SweepFailedError",
    "SweepOutcome",
    "TrialOutOfMemoryError",
    "default_roots",
    "evaluate_study",
    "find_study_files",
    "inspect_all",
    "load_configs",
    "notebook_setup",
    "notebook_tracking",
    "predict",
    "project_tracking_uri",
    "run_local_hpo_sweep",
    "run_sweep",
    "selection_markdown",
    "setup_mlflow_cross_platform",
    "setup_mlflow_from_config",
    "start_dashboard",
    "study_status",
]
