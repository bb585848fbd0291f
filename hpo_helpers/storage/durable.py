"""Durable copies: the one way files and folders are written so that a kill never leaves half.

Every writer of a folder that must survive a kill (a trial checkpoint, its mirror on Drive, a
checkpoint pulled back from the mirror, a trial's best model) goes through :func:`write_folder`:
fill ``<name>.tmp-<pid>``, fsync every file, write the completion marker last, move the old
folder out of the way, ``os.replace`` the new one into place and drop the old one. Small files
use :func:`write_file` (tmp, fsync, ``os.replace``). Nothing here deletes what it cannot
rebuild: a bad file or folder is renamed aside (:func:`set_aside`). Study files that are
no longer needed (a finished trial's checkpoints, a model that fell out of the top k, a finished
refit's checkpoints) are deleted only through :func:`remove_tree`, which logs what it removed;
the one exception is this module's own leftovers of killed writers (``*.tmp-<pid>``,
``*.old-<pid>``, staging folders), which hold nothing that was ever in place.
The SQLite side (online backup, integrity check, restore) lives in ``snapshot``.

:class:`DurableWrites` is the one policy for trouble on the durable side (a full, read-only or
unmounted Drive): every copy to the durable folder during a sweep (snapshots, kept models, the
checkpoint mirror) goes through it; a failure never stops the sweep, it warns once with what is
not durable and how much space is needed, and the copy is retried after the next trial.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TypeVar

from ..core import faults
from ..core.names import check_name

__all__ = [
    "DurableWrites",
    "copy_bytes",
    "copy_folder",
    "folder_bytes",
    "fsync_dir",
    "guard_root",
    "make_dirs",
    "prune_leftovers",
    "remove_tree",
    "set_aside",
    "sha256",
    "write_stream",
    "write_file",
    "write_folder",
]


logger = logging.getLogger(__name__)

T = TypeVar("T")


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


_GUARDED: set[Path] = set()  # durable roots (the Drive side): never created by a write
_GONE = "the durable folder is gone (Drive unmounted?)"


def _gone(root: Path) -> FileNotFoundError:
    """The error of a write whose durable root vanished (one wording for every writer)."""
    return FileNotFoundError(errno.ENOENT, _GONE, str(root))


def guard_root(root: Path) -> None:
    """Never create ``root`` (a durable folder that exists while its mount is there) when
    writing below it: a copy that races an unmount then fails instead of re-creating the
    folder on the local disk under an empty mount point."""
    _GUARDED.add(Path(root))


def make_dirs(folder: Path, *, below: Path | None = None) -> None:
    """``mkdir -p folder``, except that a guarded durable root (or ``below``, a folder being
    filled) is never created: under one, each folder is made without ``parents``, so a root
    that vanished (Drive unmounted) makes this fail with ENOENT, whenever the unmount happens."""
    roots = [below] if below is not None else \
        [g for g in _GUARDED if g == folder or g in folder.parents]
    if not roots:
        folder.mkdir(parents=True, exist_ok=True)
        return
    root = min(roots, key=lambda g: len(g.parts))  # the outermost: a later session's root
    if not root.is_dir():
        raise _gone(root)
    current = root
    for part in folder.relative_to(root).parts:
        current = current / part
        try:
            current.mkdir()
        except FileExistsError:
            if not current.is_dir():
                raise


def write_folder(final: Path, fill: Callable[[Path], None], *, marker: str | None = None,
                 marker_text: str = "", before_marker: str | None = None) -> Path:
    """Write folder ``final`` atomically: ``fill(tmp)`` writes its files.

    The files are fsynced, then ``marker`` (when given) is written last; the folder takes its
    final name only then. ``before_marker`` names a fault point (the harness kills there).
    """
    make_dirs(final.parent)
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
            make_dirs(target.parent, below=tmp)  # never re-creates a vanished durable side
            shutil.copyfile(f, target)
            if fault and i == len(files) // 2:
                faults.point(fault)

    text = (source / marker).read_text() if marker and (source / marker).is_file() else ""
    return write_folder(final, fill, marker=marker if marker and (source / marker).is_file()
                        else None, marker_text=text)


def write_file(final: Path, data: bytes) -> Path:
    """Write a small file atomically (tmp, fsync, ``os.replace``)."""
    write_stream(final, lambda fh: fh.write(data))
    return final


def write_stream(final: Path, write: Callable[[BinaryIO], T], *, tmp: Path | None = None) -> T:
    """Write file ``final`` atomically: ``write(fh)`` fills ``tmp`` (default
    ``<name>.tmp-<pid>`` beside it), which is fsynced and renamed into place; a failure leaves
    no ``tmp`` behind and ``final`` as it was. Returns what ``write`` returned."""
    make_dirs(final.parent)
    tmp = tmp or _tmp(final)
    try:
        with open(tmp, "wb") as fh:
            result = write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(final.parent)
    return result


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


def remove_tree(path: Path | None, why: str, *, level: int = logging.INFO) -> bool:
    """Delete a study file or folder that is no longer needed, logging ``Removed <why>: <path>``.

    Returns whether something was removed (nothing there is not an error)."""
    if path is None or not (path.exists() or path.is_symlink()):
        return False
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    logger.log(level, "Removed %s: %s", why, path)
    return True


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


class DurableWrites:
    """Copies to the durable folder that must never cost a trial.

    ``root`` is a folder that exists while the durable side is usable (the study's durable
    folder on Drive): when it is gone (Drive unmounted) nothing is written, so a copy never
    lands on the local disk under an empty mount point. A failed copy is kept as pending and
    run again by :meth:`retry` (after each trial); the first failure of the sweep warns with
    what is not durable and the space needed, later ones only log at debug level.
    """

    def __init__(self, root: Path | None = None, *, name: str = "The durable folder") -> None:
        self.root = root
        if root is not None:
            guard_root(root)
        self.name = name  # how the warning names the durable side (a bucket: its URL)
        self._pending: dict[str, tuple[str, Callable[[], object] | None, int]] = {}
        self._background: set[str] = set()  # retried by asking a worker, which reports back
        self._warned = False
        self._lock = threading.Lock()

    @classmethod
    def for_folder(cls, durable_dir: Path | None) -> DurableWrites:
        """The policy for a sweep whose durable folder is ``durable_dir`` (None: no durable
        side): its nearest existing folder (the Drive mount on a first run) must stay."""
        root = durable_dir
        while root is not None and not root.is_dir() and root.parent != root:
            root = root.parent
        return cls(root)

    @property
    def pending(self) -> list[str]:
        """What is not durable now (one line per item)."""
        with self._lock:
            return [what for what, _, _ in self._pending.values()]

    def attempt(self, key: str, what: str, action: Callable[[], object], *, needed: int = 0,
                retry: bool = True) -> bool:
        """Run ``action`` (a copy to the durable side); False when it failed (recorded, warned,
        retried later when ``retry``)."""
        try:
            if self.root is not None and not self.root.is_dir():
                raise _gone(self.root)
            action()
        except Exception as exc:  # noqa: BLE001 - durable trouble must not stop the search
            self.failed(key, what, exc, action if retry else None, needed)
            return False
        self.forget(key, exact=True)
        return True

    def failed(self, key: str, what: str, exc: BaseException,
               action: Callable[[], object] | None = None, needed: int = 0, *,
               background: bool = False) -> None:
        """Record a failed durable copy (``action`` runs again in :meth:`retry`).

        ``background``: ``action`` only asks a background worker to try again (the bucket
        sync); the worker reports the outcome with :meth:`failed` or :meth:`forget`."""
        with self._lock:
            self._pending[key] = (what, action, needed)
            if background:
                self._background.add(key)
            first, self._warned = not self._warned, True
            items = list(self._pending.values())
        if not first:
            logger.debug("Durable copy still failing (%s): %s", exc, what)
            return
        need = sum(n for _, _, n in items)
        where = f" in {self.root}" if self.root is not None else ""
        if self.root is not None and not self.root.is_dir() and _GONE not in str(exc):
            # a copy that was under way when the folder went: name the cause, not the file
            exc = OSError(errno.ENOENT, f"{_GONE}; {exc}")
        logger.warning(
            "%s refuses writes (%s). Not durable until it works again: %s%s. "
            "The sweep goes on on local disk (nothing is lost there) and retries the durable "
            "copies after each trial. This warning is shown once.", self.name, exc,
            "; ".join(w for w, _, _ in items),
            f" (needs about {need / 1e6:.1f} MB free{where})" if need else "")

    def forget(self, prefix: str, *, exact: bool = False) -> None:
        """Drop pending items (keys starting with ``prefix``) that no longer need a durable
        copy: a finished trial's mirror."""
        with self._lock:
            keys = [k for k in self._pending if k == prefix or not exact and k.startswith(prefix)]
            for key in keys:
                del self._pending[key]
                self._background.discard(key)
            caught_up = bool(keys) and not self._pending
        if caught_up:
            logger.info("Durable copies caught up: everything is on the durable side again")

    def retry(self) -> None:
        """Run the pending copies again (after a trial)."""
        with self._lock:
            items = [(k, v) for k, v in self._pending.items() if v[1] is not None]
            background = set(self._background)
        for key, (what, action, needed) in items:
            if key in background:
                action()  # type: ignore[misc] # the worker reports how it went
            else:
                self.attempt(key, what, action, needed=needed)  # type: ignore[arg-type]

    def report(self) -> None:
        """At the end of a sweep: say what is still not durable (nothing when all is)."""
        left = self.pending
        if left:
            logger.info("Still not durable (local disk only): %s", "; ".join(left))
