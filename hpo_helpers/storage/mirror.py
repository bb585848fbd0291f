"""Mirroring trial checkpoints to the durable folder (Google Drive on Colab).

Training writes checkpoints to local disk; each new one is hard-linked into a staging folder
(instant, and safe from the trainer deleting older checkpoints) and copied to the durable
folder by one background thread, so a slow mount never stalls training. Only the newest
checkpoint waits for copying: an older one that was not copied yet is skipped. The best model
beside it (written before the epoch's checkpoint) is staged with it when it changed, and copied
first, so a mirrored checkpoint never claims a best score whose model is lost. A fold's result
file is copied at once. Every copy is atomic (``durable.write_folder``); the previous mirrored
checkpoint is removed only after the new one is complete.

The durable folder mirrors the working one through the layout: ``trial_<root>/checkpoint-S``
or, with k-fold, ``trial_<root>/fold_<f>/checkpoint-S``. On a fresh VM,
:meth:`CheckpointMirror.pull` brings every fold's newest mirrored checkpoint, best model and
result back to local disk before the trial resumes.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from pathlib import Path

from ..core.errors import CheckpointError
from .checkpoints import MARKER, latest_checkpoint, prune_older, quarantine, verify
from .durable import (
    DurableWrites,
    copy_folder,
    folder_bytes,
    prune_leftovers,
    remove_tree,
    set_aside,
    write_file,
)
from .layout import BEST_MODEL, StudyLayout, checkpoint_step

__all__ = ["CheckpointMirror", "folder_bytes"]

logger = logging.getLogger(__name__)


def _stage(folder: Path, staging: Path) -> None:
    """Hard-link (or copy, where links fail) the files of ``folder`` into ``staging``."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    for f in folder.rglob("*"):
        if f.is_file():
            target = staging / f.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(f, target)  # survives the trainer deleting ``folder``
            except OSError:  # a file system without hard links: copy (slower, same result)
                shutil.copyfile(f, target)


