"""Targeted reads of a study: what resume, ``status``, the panel and the summaries need.

Optuna's ``study.get_trials`` goes through its cached storage, whose first read of a study
loads every trial (params, attributes, intermediate values), whatever ``states`` asks for: 3.6 s
at 10,000 trials on two cores. The readers here never do that. On a database storage (SQLite,
PostgreSQL) they query Optuna's tables through the storage's own engine (counts by state, the
best trial, the top k values, recent durations, retry-chain numbers) or use the storage's
filtered read, which filters in SQL (the few RUNNING or WAITING trials). An in-memory study has
nothing to save, so it is read in Python.

The sampler's own reads (TPE over every finished trial on the first ``ask``) are Optuna's.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..settings.schema import (
    BEST_EPOCH,
    CONTINUES,
    CONTINUES_FROM_EPOCH,
    FOLD_F1,
    FOLD_F1_STD,
    INTERRUPTED,
    LEARNED_NOTHING,
    OOM,
    PAUSED_AT,
    PBT_EXPLOITED,
    PBT_MEMBER,
    RESUMED_FROM_EPOCH,
    RETRY_OF,
    RETRY_ROOT,
    STOPPED_AT_RUNG,
)

if TYPE_CHECKING:
    import optuna
    import sqlalchemy
    from optuna.trial import FrozenTrial, TrialState

__all__ = ["TrialSummary", "best_trial", "chain_numbers", "interrupted_numbers",
           "learned_nothing_numbers", "oom_numbers", "paused_chain_roots", "recent_durations",
           "state_counts",
           "top_complete", "trial_by_number", "trial_numbers", "trial_summaries", "trials_in"]


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


def _attrs(study: optuna.Study, keys: tuple[str, ...],
           states: tuple[TrialState, ...] | None = None) -> list[tuple[int, str, Any]]:
    """(trial number, key, value) of the trials' user attributes named in ``keys`` (of the
    trials in ``states`` when given)."""
    if _engine(study) is None:
        return [(t.number, k, v) for t in _all(study) for k, v in t.user_attrs.items()
                if k in keys and (states is None or t.state in states)]
    import sqlalchemy as sa
    from optuna.storages._rdb.models import TrialModel
    from optuna.storages._rdb.models import TrialUserAttributeModel as Attr

    q = (sa.select(TrialModel.number, Attr.key, Attr.value_json)
         .join(Attr, Attr.trial_id == TrialModel.trial_id)
         .where(TrialModel.study_id == study._study_id, Attr.key.in_(keys)))
    if states is not None:
        q = q.where(TrialModel.state.in_(states))
    return [(int(n), k, json.loads(v)) for n, k, v in _rows(study, q)]


def interrupted_numbers(study: optuna.Study) -> set[int]:
    """Trials that died with their process: tagged ``interrupted`` or continued by a retry."""
    pairs = _attrs(study, (INTERRUPTED, RETRY_OF))
    return ({n for n, k, v in pairs if k == INTERRUPTED and v}
            | {int(v) for _, k, v in pairs if k == RETRY_OF})


def oom_numbers(study: optuna.Study) -> set[int]:
    """Trials that ended out of memory."""
    return {n for n, _, v in _attrs(study, (OOM,)) if v}


def learned_nothing_numbers(study: optuna.Study) -> set[int]:
    """Trials that completed without learning (``learned_nothing``: best F1 below 0.05)."""
    return {n for n, _, v in _attrs(study, (LEARNED_NOTHING,)) if v}


def chain_numbers(study: optuna.Study) -> set[int]:
    """Numbers a checkpoint folder may carry: every trial's retry root, and every attempt a
    retry continues (``retry_of``)."""
    pairs = _attrs(study, (RETRY_ROOT, RETRY_OF))
    not_roots = {n for n, k, v in pairs if k == RETRY_ROOT and int(v) != n}
    return ((trial_numbers(study) - not_roots)
            | {int(v) for _, k, v in pairs if k in (RETRY_ROOT, RETRY_OF)})


def paused_chain_roots(study: optuna.Study) -> set[int]:
    """Retry-chain roots of COMPLETE trials paused at a rung (scheduler hyperband) that no
    trial continues and the study has not stopped: a promotion may still need their
    checkpoints. Empty, after one attribute query, for a study that never paused a trial."""
    from optuna.trial import TrialState

    paused = _attrs(study, (PAUSED_AT, RETRY_ROOT), (TrialState.COMPLETE,))
    numbers = {n for n, k, _ in paused if k == PAUSED_AT}
    if not numbers:
        return set()
    continued = {int(v) for _, _, v in _attrs(study, (CONTINUES,))}
    stopped = set(study.user_attrs.get(STOPPED_AT_RUNG) or ())
    roots = {n: int(v) for n, k, v in paused if k == RETRY_ROOT}
    return {roots.get(n, n) for n in numbers - continued - stopped}


def top_complete(study: optuna.Study, k: int) -> list[tuple[int, float | None]]:
    """The ``k`` highest-valued COMPLETE trials as (number, value); ties by number.

    In a study with promotions (scheduler hyperband) a paused trial and its continuations are
    one model's history: each chain counts once, by its best trial (ties: the earlier one,
    which holds the model when a continuation did not improve on it). A continuation whose
    best epoch came before the epoch it continued from (its value inherited: scheduler pbt's
    next generations) has no model of its own and is not counted: the trial that trained
    that epoch is."""
    from optuna.trial import TrialState

    if not _attrs(study, (CONTINUES,)):
        return _top(study, k)
    pairs = _attrs(study, (RETRY_ROOT, CONTINUES_FROM_EPOCH, BEST_EPOCH),
                   (TrialState.COMPLETE,))
    roots = {n: int(v) for n, key, v in pairs if key == RETRY_ROOT}
    start = {n: int(v) for n, key, v in pairs if key == CONTINUES_FROM_EPOCH}
    best = {n: int(v) for n, key, v in pairs if key == BEST_EPOCH}
    seen: set[int] = set()
    out = []
    for number, value in _top(study, None):
        root = roots.get(number, number)
        if number in start and best.get(number, start[number] + 1) <= start[number]:
            continue  # inherited
        if root not in seen:
            seen.add(root)
            out.append((number, value))
    return out[:k]


def _top(study: optuna.Study, k: int | None) -> list[tuple[int, float | None]]:
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
         .order_by(Value.value.is_(None), Value.value.desc(), TrialModel.number))
    if k is not None:
        q = q.limit(k)
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


#: The user attributes a summary carries (what notebook 03's table and the figures show).
SUMMARY_ATTRS = (INTERRUPTED, RETRY_OF, RESUMED_FROM_EPOCH, FOLD_F1, FOLD_F1_STD,
                 LEARNED_NOTHING, PAUSED_AT, CONTINUES, PBT_MEMBER, PBT_EXPLOITED, RETRY_ROOT)


@dataclasses.dataclass(frozen=True)
class TrialSummary:
    """What notebook 03's table and the figures need of a trial, without its full record."""

    number: int
    state: str
    value: float | None
    duration_s: float | None
    params: dict[str, Any]
    attrs: dict[str, Any]  # the keys of SUMMARY_ATTRS that the trial has
    last_reported: float | None  # its last intermediate value (PRUNED and FAIL trials only)
    steps: int = 0  # steps it reported: its last step + 1 (epochs, folds included), 0: none

    @property
    def epochs_trained(self) -> int:
        """Epochs this attempt trained: its steps beyond where it resumed (a retry or a
        promotion continues from a checkpoint and does not train those again)."""
        return max(0, self.steps - int(self.attrs.get(RESUMED_FROM_EPOCH, 0) or 0))


