"""Mirroring trial checkpoints to the durable folder (Google Drive on Colab).

Training writes checkpoints to local disk; each new one is hard-linked into a staging folder
(instant, and safe from the trainer deleting older checkpoints) and copied to the durable
folder by one background thread, so a slow mount never stalls training. Only the newest
checkpoint waits for copying: an older one that was not copied yet is skipped. A mirrored
checkpoint is complete when its folder carries the marker and has its final name; the previous
one is removed only after that. On a fresh VM, :meth:`CheckpointMirror.pull` brings the newest
mirrored checkpoint back to local disk before the trial resumes.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from pathlib import Path

from . import faults
from .checkpoints import MARKER, latest_checkpoint

__all__ = ["CheckpointMirror", "folder_bytes"]

logger = logging.getLogger(__name__)

_STEP = re.compile(r"^checkpoint-(\d+)$")


def folder_bytes(path: Path | None) -> int:
    """Bytes of the files under ``path`` (0 when it does not exist)."""
    if path is None or not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _step(path: Path | None) -> int:
    m = _STEP.match(path.name) if path is not None else None
    return int(m.group(1)) if m else -1


class CheckpointMirror:
    """Background copies of ``local_root/trial_N/checkpoint-S`` to ``durable_root``."""

    def __init__(self, local_root: Path, durable_root: Path) -> None:
        self.local_root = local_root
        self.durable_root = durable_root
        self._cond = threading.Condition()
        self._pending: tuple[Path, Path] | None = None  # (staging folder, durable trial dir)
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="checkpoint-mirror", daemon=True)
        self._thread.start()

    # -- the trainer's side --------------------------------------------------------------

    def submit(self, checkpoint: Path) -> None:
        """Queue ``checkpoint`` (complete, on local disk) for copying; returns at once."""
        staging = checkpoint.parent / f".mirror-{checkpoint.name}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
        for f in checkpoint.iterdir():
            try:
                os.link(f, staging / f.name)  # survives the trainer deleting ``checkpoint``
            except OSError:  # a file system without hard links: copy (slower, same result)
                shutil.copyfile(f, staging / f.name)
        with self._cond:
            if self._pending is not None:  # superseded before it was copied
                shutil.rmtree(self._pending[0], ignore_errors=True)
            self._pending = (staging, self.durable_root / checkpoint.parent.name)
            self._cond.notify_all()

    def flush(self, timeout: float | None = 600) -> None:
        """Wait until the newest submitted checkpoint is on the durable side."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending is None and not self._busy, timeout)

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(10)

    # -- fresh VM and cleanup ------------------------------------------------------------

    def pull(self, trial_dir: Path) -> Path | None:
        """Copy the mirrored checkpoint of ``trial_dir`` down when it is newer than the local."""
        remote = latest_checkpoint(self.durable_root / trial_dir.name)
        local = latest_checkpoint(trial_dir)
        if remote is None or _step(remote) <= _step(local):
            return None
        trial_dir.mkdir(parents=True, exist_ok=True)
        tmp = trial_dir / f"{remote.name}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        shutil.copytree(remote, tmp)
        os.replace(tmp, trial_dir / remote.name)
        logger.info("Checkpoint restored from the durable mirror: %s -> %s", remote, trial_dir)
        return trial_dir / remote.name

    def discard(self, trial_dir_name: str) -> None:
        """The trial is over: drop its mirrored checkpoints."""
        self.flush()
        shutil.rmtree(self.durable_root / trial_dir_name, ignore_errors=True)

    # -- the copying thread --------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._pending is None:
                    return
                staging, target_dir = self._pending
                self._pending = None
                self._busy = True
            try:
                self._copy(staging, target_dir)
            except Exception as exc:  # noqa: BLE001 - the next checkpoint tries again
                logger.warning("Could not mirror %s to %s (%s); training goes on", staging,
                               target_dir, exc)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _copy(self, staging: Path, target_dir: Path) -> None:
        name = staging.name.removeprefix(".mirror-")
        target_dir.mkdir(parents=True, exist_ok=True)
        tmp = target_dir / f"{name}.tmp-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        files = sorted(f for f in staging.iterdir() if f.name != MARKER)
        for i, f in enumerate(files):
            shutil.copyfile(f, tmp / f.name)
            if i == len(files) // 2:
                faults.point("checkpoint_mirror")
        for f in files:
            with open(tmp / f.name, "rb") as fh:
                os.fsync(fh.fileno())
        shutil.copyfile(staging / MARKER, tmp / MARKER)  # marker last: complete from here on
        final = target_dir / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for other in target_dir.iterdir():
            if other != final and (_step(other) >= 0 and _step(other) < _step(final)
                                   or ".tmp-" in other.name):
                shutil.rmtree(other, ignore_errors=True)
        logger.info("Checkpoint mirrored: %s", final)
