"""Opening, resuming and repairing the Optuna study of a sweep (single machine, SQLite).

``open_study`` is where "lose nothing" starts:

1. a lock beside the live database makes sure one process runs the study (an OS file lock,
   :mod:`.filelocks`: dropped when the holder dies, so a stale lock cannot outlive a session);
2. the durable copy is restored when the local one is missing or older (fresh Colab VM);
3. a corrupt database is renamed aside (never deleted) and the newest good copy is used;
4. a study of the same name is resumed, after its fingerprint (search space, objective,
   dataset) is compared with the current one;
5. trials left RUNNING by a dead process are marked FAIL with ``interrupted=True`` and re-queued
   with the same params and ``retry_of=<number>``.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import FingerprintMismatchError, StudyError, StudyLockedError
from ..core.filelocks import ProcessLock, UnsafeLockFile, holder
from ..settings.config import HpoConfig
from ..settings.schema import (
    ATTEMPT,
    CONTINUES,
    CONTINUES_FROM_EPOCH,
    CREATED_AT,
    FINGERPRINT,
    FIXED_PARAMS,
    INTERRUPTED,
    PBT_EXPLOITED,
    PBT_GENERATION,
    PBT_MEMBER,
    RETRY_OF,
    RETRY_ROOT,
    RUNG_PASSED,
    SEED_ROOT,
    retry_root,
    study_name,
)
from ..storage.durable import set_aside
from ..storage.layout import lock_file
from ..storage.paths import StudyPaths
from ..storage.snapshot import (
    BUSY_TIMEOUT_S,
    check_database,
    enable_wal,
    fetch,
    read_only_uri,
    restore_if_missing,
    sqlite_url,
)
from .queries import state_counts, trials_in

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
    "create_database",
    "fingerprint",
    "fingerprint_change",
    "open_shared_study",
    "open_study",
    "reader_storage",
    "recover_interrupted",
    "requeue",
    "sqlite_storage",
    "study_summaries",
    "unreadable_database",
]

logger = logging.getLogger(__name__)


class StudyLock:
    """An exclusive OS lock on ``<db>.lock``; released on close or when the process dies."""

    def __init__(self, db: Path) -> None:
        self.path = lock_file(db)
        self._lock = ProcessLock(self.path)
        try:
            acquired = self._lock.acquire()
        except UnsafeLockFile:  # issue 23: a planted link must not truncate its target
            raise StudyError(
                f"the study lock {self.path} is not a regular file (a symbolic link, FIFO or "
                "folder); it was not opened. Fix: remove it (nothing else uses it) and run "
                "again.") from None
        if not acquired:
            raise StudyLockedError(
                f"another sweep is already running this study ({holder(self.path) or 'unknown'}; "
                f"lock {self.path}). Two sweeps on one SQLite study would double-count trials. "
                "Fix: stop the other one (its notebook tab or process) or wait for it; `status` "
                "can read meanwhile."
            )

    def close(self) -> None:
        self._lock.release()


def lock_holder(db: Path) -> str | None:
    """Who holds the study lock (``"pid ... on host ..."``), or None when nobody does."""
    return holder(lock_file(db))


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
        if db.exists() and db == paths.working_db:  # durable snapshots have no WAL: SQLite
            # never opens them (Drive)
            con = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S)
            try:  # fold the WAL into the file, so the archive is one self-contained file
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                con.close()
        if db.exists():
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
    objective = {"metric": hpo.objective.metric, "direction": hpo.objective.direction,
                 "k_folds": hpo.k_folds}
    # Newer fields enter only when set, so studies made before them keep their fingerprint.
    if hpo.k_folds and hpo.k_fold_stratified:
        objective["k_fold_stratified"] = True
    if hpo.k_folds and hpo.k_fold_seed is not None:
        objective["k_fold_seed"] = hpo.k_fold_seed
    parts: dict[str, Any] = {
        "search_space": space,
        "objective": objective,
        "dataset": dataset_fingerprint,
    }
    sch = hpo.scheduler
    if sch.type == "hyperband":  # rung records mean nothing under other rungs
        parts["scheduler"] = {"type": sch.type, "min_epochs": sch.min_epochs,
                              "reduction_factor": sch.reduction_factor,
                              "brackets": sch.brackets}
    elif sch.type == "pbt":  # nor a population's generations under another interval
        parts["scheduler"] = {"type": sch.type, "interval": sch.interval,
                              "quantile": sch.quantile, "explore": sch.explore,
                              "perturb": sorted(sch.perturb),
                              "perturb_factor": sch.perturb_factor,
                              "resample_probability": sch.resample_probability}
    return parts


def fingerprint_change(stored: Any, parts: dict[str, Any]) -> str | None:
    """What differs between a study's stored fingerprint and ``parts`` (None: nothing)."""
    if json.dumps(stored, sort_keys=True) == json.dumps(parts, sort_keys=True):
        return None
    return _describe_change(stored if isinstance(stored, dict) else {}, parts)


