"""Opening a sweep's study for a session: the study (local SQLite or shared PostgreSQL), its
layout, and adoption of a study left at the seed's old locations.

``sweep``, ``evaluate`` and ``refit`` open a study the same way through :func:`open_run`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.redaction import mask
from ..core.runtime import Runtime
from ..settings.config import HpoConfig
from ..settings.schema import ATTEMPT, CREATED_AT
from ..storage.layout import StudyLayout, seed_study_beside, seed_study_files
from ..storage.paths import StudyPaths
from ..storage.snapshot import adopt
from .sampling import sampler_and_pruner
from .store import OpenedStudy, open_shared_study, open_study, requeue, study_summaries

if TYPE_CHECKING:
    import optuna

__all__ = ["OpenedRun", "adopt_seed_study", "open_run"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class OpenedRun:
    opened: OpenedStudy
    layout: StudyLayout
    checkpoint_path: str | None


def open_run(hpo: HpoConfig, backbone: str, url: str | None, local: StudyPaths | None,
             parts: dict[str, Any],
             on_lost_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
             ) -> OpenedRun:
    """Open (or join) the study and build its layout once (``evaluate``/``refit`` too).

    ``on_lost_trial`` is told (from a thread of its own) about each trial of a shared study
    whose worker died: the sweep ends its MLflow child run there."""
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
            if on_lost_trial is not None:
                threading.Thread(target=on_lost_trial, args=(frozen,), daemon=True,
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


def adopt_seed_study(paths: StudyPaths, runtime: Runtime, backbone: str, study_name: str, *,
                     output_dir_given: bool = False, config: object = "the HPO config") -> None:
    """A study left by the seed (the original tool), when this layout has none yet, is copied
    in (the original is never modified) and adopted: the study opens it and records its
    fingerprint. Looked for in the output folder itself (``{study_name}/study.db``, the seed's
    layout with a custom ``storage_path``) and, unless an output folder was given, at the
    seed's runtime locations. A file that holds other studies only is not adopted: a warning
    names it, its studies and the ``study_name`` that would continue it."""
    if paths.working_db.exists() or paths.durable_db.exists():
        return
    candidates = [seed_study_beside(paths.durable_dir, study_name)]
    if not output_dir_given:
        candidates += seed_study_files(runtime.kind, runtime.root, backbone, study_name)
    for seed in dict.fromkeys(c for c in candidates if c.is_file()):
        names = study_summaries(seed)
        if names is not None and study_name not in names:
            logger.warning("Study file of the original tool at %s holds %s, not %s: not "
                           "adopted. Fix: to continue it, set study_name: %s in %s and run "
                           "again", seed, ", ".join(f"{n} ({k} trials)" for n, k in
                                                    names.items()) or "no study", study_name,
                           next(iter(names), "<its name>"), config)
            continue
        problem = adopt(seed, paths.working_db)
        if problem:
            logger.warning("Study at the seed's old location %s is not usable (%s): left "
                           "alone", seed, problem)
            continue
        logger.warning("Adopted the study found at the seed's old location %s: copied to %s "
                       "(the original is left untouched); its fingerprint is recorded as it "
                       "opens", seed, paths.working_db)
        return
