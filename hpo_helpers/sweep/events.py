"""What a sweep tells its front end: :class:`SweepEvents` hooks and the :class:`SweepOutcome`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from ..storage.paths import StudyPaths
    from ..study.inputs import RunInputs

__all__ = ["SweepEvents", "SweepOutcome"]

logger = logging.getLogger(__name__)


@dataclass
class SweepOutcome:
    """What a call of the sweep did; ``study`` is the (possibly resumed) Optuna study."""

    study: optuna.Study
    study_name: str
    paths: StudyPaths | None
    resumed: bool
    trials_run: int = 0
    interrupted: bool = False
    stop_reason: str = ""
    recovered: list[int] = field(default_factory=list)
    checkpoint_path: str | None = None  # durable study file, or the masked storage URL
    bytes_kept: dict[str, int] = field(default_factory=dict)
    test_scores: dict[str, Any] = field(default_factory=dict)  # trial number -> test scores
    refit: dict[str, Any] | None = None  # the finished refit (refit: true)
    inputs: RunInputs | None = None  # data files and devices it ran with (given or stored)
    learned_nothing: str | None = None  # the warning when the best trial learned nothing

    def finish(self, stopped_by: str | None) -> None:
        """The sweep's last lines: when the study's best trial learned nothing,
        ``learned_nothing`` holds the one ``Learned nothing: ...`` line, which is logged; an
        interrupted sweep says how to resume (``stopped_by``: the signal's name)."""
        from ..study.status import best_learned_nothing

        self.learned_nothing = best_learned_nothing(self.study)
        if self.learned_nothing:
            logger.warning("%s", self.learned_nothing)
        if self.interrupted:
            self.stop_reason = (f"Interrupted by {stopped_by or 'a stop request'}: state saved. "
                                "To resume, run the same command or cell again")
            logger.warning("%s", self.stop_reason)


class SweepEvents:
    """Hooks for a front end (the notebook panel); every default does nothing.

    Called from the sweep's worker threads (one per device with ``devices``: several trials
    may run at once, so per-trial hooks carry the trial number); implementations must be quick
    and thread-safe.

    ``draws_progress``: the front end shows progress itself; the sweep then draws no tqdm bars
    and leaves the logging handlers alone (the panel's sweep runs in a background thread).
    """

    draws_progress: bool = False

    def sweep_started(self, outcome: SweepOutcome, n_complete: int, max_trials: int) -> None:
        """The study is open; ``outcome.recovered`` lists trials found interrupted."""

    def trial_started(self, number: int, params: dict[str, Any], retry_of: int | None) -> None:
        """A trial begins (``retry_of``: the interrupted attempt it continues)."""

    def step(self, done: int, total: int) -> None:
        """An optimizer step of the current trial finished (one trial at a time)."""

    def trial_step(self, number: int, done: int, total: int) -> None:
        """Trial ``number`` reached step ``done`` of ``total`` (at most 10 calls a second per
        trial): one progress row per running trial. The default forwards to :meth:`step`."""
        self.step(done, total)

    def trial_finished(self, number: int, state: str, value: float | None, n_complete: int,
                       best_value: float | None) -> None:
        """A trial ended: COMPLETE, PRUNED, FAIL or INTERRUPTED."""

    def sweep_finished(self, outcome: SweepOutcome) -> None:
        """The sweep returned (also after an interrupt or an error)."""
