"""SQLite files: health checks, WAL set-up, and atomic snapshots to the durable folder.

SQLite must never be opened on a network or FUSE mount (Google Drive): the live database is on
local disk and is copied with SQLite's online backup API into a temporary file beside the
durable copy, checked, and moved into place with ``os.replace``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

__all__ = [
    "check_database",
    "enable_wal",
    "restore",
    "restore_if_newer",
    "set_aside",
    "snapshot",
]

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0


def check_database(path: Path) -> str | None:
    """None when ``path`` is a healthy SQLite database, else what is wrong with it."""
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
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_S)
        try:
            row = con.execute("PRAGMA quick_check").fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        return f"unreadable ({exc})"
    if not row or row[0] != "ok":
        return f"integrity check failed ({row[0] if row else 'no answer'})"
    return None


def enable_wal(path: Path) -> None:
    """Put the database in WAL mode (persistent), so readers never block the writer."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
    try:
        con.execute("PRAGMA journal_mode=WAL")
    finally:
        con.close()


def snapshot(source: Path, target: Path) -> Path:
    """Copy live database ``source`` to ``target`` atomically (backup API + ``os.replace``)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    src = sqlite3.connect(source, timeout=BUSY_TIMEOUT_S)
    try:
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file on the mount
        finally:
            dst.close()
    finally:
        src.close()
    problem = check_database(tmp)
    if problem:
        raise OSError(f"snapshot copy {tmp} failed its check: {problem}")
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    logger.info("Snapshot written: %s", target)
    return target


def restore(source: Path, target: Path) -> None:
    """Copy durable snapshot ``source`` to the local working path ``target``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm"):  # stale WAL of an older local copy must not replay
        Path(str(target) + suffix).unlink(missing_ok=True)
    snapshot(source, target)
    logger.info("Restored the study from the durable copy %s to %s", source, target)


def set_aside(path: Path, why: str) -> Path:
    """Rename a bad file or folder to ``<name>.<why>-<time>`` beside it; never delete it."""
    target = path.with_name(f"{path.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    os.replace(path, target)
    return target


def restore_if_newer(working: Path, durable: Path) -> None:
    """Before opening ``working``: use the durable copy when the local one is missing or older.

    A damaged durable copy is renamed aside (never deleted) and the local copy is kept.
    """
    if durable == working or not durable.exists():
        return
    problem = check_database(durable)
    if problem:
        moved = set_aside(durable, "corrupt")
        logger.error("Durable copy %s is damaged (%s): renamed to %s", durable, problem, moved)
        return
    if not working.exists() or working.stat().st_mtime < durable.stat().st_mtime:
        restore(durable, working)
