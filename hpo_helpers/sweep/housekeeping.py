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
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..settings.schema import SEED_ROOT, retry_root
from ..storage.durable import (
    DurableWrites,
    copy_folder,
    folder_bytes,
    prune_leftovers,
    remove_tree,
)
from ..storage.layout import StudyLayout, trial_root_of
from ..study.queries import chain_numbers, paused_chain_roots, top_complete, trials_in

if TYPE_CHECKING:
    import optuna

    from ..storage.mirror import CheckpointMirror

__all__ = ["disk_usage", "drop_beyond_top_k", "keep_top_k", "reconcile",
           "send_waiting_models"]

logger = logging.getLogger(__name__)


def keep_top_k(study: optuna.Study, layout: StudyLayout, k: int, trial_number: int,
               best_src: Path | None, writes: DurableWrites | None = None, *,
               continues: bool = False) -> None:
    """Keep ``best_src`` as trial ``trial_number``'s model if it ranks in the top k; drop the
    kept models that fell out of the top k. A continuation (``continues``, scheduler
    hyperband) that did not beat its chain's earlier best has no model of its own: that one
    was kept under the paused trial's number, and nothing is done.

    The kept models live in the durable folder: when it refuses the copy (full, read-only,
    unmounted), the model waits on local disk (:meth:`StudyLayout.local_model_dir`) and
    ``writes`` moves it there after a later trial, if it is still among the top k."""
    target = layout.kept_model_dir(trial_number)
    if layout.models_root is None or target is None:
        return
    if continues and (best_src is None or not best_src.is_dir()):
        return
    writes = writes or DurableWrites()
    keep = {number for number, _ in top_complete(study, k)}
    # The models this trial pushed out go first: before the (slow) copy of its own model, so
    # a kill during that copy leaves no model beyond the top k on the durable folder, and a
    # full Drive gets the room back first.
    drop_beyond_top_k(layout, k, keep)
    if trial_number in keep and best_src is not None and best_src.is_dir():
        local = layout.local_model_dir(trial_number)
        if local is not None and local != target:
            remove_tree(local, f"an older copy of trial {trial_number}'s best model")
            local.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(best_src), str(local))  # same disk: a rename
        else:
            local = best_src
        _to_durable(study, layout, k, trial_number, local, writes)
    elif trial_number in keep:
        logger.warning("Trial %d is among the top %d but its best model is missing (%s)",
                       trial_number, k, best_src)


def drop_beyond_top_k(layout: StudyLayout, k: int, keep: set[int]) -> None:
    """Remove kept (and waiting) models of trials outside ``keep``, the top ``k``."""
    for number in sorted((layout.kept_model_numbers() | layout.waiting_model_numbers()) - keep):
        for folder in (layout.kept_model_dir(number), layout.local_model_dir(number)):
            remove_tree(folder, f"the model of trial {number}, no longer among the top {k}")


def _to_durable(study: optuna.Study, layout: StudyLayout, k: int, number: int, src: Path,
                writes: DurableWrites) -> None:
    """Copy trial ``number``'s model from ``src`` (local disk) to the durable models folder,
    now or, when the durable folder refuses, after a later trial (``writes``)."""
    final = layout.kept_model_dir(number)

    def move() -> None:
        if number not in {n for n, _ in top_complete(study, k)}:  # fell out while it waited
            remove_tree(src, f"the waiting model of trial {number}, out of the top {k}")
            return
        if src != final:
            try:
                copy_folder(src, final)  # type: ignore[arg-type]
            except BaseException:
                prune_leftovers(final.parent)  # type: ignore[union-attr] # no partial copy left
                raise
            remove_tree(src, f"the local copy of trial {number}'s model, now durable")
        logger.info("Best model of trial %d kept: %s", number, final)

    writes.attempt(f"model:{number}", f"best model of trial {number} (waiting in {src})", move,
                   needed=folder_bytes(src))


def send_waiting_models(study: optuna.Study, layout: StudyLayout, k: int,
                        writes: DurableWrites) -> None:
    """At a session's start: models beyond the top k that an earlier session left (it was
    killed between a trial's end and their removal) are removed, and models it left waiting on
    local disk (the durable folder refused them) go to the durable folder now, or after a
    later trial."""
    keep = {n for n, _ in top_complete(study, k)}
    if layout.models_root is not None:
        drop_beyond_top_k(layout, k, keep)
    for number in sorted(layout.waiting_model_numbers()):
        src = layout.local_model_dir(number)
        if number in layout.kept_model_numbers() or number not in keep:  # a leftover
            remove_tree(src, f"a leftover local copy of trial {number}'s model")
            continue
        logger.info("Best model of trial %d is still only on local disk (%s): sending it to the "
                    "durable folder", number, src)
        _to_durable(study, layout, k, number, src, writes)  # type: ignore[arg-type]


def _live_roots(study: optuna.Study) -> set[int]:
    """Retry-chain roots whose checkpoints may still be used (a trial will continue them)."""
    from optuna.trial import TrialState

    # an interrupted attempt's retry or a promotion is queued: it continues from these (a PBT
    # segment from the folder it copies, SEED_ROOT); a trial paused at a rung (scheduler
    # hyperband) may still be promoted
    coming = trials_in(study, (TrialState.RUNNING, TrialState.WAITING))
    return ({retry_root(t) for t in coming}
            | {int(t.user_attrs[SEED_ROOT]) for t in coming if SEED_ROOT in t.user_attrs}
            | paused_chain_roots(study))


def reconcile(study: optuna.Study, layout: StudyLayout) -> list[Path]:
    """Remove checkpoint folders of this study's trials that are finished for good.

    Returns the folders removed; folders it cannot attribute are logged and kept.
    """
    known = chain_numbers(study)
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
            if root not in live and remove_tree(folder, "checkpoints of finished trial"):
                removed.append(folder)
    return removed


def disk_usage(layout: StudyLayout, mirror: CheckpointMirror | None, *,
               log: bool = False) -> dict[str, int]:
    """Bytes kept: checkpoints of unfinished trials (working, mirrored) and best models
    (``log``: also logged as ``Disk kept: ...``)."""
    usage = {"checkpoints": folder_bytes(layout.trials_root),
             "mirrored_checkpoints": folder_bytes(layout.mirror_root if mirror else None),
             "best_models": folder_bytes(layout.models_root)}
    if log:
        logger.info("Disk kept: %s", ", ".join(f"{k.replace('_', ' ')} {v / 1e6:.1f} MB"
                                                for k, v in usage.items()))
    return usage
