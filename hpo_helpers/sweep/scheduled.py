"""The scheduler's side of the sweep loop (``scheduler.type: hyperband`` or ``pbt``).

:class:`Scheduled` chooses what a worker runs next, one worker at a time (the session's claims
lock; on PostgreSQL also the study's ``budget`` advisory lock, under which a dead worker's
trial is failed and its retry queued first, as for ``tpe_median``): what the policy queues now
(hyperband: the promotion of a paused trial that now ranks in the top of its rung; pbt: the
next segments of a generation whose members have all paused), a queued trial (a retry, a
promotion, a next segment), or a new configuration while fewer than ``max_trials`` have
started. The sweep is complete when all have started and nothing runs, waits or can still be
queued. The decisions themselves live in :mod:`~hpo_helpers.study.halving` and
:mod:`~hpo_helpers.study.population`; a PBT segment's first step, the exploit copy, is
:meth:`Scheduled.seed`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..settings.config import HpoConfig
from ..settings.schema import (
    BEST_EPOCH,
    CONTINUES,
    CONTINUES_FROM_EPOCH,
    PAUSED_AT,
    PBT_EXPLOITED,
    PBT_MEMBER,
    RETRY_OF,
    SEED_ROOT,
    WORKER,
)
from ..storage.checkpoints import latest_checkpoint, seed_checkpoint
from ..storage.layout import StudyLayout
from ..study import halving, population
from ..study.distributed import fail_stale_trials
from ..training.trial import RungCheck, RungPause

if TYPE_CHECKING:
    import optuna

__all__ = ["Scheduled", "start_note"]

logger = logging.getLogger(__name__)


class Scheduled:
    """Promotions or generations, queued trials and new configurations for one session's
    workers."""

    def __init__(self, study: optuna.Study, hpo: HpoConfig, policy: Any, shared: Any) -> None:
        self.study, self.hpo, self.policy, self.shared = study, hpo, policy, shared
        self.complete = False  # every configuration started, everything queued has run
        self.stopped_roots: set[int] = set()  # folders the sweep no longer needs
        self.waiting_logged = False
        self._given: set[int] = set()  # folders already given to drop

    @classmethod
    def of(cls, study: optuna.Study, hpo: HpoConfig, shared: Any) -> Scheduled | None:
        rungs, pop = halving.rungs_of(hpo), population.population_of(hpo)
        if pop is not None:
            population.fix_size(study, pop)
        policy: Any = (halving.HalvingPolicy(rungs) if rungs is not None else
                       population.PopulationPolicy(pop) if pop is not None else None)
        return None if policy is None else cls(study, hpo, policy, shared)

    def started(self) -> int:
        """Configurations started (PBT: members): what ``max_trials`` counts."""
        return len(self.policy.view(self.study).started)

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
                v = self.policy.view(self.study)
                reason = self._complete(v, claims, trials_run) or other_stop(len(v.started))
                if reason is not None:
                    return None, reason
                queued = self.policy.queue(self.study, v)
                if queued or v.waiting or len(v.started) < self.hpo.max_trials:
                    self.waiting_logged = False
                    trial = self.study.ask()
                    if self.shared is not None:
                        trial.set_user_attr(WORKER, self.shared.worker)
                    return trial, None
            if not self.waiting_logged:
                logger.info("Every configuration has started; waiting for the running trials "
                            "(they decide what runs next)")
                self.waiting_logged = True
            claims.wait(self.shared.poll_s if self.shared is not None else 1.0)

    def _complete(self, v: Any, claims: Any, trials_run: int) -> str | None:
        started = len(v.started)
        if (started < self.hpo.max_trials or v.running or v.waiting or claims.running
                or self.policy.pending(v)):
            return None
        stopped, note = self.policy.finish(self.study, v)
        self.stopped_roots |= stopped
        reason = (f"Sweep complete: {started}/{self.hpo.max_trials} configurations started, "
                  f"{note}")
        if trials_run == 0 and not stopped:
            reason = f"All configurations already done ({started}/{self.hpo.max_trials})"
        logger.info("%s", reason)
        self.complete = True
        return reason

    def spent(self) -> set[int]:
        """Checkpoint folders (retry roots) the sweep no longer needs: stopped chains, PBT
        segments every decision and queued segment is done with. Each is given once."""
        with self.shared.exclusive("budget") if self.shared is not None else \
                contextlib.nullcontext():  # a dead worker's trial is failed and re-queued as one
            roots = (self.stopped_roots | self.policy.spent(self.study)) - self._given
        self._given |= roots
        return roots

    def rung_from(self, trial: optuna.Trial) -> int:
        """Epochs below which ``trial`` has no rung to decide (see ``halving``)."""
        return int(self.policy.decided_up_to(trial))

    def rung_check(self, trial: optuna.Trial) -> RungCheck:
        """What ``run_trial`` asks after each epoch: does ``trial`` go on?"""
        def check(epochs: int, best: float, current: float) -> bool:
            return bool(self.policy.decide(self.study, trial, epochs, best, current))
        return check

    def seed(self, trial: optuna.Trial, params: dict[str, Any], ckpt_dir: Path | None,
             layout: StudyLayout, mirror: Any, on_checkpoint: Callable[[Path], None] | None,
             ) -> None:
        """A PBT segment with no checkpoint of its own yet starts from a copy of the one it
        continues (the exploit copy), written with its own params; nothing for other trials."""
        attrs = trial.user_attrs
        if SEED_ROOT not in attrs or ckpt_dir is None or latest_checkpoint(ckpt_dir):
            return
        source = layout.trial_dir(int(attrs[SEED_ROOT]))
        assert source is not None
        if mirror is not None:
            mirror.pull(source)  # a fresh VM: the paused segment's durable copy
        copy = seed_checkpoint(source, ckpt_dir, params, {
            "trial": int(attrs[CONTINUES]), "epoch": int(attrs[CONTINUES_FROM_EPOCH])},
            fault="exploit_copy" if PBT_EXPLOITED in attrs else "segment_copy")
        if on_checkpoint is not None:
            on_checkpoint(copy)

    def pause(self, trial: optuna.Trial, pause: RungPause) -> None:
        """Tell the study: COMPLETE with its value so far, paused at the rung."""
        trial.set_user_attr(PAUSED_AT, pause.epochs)
        trial.set_user_attr(BEST_EPOCH, pause.best_epoch)  # before it: its model is inherited
        self.study.tell(trial, pause.value)
        logger.info("Trial %d paused at epoch %d: F1 %.4f (best so far %.4f); its checkpoint "
                    "is kept for what comes next", trial.number, pause.epochs, pause.value,
                    self.study.best_value)


def start_note(attrs: dict[str, Any]) -> str:
    """How a trial's start is logged: a retry, a promotion, a PBT segment (and its exploit)."""
    if RETRY_OF in attrs:
        return f" (retry of trial {attrs[RETRY_OF]})"
    if PBT_MEMBER in attrs:
        took = (f"exploits member {attrs[PBT_EXPLOITED]}: " if PBT_EXPLOITED in attrs else "")
        return (f" (PBT member {attrs[PBT_MEMBER]}, {took}continues trial {attrs[CONTINUES]} "
                f"from epoch {attrs[CONTINUES_FROM_EPOCH]})")
    if CONTINUES in attrs:
        return (f" (continues trial {attrs[CONTINUES]} from its rung of "
                f"{attrs[CONTINUES_FROM_EPOCH]} epochs)")
    return ""
