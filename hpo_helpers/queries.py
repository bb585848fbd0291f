"""Targeted reads of a study: what resume, ``status``, the panel and the summaries need.

Optuna's ``study.get_trials`` goes through its cached storage, whose first read of a study
loads every trial (params, attributes, intermediate values), whatever ``states`` asks for: 5 s
at 10,000 trials on two cores. The readers here never do that. On a database storage (SQLite,
PostgreSQL) they query Optuna's tables through the storage's own engine (counts by state, the
best trial, the top k values, recent durations, retry-chain numbers) or use the storage's
filtered read, which filters in SQL (the few RUNNING or WAITING trials). An in-memory study has
nothing to save, so it is read in Python.

The sampler's own reads (TPE over every finished trial on the first ``ask``) are Optuna's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .schema import INTERRUPTED, OOM, RETRY_OF, RETRY_ROOT

if TYPE_CHECKING:
    import optuna
    import sqlalchemy
    from optuna.trial import FrozenTrial, TrialState

__all__ = ["best_trial", "chain_numbers", "interrupted_numbers", "oom_numbers",
           "recent_durations", "state_counts", "top_complete", "trial_by_number",
           "trial_numbers", "trials_in"]


def _backend(study: optuna.Study) -> Any:
    storage = study._storage
    return getattr(storage, "_backend", storage)  # Optuna's _CachedStorage wraps the RDB one


def _engine(study: optuna.Study) -> sqlalchemy.Engine | None:
    from optuna.storages import RDBStorage

    backend = _backend(study)
    return backend.engine if isinstance(backend, RDBStorage) else None


def _rows(study: optuna.Study, query: Any) -> list[Any]:
    with _engine(study).connect() as con:  # type: ignore[union-attr]
        return list(con.execute(query))


def _all(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False)  # in-memory storage only: nothing to save


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state name (every state present, 0 when none)."""
    from optuna.trial import TrialState

    counts = {s.name: 0 for s in TrialState}
    if _engine(study) is None:
        for t in _all(study):
            counts[t.state.name] += 1
        return counts
    import sqlalchemy as sa
    from optuna.storages._rdb.models import TrialModel

    q = (sa.select(TrialModel.state, sa.func.count()).where(TrialModel.study_id ==
                                                            study._study_id)
         .group_by(TrialModel.state))
    for state, n in _rows(study, q):
        counts[state.name] = int(n)
    return counts


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The best COMPLETE trial (Optuna's own SQL query), or None when none is complete."""
    try:
        return study._storage.get_best_trial(study._study_id)
    except ValueError:  # no COMPLETE trial yet
        return None


def trials_in(study: optuna.Study, states: Iterable[TrialState]) -> list[FrozenTrial]:
    """The trials in ``states`` (read filtered in SQL, not through Optuna's full-study cache)."""
    return _backend(study).get_all_trials(study._study_id, deepcopy=False, states=tuple(states))


def trial_by_number(study: optuna.Study, number: int) -> FrozenTrial:
    """One trial by its number."""
    storage = study._storage
    return storage.get_trial(storage.get_trial_id_from_study_id_trial_number(study._study_id,
                                                                             number))


def trial_numbers(study: optuna.Study) -> set[int]:
    """The numbers of every trial of the study (numbers only)."""
    if _engine(study) is None:
        return {t.number for t in _all(study)}
    import sqlalchemy as sa
    from optuna.storages._rdb.models import TrialModel

    q = sa.select(TrialModel.number).where(TrialModel.study_id == study._study_id)
    return {int(n) for (n,) in _rows(study, q)}


def _attrs(study: optuna.Study, keys: tuple[str, ...]) -> list[tuple[int, str, Any]]:
    """(trial number, key, value) of the trials' user attributes named in ``keys``."""
    if _engine(study) is None:
        return [(t.number, k, v) for t in _all(study) for k, v in t.user_attrs.items()
                if k in keys]
    import sqlalchemy as sa
    from optuna.storages._rdb.models import TrialModel
    from optuna.storages._rdb.models import TrialUserAttributeModel as Attr

    q = (sa.select(TrialModel.number, Attr.key, Attr.value_json)
         .join(Attr, Attr.trial_id == TrialModel.trial_id)
         .where(TrialModel.study_id == study._study_id, Attr.key.in_(keys)))
    return [(int(n), k, json.loads(v)) for n, k, v in _rows(study, q)]


def interrupted_numbers(study: optuna.Study) -> set[int]:
    """Trials that died with their process: tagged ``interrupted`` or continued by a retry."""
    pairs = _attrs(study, (INTERRUPTED, RETRY_OF))
    return ({n for n, k, v in pairs if k == INTERRUPTED and v}
            | {int(v) for _, k, v in pairs if k == RETRY_OF})


def oom_numbers(study: optuna.Study) -> set[int]:
    """Trials that ended out of memory (issue 13)."""
    return {n for n, _, v in _attrs(study, (OOM,)) if v}


def chain_numbers(study: optuna.Study) -> set[int]:
    """Numbers a checkpoint folder may carry: every trial's retry root, and every attempt a
    retry continues (``retry_of``)."""
    pairs = _attrs(study, (RETRY_ROOT, RETRY_OF))
    not_roots = {n for n, k, v in pairs if k == RETRY_ROOT and int(v) != n}
    return ((trial_numbers(study) - not_roots)
            | {int(v) for _, k, v in pairs if k in (RETRY_ROOT, RETRY_OF)})


def top_complete(study: optuna.Study, k: int) -> list[tuple[int, float | None]]:
    """The ``k`` highest-valued COMPLETE trials as (number, value); ties by number."""
    from optuna.trial import TrialState

    if _engine(study) is None:
        done = [(t.number, t.value) for t in _all(study) if t.state == TrialState.COMPLETE]
        done.sort(key=lambda p: (-(p[1] if p[1] is not None else -float("inf")), p[0]))
        return done[:k]
    import sqlalchemy as sa
    from optuna.storages._rdb.models import TrialModel
    from optuna.storages._rdb.models import TrialValueModel as Value

    q = (sa.select(TrialModel.number, Value.value)
         .join(Value, sa.and_(Value.trial_id == TrialModel.trial_id, Value.objective == 0))
         .where(TrialModel.study_id == study._study_id,
                TrialModel.state == TrialState.COMPLETE)
         .order_by(Value.value.is_(None), Value.value.desc(), TrialModel.number).limit(k))
    return [(int(n), v) for n, v in _rows(study, q)]


def recent_durations(study: optuna.Study, n: int) -> list[float]:
    """Seconds taken by the last ``n`` COMPLETE trials (by number) that have both times."""
    from optuna.trial import TrialState

    if _engine(study) is None:
        done = [t.duration.total_seconds() for t in _all(study)
                if t.state == TrialState.COMPLETE and t.duration is not None]
        return done[-n:]
    import sqlalchemy as sa
    from optuna.storages._rdb.models import TrialModel as T

    start, end = T._datetime_start_utc, T._datetime_complete_utc
    q = (sa.select(start, end).where(T.study_id == study._study_id,
                                     T.state == TrialState.COMPLETE,
                                     start.is_not(None), end.is_not(None))
         .order_by(T.number.desc()).limit(n))
    return [(b - a).total_seconds() for a, b in reversed(_rows(study, q))]
