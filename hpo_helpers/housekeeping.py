"""Disk and memory between trials: kept best models, checkpoint clean-up, snapshots.

* :func:`keep_top_k` keeps the best models of the top-k COMPLETE trials under the layout's
  models folder. With k-fold a trial keeps one model: its best fold's.
* :func:`reconcile` runs at sweep start: checkpoint folders of trials of this study that are
  finished for good (COMPLETE, PRUNED, or FAIL and not to be retried) are removed as the trial's
  end would have removed them (a kill in between leaves them behind). Kept models and folders
  it cannot attribute to a trial are never touched; the latter are reported.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from .durable import folder_bytes
from .layout import StudyLayout, trial_root_of
from .schema import RETRY_OF, RETRY_ROOT
from .snapshot import snapshot

if TYPE_CHECKING:
    import optuna

    from .mirror import CheckpointMirror
    from .mlflow_setup import TrackingSetup
    from .paths import StudyPaths

__all__ = ["disk_usage", "free_memory", "keep_top_k", "reconcile", "snapshot_all"]

logger = logging.getLogger(__name__)


def keep_top_k(study: optuna.Study, layout: StudyLayout, k: int, trial_number: int,
               best_src: Path | None) -> None:
    """Keep ``best_src`` as trial ``trial_number``'s model if it ranks in the top k; drop the
    kept models that fell out of the top k."""
    from optuna.trial import TrialState

    target = layout.kept_model_dir(trial_number)
    if layout.models_root is None or target is None:
        return
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(done, key=lambda t: (-(t.value if t.value is not None else -math.inf),
                                         t.number))
    keep = {t.number for t in ranked[:k]}
    if trial_number in keep and best_src is not None and best_src.is_dir():
        layout.models_root.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(best_src), str(target))
        logger.info("Best model of trial %d kept: %s", trial_number, target)
    elif trial_number in keep:
        logger.warning("Trial %d is among the top %d but its best model is missing (%s)",
                       trial_number, k, best_src)
    for number in layout.kept_model_numbers() - keep:
        shutil.rmtree(layout.kept_model_dir(number), ignore_errors=True)  # type: ignore[arg-type]


def _live_roots(study: optuna.Study) -> set[int]:
    """Retry-chain roots whose checkpoints may still be used (a trial will continue them)."""
    from optuna.trial import TrialState

    live = set()
    for t in study.get_trials(deepcopy=False):
        root = int(t.user_attrs.get(RETRY_ROOT, t.number))
        if t.state in (TrialState.RUNNING, TrialState.WAITING):
            live.add(root)  # an interrupted attempt's retry is queued: it continues from these
    return live


def reconcile(study: optuna.Study, layout: StudyLayout) -> list[Path]:
    """Remove checkpoint folders of this study's trials that are finished for good.

    Returns the folders removed; folders it cannot attribute are logged and kept.
    """
    known = {int(t.user_attrs.get(RETRY_ROOT, t.number)) for t in
             study.get_trials(deepcopy=False)}
    known |= {int(t.user_attrs[RETRY_OF]) for t in study.get_trials(deepcopy=False)
              if RETRY_OF in t.user_attrs}
    live = _live_roots(study)
    removed: list[Path] = []
    for root_dir in dict.fromkeys((layout.trials_root, layout.mirror_root)):
        if root_dir is None or not root_dir.is_dir():
            continue
        for folder in sorted(root_dir.iterdir()):
            root = trial_root_of(folder)
            if root is None or root not in known:
                logger.warning("No trial of %s explains %s: left alone (set-aside checkpoints "
                               "and copies made by hand are yours to delete)",
                               layout.study_name, folder)
                continue
            if root not in live:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    for folder in removed:
        logger.info("Removed checkpoints of finished trial: %s", folder)
    return removed


def snapshot_all(paths: StudyPaths | None, tracking: TrackingSetup | None = None) -> None:
    """Copy the live SQLite files (study, MLflow) to the durable folder where they differ."""
    pairs = []
    if paths is not None and paths.snapshots_needed:
        pairs.append((paths.working_db, paths.durable_db))
    if tracking is not None and tracking.snapshots_needed:
        pairs.append((tracking.local_db, tracking.durable_db))
    for live, durable in pairs:
        try:
            snapshot(live, durable)
        except Exception as exc:  # noqa: BLE001 - a failed copy must not stop the search
            logger.warning("Could not snapshot %s to %s (%s); the next trial retries it", live,
                           durable, exc)


def free_memory() -> None:
    """Release the finished trial's model and optimizer before the next trial builds its own.

    Besides the collector and CUDA's cache, glibc is asked to return freed heap pages to the
    system: without it the resident size of a long sweep creeps up trial after trial.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    libc = ctypes.util.find_library("c")
    if libc:
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


def disk_usage(layout: StudyLayout, mirror: CheckpointMirror | None) -> dict[str, int]:
    """Bytes kept: checkpoints of unfinished trials (working, mirrored) and best models."""
    return {"checkpoints": folder_bytes(layout.trials_root),
            "mirrored_checkpoints": folder_bytes(layout.mirror_root if mirror else None),
            "best_models": folder_bytes(layout.models_root)}