def _describe_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    changes = []
    if old.get("scheduler") != new.get("scheduler"):
        changes.append(f"scheduler: {old.get('scheduler') or 'tpe_median'} -> "
                       f"{new.get('scheduler') or 'tpe_median'}")
    for part in ("search_space", "objective"):
        a, b = old.get(part, {}), new.get(part, {})
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                changes.append(f"{part}.{key}: {a.get(key)} -> {b.get(key)}")
    if old.get("dataset") != new.get("dataset"):
        changes.append(f"dataset (files, label map, split or limits): {old.get('dataset')} -> "
                       f"{new.get('dataset')}")
    return "; ".join(changes) or "unknown"


def sqlite_storage(db: Path, *, read_only: bool = False) -> optuna.storages.RDBStorage:
    """An Optuna RDB storage on ``db`` with a busy timeout (WAL is set on the file).

    Connections come from ``sqlite3.connect`` on the path itself (a creator, not a URL built by
    concatenation), so ``?``, ``#`` or ``%`` in a folder name cannot send the study elsewhere
   . ``read_only`` (status, panel, dashboard) opens the file with
    ``mode=ro`` and creates no table: a reader never writes. A writer retries when a reader
    outside our control (``optuna.load_study`` by hand) creates the same tables at the same
    moment.
    """
    import optuna
    import sqlalchemy.exc

    path = Path(db).absolute()
    if read_only:
        def connect() -> sqlite3.Connection:
            return sqlite3.connect(read_only_uri(path), uri=True, timeout=BUSY_TIMEOUT_S,
                                   check_same_thread=False)
    else:
        def connect() -> sqlite3.Connection:
            return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
    url = sqlite_url(path)

    def storage() -> Any:
        return optuna.storages.RDBStorage(url=url, engine_kwargs={"creator": connect},
                                          skip_table_creation=read_only)

    for attempt in range(5):
        try:
            return storage()
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as exc:
            if read_only or not ("already exists" in str(exc) or "UNIQUE constraint" in str(exc)):
                raise
            logger.info("Another process is creating the tables of %s; retrying", path)
            time.sleep(0.2 * (attempt + 1))
    return storage()


def create_database(db: Path) -> None:
    """Create a new, empty study database at ``db`` with its whole schema, atomically.

    The tables are made in ``<db>.init-<pid>`` and the finished file is renamed into place,
    so a reader never sees a half-made schema and never races the sweep to create it
   . Call it under the study lock.
    """
    tmp = db.with_name(f"{db.name}.init-{os.getpid()}")
    for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        leftover.unlink(missing_ok=True)
    storage = sqlite_storage(tmp)
    storage.engine.dispose()
    enable_wal(tmp)
    for suffix in ("-wal", "-shm"):  # orphans of a database that no longer exists
        Path(str(db) + suffix).unlink(missing_ok=True)
    os.replace(tmp, db)