def trial_summaries(study: optuna.Study) -> list[TrialSummary]:
    """Every trial's summary, by number: a few column reads in SQL (0.3 s at 10,000 trials
    where Optuna's full read takes several seconds)."""
    if _engine(study) is None:
        return [TrialSummary(t.number, t.state.name, t.value,
                             t.duration.total_seconds() if t.duration else None, dict(t.params),
                             {k: t.user_attrs[k] for k in SUMMARY_ATTRS if k in t.user_attrs},
                             t.intermediate_values[max(t.intermediate_values)]
                             if t.intermediate_values and t.state.name in ("PRUNED", "FAIL")
                             else None,
                             max(t.intermediate_values) + 1 if t.intermediate_values else 0)
                for t in _all(study)]
    import sqlalchemy as sa
    from optuna.distributions import json_to_distribution
    from optuna.storages._rdb.models import TrialIntermediateValueModel as Step
    from optuna.storages._rdb.models import TrialModel as T
    from optuna.storages._rdb.models import TrialParamModel as Param
    from optuna.storages._rdb.models import TrialUserAttributeModel as Attr
    from optuna.storages._rdb.models import TrialValueModel as Value
    from optuna.trial import TrialState

    mine = T.study_id == study._study_id
    rows = _rows(study, sa.select(T.trial_id, T.number, T.state, T._datetime_start_utc,
                                  T._datetime_complete_utc, Value.value, Value.value_type)
                 .outerjoin(Value, sa.and_(Value.trial_id == T.trial_id, Value.objective == 0))
                 .where(mine).order_by(T.number))
    params: dict[int, dict[str, Any]] = {}
    dists: dict[str, Any] = {}
    for tid, name, internal, dist_json in _rows(study, sa.select(
            Param.trial_id, Param.param_name, Param.param_value, Param.distribution_json)
            .join(T, T.trial_id == Param.trial_id).where(mine)
            .order_by(Param.trial_id, Param.param_id)):  # suggestion order, as Optuna's
        dist = dists.get(dist_json) or dists.setdefault(dist_json,
                                                        json_to_distribution(dist_json))
        params.setdefault(tid, {})[name] = dist.to_external_repr(internal)
    attrs: dict[int, dict[str, Any]] = {}
    for tid, key, value in _rows(study, sa.select(Attr.trial_id, Attr.key, Attr.value_json)
                                 .join(T, T.trial_id == Attr.trial_id)
                                 .where(mine, Attr.key.in_(SUMMARY_ATTRS))):
        attrs.setdefault(tid, {})[key] = json.loads(value)
    last: dict[int, tuple[int, float]] = {}
    for tid, step, value, kind in _rows(study, sa.select(
            Step.trial_id, Step.step, Step.intermediate_value, Step.intermediate_value_type)
            .join(T, T.trial_id == Step.trial_id)
            .where(mine, T.state.in_((TrialState.PRUNED, TrialState.FAIL)))):
        if tid not in last or step > last[tid][0]:
            last[tid] = (step, Step.stored_repr_to_intermediate_value(value, kind))
    steps = dict(_rows(study, sa.select(Step.trial_id, sa.func.max(Step.step))
                       .join(T, T.trial_id == Step.trial_id).where(mine)
                       .group_by(Step.trial_id)))
    return [TrialSummary(int(number), state.name,
                         Value.stored_repr_to_value(value, kind) if kind is not None else None,
                         (end - start).total_seconds() if start and end else None,
                         params.get(tid, {}), attrs.get(tid, {}),
                         last[tid][1] if tid in last else None,
                         int(steps[tid]) + 1 if steps.get(tid) is not None else 0)
            for tid, number, state, start, end, value, kind in rows]
