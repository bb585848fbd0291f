"""The time budget (``timeout_minutes``): no trial starts that would not fit in the session."""

from __future__ import annotations

import logging
import statistics
from typing import TYPE_CHECKING

from ..settings.config import HpoConfig
from ..study.queries import recent_durations

if TYPE_CHECKING:
    import optuna

__all__ = ["over_budget"]

logger = logging.getLogger(__name__)


def over_budget(hpo: HpoConfig, study: optuna.Study, elapsed: float,
                 n_complete: int) -> str | None:
    """The time-budget stop reason, or None while another trial fits in the session."""
    if hpo.timeout_minutes is None:
        return None
    durations = recent_durations(study, 5)
    estimate = statistics.mean(durations) if durations else 0.0
    if elapsed + estimate <= hpo.timeout_minutes * 60:
        return None
    reason = (f"Time budget: {elapsed / 60:.1f} of {hpo.timeout_minutes} min used; a trial "
              f"takes about {estimate / 60:.1f} min, so none more starts ({n_complete}/"
              f"{hpo.max_trials} COMPLETE). Re-run to continue.")
    logger.warning("%s", reason)
    return reason
