"""Opening a sweep's study for a session: the study (local SQLite or shared PostgreSQL), its
layout, and adoption of a study left at the seed's old locations.

``sweep``, ``evaluate`` and ``refit`` open a study the same way through :func:`open_run`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import TYPE_CHECKING, Any

from .layout import StudyLayout, seed_study_files
from .paths import StudyPaths
from .redaction import mask
from .runtime import Runtime
from .schema import ATTEMPT, CREATED_AT
from .snapshot import adopt
from .study import OpenedStudy, open_shared_study, open_study, requeue
from .tracking import SweepTracker
from .trial import sampler_and_pruner

if TYPE_CHECKING:
    import optuna

__all__ = ["OpenedRun", "adopt_seed_study", "open_run"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class OpenedRun:
    opened: OpenedStudy
    layout: StudyLayout
    checkpoint_path: str | None


def open_run(hpo: Any, backbone: str, url: str | None, local: StudyPaths | None,
             parts: dict[str, Any], tracker: SweepTracker) -> OpenedRun:
    """Open (or join) the study and build its layout once (``evaluate``/``refit`` too)."""
    sampler, pruner = sampler_and_pruner(hpo)
    if url:
        def on_stale(study: optuna.Study, frozen: optuna.trial.FrozenTrial) -> None:
            first = int(frozen.user_attrs.get(ATTEMPT, 1)) == 1
            logger.warning("Trial %d lost its worker (no heartbeat for %d s): marked FAIL%s",
                           frozen.number, hpo.grace_period,
                           " and re-queued once with the same params" if first else "")
            if first:
                requeue(study, frozen)
            # This runs under the workers' budget lock (``SharedStudy.reserve``): MLflow goes
            # to a thread, so a slow tracking server never stalls every worker's claim (a
            # child left RUNNING is ended KILLED by the next session's reconcile).
            threading.Thread(target=tracker.trial_interrupted, args=(frozen,), daemon=True,
                             name=f"mlflow-stale-{frozen.number}").start()

        opened = open_shared_study(hpo=hpo, backbone=backbone, url=url, fingerprint_parts=parts,
                                   sampler=sampler, pruner=pruner, on_stale=on_stale)
        if hpo.shared_checkpoint_dir:
            layout = StudyLayout.for_study(opened.study_name, shared_dir=hpo.shared_checkpoint_dir)
        else:
            layout = local.layout(opened.study_name,  # type: ignore[union-attr]
                                  opened.study.user_attrs.get(CREATED_AT))
        return OpenedRun(opened, layout, mask(url))
    opened = open_study(hpo=hpo, backbone=backbone, paths=local, fingerprint_parts=parts,
                        sampler=sampler, pruner=pruner)
    layout = local.layout(opened.study_name, opened.study.user_attrs.get(CREATED_AT)) \
        if local else StudyLayout.for_study(opened.study_name)
    return OpenedRun(opened, layout, str(local.durable_db) if local else None)


def adopt_seed_study(paths: StudyPaths, runtime: Runtime, backbone: str) -> None:
    """A study at the seed's old location, when this layout has none yet, is copied in (the
    original is never modified) and adopted: the study opens it and records its fingerprint."""
    if paths.working_db.exists() or paths.durable_db.exists():
        return
    for seed in seed_study_files(runtime.kind, runtime.root, backbone):
        problem = adopt(seed, paths.working_db)
        if problem:
            logger.warning("Study at the seed's old location %s is not usable (%s): left "
                           "alone", seed, problem)
            continue
        logger.warning("Adopted the study found at the seed's old location %s: copied to %s "
                       "(the original is left untouched); its fingerprint is recorded as it "
                       "opens", seed, paths.working_db)
        return
