"""Opening, resuming and repairing the Optuna study of a sweep (single machine, SQLite).

``open_study`` is where "lose nothing" starts:

1. a lock beside the live database makes sure one process runs the study (``flock``: the kernel
   drops it when the holder dies, so a stale lock cannot outlive a killed session);
2. the durable copy is restored when the local one is missing or older (fresh Colab VM);
3. a corrupt database is renamed aside (never deleted) and the newest good copy is used;
4. a study of the same name is resumed, after its fingerprint (search space, objective,
   dataset) is compared with the current one;
5. trials left RUNNING by a dead process are marked FAIL with ``interrupted=True`` and re-queued
   with the same params and ``retry_of=<number>``.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import HpoConfig
from .durable import set_aside
from .errors import FingerprintMismatchError, StudyLockedError
from .paths import StudyPaths
from .schema import (
    ATTEMPT,
    CREATED_AT,
    FINGERPRINT,
    INTERRUPTED,
    RETRY_OF,
    RETRY_ROOT,
    retry_root,
    study_name,
)
from .snapshot import (
    BUSY_TIMEOUT_S,
    check_database,
    enable_wal,
    fetch,
    restore_if_missing,
)

if TYPE_CHECKING:
    import optuna
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler


__all__ = [
    "OpenedStudy",
    "archive_study",
    "lock_holder",
    "StudyLock",
    "count_states",
    "fingerprint",
    "open_shared_study",
    "open_study",
    "recover_interrupted",
    "requeue",
    "sqlite_storage",
]

logger = logging.getLogger(__name__)


class StudyLock:
    """An exclusive ``flock`` on ``<db>.lock``; released on close or when the process dies."""

    def __init__(self, db: Path) -> None:
        self.path = Path(str(db) + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self._fd, 4096, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            raise StudyLockedError(
                f"another sweep is already running this study ({holder}; lock {self.path}). "
                "Two sweeps on one SQLite study would double-count trials. Fix: stop the other "
                "one (its notebook tab or process) or wait for it; `status` can read meanwhile."
            ) from None
        info = f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}"
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, info.encode(), 0)

    def close(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def lock_holder(db: Path) -> str | None:
    """Who holds the study lock (``"pid ... on host ..."``), or None when nobody does."""
    path = Path(str(db) + ".lock")
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def archive_study(paths: StudyPaths, study_name: str) -> list[Path]:
    """Move a study's database, checkpoints and models aside (``*.archived-<time>``).

    Nothing is deleted: a later run starts a new study in a new file. Refused while a sweep
    holds the lock.
    """
    holder = lock_holder(paths.working_db)
    if holder is not None:
        raise StudyLockedError(f"cannot archive {paths.working_db}: a sweep is running it "
                               f"({holder}). Fix: stop it first.")
    moved = []
    for db in dict.fromkeys([paths.working_db, paths.durable_db]):
        if db.exists():
            con = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S)
            try:  # fold the WAL into the file, so the archive is one self-contained file
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                con.close()
            moved.append(set_aside(db, "archived"))
            for suffix in ("-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)  # empty after the checkpoint
    layout = paths.layout(study_name)
    for folder in dict.fromkeys([*layout.archived_folders(), *layout.study_models_folders()]):
        if folder.exists():
            moved.append(set_aside(folder, "archived"))
    for m in moved:
        logger.info("Archived %s", m)
    return moved


@dataclass
class OpenedStudy:
    study: optuna.Study
    study_name: str
    paths: StudyPaths | None
    resumed: bool
    recovered: list[int] = field(default_factory=list)
    lock: StudyLock | None = None
    shared: Any = None  # distributed.SharedStudy when the storage is a database server

    def close(self) -> None:
        if self.lock is not None:
            self.lock.close()
            self.lock = None


def fingerprint(hpo: HpoConfig, dataset_fingerprint: str) -> dict[str, Any]:
    """The parts of a study that must not change under a resume."""
    space = {p.name: {"type": p.type, "low": p.low, "high": p.high, "choices": list(p.choices),
                      "value": p.value} for p in hpo.search_space}
    return {
        "search_space": space,
        "objective": {"metric": hpo.objective.metric, "direction": hpo.objective.direction,
                      "k_folds": hpo.k_folds},
        "dataset": dataset_fingerprint,
    }


def _describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    changes = []
    for part in ("search_space", "objective"):
        a, b = old.get(part, {}), new.get(part, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                changes.append(f"{part}.{key}: {a.get(key)} -> {b.get(key)}")
    if old.get("dataset") != new.get("dataset"):
        changes.append(f"dataset (files, label map, split or limits): {old.get('dataset')} -> "
                       f"{new.get('dataset')}")
    return "; ".join(changes) or "unknown"


def sqlite_storage(db: Path) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage on ``db`` with a busy timeout (WAL is set on the file)."""
    import optuna

    return optuna.storages.RDBStorage(
        url=f"sqlite:///{db}",
        engine_kwargs={"connect_args": {"timeout": BUSY_TIMEOUT_S}},
    )


