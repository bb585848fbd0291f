"""The read-only side: where a study stands and what a run would do, without its lock.

``inspection`` and ``widgets`` read studies through this module; nothing here writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Configs, HpoConfig
from .paths import StudyPaths, resolve
from .redaction import mask
from .runtime import Runtime, detect
from .schema import CREATED_AT, DATA, FOLD_F1, FOLD_F1_STD, REFIT, TEST_SCORES, study_name

if TYPE_CHECKING:
    import optuna

__all__ = ["plan", "status", "storage_url_for", "study_paths"]


def storage_url_for(hpo: HpoConfig, override: str | None = None) -> str | None:
    """The shared storage URL: CLI/API ``override``, else ``HPO_STORAGE_URL``, else config."""
    from .config import check_storage_url
    from .redaction import register_url_secret
    from .runtime import environ

    url = override or environ().get("HPO_STORAGE_URL") or hpo.storage_url
    register_url_secret(url)  # masked wherever it turns up from now on (issue 11)
    return check_storage_url(hpo.source, url) if url else None


def study_paths(cfg: Configs, *, backbone: str | None = None,
                output_dir: Path | str | None = None,
                runtime: Runtime | None = None) -> StudyPaths:
    """The study's resolved folders on ``runtime`` (resolve once per call, pass it down)."""
    return resolve(runtime or detect(), backbone=backbone or cfg.hpo.backbone,
                   storage_path=cfg.hpo.checkpoint.storage_path, output_dir=output_dir)


def _empty(cfg: Configs, name: str, backbone: str, enabled: bool) -> dict[str, Any]:
    return {"study_name": name, "backbone": backbone, "checkpoint_enabled": enabled,
            "checkpoint_path": None, "exists": False, "max_trials": cfg.hpo.max_trials,
            "n_trials": 0, "n_complete": 0, "n_running": 0, "n_failed": 0, "n_pruned": 0,
            "n_waiting": 0, "n_interrupted": 0, "n_oom": 0, "running": [], "best_value": None,
            "best_params": None, "best_trial": None}


def _describe(study: optuna.Study, out: dict[str, Any]) -> None:
    from optuna.trial import TrialState

    from .queries import best_trial, interrupted_numbers, oom_numbers, state_counts, trials_in
    from .schema import DEVICE, RETRY_OF

    counts = state_counts(study)  # targeted reads: never every trial (see queries)
    out.update(exists=True, n_trials=sum(counts.values()), n_complete=counts["COMPLETE"],
               n_running=counts["RUNNING"], n_failed=counts["FAIL"], n_pruned=counts["PRUNED"],
               n_waiting=counts["WAITING"], n_interrupted=len(interrupted_numbers(study)),
               n_oom=len(oom_numbers(study)),
               running=[{"trial": t.number, "device": t.user_attrs.get(DEVICE),
                         "retry_of": t.user_attrs.get(RETRY_OF),
                         "started": t.datetime_start.isoformat() if t.datetime_start else None}
                        for t in trials_in(study, (TrialState.RUNNING,))])
    best = best_trial(study) if counts["COMPLETE"] else None
    if best is not None:
        out.update(best_value=best.value, best_params=best.params, best_trial=best.number)
        if FOLD_F1 in best.user_attrs:  # k-fold: the best trial's per-fold scores and spread
            out.update(best_fold_f1=best.user_attrs[FOLD_F1],
                       best_fold_f1_std=best.user_attrs.get(FOLD_F1_STD))
    _describe_results(study.user_attrs, out)


def _describe_results(attrs: dict[str, Any], out: dict[str, Any]) -> None:
    """Data summary, test scores (all kept models; the best trial's apart) and the refit."""
    out["created_at"] = attrs.get(CREATED_AT)
    if DATA in attrs:
        out["data"] = attrs[DATA]
    out["refit"] = attrs.get(REFIT)
    tested = attrs.get(TEST_SCORES) or {}
    out["test_scores"] = tested
    best = tested.get(str(out["best_trial"])) if out["best_trial"] is not None else None
    out["test_f1"] = best["f1"] if best else None
    out["test_macro_f1"] = best["macro_f1"] if best else None
    out["test_per_entity"] = {k: v["f1"] for k, v in best["per_type"].items()} if best else None


