"""Per-trial listeners: what else happens when a trial starts and ends, in Optuna's callback
style (each gets the study and the trial; none can stop the search by failing).

The session calls every listener in order; tracking (MLflow) and the front end's events are
listeners. Housekeeping (top-k models, snapshots, checkpoint clean-up) needs the session's
state and stays in :class:`~hpo_helpers.sweep.session.session.SweepSession`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..study.queries import best_trial, state_counts
from ..tracking.tracker import SweepTracker
from .events import SweepEvents

if TYPE_CHECKING:
    import optuna

__all__ = ["EventsListener", "TrackingListener", "TrialListener"]


class TrialListener:
    """Hooks around one trial; every default does nothing."""

    def trial_started(self, study: optuna.Study, trial: optuna.Trial,
                      params: dict[str, Any]) -> None:
        """``trial`` starts with ``params`` (its retry-chain attributes are already set)."""

    def trial_finished(self, study: optuna.Study, trial: optuna.Trial, state: str,
                       value: float | None) -> None:
        """``trial`` ended: COMPLETE, PAUSED (at a rung, COMPLETE in the study), PRUNED, FAIL
        or INTERRUPTED (already told to the study)."""


class TrackingListener(TrialListener):
    """One MLflow child run per trial (see
    :class:`~hpo_helpers.tracking.tracker.SweepTracker`; its methods never raise)."""

    def __init__(self, tracker: SweepTracker) -> None:
        self.tracker = tracker

    def trial_started(self, study: optuna.Study, trial: optuna.Trial,
                      params: dict[str, Any]) -> None:
        self.tracker.trial_started(trial, params)

    def trial_finished(self, study: optuna.Study, trial: optuna.Trial, state: str,
                       value: float | None) -> None:
        self.tracker.trial_finished(study, trial, state, value)


class EventsListener(TrialListener):
    """The front end's :class:`~hpo_helpers.sweep.session.events.SweepEvents`, with the counts it
    shows (what ``max_trials`` counts, by default COMPLETE trials, and the best value so far).
    """

    def __init__(self, events: SweepEvents,
                 counted: Callable[[], int] | None = None) -> None:
        self.events = events
        self.counted = counted  # scheduler hyperband: configurations started

    def trial_started(self, study: optuna.Study, trial: optuna.Trial,
                      params: dict[str, Any]) -> None:
        from ..settings.schema import RETRY_OF

        self.events.trial_started(trial.number, params, trial.user_attrs.get(RETRY_OF))

    def trial_finished(self, study: optuna.Study, trial: optuna.Trial, state: str,
                       value: float | None) -> None:
        complete = state_counts(study)["COMPLETE"]
        best = best_trial(study) if complete else None
        n = self.counted() if self.counted is not None else complete
        self.events.trial_finished(trial.number, state, value, n,
                                   best.value if best else None)
