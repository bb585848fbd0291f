"""Several trials at once in one sweep process: one worker thread per device (issue 13).

Why threads and not worker processes: the sweep process holds the study lock (one per sweep),
the SQLite study, the MLflow tracker and the Drive mirror; threads share them without a second
channel, and PyTorch releases the GIL inside its kernels, so two GPUs (or two CPU workers with
``torch_threads`` each) train side by side. Each worker trains on its own device
(:func:`hpo_helpers.device.using`). Trials are claimed under one lock that counts this process's
running trials against ``max_trials`` (:class:`Claims`), so the budget is exact: a worker waits
instead of starting a trial that could overshoot it. Limits, documented: the process's CPU
random generator is shared, so with several workers a trial's dropout draws depend on timing
(a single worker stays bit-exact); a CUDA error that breaks the process stops every worker
(the study, checkpoints and retries make the rerun lose nothing).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from .device import default_device, using
from .housekeeping import free_memory, snapshot_all

if TYPE_CHECKING:
    import optuna

    from .sweep import _Sweep

__all__ = ["Claims", "run_workers", "work"]

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


def work(sweep: _Sweep, trial_bar: Any) -> None:
    """Run ``sweep``'s trials: one worker loop per device in ``sweep.devices``."""
    run_workers(lambda: _work(sweep, trial_bar), sweep.devices, sweep.stop.event)


def _next(sweep: _Sweep) -> optuna.Trial | None:
    """Claim the next trial (holding ``claims.cond``); None: stop (reason recorded)."""
    while True:
        n_complete = sweep.n_complete()
        reason = sweep._why_stop(n_complete)
        if reason is not None:
            sweep.outcome.stop_reason = reason
            return None
        # The budget stays exact with several workers: trials running here count too.
        if n_complete + len(sweep.claims.running) < sweep.hpo.max_trials:
            trial = sweep._claim()
            if trial is not None:
                sweep._waiting_logged = False
                return trial
        sweep.claims.wait(sweep.shared.poll_s if sweep.shared is not None else 1.0)


def _work(sweep: _Sweep, trial_bar: Any) -> None:
    """One worker's loop: claim a trial, train it, record it, until a stop reason."""
    while True:
        with sweep.claims.cond:
            trial = _next(sweep)
            if trial is None:
                return
            held = sweep.claims.held(trial.number, str(default_device()))
        beat = sweep.shared.heartbeat(trial, sweep.hpo.heartbeat_interval) \
            if sweep.shared is not None else contextlib.nullcontext()
        with held, beat:
            keep_going, finished_dir = sweep._run_one(trial, trial_bar)
        free_memory()
        with sweep.books:
            # The durable study must record the trial's end before its checkpoints go: a kill
            # in between then costs nothing (the trial is done) instead of the whole trial.
            snapshot_all(sweep.opened.paths, sweep.tracker.setup, sweep.writes)
            sweep.writes.retry()  # kept models that waited on local disk (#14)
            if finished_dir is not None:
                sweep._drop_checkpoints(finished_dir)
                sweep._report_disk()
        if not keep_going:
            return
