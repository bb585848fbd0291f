"""Several trials at once in one sweep process: one worker thread per device.

Why threads and not worker processes: the sweep process holds the study lock (one per sweep),
the SQLite study, the MLflow tracker and the Drive mirror; threads share them without a second
channel, and PyTorch releases the GIL inside its kernels, so two GPUs (or two CPU workers with
``torch_threads`` each) train side by side. Each worker trains on its own device
(:func:`hpo_helpers.training.device.using`). Trials are claimed under one lock that counts this
process's running trials against ``max_trials`` (:class:`Claims`), so the budget is exact: a
worker waits instead of starting a trial that could overshoot it. Limits, documented: the
process's CPU random generator is shared, so with several workers a trial's dropout draws depend
on timing (a single worker stays bit-exact); a CUDA error that breaks the process stops every
worker (the study, checkpoints and retries make the rerun lose nothing).

This module knows nothing of the sweep: the session calls :func:`run_workers` with its own
worker loop.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

from ..training.device import using

__all__ = ["Claims", "run_workers"]

logger = logging.getLogger(__name__)


class Claims:
    """The trials this process runs now; claiming and finishing happen under one lock."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.running: dict[int, str] = {}  # trial number -> device

    def wait(self, seconds: float) -> None:
        """Wait (holding the lock) until a running trial ends or ``seconds`` pass."""
        self.cond.wait(seconds)

    @contextlib.contextmanager
    def held(self, number: int, device: str) -> Iterator[None]:
        """Count trial ``number`` as running (claim it holding the lock) until the block ends."""
        self.running[number] = device
        try:
            yield
        finally:
            with self.cond:
                self.running.pop(number, None)
                self.cond.notify_all()


def run_workers(work: Callable[[], None], devices: list[Any], stop: threading.Event) -> None:
    """Run ``work`` once per device, each in a thread using that device; re-raise the first
    error after every worker ended (an error sets ``stop``: the others checkpoint and stop)."""
    if len(devices) == 1:
        with using(devices[0]):
            work()
        return
    errors: list[BaseException] = []

    def target(device: Any) -> None:
        try:
            with using(device):
                work()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the sweep's thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=target, args=(d,), name=f"hpo-worker-{i}-{d}",
                                daemon=True) for i, d in enumerate(devices)]
    logger.info("%d trial workers: %s", len(threads), ", ".join(str(d) for d in devices))
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():  # short joins: SIGINT/SIGTERM handlers run in this thread
            t.join(0.2)
    if errors:
        raise errors[0]
