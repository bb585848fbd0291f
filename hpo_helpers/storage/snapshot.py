"""SQLite files: health checks, WAL set-up, and atomic snapshots to the durable folder.

SQLite must never be opened on a network or FUSE mount (Google Drive): the live database is on
local disk and is copied with SQLite's online backup API into a temporary file beside the
durable copy, checked, and moved into place with ``os.replace``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sqlite3
import stat
import threading
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from time import time_ns
from typing import TYPE_CHECKING, Any, Protocol

from .durable import DurableWrites, copy_bytes, make_dirs, set_aside, sha256
from .layout import owner_file

if TYPE_CHECKING:
    from .paths import StudyPaths

__all__ = [
    "SnapshotPair",
    "StudyFacts",
    "snapshot_all",
    "adopt",
    "backup",
    "check_database",
    "read_copy_folder",
    "readable",
    "enable_wal",
    "fetch",
    "read_only_uri",
    "restore_if_missing",
    "set_aside",
    "snapshot",
    "sqlite_url",
    "study_facts",
]

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0


def sqlite_url(path: Path | str) -> str:
    """The SQLAlchemy URL of the SQLite file ``path`` (Optuna's and MLflow's), built by
    quoting the path's bytes: ``?``, ``#``, ``%`` and spaces in a folder name stay part of the
    name, never a query, a fragment or an escape (``%2F..%2F`` is no ``/../``)."""
    return "sqlite:///" + urllib.parse.quote(os.fsencode(Path(path).absolute()))


def read_only_uri(path: Path | str) -> str:
    """A SQLite URI that opens ``path`` read-only, whatever it holds (``?``, ``#``, ``%``):
    built by quoting the path's bytes, never by pasting it into a URI."""
    return "file:" + urllib.parse.quote(os.fsencode(Path(path).absolute())) + "?mode=ro"


def check_database(path: Path) -> str | None:
    """None when ``path`` is a healthy SQLite database, else what is wrong with it.

    Beyond ``quick_check``, the study-level attributes (fingerprint, creation time) must be
    valid JSON: damage there passes SQLite's check but breaks Optuna.
    Text is decoded leniently, so bytes on the schema page are a finding, not a crash.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    if size == 0:
        return "zero-length file"
    with open(path, "rb") as fh:
        if fh.read(16) != b"SQLite format 3\x00":
            return "not an SQLite database (bad header)"
    try:
        con = sqlite3.connect(read_only_uri(path), uri=True, timeout=BUSY_TIMEOUT_S)
        con.text_factory = lambda raw: raw.decode("utf-8", "replace")
        try:
            row = con.execute("PRAGMA quick_check").fetchone()
            if row and row[0] == "ok":
                bad = _bad_study_attribute(con)
                if bad:
                    return bad
        finally:
            con.close()
    except (sqlite3.DatabaseError, ValueError) as exc:
        return f"unreadable ({str(exc)[:200]})"
    if not row or row[0] != "ok":
        return f"integrity check failed ({(row[0] if row else 'no answer')[:200]})"
    return None


def _bad_study_attribute(con: sqlite3.Connection) -> str | None:
    for table in ("study_user_attributes", "study_system_attributes"):
        try:
            rows = con.execute(f"SELECT key, value_json FROM {table}").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                continue  # a database without a study schema yet
            raise
        for key, value in rows:
            try:
                json.loads(value)
            except (TypeError, ValueError):
                return f"damaged study attribute {key[:40]!r} in {table}"
    return None


@dataclass(frozen=True)
class StudyFacts:
    """What says which of two copies of a study is further along, read without Optuna.

    ``finished``: trials COMPLETE, PRUNED or FAIL; ``last``: the newest start or end time of a
    trial (ISO text, "" when none); ``attrs``: the study's user attributes (fingerprint ...).
    """

    finished: int
    last: str
    attrs: dict[str, Any]


def study_facts(db: Path, study_name: str | None = None) -> StudyFacts | None:
    """:class:`StudyFacts` of ``study_name`` in ``db`` (None: the finished trials of every
    study of the file, nothing else), read-only; None when the file holds no such study or
    cannot be read. Open only a file on local disk (a Drive file through :func:`readable`)."""
    finished_sql = "count(CASE WHEN state IN ('COMPLETE', 'PRUNED', 'FAIL') THEN 1 END)"
    try:
        con = sqlite3.connect(read_only_uri(db), uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            if study_name is None:
                (finished,) = con.execute(f"SELECT {finished_sql} FROM trials").fetchone()
                return StudyFacts(int(finished or 0), "", {})
            row = con.execute("SELECT study_id FROM studies WHERE study_name = ?",
                              (study_name,)).fetchone()
            if row is None:
                return None
            finished, last = con.execute(
                f"SELECT {finished_sql}, max(max(coalesce(datetime_start, ''), "
                "coalesce(datetime_complete, ''))) FROM trials WHERE study_id = ?",
                row).fetchone()
            attrs = {k: json.loads(v) for k, v in con.execute(
                "SELECT key, value_json FROM study_user_attributes WHERE study_id = ?", row)}
        finally:
            con.close()
    except (sqlite3.Error, ValueError):  # damaged, not a study file, an attribute not JSON
        return None
    return StudyFacts(int(finished or 0), str(last or ""), attrs)


def enable_wal(path: Path) -> None:
    """Put the database in WAL mode (persistent), so readers never block the writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def backup(source: Path, local: Path) -> Path:
    """A consistent, integrity-checked copy of live database ``source`` at ``local`` (local
    disk), made with SQLite's online backup API as one self-contained file."""
    src = sqlite3.connect(source, timeout=BUSY_TIMEOUT_S)
    try:
        dst = sqlite3.connect(local)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        finally:
            dst.close()
    finally:
        src.close()
    problem = check_database(local)
    if problem:
        local.unlink(missing_ok=True)
        raise OSError(f"snapshot of {source} failed its integrity check: {problem}")
    return local


def snapshot(source: Path, target: Path) -> Path:
    """Copy live database ``source`` (local disk) to ``target`` (durable) atomically.

    SQLite's online backup API writes a consistent copy into a temporary file beside the
    source, on local disk (:func:`backup`); it is integrity-checked there, copied byte for byte
    to ``<target>.tmp-<pid>``, verified by checksum and moved into place with ``os.replace``.
    SQLite never opens a file in the durable folder (Drive's FUSE mount breaks its locking).
    """
    make_dirs(target.parent)
    local = source.with_name(f"{source.name}.snapshot-{os.getpid()}")
    remote = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        backup(source, local)
        written = copy_bytes(local, remote, fault="snapshot_copy")
        if sha256(remote) != written:
            raise OSError(f"snapshot copy {remote} does not match what was written")
        os.replace(remote, target)
    finally:
        local.unlink(missing_ok=True)
        remote.unlink(missing_ok=True)
    logger.info("Snapshot written: %s", target)
    return target


def fetch(durable: Path, working: Path) -> str | None:
    """Replace ``working`` with a checked copy of ``durable``; what is wrong with it, or None.

    The durable file is copied byte for byte to local disk and checked there; a damaged copy
    is renamed aside in the durable folder (never deleted) and ``working`` is left alone.
    """
    working.parent.mkdir(parents=True, exist_ok=True)
    local = working.with_name(f"{working.name}.restore-{os.getpid()}")
    try:
        copy_bytes(durable, local, fault="snapshot_copy")
        problem = check_database(local)
        if problem:
            moved = set_aside(durable, "corrupt")
            logger.error("Durable copy %s is damaged (%s): renamed to %s", durable, problem,
                         moved.name)
            return problem
        for suffix in ("-wal", "-shm"):  # a stale WAL of an older local copy must not replay
            Path(str(working) + suffix).unlink(missing_ok=True)
        os.replace(local, working)
    finally:
        local.unlink(missing_ok=True)
    logger.info("Restored the study from the durable copy %s to %s", durable, working)
    return None


_read_folder: Path | None = None
_read_lock = threading.Lock()
_ORPHAN_WITHOUT_OWNER_S = 3600  # a folder whose maker died before it took its lock


def _read_copies() -> Path:
    """This process's folder of read copies (private, made by ``mkdtemp``), removed at exit.

    Only this user's folders are judged, and their ``.owner`` lock is opened without blocking
    and only when it is a regular file (a FIFO planted there made every reader hang).
    Each folder holds a :class:`~hpo_helpers.core.filelocks.ProcessLock` for the life of its
    process; a folder whose lock is free belongs to a process that died without running its
    exit handler (a killed kernel), and is removed when the next process makes its folder."""
    global _read_folder
    with _read_lock:
        if _read_folder is None:
            import atexit
            import tempfile

            from ..core.filelocks import ProcessLock

            _remove_orphan_copies(Path(tempfile.gettempdir()))
            folder = Path(tempfile.mkdtemp(prefix=f"hpo-read-{os.getpid()}-"))
            owner = ProcessLock(owner_file(folder))
            owner.acquire()
            atexit.register(_remove_copies, folder, owner)
            _read_folder = folder
        return _read_folder


def read_copy_folder(name: str) -> Path:
    """A folder for read copies inside this process's private read-copy folder."""
    folder = _read_copies() / name
    folder.mkdir(exist_ok=True)
    return folder


def _remove_copies(folder: Path, owner: Any) -> None:
    import shutil

    owner.release()  # first: Windows deletes no open file
    shutil.rmtree(folder, ignore_errors=True)


def _remove_orphan_copies(tmp: Path) -> None:
    import shutil
    import time

    from ..core.filelocks import holder

    uid = getattr(os, "getuid", lambda: None)()
    for old in tmp.glob("hpo-read-*"):
        try:
            info = old.lstat()
            if not stat.S_ISDIR(info.st_mode) or (uid is not None and info.st_uid != uid):
                continue  # a link, a file, or another user's: not ours to judge (issue 23)
            owner = owner_file(old)
            dead = holder(owner) is None if owner.exists() else \
                time.time() - old.stat().st_mtime > _ORPHAN_WITHOUT_OWNER_S
        except OSError:  # another user's folder: not ours to judge
            continue
        if dead:
            shutil.rmtree(old, ignore_errors=True)


def readable(db: Path) -> Path:
    """The file to open for reading ``db``: itself on local disk; for a file on Google Drive, a
    fresh byte copy on local disk (SQLite never opens a Drive file, not even to read).

    The copy replaces the previous one by rename, so a reader still open on the previous copy
    (the dashboard) keeps reading a whole file; where the system refuses to replace an open
    file (Windows), the new copy gets a name of its own."""
    from .layout import on_drive

    if not on_drive(db):
        return db
    import hashlib

    folder = _read_copies() / hashlib.sha256(str(Path(db).resolve()).encode()).hexdigest()[:12]
    folder.mkdir(exist_ok=True)
    local = folder / Path(db).name
    partial = folder / f"{Path(db).name}.part-{threading.get_ident()}"
    try:
        copy_bytes(db, partial)
        try:
            for suffix in ("-wal", "-shm"):
                Path(str(local) + suffix).unlink(missing_ok=True)
            os.replace(partial, local)
        except PermissionError:  # Windows: the previous copy is open
            local = folder / f"{local.stem}-{time_ns()}{local.suffix}"
            os.replace(partial, local)
    finally:
        partial.unlink(missing_ok=True)
    logger.info("Reading a local copy of %s (SQLite never opens a Drive file)", db)
    return local


def adopt(seed: Path, working: Path) -> str | None:
    """Copy a study file made elsewhere (the seed's old location) to ``working``; what is wrong
    with it, or None. The original (and its ``-wal``) is only read, never modified."""
    working.parent.mkdir(parents=True, exist_ok=True)
    local = working.with_name(f"{working.name}.adopt-{os.getpid()}")
    try:
        copy_bytes(seed, local)
        wal = Path(f"{seed}-wal")
        if wal.is_file():  # the seed's last session left changes in its WAL
            copy_bytes(wal, Path(f"{local}-wal"))
            con = sqlite3.connect(local)  # local disk: fold the WAL into the copy
            try:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                con.execute("PRAGMA journal_mode=DELETE")
            finally:
                con.close()
        problem = check_database(local)
        if problem:
            return problem
        for suffix in ("-wal", "-shm"):
            Path(str(working) + suffix).unlink(missing_ok=True)
        os.replace(local, working)
    finally:
        for f in (local, Path(f"{local}-wal"), Path(f"{local}-shm")):
            f.unlink(missing_ok=True)
    return None


def restore_if_missing(working: Path, durable: Path) -> None:
    """Before opening ``working``: restore it from the durable copy when it is missing.

    The durable copy only ever receives snapshots of the working file, so a working file that
    exists (same VM) is at least as new; file times cannot tell, because WAL-mode writes land
    in ``-wal`` and leave the main file's time alone. Left-over ``<durable>.tmp-*`` files of a
    snapshot cut off mid-copy are renamed aside.
    """
    if durable == working:
        return
    leftovers = [p for p in durable.parent.glob(durable.name + ".tmp-*")
                 if re.fullmatch(rf"{re.escape(durable.name)}\.tmp-\d+", p.name)] \
        if durable.parent.is_dir() else []
    for partial in leftovers:
        moved = set_aside(partial, "partial")
        logger.warning("Found %s, a snapshot copy cut off midway: renamed to %s; the previous "
                       "complete snapshot is used", partial.name, moved.name)
    if durable.exists() and not working.exists():
        fetch(durable, working)


class SnapshotPair(Protocol):
    """A live SQLite file and its durable copy (MLflow's ``TrackingSetup`` is one)."""

    @property
    def local_db(self) -> Path | None: ...
    @property
    def durable_db(self) -> Path | None: ...
    @property
    def snapshots_needed(self) -> bool: ...


def snapshot_all(paths: StudyPaths | None, tracking: SnapshotPair | None = None,
                 writes: DurableWrites | None = None) -> None:
    """Copy the live SQLite files (study, MLflow's store) to the durable folder where they differ.

    A failed copy never stops the search: ``writes`` warns once and the next call retries it.
    """
    pairs = []
    if paths is not None and paths.snapshots_needed:
        pairs.append((paths.working_db, paths.durable_db))
    if tracking is not None and tracking.snapshots_needed \
            and tracking.local_db is not None and tracking.durable_db is not None:
        pairs.append((tracking.local_db, tracking.durable_db))
    writes = writes or DurableWrites()
    for live, durable in pairs:
        writes.attempt(f"snapshot:{durable}", f"{live.name} (newest copy only in {live})",
                       functools.partial(snapshot, live, durable),
                       needed=live.stat().st_size if live.exists() else 0,
                       retry=False)  # the next call copies again