def study_summaries(db: Path) -> dict[str, int] | None:
    """Study name -> number of trials in the SQLite file ``db``, read-only; None when it
    cannot be read as a study database (the caller decides what that means)."""
    import optuna
    import sqlalchemy.exc

    try:
        storage = reader_storage(db)
        if storage is None:
            return None
        return {s.study_name: s.n_trials for s in
                optuna.get_all_study_summaries(storage, include_best_trial=False)}
    except (StudyError, optuna.exceptions.OptunaError, sqlalchemy.exc.SQLAlchemyError,
            RuntimeError, ValueError):  # another program's database, or a damaged one
        return None


def reader_storage(target: Path | str) -> Any | None:
    """A storage for readers (status, panel, dashboard, inspection) that never writes.

    ``target`` is a study.db path or a database URL. SQLite opens read-only; ``None`` means
    no study database is there yet (missing file, or one whose schema is not finished). A
    server that cannot be reached or a damaged file is a :class:`StudyError` of one line.
    """
    import optuna
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    s = str(target)
    server = "://" in s and not s.startswith("sqlite")
    path = Path(s) if "://" not in s else Path(make_url(s).database or "")
    if not server and not path.is_file():
        return None
    try:
        if server:
            return optuna.storages.RDBStorage(s, engine_kwargs={"pool_pre_ping": True},
                                              skip_table_creation=True)
        from ..storage.snapshot import readable  # a Drive file is read from a local copy

        return sqlite_storage(readable(path), read_only=True)
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError,
            ValueError) as exc:  # ValueError: a damaged schema whose names are not UTF-8
        cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) \
            else exc
        text = str(getattr(cause, "orig", None) or cause)
        if isinstance(cause, sqlalchemy.exc.ProgrammingError) or (
                not server and isinstance(cause, sqlalchemy.exc.OperationalError)):
            return None  # no tables yet: nobody has finished creating a study there
        raise unreadable_database(s if server else path, text) from None


def unreadable_database(target: Path | str, problem: str) -> StudyError:
    """The one-line error of a reader that cannot read the study at ``target`` (path or URL)."""
    from ..core.redaction import mask

    s = str(target)
    server = "://" in s and not s.startswith("sqlite")
    first = mask(problem).strip().splitlines() or ["unreadable"]
    return StudyError(f"cannot read the study database {mask(s)}: {first[0][:200]}. Fix: "
                      + ("check that the server runs and the URL (host, port, database)."
                         if server else "run the sweep, which sets a damaged file aside."))


def count_states(study: optuna.Study) -> dict[str, int]:
    """Trials per state (one ``GROUP BY`` on a database storage; see ``queries``)."""
    return state_counts(study)


def enqueue_if_new(study: optuna.Study, trials: Sequence[Mapping[str, Any]]) -> bool:
    """Queue ``trials`` (params) first when ``study`` has no trial yet; a study with any
    trial never gets them again. Returns whether they were queued."""
    if sum(state_counts(study).values()):
        return False
    for params in trials:
        study.enqueue_trial(dict(params))
    logger.info("Queued %d first trial(s) from enqueue_trials: %s", len(trials),
                "; ".join(json.dumps(dict(p), sort_keys=True) for p in trials))
    return True


def requeue(study: optuna.Study, trial: optuna.trial.FrozenTrial | optuna.Trial) -> None:
    """Queue a retry of an interrupted ``trial`` with the same params.

    ``retry_of`` names the attempt it continues; ``retry_root`` the first attempt of the chain,
    whose checkpoint folder every attempt shares.
    """
    root = retry_root(trial)
    # a continuation's retry is one too, and no retry decides a rung its chain passed
    carried = {k: trial.user_attrs[k] for k in (CONTINUES, CONTINUES_FROM_EPOCH, RUNG_PASSED,
                                                   PBT_MEMBER, PBT_GENERATION, PBT_EXPLOITED,
                                                   SEED_ROOT)
               if k in trial.user_attrs}
    study.enqueue_trial(dict(trial.params),
                        user_attrs={RETRY_OF: trial.number, RETRY_ROOT: root,
                                    ATTEMPT: int(trial.user_attrs.get(ATTEMPT, 1)) + 1,
                                    **carried})


