"""A 10,000-trial study: resume, ``status``, the panel and notebook 03's summary read it
without loading every trial.

Optuna's full read of a study (every trial with its params and attributes) is made to raise
while our code runs; only the sampler's and pruner's own reads, inside Optuna's ``ask`` and
``tell``, may do it (that cost is Optuna's, measured apart by ``benchmarks/bookkeeping.py``).
The answers are compared with a full load done outside the guard.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import sys
import traceback
from collections.abc import Iterator
from typing import Any
from unittest import mock

import optuna
import pytest
from optuna.trial import TrialState

from hpo_helpers import load_configs, run_sweep
from hpo_helpers.results.inspection import compare_studies, inspect_all, load_studies, trials_table
from hpo_helpers.study.queries import trials_in
from hpo_helpers.study.status import plan, status

from .conftest import REPO
from .test_distributed import pg_url  # noqa: F401 - the PostgreSQL fixture

sys.path.insert(0, str(REPO / "benchmarks"))
from _seed import seed_study, stub_fit  # noqa: E402 - a benchmarks helper

N = 10_000
RUNNING = 3
_CHEAP = {TrialState.RUNNING, TrialState.WAITING}


def _optuna_own() -> bool:
    """True inside the sampler, the pruner, or Optuna's ask/tell (Optuna's own reads)."""
    for frame in traceback.extract_stack():
        name = frame.filename.replace("\\", "/")
        if "/optuna/samplers/" in name or "/optuna/pruners/" in name:
            return True
        if name.endswith("/optuna/study/study.py") and frame.name in ("ask", "tell"):
            return True
    return False


class FullReadError(AssertionError):
    pass


def _guarded(original: Any) -> Any:
    """``original`` (a storage's trial read) raising when it would read all finished trials."""
    signature = inspect.signature(original)

    def read(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        states = bound.arguments["states"]
        incremental = bound.arguments.get("trial_id_greater_than", -1) > -1
        if not incremental and (states is None or not set(states) <= _CHEAP) \
                and not _optuna_own():
            raise FullReadError(f"full read of study {bound.arguments['study_id']} "
                                f"(states={states})")
        return original(*args, **kwargs)

    return read


@contextlib.contextmanager
def no_full_reads() -> Iterator[None]:
    """Every read of all (or all finished) trials raises, outside Optuna's ask/tell."""
    from optuna.storages import RDBStorage, _CachedStorage

    with mock.patch.object(RDBStorage, "_get_trials", _guarded(RDBStorage._get_trials)), \
            mock.patch.object(_CachedStorage, "get_all_trials",
                              _guarded(_CachedStorage.get_all_trials)):
        yield


@pytest.fixture(params=["sqlite", "postgresql"])
def large_study(request, project):
    """(config, storage URL or None, SQLite URL to read) of a seeded 10,000-trial study."""
    from hpo_helpers.study.store import fingerprint

    cfg = load_configs(project.config_dir, project.hpo)
    from hpo_helpers.data.dataset import load_dataset

    parts = fingerprint(cfg.hpo, load_dataset(project.dataset, cfg.data).fingerprint)
    if request.param == "sqlite":
        db = project.output_dir / "tiny" / "study.db"
        db.parent.mkdir(parents=True)
        url, shared = f"sqlite:///{db}", None
    else:
        url = shared = request.getfixturevalue("pg_url")
    # A shared study's RUNNING trials belong to live workers (heartbeats): none are seeded.
    seed_study(url, "hpo_tiny", N, running=RUNNING if shared is None else 0,
               user_attrs={"fingerprint": parts, "created_at": "2026-01-01"})
    return cfg, shared, url


def count_states_the_old_way(study: optuna.Study) -> int:
    """What ``status`` did before: every trial through Optuna's cached storage."""
    return len(study.get_trials(deepcopy=False))


def _full_load(url: str) -> tuple[dict[str, int], optuna.trial.FrozenTrial]:
    trials = optuna.load_study(study_name="hpo_tiny", storage=url).get_trials(deepcopy=False)
    counts = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    best = max((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    return counts, best


def _check(info: dict[str, Any], counts: dict[str, int], best: Any) -> None:
    assert (info["n_trials"], info["n_complete"], info["n_pruned"], info["n_failed"],
            info["n_running"], info["n_waiting"]) == (
        sum(counts.values()), counts["COMPLETE"], counts["PRUNED"], counts["FAIL"],
        counts["RUNNING"], counts["WAITING"])
    assert (info["best_trial"], info["best_value"], info["best_params"]) == (
        best.number, best.value, best.params)


def test_guard_catches_a_full_read(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'guard.db'}"
    seed_study(url, "hpo_tiny", N, running=RUNNING)
    study = optuna.load_study(study_name="hpo_tiny", storage=url)
    with no_full_reads():
        assert len(trials_in(study, (TrialState.RUNNING,))) == RUNNING  # filtered in SQL
        with pytest.raises(FullReadError, match="full read of study"):
            count_states_the_old_way(study)
        # Optuna's own filtered read goes through its cache, which first loads every trial
        with pytest.raises(FullReadError, match="full read of study"):
            study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


@pytest.mark.slow  # about 40 s per storage on two cores (two full loads, TPE over 10,000)
def test_status_panel_and_resume_agree_with_a_full_load(large_study, project) -> None:
    cfg, shared, url = large_study
    counts, best = _full_load(url)
    assert counts["RUNNING"] == (RUNNING if shared is None else 0)
    assert counts["COMPLETE"] > 9000
    where = {"output_dir": project.output_dir, "storage_url": shared}
    # The budget is one more than what is COMPLETE: resume runs one trial.
    more = dataclasses.replace(cfg, hpo=dataclasses.replace(
        cfg.hpo, max_trials=counts["COMPLETE"] + 1))
    with no_full_reads():
        info = status(more, **where)
        _check(info, counts, best)
        assert info["n_interrupted"] == 100
        panel = plan(more, **where)
        _check(panel, counts, best)
        if shared is None:
            assert panel["action"] == \
                f"Resume: {counts['COMPLETE']} of {counts['COMPLETE'] + 1} trials complete"
            assert panel["stale"] == RUNNING
        [read] = load_studies([url])
        summary = compare_studies([read]).iloc[0]  # notebook 03's summary
        assert (summary["complete"], summary["pruned"], summary["failed"],
                summary["best_trial"], summary["best_value"]) == (
            counts["COMPLETE"], counts["PRUNED"], counts["FAIL"], best.number, best.value)
        table = trials_table(read)  # 03's table and figures read columns, not whole trials
        shown: list[Any] = []
        mlflow = f"sqlite:///{project.output_dir / 'mlflow.db'}"
        inspect_all([project.output_dir] if shared is None else [], tracking_uri=mlflow,
                    storage_url=shared, display=shown.append)
    trials = optuna.load_study(study_name="hpo_tiny", storage=url).get_trials(deepcopy=False)
    assert table["number"].tolist() == [t.number for t in trials]
    assert table["state"].tolist() == [t.state.name for t in trials]
    assert table["value"].fillna(-1).tolist() == [-1 if t.value is None else t.value
                                                  for t in trials]
    assert table["param_learning_rate"].tolist() == [t.params["learning_rate"] for t in trials]
    assert [c for c in table.columns if c.startswith("param_")] == [  # suggestion order
        f"param_{k}" for k in trials[0].params]
    assert table["interrupted"].sum() == sum(bool(t.user_attrs.get("interrupted"))
                                             for t in trials)
    tables = [x for x in shown if hasattr(x, "columns") and "state" in x.columns]
    assert [len(t) for t in tables] == [20, 20]  # the best 20 and the latest 20
    assert tables[0]["number"].iloc[0] == best.number
    assert tables[1]["number"].iloc[-1] == N - 1
    titles = [ax.get_title() for x in shown if hasattr(x, "savefig") for ax in x.axes]
    assert "hpo_tiny: validation F1 (strict) by trial" in titles
    assert "hpo_tiny: learning curves of the 10 best and 10 latest trials (x: pruned)" in titles
    with no_full_reads():
        outcome = run_sweep(more, output_dir=project.output_dir, storage_url=shared,
                            fit=stub_fit)
        after = status(more, **where)
    assert outcome.trials_run >= 1
    counts_after, best_after = _full_load(url)
    _check(after, counts_after, best_after)
    assert counts_after["COMPLETE"] == counts["COMPLETE"] + 1
    if shared is None:  # one SQLite process: the dead session's trials are recovered
        assert sorted(outcome.recovered) == list(range(N - RUNNING, N))
        assert counts_after["RUNNING"] == 0
