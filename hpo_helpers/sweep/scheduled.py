"""The hyperband scheduler's side of the sweep loop (``scheduler.type: hyperband``).

:class:`Scheduled` chooses what a worker runs next, one worker at a time (the session's claims
lock; on PostgreSQL also the study's ``budget`` advisory lock, under which a dead worker's
trial is failed and its retry queued first, as for ``tpe_median``): a promotion of a paused trial
that now ranks in the top of its rung, a queued trial (a retry or a continuation), or a new
configuration while fewer than ``max_trials`` have started. The sweep is complete when all have
started and nothing runs, waits or can be promoted; the paused trials left are then stopped
for good. The decisions themselves live in :mod:`~hpo_helpers.study.halving`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..settings.config import HpoConfig
from ..settings.schema import PAUSED_AT, WORKER, retry_root
from ..study import halving
from ..study.distributed import fail_stale_trials
from ..training.trial import RungCheck, RungPause

if TYPE_CHECKING:
    import optuna

__all__ = ["Scheduled"]

logger = logging.getLogger(__name__)


class Scheduled:
    """Promotions, queued trials and new configurations for one session's workers."""

    def __init__(self, study: optuna.Study, hpo: HpoConfig, rungs: halving.Rungs,
                 shared: Any) -> None:
        self.study, self.hpo, self.rungs, self.shared = study, hpo, rungs, shared
        self.complete = False  # every configuration started, every promotion made
        self.stopped_roots: set[int] = set()  # chains this worker stopped: their folders go
        self.waiting_logged = False

    @classmethod
    def of(cls, study: optuna.Study, hpo: HpoConfig, shared: Any) -> Scheduled | None:
        rungs = halving.rungs_of(hpo)
        return None if rungs is None else cls(study, hpo, rungs, shared)

    def started(self) -> int:
        """Configurations started: what ``max_trials`` counts."""
        return len(halving.view(self.study, self.rungs).started)

    def next_trial(self, claims: Any, other_stop: Callable[[int], str | None],
                   trials_run: int) -> tuple[optuna.Trial | None, str | None]:
        """(the trial to run, None) or (None, the stop reason); ``claims`` (held by the
        caller) counts this session's running trials; ``other_stop(started)``: interrupt, the
        Stop button, the time budget (given the configurations started, read once here)."""
        while True:
            with self.shared.exclusive("budget") if self.shared is not None else \
                    contextlib.nullcontext():
                if self.shared is not None:
                    fail_stale_trials(self.study)
                v = halving.view(self.study, self.rungs)
                reason = self._complete(v, claims, trials_run) or other_stop(len(v.started))
                if reason is not None:
                    return None, reason
                promoted = halving.promote_one(self.study, self.rungs, v)
                if promoted is not None or v.waiting or len(v.started) < self.hpo.max_trials:
                    self.waiting_logged = False
                    trial = self.study.ask()
                    if self.shared is not None:
                        trial.set_user_attr(WORKER, self.shared.worker)
                    return trial, None
            if not self.waiting_logged:
                logger.info("Every configuration has started; waiting for the running trials "
                            "(one may make a paused trial promotable)")
                self.waiting_logged = True
            claims.wait(self.shared.poll_s if self.shared is not None else 1.0)

    def _complete(self, v: halving.View, claims: Any, trials_run: int) -> str | None:
        started = len(v.started)
        if (started < self.hpo.max_trials or v.running or v.waiting or claims.running
                or any(v.goes_on(retry_root(t), int(t.user_attrs[PAUSED_AT]))
                       for t in v.paused)):
            return None
        self.stopped_roots = {retry_root(t) for t in v.paused}
        stopped = halving.finish(self.study, self.rungs, v)
        reason = (f"Sweep complete: {started}/{self.hpo.max_trials} configurations started, "
                  "every promotion made"
                  + (f" ({len(stopped)} stopped at their rungs)" if stopped else ""))
        if trials_run == 0 and not stopped:
            reason = f"All configurations already done ({started}/{self.hpo.max_trials})"
        logger.info("%s", reason)
        self.complete = True
        return reason

    def rung_from(self, trial: optuna.Trial) -> int:
        """Epochs below which ``trial`` has no rung to decide (see ``halving``)."""
        return halving.decided_up_to(trial)

    def rung_check(self, trial: optuna.Trial) -> RungCheck:
        """What ``run_trial`` asks after each epoch: does ``trial`` go on?"""
        def check(epochs: int, value: float) -> bool:
            return halving.decide(self.study, trial, self.rungs, epochs, value)
        return check

    def pause(self, trial: optuna.Trial, pause: RungPause) -> None:
        """Tell the study: COMPLETE with its value so far, paused at the rung."""
        trial.set_user_attr(PAUSED_AT, pause.epochs)
        self.study.tell(trial, pause.value)
        logger.info("Trial %d paused at rung %d epochs: F1 %.4f (best so far %.4f); its "
                    "checkpoint is kept for a promotion", trial.number, pause.epochs,
                    pause.value, self.study.best_value)
