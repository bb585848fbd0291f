"""SQLite files: health checks, WAL set-up, and atomic snapshots to the durable folder.

SQLite must never be opened on a network or FUSE mount (Google Drive): the live database is on
local disk and is copied with SQLite's online backup API into a temporary file beside the
durable copy, checked, and moved into place with ``os.replace``.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
from pathlib import Path

from .durable import copy_bytes, set_aside, sha256

__all__ = [
    "check_database",
    "enable_wal",
    "fetch",
    "restore_if_missing",
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
    """Copy live database ``source`` (local disk) to ``target`` (durable) atomically.

    SQLite's online backup API writes a consistent copy into a temporary file beside the
    source, on local disk; it is integrity-checked there, copied byte for byte to
    ``<target>.tmp-<pid>``, verified by checksum and moved into place with ``os.replace``.
    SQLite never opens a file in the durable folder (Drive's FUSE mount breaks its locking).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    local = source.with_name(f"{source.name}.snapshot-{os.getpid()}")
    remote = target.with_name(f"{target.name}.tmp-{os.getpid()}")
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
    try:
        problem = check_database(local)
        if problem:
            raise OSError(f"snapshot of {source} failed its integrity check: {problem}")
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
