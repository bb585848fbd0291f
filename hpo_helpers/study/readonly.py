"""A storage that reads a study and refuses every write: what the dashboard serves.

optuna-dashboard has write endpoints (create, rename and delete a study, tell a trial, set
notes and user attributes, upgrade the schema). On SQLite the reader's file is opened
read-only; a database server (PostgreSQL) has no such mode, and the dashboard served it
read-write to anyone on the machine (issue 23). :class:`ReadOnlyStorage` wraps any Optuna
storage: reads go through, every write raises :class:`~hpo_helpers.core.errors.StudyError`.
It is not an ``RDBStorage``, so optuna-dashboard never offers its schema upgrade either.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study._frozen import FrozenStudy
from optuna.study._study_direction import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from ..core.errors import StudyError

__all__ = ["ReadOnlyStorage"]


class ReadOnlyStorage(BaseStorage):
    """``inner``'s reads; each write is refused with a :class:`StudyError`."""

    def __init__(self, inner: BaseStorage) -> None:
        self._inner = inner

    def _refuse(self, what: str) -> StudyError:
        return StudyError(f"this study is served read-only: {what} refused (the dashboard "
                          "and the other readers never write a study)")

    # -- writes: refused ------------------------------------------------------------------

    def create_new_study(self, directions: Sequence[StudyDirection],
                         study_name: str | None = None) -> int:
        raise self._refuse("creating a study")

    def delete_study(self, study_id: int) -> None:
        raise self._refuse("deleting a study")

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        raise self._refuse("setting a study attribute")

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        raise self._refuse("setting a study attribute")

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        raise self._refuse("creating a trial")

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        raise self._refuse("setting a trial parameter")

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        raise self._refuse("changing a trial's state")

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        raise self._refuse("reporting a value")

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        raise self._refuse("setting a trial attribute")

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        raise self._refuse("setting a trial attribute")

    # -- reads: the wrapped storage's own ----------------------------------------------------

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._inner.get_study_id_from_name(study_name)

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._inner.get_study_name_from_id(study_id)

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._inner.get_study_directions(study_id)

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._inner.get_study_user_attrs(study_id)

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._inner.get_study_system_attrs(study_id)

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._inner.get_all_studies()

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._inner.get_trial(trial_id)

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._inner.get_all_trials(study_id, deepcopy=deepcopy, states=states)

    def get_n_trials(self, study_id: int,
                     state: tuple[TrialState, ...] | TrialState | None = None) -> int:
        return self._inner.get_n_trials(study_id, state)

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._inner.get_best_trial(study_id)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._inner.get_trial_id_from_study_id_trial_number(study_id, trial_number)

    def get_trial_number_from_id(self, trial_id: int) -> int:
        return self._inner.get_trial_number_from_id(trial_id)

    def get_trial_params(self, trial_id: int) -> dict[str, Any]:
        return self._inner.get_trial_params(trial_id)

    def get_trial_user_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._inner.get_trial_user_attrs(trial_id)

    def get_trial_system_attrs(self, trial_id: int) -> dict[str, Any]:
        return self._inner.get_trial_system_attrs(trial_id)

    def remove_session(self) -> None:
        self._inner.remove_session()