class CheckpointMirror:
    """Background copies of the layout's trial folders to their durable mirror."""

    def __init__(self, layout: StudyLayout, writes: DurableWrites | None = None) -> None:
        if layout.trials_root is None or layout.mirror_root is None:
            raise ValueError(f"study {layout.study_name} has no mirror folder")
        self.layout = layout
        self.local_root: Path = layout.trials_root
        self.durable_root: Path = layout.mirror_root
        self.writes = writes or DurableWrites()
        self._cond = threading.Condition()
        # (staged checkpoint, staged best model or None, durable folder of the trial/fold)
        self._pending: tuple[Path, Path | None, Path] | None = None
        self._busy = False
        self._closed = False
        self._best_seen: dict[Path, int] = {}
        self._thread = threading.Thread(target=self._work, name="checkpoint-mirror", daemon=True)
        self._thread.start()

    # -- the trainer's side --------------------------------------------------------------

    def submit(self, checkpoint: Path) -> None:
        """Queue ``checkpoint`` (complete, on local disk) for copying; returns at once.

        A file (a fold's result) is copied now, after the queued checkpoint."""
        if checkpoint.is_file():
            self.flush()
            target = self.layout.mirror_of(checkpoint)
            self.writes.attempt(f"mirror:{target}", f"fold result {checkpoint}",
                                lambda: write_file(target, checkpoint.read_bytes()))
            return
        folder = checkpoint.parent
        staging = folder / f".mirror-{checkpoint.name}"
        _stage(checkpoint, staging)
        best = StudyLayout.best_model_dir(folder)
        best_staging = None
        if best.is_dir() and self._best_seen.get(best) != best.stat().st_mtime_ns:
            self._best_seen[best] = best.stat().st_mtime_ns
            best_staging = folder / f".mirror-{BEST_MODEL}"
            _stage(best, best_staging)
        with self._cond:
            if self._pending is not None:  # superseded before it was copied
                shutil.rmtree(self._pending[0], ignore_errors=True)
                if self._pending[1] is not None and best_staging is None:
                    best_staging = self._pending[1]  # still the newest best model
                elif self._pending[1] is not None:
                    shutil.rmtree(self._pending[1], ignore_errors=True)
            self._pending = (staging, best_staging, self.layout.mirror_of(folder))
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

    def pull(self, trial_dir: Path) -> list[Path]:
        """Copy down what the mirror of ``trial_dir`` has that local disk lacks: each fold's
        newer checkpoint, its best model and its result. Returns the checkpoints pulled."""
        remote_trial = self.layout.mirror_of(trial_dir)
        if not remote_trial.is_dir():
            return []
        pulled = []
        for remote_dir in [remote_trial, *sorted(p for p in remote_trial.iterdir()
                                                 if p.is_dir() and checkpoint_step(p) < 0
                                                 and p.name != BEST_MODEL)]:
            local_dir = trial_dir / remote_dir.relative_to(remote_trial)
            got = self._pull_folder(remote_dir, local_dir)
            if got is not None:
                pulled.append(got)
        return pulled

    def _pull_folder(self, remote_dir: Path, local_dir: Path) -> Path | None:
        remote_best = StudyLayout.best_model_dir(remote_dir)
        if remote_best.is_dir() and not StudyLayout.best_model_dir(local_dir).exists():
            copy_folder(remote_best, StudyLayout.best_model_dir(local_dir))
        result = StudyLayout.fold_result(remote_dir)
        if result.is_file() and not StudyLayout.fold_result(local_dir).exists():
            write_file(StudyLayout.fold_result(local_dir), result.read_bytes())
        while True:
            remote = latest_checkpoint(remote_dir)
            local = latest_checkpoint(local_dir)
            if remote is None or checkpoint_step(remote) <= checkpoint_step(local):
                return None
            final = copy_folder(remote, local_dir / remote.name, marker=MARKER)
            try:
                verify(final)  # a damaged mirror copy must not be pulled on every fresh VM
            except CheckpointError as exc:
                moved = set_aside(remote, "unreadable")
                quarantine(final, "unreadable")
                logger.error("%s Its durable mirror copy is set aside as %s; the previous one "
                             "(or epoch 0) is used.", exc, moved.name)
                continue
            logger.info("Checkpoint restored from the durable mirror: %s -> %s", remote,
                        local_dir)
            return final

    def discard(self, trial_dir: Path) -> None:
        """The trial is over: drop its mirrored checkpoints."""
        self.flush()
        remote = self.layout.mirror_of(trial_dir)
        self.writes.forget(f"mirror:{remote}")
        self.writes.attempt(f"drop:{remote}", f"old mirrored checkpoints in {remote} (to remove)",
                            lambda: remove_tree(remote, "mirrored checkpoints of finished trial"))

    # -- the copying thread --------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._pending is None:
                    return
                staging, best_staging, target_dir = self._pending
                self._pending = None
                self._busy = True

            def copy(staging: Path = staging, best_staging: Path | None = best_staging,
                     target_dir: Path = target_dir) -> None:
                if best_staging is not None:
                    copy_folder(best_staging, StudyLayout.best_model_dir(target_dir))
                self._copy(staging, target_dir)

            try:  # a failure warns once (DurableWrites); the next checkpoint tries again
                self.writes.attempt(
                    f"mirror:{target_dir}",
                    f"checkpoints of {target_dir.name} (newest only on local disk)", copy,
                    needed=folder_bytes(staging) + folder_bytes(best_staging), retry=False)
            finally:
                for s in (staging, best_staging):
                    if s is not None:
                        shutil.rmtree(s, ignore_errors=True)
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _copy(self, staging: Path, target_dir: Path) -> None:
        name = staging.name.removeprefix(".mirror-")
        try:
            final = copy_folder(staging, target_dir / name, marker=MARKER,
                                fault="checkpoint_mirror")
        except BaseException:
            prune_leftovers(target_dir)  # a partial copy must not fill the durable disk
            raise
        prune_older(target_dir, final)
        logger.info("Checkpoint mirrored: %s", final)
