"""An OS-neutral, non-blocking process lock on a file that dies with its holder (issue 14).

``flock`` on POSIX, ``msvcrt.locking`` on Windows: both are released by the operating system
when the holder's process ends, so a killed session never leaves a stale lock. Where neither
exists, a lock file created with ``O_EXCL`` holds the holder's pid; a lock whose pid no longer
lives on this host counts as free. The holder writes a line (pid, host, time) into the lock file
so that a refused process can say who holds it.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
from pathlib import Path
from types import ModuleType

__all__ = ["ProcessLock", "holder"]

# Windows locks a byte range and refuses reads inside it; lock a byte far past the holder line.
_WINDOWS_LOCK_OFFSET = 1 << 20


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _backend() -> str:
    if _module("fcntl") is not None:
        return "fcntl"
    if _module("msvcrt") is not None:
        return "msvcrt"
    return "pidfile"


def _try_lock(fd: int, backend: str, *, shared: bool = False) -> bool:
    if backend == "fcntl":
        fcntl = _module("fcntl")
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            return False
        return True
    msvcrt = _module("msvcrt")
    os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _unlock(fd: int, backend: str) -> None:
    if backend == "fcntl":
        fcntl = _module("fcntl")
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        msvcrt = _module("msvcrt")
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _read(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(4096).decode(errors="replace").strip()
    except OSError:
        return ""


def _pid_alive(text: str) -> bool:
    """For the pid-file backend: does the holder line name a live process on this host?"""
    parts = text.split()
    if len(parts) < 4 or parts[0] != "pid" or not parts[1].isdigit():
        return False
    if parts[3] != socket.gethostname():
        return True  # another host's process: cannot check, assume alive
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


class ProcessLock:
    """A non-blocking exclusive lock on ``path``: :meth:`acquire` returns False when held."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fd = -1
        self._backend = _backend()

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        info = (f"pid {os.getpid()} on {socket.gethostname()} since "
                f"{time.strftime('%H:%M:%S')}").encode()
        if self._backend == "pidfile":
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                if _pid_alive(_read(self.path)):
                    return False
                self.path.unlink(missing_ok=True)  # its holder died
                return self.acquire()
        else:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd, self._backend):
                os.close(fd)
                return False
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, info)
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd < 0:
            return
        if self._backend == "pidfile":
            os.close(self._fd)
            self.path.unlink(missing_ok=True)
        else:
            _unlock(self._fd, self._backend)
            os.close(self._fd)
        self._fd = -1


def holder(path: Path | str) -> str | None:
    """Who holds the lock on ``path`` (its holder line), or None when nobody does."""
    path = Path(path)
    if not path.exists():
        return None
    backend = _backend()
    if backend == "pidfile":
        text = _read(path)
        return (text or "unknown") if _pid_alive(text) else None
    fd = os.open(path, os.O_RDWR if backend == "msvcrt" else os.O_RDONLY)
    try:
        if _try_lock(fd, backend, shared=True):
            _unlock(fd, backend)
            return None
    finally:
        os.close(fd)
    return _read(path) or "unknown"
