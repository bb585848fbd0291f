"""Trial checkpoints: atomic folders named by step, a completion marker, newest by number.

A checkpoint is written into ``checkpoint-<step>.tmp-<pid>``, flushed to disk, given its marker
last and renamed to ``checkpoint-<step>``; a folder without the marker is never used.
"Latest" is the highest step number, never the newest file time. Older checkpoints are removed
only once a newer one is complete, so a kill at any moment leaves one usable checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from . import faults
from .errors import CheckpointError
from .snapshot import set_aside

__all__ = [
    "MARKER",
    "MODEL_FILE",
    "STATE_FILE",
    "TRAINING_FILE",
    "latest_checkpoint",
    "quarantine",
    "read_state",
    "write_checkpoint",
]

logger = logging.getLogger(__name__)
_ANNOUNCED: set[Path] = set()

MODEL_FILE = "model.pt"
TRAINING_FILE = "training_state.pt"  # optimizer, scheduler, RNG
STATE_FILE = "trainer_state.json"  # epoch, step, history, best, params
MARKER = "COMPLETE"
_NAME = re.compile(r"^checkpoint-(\d+)$")


def _fsync_dir(path: Path) -> None:
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


def quarantine(checkpoint: Path, why: str) -> Path:
    """Move a bad checkpoint folder beside its trial folder, as
    ``<trial>-<checkpoint>.<why>-<time>``: kept for inspection, out of the way of the trial (whose
    folder is removed when it finishes), never deleted."""
    trial_dir = checkpoint.parent
    target = trial_dir.parent / f"{trial_dir.name}-{checkpoint.name}"
    os.replace(checkpoint, target)
    return set_aside(target, why)


def write_checkpoint(trial_dir: Path, step: int, *, model_state: dict, training_state: dict,
                     state: dict[str, Any]) -> Path:
    """Write ``checkpoint-<step>`` atomically and drop the older complete ones."""
    import torch

    trial_dir.mkdir(parents=True, exist_ok=True)
    final = trial_dir / f"checkpoint-{step}"
    tmp = trial_dir / f"checkpoint-{step}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    torch.save(model_state, tmp / MODEL_FILE)
    torch.save(training_state, tmp / TRAINING_FILE)
    (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True))
    for name in (MODEL_FILE, TRAINING_FILE, STATE_FILE):
        with open(tmp / name, "rb") as fh:
            os.fsync(fh.fileno())
    faults.point("checkpoint_write")
    with open(tmp / MARKER, "w") as fh:
        fh.write(f"{step}\n")
        fh.flush()
        os.fsync(fh.fileno())
    if final.exists():  # same step written again (resumed and interrupted at once)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(trial_dir)
    for other in trial_dir.iterdir():
        m = _NAME.match(other.name)
        if m and int(m.group(1)) < step:
            shutil.rmtree(other, ignore_errors=True)
        elif ".tmp-" in other.name and other != final:
            shutil.rmtree(other, ignore_errors=True)  # leftovers of a killed writer
    # The full path once per trial folder, then only the checkpoint's name (#14: less noise).
    where = final.name if trial_dir in _ANNOUNCED else str(final)
    _ANNOUNCED.add(trial_dir)
    logger.info("Checkpoint saved: %s (epoch %s, step %s)", where, state.get("epoch"), step)
    return final


def latest_checkpoint(trial_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step; incomplete ones are set aside."""
    if not trial_dir.is_dir():
        return None
    found: list[tuple[int, Path]] = []
    for child in trial_dir.iterdir():
        m = _NAME.match(child.name)
        if not m or not child.is_dir():
            continue
        if not (child / MARKER).is_file():
            moved = quarantine(child, "incomplete")
            logger.warning("Checkpoint %s has no completion marker (a write was cut off); "
                           "set aside as %s, the previous checkpoint is used.", child, moved.name)
            continue
        found.append((int(m.group(1)), child))
    return max(found)[1] if found else None


def read_state(checkpoint: Path) -> tuple[dict, dict, dict]:
    """``(model_state, training_state, state)`` of a complete checkpoint."""
    import torch

    try:
        state = json.loads((checkpoint / STATE_FILE).read_text())
        model_state = torch.load(checkpoint / MODEL_FILE, map_location="cpu", weights_only=True)
        training = torch.load(checkpoint / TRAINING_FILE, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError) as exc:
        raise CheckpointError(f"checkpoint {checkpoint} cannot be read ({exc}).") from None
    return model_state, training, state
