"""The sweeps the resume panel runs in this kernel, by study (issue 22 item 6).

A panel runs its sweep in a background thread so its buttons stay live. Running the panel's
cell again makes a new panel while that thread goes on; :data:`RUNNING` lets the new panel
find the sweep of its study and attach to it (its buttons then stop that sweep, and it shows
its progress) instead of starting a second one. :class:`RunningSweep` fans the sweep's
events out to every attached panel, and :class:`SweepLog` puts the sweep thread's log lines
in the panels' log areas: output written from a background thread with ``print`` or
``with output:`` lands under whichever cell the kernel ran last (ipywidgets' "Output widgets
from background threads"), so a panel only ever sets its widgets' ``outputs``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from ..core.stopping import StopRequest
from ..sweep.events import SweepEvents, SweepOutcome

__all__ = ["RUNNING", "RunningSweep", "SweepLog", "attach_or_none", "register"]

#: Running sweeps by study key (durable study file and study name), process-wide.
RUNNING: dict[str, RunningSweep] = {}
_LOCK = threading.Lock()


class RunningSweep(SweepEvents):
    """One sweep started by a panel: its thread, its stop requests, the panels that show it.

    As the sweep's :class:`SweepEvents` it forwards every hook to each attached panel."""

    def __init__(self, key: str, *, background: bool) -> None:
        self.key = key
        self.thread: threading.Thread | None = None
        self.stop_after = threading.Event()
        self.stop_now = StopRequest()
        self.panels: list[Any] = []
        self.draws_progress = background  # the panel draws progress: no tqdm from a thread
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def add(self, panel: Any) -> None:
        with self._lock:
            self.panels.append(panel)

    def each(self, call: Callable[[Any], None]) -> None:
        with self._lock:
            panels = list(self.panels)
        for panel in panels:
            call(panel)

    # -- SweepEvents, forwarded ------------------------------------------------------------

    def sweep_started(self, outcome: SweepOutcome, n_complete: int, max_trials: int) -> None:
        self.each(lambda p: p.sweep_started(outcome, n_complete, max_trials))

    def trial_started(self, number: int, params: dict[str, Any], retry_of: int | None) -> None:
        self.each(lambda p: p.trial_started(number, params, retry_of))

    def step(self, done: int, total: int) -> None:
        self.each(lambda p: p.step(done, total))

    def trial_step(self, number: int, done: int, total: int) -> None:
        self.each(lambda p: p.trial_step(number, done, total))

    def trial_finished(self, number: int, state: str, value: float | None, n_complete: int,
                       best_value: float | None) -> None:
        self.each(lambda p: p.trial_finished(number, state, value, n_complete, best_value))

    def sweep_finished(self, outcome: SweepOutcome) -> None:
        self.each(lambda p: p.sweep_finished(outcome))


def attach_or_none(key: str) -> RunningSweep | None:
    """The running sweep of the study ``key`` in this process, if any."""
    with _LOCK:
        sweep = RUNNING.get(key)
        return sweep if sweep is not None and sweep.alive else None


def register(sweep: RunningSweep, target: Callable[[], None]) -> bool:
    """Start ``target`` in a background thread as the sweep of ``sweep.key``; False when the
    study already has a running sweep here (attach to it instead)."""
    with _LOCK:
        old = RUNNING.get(sweep.key)
        if old is not None and old.alive:
            return False

        def run() -> None:
            try:
                target()
            finally:
                with _LOCK:
                    if RUNNING.get(sweep.key) is sweep:
                        del RUNNING[sweep.key]

        sweep.thread = threading.Thread(target=run, name="hpo-sweep", daemon=True)
        RUNNING[sweep.key] = sweep
        sweep.thread.start()
        return True


class SweepLog(logging.Handler):
    """While a panel's sweep runs in the background: log records from threads other than the
    kernel's main thread go to the attached panels' log areas, and no longer to the console
    handlers (whose stream is whichever cell ran last)."""

    def __init__(self, sweep: RunningSweep) -> None:
        super().__init__(logging.INFO)
        self.sweep = sweep
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                            "%H:%M:%S"))
        self._main = threading.main_thread().ident
        self._muted: list[logging.Handler] = []

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self._main and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record) + "\n"
        self.sweep.each(lambda p: p.append_log(line))

    def _not_from_sweep(self, record: logging.LogRecord) -> bool:
        return record.thread == self._main

    def __enter__(self) -> SweepLog:
        root = logging.getLogger()
        for handler in root.handlers:
            if isinstance(handler, logging.StreamHandler) and handler is not self:
                handler.addFilter(self._not_from_sweep)
                self._muted.append(handler)
        root.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger().removeHandler(self)
        for handler in self._muted:
            handler.removeFilter(self._not_from_sweep)
        self._muted.clear()