def status(cfg: Configs, *, backbone: str | None = None, output_dir: Path | str | None = None,
           runtime: Runtime | None = None, storage_url: str | None = None,
           paths: StudyPaths | None = None) -> dict[str, Any]:
    """Where a study stands, read without taking its lock (safe while a sweep runs).

    For a shared study (``storage_url``) it also lists ``workers``: the running trials with
    their worker (host:pid) and heartbeat age. Passwords in URLs are masked. ``paths`` saves
    resolving again when the caller has them.
    """
    import optuna
    import sqlalchemy.exc

    from .study import reader_storage, unreadable_database

    hpo = cfg.hpo
    name_bb = backbone or hpo.backbone
    name = study_name(name_bb, hpo.study_name)
    url = storage_url_for(hpo, storage_url)
    out = _empty(cfg, name, name_bb, hpo.checkpoint.enabled or bool(url))
    shared = None
    if url:
        from .distributed import SharedStudy

        out["checkpoint_path"] = mask(url)
        storage = reader_storage(url)  # read-only: a reader never creates tables (#11)
        if storage is None:
            return out
        shared = SharedStudy(storage, name)
    elif not hpo.checkpoint.enabled:
        return out
    else:
        paths = paths or study_paths(cfg, backbone=name_bb, output_dir=output_dir,
                                     runtime=runtime)
        out["checkpoint_path"] = str(paths.durable_db)
        db = paths.working_db if paths.working_db.exists() else paths.durable_db
        storage = reader_storage(db)
        if storage is None:
            return out
    try:
        if name not in optuna.get_all_study_names(storage):
            return out
        _describe(optuna.load_study(study_name=name, storage=storage), out)
    except (ValueError, optuna.exceptions.StorageInternalError,
            sqlalchemy.exc.SQLAlchemyError) as exc:
        # damage that passes SQLite's own check (a stored attribute that is not JSON): one
        # line, and the next run sets the file aside (issue 11, finding 7)
        raise unreadable_database(url or db, f"{type(exc).__name__}: {exc}") from None
    if shared is not None:
        out["workers"] = shared.workers()
    return out


def plan(cfg: Configs, *, backbone: str | None = None, output_dir: Path | str | None = None,
         runtime: Runtime | None = None, storage_url: str | None = None) -> dict[str, Any]:
    """What a run would do now (the resume panel's text), read without taking the lock."""
    from .study import lock_holder

    paths = None
    if cfg.hpo.checkpoint.enabled and not storage_url_for(cfg.hpo, storage_url):
        paths = study_paths(cfg, backbone=backbone, output_dir=output_dir, runtime=runtime)
    info = status(cfg, backbone=backbone, output_dir=output_dir, runtime=runtime,
                  storage_url=storage_url, paths=paths)
    holder = lock_holder(paths.working_db) if paths else None
    max_trials = cfg.hpo.max_trials
    if info.get("workers"):
        action = (f"Shared study: {info['n_complete']} of {max_trials} trials complete, "
                  f"{len(info['workers'])} running on other workers")
    elif holder:
        action = f"A sweep is running this study ({holder})"
    elif not info["exists"]:
        action = f"New study {info['study_name']}: 0 of {max_trials} trials"
    elif info["n_complete"] >= max_trials:
        action = f"All {max_trials} trials already complete"
    else:
        action = f"Resume: {info['n_complete']} of {max_trials} trials complete"
    info.update(action=action, running_elsewhere=holder,
                stale=0 if holder else info["n_running"],
                working_path=str(paths.working_db) if paths else info["checkpoint_path"],
                durable_path=str(paths.durable_db) if paths else info["checkpoint_path"])
    return info
