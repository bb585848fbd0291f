"""Trial checkpoints: atomic folders named by step, a completion marker, newest by number.

A checkpoint is written into ``checkpoint-<step>.tmp-<pid>``, flushed to disk, given its marker
last and renamed to ``checkpoint-<step>``; a folder without the marker is never used.
"Latest" is the highest step number, never the newest file time. Older checkpoints are removed
only once a newer one is complete, so a kill at any moment leaves one usable checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .durable import prune_leftovers, set_aside, write_folder
from .errors import CheckpointError
from .layout import checkpoint_name, checkpoint_step

__all__ = [
    "MARKER",
    "MODEL_FILE",
    "STATE_FILE",
    "TRAINING_FILE",
    "latest_checkpoint",
    "prune_older",
    "quarantine",
    "read_state",
    "resume_checkpoint",
    "set_aside_incomplete",
    "write_checkpoint",
]

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
TRAINING_FILE = "training_state.pt"  # optimizer, scheduler, RNG
STATE_FILE = "trainer_state.json"  # epoch, step, history, best, params
MARKER = "COMPLETE"


def quarantine(checkpoint: Path, why: str) -> Path:
    """Move a bad checkpoint folder beside its trial folder, as
    ``<trial>-<checkpoint>.<why>-<time>``: kept for inspection, out of the way of the trial (whose
    folder is removed when it finishes), never deleted."""
    trial_dir = checkpoint.parent
    target = trial_dir.parent / f"{trial_dir.name}-{checkpoint.name}"
    checkpoint.rename(target)
    return set_aside(target, why)


def write_checkpoint(trial_dir: Path, step: int, *, model_state: dict, training_state: dict,
                     state: dict[str, Any]) -> Path:
    """Write ``checkpoint-<step>`` atomically and drop the older complete ones."""
    import torch

    def fill(tmp: Path) -> None:
        torch.save(model_state, tmp / MODEL_FILE)
        torch.save(training_state, tmp / TRAINING_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True))

    final = write_folder(trial_dir / checkpoint_name(step), fill, marker=MARKER,
                         marker_text=f"{step}\n", before_marker="checkpoint_write")
    prune_older(trial_dir, final)
    logger.info("Checkpoint saved: %s (epoch %s, step %s)", final, state.get("epoch"), step)
    return final


def prune_older(trial_dir: Path, newest: Path) -> None:
    """Drop checkpoints older than ``newest`` and leftovers of killed writers."""
    import shutil

    for other in trial_dir.iterdir():
        if 0 <= checkpoint_step(other) < checkpoint_step(newest):
            shutil.rmtree(other, ignore_errors=True)
    prune_leftovers(trial_dir, keep=newest)


def _checkpoints(trial_dir: Path) -> list[Path]:
    if not trial_dir.is_dir():
        return []
    return [c for c in trial_dir.iterdir() if checkpoint_step(c) >= 0 and c.is_dir()]


def latest_checkpoint(trial_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step (a getter: it never moves anything)."""
    found = [(checkpoint_step(c), c) for c in _checkpoints(trial_dir) if (c / MARKER).is_file()]
    return max(found)[1] if found else None


def set_aside_incomplete(trial_dir: Path) -> list[Path]:
    """Move checkpoint folders without their marker (a write cut off) aside; returns them."""
    moved = []
    for child in _checkpoints(trial_dir):
        if not (child / MARKER).is_file():
            moved.append(quarantine(child, "incomplete"))
            logger.warning("Checkpoint %s has no completion marker (a write was cut off); "
                           "set aside as %s, the previous checkpoint is used.", child,
                           moved[-1].name)
    return moved


def resume_checkpoint(trial_dir: Path) -> Path | None:
    """The checkpoint a trial resumes from, after setting incomplete ones aside (local disk)."""
    set_aside_incomplete(trial_dir)
    return latest_checkpoint(trial_dir)


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
