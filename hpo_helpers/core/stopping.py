"""Stopping a sweep safely: SIGINT/SIGTERM (the Jupyter stop button) become a request."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator

__all__ = ["StopRequest"]

logger = logging.getLogger(__name__)


class StopRequest:
    """SIGINT/SIGTERM (the Jupyter stop button sends SIGINT) ask the sweep to stop safely.

    The first signal sets a flag: the running trial checkpoints at its next step and the sweep
    records it as interrupted. A second SIGINT raises KeyboardInterrupt at once.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name = ""

    def is_set(self) -> bool:
        return self.event.is_set()

    def request(self, by: str = "the Stop now button") -> None:
        """Ask for the same safe stop as the first SIGINT, from any thread (the panel's button:
        a sweep in a background thread gets no signals)."""
        if self.event.is_set():
            return
        self.signal_name = by
        self.event.set()
        logger.warning("Stop requested by %s: saving a checkpoint at the next step, then "
                       "stopping", by)

    def _handle(self, signum: int, frame: object) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        self.event.set()
        logger.warning("%s received: saving a checkpoint at the next step, then stopping "
                       "(press the stop button / Ctrl-C again to abort without saving)",
                       self.signal_name)

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)
