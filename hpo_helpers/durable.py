"""Durable copies: the one way files and folders are written so that a kill never leaves half.

Every writer of a folder that must survive a kill (a trial checkpoint, its mirror on Drive, a
checkpoint pulled back from the mirror, a trial's best model) goes through :func:`write_folder`:
fill ``<name>.tmp-<pid>``, fsync every file, write the completion marker last, move the old
folder out of the way, ``os.replace`` the new one into place and drop the old one. Small files
use :func:`write_file` (tmp, fsync, ``os.replace``). Nothing here deletes what it cannot
rebuild: a bad file or folder is renamed aside (:func:`set_aside`).
The SQLite side (online backup, integrity check, restore) lives in ``snapshot``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from . import faults
from .names import check_name

__all__ = [
    "copy_bytes",
    "copy_folder",
    "folder_bytes",
    "fsync_dir",
    "prune_leftovers",
    "set_aside",
    "sha256",
    "write_file",
    "write_folder",
]


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (new names) to disk; a no-op where the OS refuses."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _tmp(final: Path) -> Path:
    return final.with_name(f"{final.name}.tmp-{os.getpid()}")


def write_folder(final: Path, fill: Callable[[Path], None], *, marker: str | None = None,
                 marker_text: str = "", before_marker: str | None = None) -> Path:
    """Write folder ``final`` atomically: ``fill(tmp)`` writes its files.

    The files are fsynced, then ``marker`` (when given) is written last; the folder takes its
    final name only then. ``before_marker`` names a fault point (the harness kills there).
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    for leftover in final.parent.glob(f"{final.name}.tmp-*"):  # a killed earlier writer
        shutil.rmtree(leftover, ignore_errors=True)
    tmp = _tmp(final)
    tmp.mkdir()
    fill(tmp)
    for f in tmp.rglob("*"):
        if f.is_file():
            _fsync_file(f)
    if before_marker:
        faults.point(before_marker)
    if marker is not None:
        with open(tmp / marker, "w") as fh:
            fh.write(marker_text)
            fh.flush()
            os.fsync(fh.fileno())
    old = final.with_name(f"{final.name}.old-{os.getpid()}")
    if final.exists():  # e.g. the same step written again, or a newer best model
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)
    return final


def copy_folder(source: Path, final: Path, *, marker: str | None = None,
                fault: str | None = None) -> Path:
    """Copy folder ``source`` to ``final`` atomically (``marker`` copied last when present)."""

    def fill(tmp: Path) -> None:
        files = sorted(f for f in source.rglob("*") if f.is_file() and f.name != marker)
        for i, f in enumerate(files):
            target = tmp / f.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
            if fault and i == len(files) // 2:
                faults.point(fault)

    text = (source / marker).read_text() if marker and (source / marker).is_file() else ""
    return write_folder(final, fill, marker=marker if marker and (source / marker).is_file()
                        else None, marker_text=text)


def write_file(final: Path, data: bytes) -> Path:
    """Write a small file atomically (tmp, fsync, ``os.replace``)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(final)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fsync_dir(final.parent)
    return final


def prune_leftovers(folder: Path, keep: Path | None = None) -> None:
    """Remove ``*.tmp-*`` and ``*.old-*`` leftovers of killed writers in ``folder``."""
    if not folder.is_dir():
        return
    for other in folder.iterdir():
        if other != keep and (".tmp-" in other.name or ".old-" in other.name):
            if other.is_dir():
                shutil.rmtree(other, ignore_errors=True)
            else:
                other.unlink(missing_ok=True)


def set_aside(path: Path, why: str) -> Path:
    """Rename a bad file or folder to ``<name>.<why>-<time>`` beside it; never delete it."""
    check_name(why, key="archive_suffix", fix="use letters, digits, '_', '-' or '.'")
    target = path.with_name(f"{path.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.{why}-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        n += 1
    os.replace(path, target)
    return target


def folder_bytes(path: Path | None) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    if path is None or not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def copy_bytes(source: Path, target: Path, *, fault: str | None = None) -> str:
    """Plain file copy (no SQLite on either side), fsynced; returns the sha256 of the bytes."""
    digest = hashlib.sha256()
    size = source.stat().st_size
    with open(source, "rb") as src, open(target, "wb") as dst:
        copied = 0
        while chunk := src.read(1 << 20):
            dst.write(chunk)
            digest.update(chunk)
            copied += len(chunk)
            if fault and copied >= size // 2 and copied - len(chunk) < size // 2:
                faults.point(fault)
        dst.flush()
        os.fsync(dst.fileno())
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
