"""Fault-injection points for the kill-and-resume harness (``benchmarks/fault_injection.py``).

``point(name)`` is a no-op unless ``HPO_FAULT_KILL_AT=<name>:<n>`` is set, in which case the
process SIGKILLs itself at the n-th time it passes ``name``. Points sit at the awkward moments:
``train_step`` (after an optimizer step), ``checkpoint_write`` (files written, marker not yet),
``checkpoint_mirror`` (half of a checkpoint copied to the durable folder), ``snapshot_copy``
(half of a database snapshot copied), ``db_commit`` (a trial told to the study, not yet
snapshotted), ``bucket_upload`` (half of a file sent to a ``durable_url`` bucket, not yet
committed), ``rung_decision`` (a trial's score at a rung recorded, the decision not yet
acted on), ``promotion`` (a paused trial's continuation queued, not yet claimed).
"""

from __future__ import annotations

import os
import signal

from .runtime import environ

__all__ = ["point"]

_spec: tuple[str, int] | None | bool = False
_hits: dict[str, int] = {}


def _load() -> tuple[str, int] | None:
    raw = environ().get("HPO_FAULT_KILL_AT", "")
    if ":" not in raw:
        return None
    name, _, n = raw.partition(":")
    return name, int(n)


def point(name: str) -> None:
    """Die here (SIGKILL) when the harness asked for this point and count."""
    global _spec
    if _spec is False:
        _spec = _load()
    spec = _spec
    if not isinstance(spec, tuple) or spec[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == spec[1]:
        os.kill(os.getpid(), signal.SIGKILL)