def recover_interrupted(study: optuna.Study) -> list[int]:
    """Mark RUNNING trials FAIL/``interrupted`` and queue a retry of each with the same params.

    Only call this when no live process can own those trials (the study lock is held).
    """
    from optuna.trial import TrialState

    storage = study._storage
    recovered = []
    for t in trials_in(study, (TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, INTERRUPTED, True)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        recovered.append(t.number)
        if not t.params and FIXED_PARAMS not in t.user_attrs:
            # died before drawing its params: nothing to continue, a new trial will come (a
            # space of fixed values records them as fixed_params: that one is continued)
            logger.info("Trial %d was interrupted before it sampled params; not re-queued",
                        t.number)
            continue
        requeue(study, t)
        logger.info("Trial %d was left RUNNING by a dead session: marked FAIL (interrupted) and "
                    "re-queued with the same params; it resumes from its last checkpoint",
                    t.number)
    return recovered


def _holds_no_study(db: Path) -> bool:
    """True when ``db`` is a database with Optuna's tables but not a single study."""
    if not db.is_file():
        return False
    try:
        con = sqlite3.connect(read_only_uri(db), uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            return con.execute("SELECT count(*) FROM studies").fetchone()[0] == 0
        finally:
            con.close()
    except (sqlite3.Error, ValueError):  # damaged (ValueError: a name that is not UTF-8)
        return False


def _prepare_database(paths: StudyPaths) -> None:
    """Bring a healthy database to ``paths.working_db`` (restore, set aside corrupt copies)."""
    working, durable = paths.working_db, paths.durable_db
    if paths.snapshots_needed and durable.exists() and _holds_no_study(working):
        # made on a fresh VM by a reader (optuna.load_study by hand) before we restored
        moved = set_aside(working, "empty")
        logger.warning("%s holds no study (made by a reader before the restore): renamed to "
                       "%s; the durable copy is restored", working, moved.name)
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
    if not working.exists():
        create_database(working)
    enable_wal(working)


def _check_fingerprint(study: optuna.Study, name: str, where: str,
                       fingerprint_parts: dict[str, Any]) -> None:
    stored = study.user_attrs.get(FINGERPRINT)
    if stored is None:
        study.set_user_attr(FINGERPRINT, fingerprint_parts)
        return
    change = fingerprint_change(stored, fingerprint_parts)
    if change:
        raise FingerprintMismatchError(
            f"study {name!r} in {where} was created with other settings: "
            f"{change}. Resuming would mix "
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

    from ..core.redaction import mask
    from .distributed import SharedStudy, open_storage

    name = study_name(backbone, hpo.study_name)
    storage = open_storage(url, heartbeat_interval=hpo.heartbeat_interval,
                           grace_period=hpo.grace_period, on_stale=on_stale)
    resumed = name in set(optuna.get_all_study_names(storage))
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                direction=_direction(hpo), sampler=sampler,
                                pruner=pruner)
    _check_fingerprint(study, name, mask(url), fingerprint_parts)
    if CREATED_AT not in study.user_attrs:  # names the kept-models folder (layout)
        study.set_user_attr(CREATED_AT, time.strftime("%Y-%m-%dT%H:%M:%S"))
    counts = count_states(study)
    logger.info("Shared study %s %s on %s (%d COMPLETE, %d RUNNING on other workers)", name,
                "joined" if resumed else "created", mask(url), counts["COMPLETE"],
                counts["RUNNING"])
    return OpenedStudy(study, name, None, resumed, shared=SharedStudy(storage, name))


def _direction(hpo: HpoConfig) -> optuna.study.StudyDirection:
    import optuna

    return optuna.study.StudyDirection[hpo.objective.direction.upper()]


def open_study(*, hpo: HpoConfig, backbone: str, paths: StudyPaths | None,
               fingerprint_parts: dict[str, Any], sampler: BaseSampler,
               pruner: BasePruner) -> OpenedStudy:
    """Create or resume the study; ``paths=None`` means checkpointing is off (in memory)."""
    import optuna

    base_name = study_name(backbone, hpo.study_name)
    if paths is None:
        study = optuna.create_study(study_name=base_name, direction=_direction(hpo),
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
                                        direction=_direction(hpo), sampler=sampler,
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
