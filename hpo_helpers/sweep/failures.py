"""When failing trials stop a sweep: ``max_failed_trials`` in a row, or five out-of-memory
trials in a row (which do not count toward ``max_failed_trials``)."""

from __future__ import annotations

import logging

from ..core.errors import SweepFailedError, TrialOutOfMemoryError

__all__ = ["FailureCount", "OOM_TRIALS_IN_A_ROW_STOP"]

logger = logging.getLogger(__name__)

OOM_TRIALS_IN_A_ROW_STOP = 5


class FailureCount:
    """Trials failing in a row within one session; raises :class:`SweepFailedError` at the cap.

    Call :meth:`succeeded` after a trial that ran (complete or pruned) and :meth:`failed` after
    one that failed (its FAIL already told to the study)."""

    def __init__(self, max_failed_trials: int) -> None:
        self.max_failed_trials = max_failed_trials
        self.in_a_row = 0
        self.oom_in_a_row = 0

    def succeeded(self) -> None:
        self.in_a_row = self.oom_in_a_row = 0

    def failed(self, number: int, exc: Exception, last_error: str) -> None:
        """Count trial ``number``'s failure; raises when the sweep must stop."""
        if isinstance(exc, TrialOutOfMemoryError):
            self.oom_in_a_row += 1
            logger.error("Trial %d failed: %s", number, exc)
            if self.oom_in_a_row >= OOM_TRIALS_IN_A_ROW_STOP:
                raise SweepFailedError(
                    f"{self.oom_in_a_row} trials in a row ran out of memory (last: {exc}). "
                    "Finished trials are kept. Fix: lower the batch_size choices in the search "
                    "space (or max_length in train.yaml), or set oom_retry: true in "
                    "train.yaml, then re-run to continue.") from exc
            return
        self.in_a_row += 1
        self.oom_in_a_row = 0
        logger.error("Trial %d failed (%d in a row)", number, self.in_a_row, exc_info=exc)
        if self.in_a_row >= self.max_failed_trials:
            raise SweepFailedError(
                f"{self.in_a_row} trials failed in a row (max_failed_trials = "
                f"{self.max_failed_trials}); last error: {last_error}. Finished trials are "
                "kept. Fix the cause, then re-run to continue.") from exc
