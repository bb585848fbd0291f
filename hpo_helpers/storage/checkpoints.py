"""Trial checkpoints: atomic folders named by step, a completion marker, newest by number.

A checkpoint is written into ``checkpoint-<step>.tmp-<pid>``, flushed to disk, given its marker
last and renamed to ``checkpoint-<step>``; a folder without the marker is never used.
"Latest" is the highest step number, never the newest file time. Older checkpoints are removed
only once a newer one is complete, so a kill at any moment leaves one usable checkpoint.

A manifest (``checksums.json``) holds the SHA-256 of the weights and the training state,
verified at load; the JSON state is checked by parsing it, its keys and the types of its
values (:func:`check_state`). A
truncated, zeroed or altered file, bad JSON or a pickle that ``torch.load(weights_only=True)``
refuses makes the checkpoint unreadable: :func:`load_latest` sets it aside (never deletes it)
and falls back to the previous good checkpoint or to epoch 0. Checkpoints written before
checksums (no manifest) still load and are logged once as unverified.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from ..core.errors import CheckpointError
from .durable import prune_leftovers, remove_tree, set_aside, sha256, write_folder
from .layout import checkpoint_name, checkpoint_step

__all__ = [
    "MANIFEST",
    "MARKER",
    "MODEL_FILE",
    "STATE_FILE",
    "TRAINING_FILE",
    "check_state",
    "latest_checkpoint",
    "load_latest",
    "prune_older",
    "quarantine",
    "read_state",
    "resume_checkpoint",
    "seed_checkpoint",
    "set_aside_incomplete",
    "verify",
    "write_checkpoint",
]

logger = logging.getLogger(__name__)
_ANNOUNCED: set[Path] = set()

MODEL_FILE = "model.pt"
TRAINING_FILE = "training_state.pt"  # optimizer, scheduler, RNG
STATE_FILE = "trainer_state.json"  # epoch, step, history, best, params
MARKER = "COMPLETE"
MANIFEST = "checksums.json"  # SHA-256 of the files below, written before the marker
# The JSON is checked by parsing and its keys (an edited one still meets the params check).
_CHECKSUMMED = (MODEL_FILE, TRAINING_FILE)
_STATE_KEYS = {"epoch", "step_in_epoch", "history", "best_f1", "global_step", "epoch_loss_sum",
               "epoch_loss_n"}
_TRAINING_KEYS = {"optimizer", "scheduler", "rng"}
_unverified_logged: set[Path] = set()


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
        sums = {name: sha256(tmp / name) for name in _CHECKSUMMED}
        (tmp / MANIFEST).write_text(json.dumps({"sha256": sums}, sort_keys=True))

    final = write_folder(trial_dir / checkpoint_name(step), fill, marker=MARKER,
                         marker_text=f"{step}\n", before_marker="checkpoint_write")
    prune_older(trial_dir, final)
    # The full path once per trial folder, then only the checkpoint's name (less noise).
    where = final.name if trial_dir in _ANNOUNCED else str(final)
    _ANNOUNCED.add(trial_dir)
    logger.info("Checkpoint saved: %s (epoch %s, step %s)", where, state.get("epoch"), step)
    return final


def prune_older(trial_dir: Path, newest: Path) -> None:
    """Drop checkpoints older than ``newest`` and leftovers of killed writers."""
    for other in trial_dir.iterdir():
        if 0 <= checkpoint_step(other) < checkpoint_step(newest):
            remove_tree(other, f"checkpoint older than {newest.name}", level=logging.DEBUG)
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


def verify(checkpoint: Path) -> None:
    """Raise :class:`CheckpointError` when a file differs from its checksum or the JSON state
    does not parse; a checkpoint without a manifest (older code) is logged once as unverified."""
    try:
        if (checkpoint / MANIFEST).is_file():
            sums = json.loads((checkpoint / MANIFEST).read_text())["sha256"]
            for name in _CHECKSUMMED:
                if sha256(checkpoint / name) != sums[name]:
                    raise ValueError(f"{name} does not match its checksum (damaged)")
        elif checkpoint not in _unverified_logged:
            _unverified_logged.add(checkpoint)
            logger.warning("Checkpoint %s has no checksums (written by an older version): "
                           "loaded unverified", checkpoint)
        json.loads((checkpoint / STATE_FILE).read_text())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"checkpoint {checkpoint} cannot be read ({first}).") from None


def read_state(checkpoint: Path) -> tuple[dict, dict, dict]:
    """``(model_state, training_state, state)`` of a complete checkpoint, checksums verified.

    Any damage (missing or altered file, bad JSON, a pickle with code in it) is one
    :class:`CheckpointError`; ``weights_only=True`` never runs code from a file."""
    import torch

    verify(checkpoint)
    try:
        state = json.loads((checkpoint / STATE_FILE).read_text())
        model_state = torch.load(checkpoint / MODEL_FILE, map_location="cpu", weights_only=True)
        training = torch.load(checkpoint / TRAINING_FILE, map_location="cpu", weights_only=True)
        if not (isinstance(state, dict) and isinstance(model_state, dict)
                and isinstance(training, dict)) or _STATE_KEYS - set(state) \
                or _TRAINING_KEYS - set(training):
            raise ValueError("files present but not a checkpoint of this version")
        check_state(state)
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds on damaged files
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise CheckpointError(f"checkpoint {checkpoint} cannot be read ({first}).") from None
    return model_state, training, state


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _epoch_scores(entry: Any, epoch: int) -> bool:
    """Whether ``entry`` is one epoch's scores as training records them."""
    return (isinstance(entry, dict) and entry.get("epoch") == epoch
            and _number(entry.get("f1"))
            and all(_number(entry[k]) for k in ("precision", "recall", "macro_f1", "train_loss")
                    if k in entry)
            and all(isinstance(entry.get(k, {}), dict) for k in ("per_entity", "per_type")))


