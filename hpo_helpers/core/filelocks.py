"""An OS-neutral, non-blocking process lock on a file that dies with its holder.

``flock`` on POSIX, ``msvcrt.locking`` on Windows: both are released by the operating system
when the holder's process ends, so a killed session never leaves a stale lock. Where neither
exists, a lock file created with ``O_EXCL`` holds the holder's pid; a lock whose pid no longer
lives on this host counts as free. The holder writes a line (pid, host, time) into the lock file
so that a refused process can say who holds it.

A lock file is opened with ``O_NOFOLLOW | O_NONBLOCK`` and used only when it is a regular file
(issue 23): a symbolic link planted as the lock is refused, never followed (its target would be
truncated), and a FIFO can make no reader wait. Such a path is an :class:`UnsafeLockFile`.
"""

from __future__ import annotations

import errno
import importlib
import os
import socket
import stat
import time
from pathlib import Path
from types import ModuleType

__all__ = ["ProcessLock", "UnsafeLockFile", "holder"]

# Windows locks a byte range and refuses reads inside it; lock a byte far past the holder line.
_WINDOWS_LOCK_OFFSET = 1 << 20
# Never follow a planted symbolic link; never wait on a planted FIFO (both absent on Windows).
_SAFE_OPEN = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)


class UnsafeLockFile(OSError):
    """The lock path is a symbolic link, a FIFO, a folder or another non-regular file: it is
    neither opened for writing nor waited on."""


def _open_regular(path: Path, flags: int) -> int:
    """``os.open`` of a lock file that must be a regular file (see the module docstring)."""
    try:
        fd = os.open(path, flags | _SAFE_OPEN, 0o644)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):  # link, folder, socket
            raise UnsafeLockFile(exc.errno, "not a regular file", str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnsafeLockFile(errno.EINVAL, "not a regular file", str(path))
    return fd


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _require(name: str) -> ModuleType:
    module = _module(name)
    if module is None:
        raise OSError(f"{name} is not available on this platform")
    return module


def _backend() -> str:
    if _module("fcntl") is not None:
        return "fcntl"
    if _module("msvcrt") is not None:
        return "msvcrt"
    return "pidfile"


def _try_lock(fd: int, backend: str, *, shared: bool = False) -> bool:
    if backend == "fcntl":
        fcntl = _require("fcntl")
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except (BlockingIOError, PermissionError):
            return False
        return True
    msvcrt = _require("msvcrt")
    os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _unlock(fd: int, backend: str) -> None:
    if backend == "fcntl":
        fcntl = _require("fcntl")
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        msvcrt = _require("msvcrt")
        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _read(path: Path) -> str:
    try:
        fd = _open_regular(path, os.O_RDONLY)
    except OSError:
        return ""
    try:
        return os.read(fd, 4096).decode(errors="replace").strip()
    except OSError:
        return ""
    finally:
        os.close(fd)


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
                fd = _open_regular(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                if not stat.S_ISREG(os.lstat(self.path).st_mode):
                    raise UnsafeLockFile(errno.EINVAL, "not a regular file",
                                         str(self.path)) from None
                if _pid_alive(_read(self.path)):
                    return False
                self.path.unlink(missing_ok=True)  # its holder died
                return self.acquire()
        else:
            fd = _open_regular(self.path, os.O_RDWR | os.O_CREAT)
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
    """Who holds the lock on ``path`` (its holder line), or None when nobody does (also when
    the path is no regular file: no process can hold such a lock, see :class:`ProcessLock`)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return None
    backend = _backend()
    if backend == "pidfile":
        text = _read(path)
        return (text or "unknown") if _pid_alive(text) else None
    try:
        fd = _open_regular(path, os.O_RDWR if backend == "msvcrt" else os.O_RDONLY)
    except UnsafeLockFile:
        return None
    except FileNotFoundError:  # released and removed in between
        return None
    try:
        if _try_lock(fd, backend, shared=True):
            _unlock(fd, backend)
            return None
    finally:
        os.close(fd)
    return _read(path) or "unknown"