def count_states(study: optuna.Study) -> dict[str, int]:
    """Trials per state, read without deep copies."""
    from optuna.trial import TrialState

    counts = {s.name: 0 for s in TrialState}
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] += 1
    return counts


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial | optuna.Trial) -> None:
    """Queue a retry of an interrupted ``trial`` with the same params.

    ``retry_of`` names the attempt it continues; ``retry_root`` the first attempt of the chain,
    whose checkpoint folder every attempt shares.
    """
    root = retry_root(trial)
    study.enqueue_trial(dict(trial.params),
                        user_attrs={RETRY_OF: trial.number, RETRY_ROOT: root,
                                    ATTEMPT: int(trial.user_attrs.get(ATTEMPT, 1)) + 1})


def interrupted_numbers(trials: list[Any]) -> set[int]:
    """Trials that died with their process: tagged ``interrupted`` or continued by a retry."""
    return ({t.number for t in trials if t.user_attrs.get(INTERRUPTED)}
            | {int(t.user_attrs[RETRY_OF]) for t in trials if RETRY_OF in t.user_attrs})


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Mark RUNNING trials FAIL/``interrupted`` and queue a retry of each with the same params.

    Only call this when no live process can own those trials (the study lock is held).
    """
    from optuna.trial import TrialState

    storage = study._storage
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, INTERRUPTED, True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        recovered.append(t.number)
        if not t.params:  # died before sampling: nothing to continue, a new trial will come
            logger.info("Trial %d was interrupted before it sampled params; not re-queued",
                        t.number)
            continue
        requeue(study, t)
        logger.info("Trial %d was left RUNNING by a dead session: marked FAIL (interrupted) and "
                    "re-queued with the same params; it resumes from its last checkpoint",
                    t.number)
    return recovered


def _prepare_database(paths: StudyPaths) -> None:
    """Bring a healthy database to ``paths.working_db`` (restore, set aside corrupt copies)."""
    working, durable = paths.working_db, paths.durable_db
    restore_if_missing(working, durable)
    if working.exists():
        problem = check_database(working)
        if problem:
            moved = set_aside(working, "corrupt")
            for suffix in ("-wal", "-shm"):
                side = Path(str(working) + suffix)
                if side.exists():
                    set_aside(side, "corrupt")
            if paths.snapshots_needed and durable.exists() and fetch(durable, working) is None:
                logger.error("Study database %s is damaged (%s): renamed to %s; restored the "
                             "newest good snapshot %s", working, problem, moved, durable)
            else:
                logger.error("Study database %s is damaged (%s): renamed to %s; no good "
                             "snapshot exists, so a new study starts (the old file is kept)",
                             working, problem, moved)
    enable_wal(working)


def _check_fingerprint(study: optuna.Study, name: str, where: str,
                       fingerprint_parts: dict[str, Any]) -> None:
    stored = study.user_attrs.get(FINGERPRINT)
    if stored is None:
        study.set_user_attr(FINGERPRINT, fingerprint_parts)
        return
    if json.dumps(stored, sort_keys=True) != json.dumps(fingerprint_parts, sort_keys=True):
        raise FingerprintMismatchError(
            f"study {name!r} in {where} was created with other settings: "
            f"{_describe_change(stored, fingerprint_parts)}. Resuming would mix "
            "incomparable trials. Fix: restore the old settings to resume, or set "
            "checkpoint.auto_resume: false (new study beside the old one) or a new "
            "study_name."
        )


def open_shared_study(*, hpo: HpoConfig, backbone: str, url: str,
                      fingerprint_parts: dict[str, Any], sampler: BaseSampler,
                      pruner: BasePruner,
                      on_stale: Any) -> OpenedStudy:
    """Create or join the study on a database server shared by several workers."""
    import optuna

    from .distributed import SharedStudy, open_storage
    from .redaction import mask

    name = study_name(backbone, hpo.study_name)
    storage = open_storage(url, heartbeat_interval=hpo.heartbeat_interval,
                           grace_period=hpo.grace_period, on_stale=on_stale)
    resumed = name in set(optuna.get_all_study_names(storage))
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                direction=hpo.objective.direction, sampler=sampler,
                                pruner=pruner)
    _check_fingerprint(study, name, mask(url), fingerprint_parts)
    if CREATED_AT not in study.user_attrs:  # names the kept-models folder (layout)
        study.set_user_attr(CREATED_AT, time.strftime("%Y-%m-%dT%H:%M:%S"))
    counts = count_states(study)
    logger.info("Shared study %s %s on %s (%d COMPLETE, %d RUNNING on other workers)", name,
                "joined" if resumed else "created", mask(url), counts["COMPLETE"],
                counts["RUNNING"])
    return OpenedStudy(study, name, None, resumed, shared=SharedStudy(storage, name))


def open_study(*, hpo: HpoConfig, backbone: str, paths: StudyPaths | None,
               fingerprint_parts: dict[str, Any], sampler: BaseSampler,
               pruner: BasePruner) -> OpenedStudy:
    """Create or resume the study; ``paths=None`` means checkpointing is off (in memory)."""
    import optuna

    base_name = study_name(backbone, hpo.study_name)
    if paths is None:
        study = optuna.create_study(study_name=base_name, direction=hpo.objective.direction,
                                    sampler=sampler, pruner=pruner)
        study.set_user_attr(FINGERPRINT, fingerprint_parts)
        logger.info("Study %s opened in memory (checkpoint.enabled is false: nothing persists)",
                    base_name)
        return OpenedStudy(study, base_name, None, resumed=False)

    lock = StudyLock(paths.working_db)
    try:
        _prepare_database(paths)
        storage = sqlite_storage(paths.working_db)
        names = set(optuna.get_all_study_names(storage))
        name = base_name
        resumed = False
        if name in names and not hpo.checkpoint.auto_resume:
            name = f"{base_name}_{time.strftime('%Y%m%d_%H%M%S')}"
            logger.info("checkpoint.auto_resume is false: starting new study %s beside %s in %s "
                        "(nothing is deleted)", name, base_name, paths.working_db)
        if name in names:
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                                      pruner=pruner)
            _check_fingerprint(study, name, str(paths.durable_db), fingerprint_parts)
            resumed = True
        else:
            study = optuna.create_study(study_name=name, storage=storage,
                                        direction=hpo.objective.direction, sampler=sampler,
                                        pruner=pruner)
            study.set_user_attr(FINGERPRINT, fingerprint_parts)
            study.set_user_attr(CREATED_AT, time.strftime("%Y-%m-%dT%H:%M:%S"))
        recovered = recover_interrupted(study)
        counts = count_states(study)
        logger.info("Study %s %s: %s (%d COMPLETE, %d PRUNED, %d FAIL)", name,
                    "resumed" if resumed else "created", paths.durable_db, counts["COMPLETE"],
                    counts["PRUNED"], counts["FAIL"])
        return OpenedStudy(study, name, paths, resumed, recovered, lock)
    except BaseException:
        lock.close()
        raise