def check_state(state: dict[str, Any]) -> None:
    """Raise ``ValueError`` when the JSON state's values are not what training wrote: the
    right keys with wrong types (``"epoch": "two"``) failed the retry with a traceback and
    lost the trial's folder (issue 23). Positions are whole numbers, the history one entry
    (a dict with its epoch and scores) per finished epoch, scores and losses numbers."""
    for key in ("epoch", "step_in_epoch", "global_step", "epoch_loss_n"):
        if not _whole(state[key]):
            raise ValueError(f"{key} is {state[key]!r:.40}, not a whole number")
    for key in ("best_f1", "epoch_loss_sum"):
        if not _number(state[key]):
            raise ValueError(f"{key} is {state[key]!r:.40}, not a number")
    history = state["history"]
    if not isinstance(history, list) or len(history) != state["epoch"]:
        raise ValueError(f"history is not a list of {state['epoch']} finished epochs")
    for i, entry in enumerate(history):
        if not _epoch_scores(entry, i):
            raise ValueError(f"history[{i}] is not the scores of epoch {i}")
    if not isinstance(state.get("params", {}), dict):
        raise ValueError("params is not a mapping")
    if "micro_batch_size" in state and not _whole(state["micro_batch_size"]):
        raise ValueError("micro_batch_size is not a whole number")


def load_latest(trial_dir: Path) -> tuple[Path, tuple[dict, dict, dict]] | None:
    """The newest readable checkpoint of ``trial_dir`` and its contents, or None (epoch 0).

    Incomplete and unreadable checkpoints are set aside beside the trial folder (never
    deleted); the previous complete one is tried next."""
    checkpoint = resume_checkpoint(trial_dir)
    while checkpoint is not None:
        try:
            return checkpoint, read_state(checkpoint)
        except CheckpointError as exc:
            moved = quarantine(checkpoint, "unreadable")
            logger.error("%s Set aside as %s; the previous checkpoint (or epoch 0) is used.",
                         exc, moved.name)
        checkpoint = latest_checkpoint(trial_dir)
    return None


def seed_checkpoint(source_dir: Path, trial_dir: Path, params: dict[str, Any],
                    seeded_from: dict[str, Any], *, fault: str = "segment_copy") -> Path:
    """Start ``trial_dir`` from a copy of ``source_dir``'s newest checkpoint, rewritten for
    ``params`` (scheduler pbt: the exploit copy). The marker comes last, so a kill at any
    moment leaves either no checkpoint (the copy is made again) or a whole one; ``source_dir``
    is only read. Its state records ``seeded_from`` and the params it was trained with, and
    training then applies the new learning rate and weight decay to the restored optimizer.
    The best model is not copied: until the new trial beats the inherited best score, that
    model is the source trial's (kept under its number, as for a promotion). ``fault``: the
    fault point before the marker (the harness kills there)."""
    source = latest_checkpoint(source_dir) if source_dir.is_dir() else None
    if source is None:
        raise CheckpointError(
            f"the checkpoint this trial continues (trial {seeded_from.get('trial')} at epoch "
            f"{seeded_from.get('epoch')}) is gone from {source_dir}; the trial cannot start "
            "from it.")
    verify(source)
    state = json.loads((source / STATE_FILE).read_text())
    state.update(seeded_from={**seeded_from, "params": state.get("params", {})},
                 params=params)

    def fill(tmp: Path) -> None:
        for name in (*_CHECKSUMMED, MANIFEST):
            if (source / name).is_file():
                shutil.copy2(source / name, tmp / name)
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, sort_keys=True))

    final = write_folder(trial_dir / source.name, fill, marker=MARKER,
                         marker_text=f"{checkpoint_step(source)}\n",
                         before_marker=fault)
    logger.info("Checkpoint %s of %s copied to start %s (epoch %s)", source.name,
                source_dir.name, trial_dir.name, state.get("epoch"))
    return final
