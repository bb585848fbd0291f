"""Large studies for measurements and tests; ``stub_fit`` stands in for training.

Seed a study with many finished trials fast: one transaction of bulk inserts into Optuna's
own tables (SQLite or PostgreSQL), instead of one transaction per trial through its API.

Trial ``i`` of ``n``: COMPLETE, except every 50th+1 PRUNED and every 50th+2 FAIL (every 100th+2
tagged ``interrupted``); the last ``running`` trials are RUNNING (left by a dead session). Values
are distinct (a permutation of ``i``), so the best trial is unique. Params stay inside the
search space of ``tests/conftest.TINY_HPO`` and ``benchmarks/bookkeeping.py`` at any ``n``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

SPACE_KEYS = ("learning_rate", "batch_size", "dropout", "weight_decay", "warmup_ratio")


def _distributions() -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    return {"learning_rate": FloatDistribution(1e-3, 3e-3, log=True),
            "batch_size": CategoricalDistribution([4, 8]),
            "dropout": FloatDistribution(0.0, 0.2),
            "weight_decay": FloatDistribution(1e-4, 1e-2, log=True),
            "warmup_ratio": FloatDistribution(0.0, 0.1)}


def params_of(i: int) -> dict[str, Any]:
    """Trial ``i``'s params: spread over the space, never outside it."""
    return {"learning_rate": 1e-3 * 3 ** ((i % 997) / 997), "batch_size": (4, 8)[i % 2],
            "dropout": (i % 20) / 100, "weight_decay": 1e-4 * 100 ** ((i % 991) / 991),
            "warmup_ratio": (i % 10) / 100}


def _state(i: int, n: int, running: int) -> str:
    if i >= n - running:
        return "RUNNING"
    return {1: "PRUNED", 2: "FAIL"}.get(i % 50, "COMPLETE")


def seed_study(url: str, name: str, n: int, *, running: int = 0,
               user_attrs: dict[str, Any] | None = None) -> None:
    """Create study ``name`` at ``url`` (direction maximize) holding ``n`` trials."""
    import optuna
    import sqlalchemy as sa
    from optuna.distributions import distribution_to_json
    from optuna.storages._rdb import models as m

    storage = optuna.storages.RDBStorage(url)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for key, value in (user_attrs or {}).items():
        study.set_user_attr(key, value)
    sid = study._study_id
    dists = _distributions()
    dist_json = {k: distribution_to_json(d) for k, d in dists.items()}
    start = dt.datetime(2026, 1, 1)
    states = [_state(i, n, running) for i in range(n)]
    with storage.engine.begin() as con:
        con.execute(sa.insert(m.TrialModel.__table__), [
            {"number": i, "study_id": sid, "state": states[i],
             "datetime_start": start + dt.timedelta(minutes=i),
             "datetime_complete": None if states[i] == "RUNNING"
             else start + dt.timedelta(minutes=i, seconds=30 + i % 7)} for i in range(n)])
        t = m.TrialModel.__table__
        ids = {number: trial_id for number, trial_id in
               con.execute(sa.select(t.c.number, t.c.trial_id).where(t.c.study_id == sid))}
        con.execute(sa.insert(m.TrialValueModel.__table__), [
            {"trial_id": ids[i], "objective": 0, "value": 0.5 + (i * 7919 % n) / (10 * n),
             "value_type": "FINITE"} for i in range(n) if states[i] == "COMPLETE"])
        con.execute(sa.insert(m.TrialParamModel.__table__), [
            {"trial_id": ids[i], "param_name": k,
             "param_value": dists[k].to_internal_repr(v), "distribution_json": dist_json[k]}
            for i in range(n) for k, v in params_of(i).items()])
        con.execute(sa.insert(m.TrialUserAttributeModel.__table__), [
            {"trial_id": ids[i], "key": key, "value_json": json.dumps(value)}
            for i in range(n)
            for key, value in ((("best_epoch", 2),) if states[i] == "COMPLETE" else
                               (("interrupted", True),) if i % 100 == 2 else ())])


def stub_fit(**kwargs: Any) -> Any:
    """``train.fit`` without training: every epoch reports F1 0.5 at once."""
    from hpo_helpers.training.train import FitResult

    m: dict[str, Any] = {}
    for epoch in range(int(kwargs["params"]["epochs"])):
        if kwargs.get("on_step"):
            kwargs["on_step"](epoch + 1, 2)
        m = {"f1": 0.5, "precision": 0.5, "recall": 0.5, "per_entity": {"SKILL": 0.5},
             "train_loss": 1.0, "epoch": epoch}
        kwargs["on_epoch"](epoch, m)
    return FitResult(best_f1=0.5, history=[m], global_step=2)
