"""The read-only side: where a study stands and what a run would do, without its lock.

``inspection`` and ``widgets`` read studies through this module; nothing here writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.redaction import mask
from ..core.runtime import Runtime, detect
from ..settings.config import Configs, HpoConfig
from ..settings.schema import (
    CREATED_AT,
    DATA,
    FOLD_F1,
    FOLD_F1_STD,
    LEARNED_NOTHING,
    LEARNED_NOTHING_BELOW,
    MAX_TRIALS,
    REFIT,
    RUN_INPUTS,
    TEST_SCORES,
    study_name,
)
from ..storage.paths import StudyPaths, resolve

if TYPE_CHECKING:
    import optuna

__all__ = ["best_learned_nothing", "durable_url_for", "earlier_copy", "learned_nothing_warning",
           "plan", "resume_from_folder", "status", "storage_url_for", "study_paths"]


def learned_nothing_warning(trial: int, value: float | None) -> str:
    """The one line that says a study's best trial learned nothing (issue 21): the sweep's last
    warning, ``status`` and the notebook panel show it."""
    score = "no score" if value is None else f"validation F1 {value:.4f}"
    return (f"Learned nothing: the best trial ({trial}, {score}) stayed below "
            f"{LEARNED_NOTHING_BELOW}, where random or all-O predictions land. Likely causes: "
            "a learning rate too low or too high, too few epochs, or labels that do not match "
            "the data (no entities, or types the data lacks). Try: the preset "
            "config/hpo/resumes.yaml, more epochs, a learning-rate range such as 1e-4 to 1e-3, "
            "and check the data summary of `python -m hpo_helpers status` (entities per "
            "split); see the README, Troubleshooting, \"Learned nothing\".")


def best_learned_nothing(study: optuna.Study) -> str | None:
    """:func:`learned_nothing_warning` for ``study`` when its best trial learned nothing, else
    None (one targeted read: the best trial)."""
    from .queries import best_trial

    best = best_trial(study)
    if best is None or not best.user_attrs.get(LEARNED_NOTHING):
        return None
    return learned_nothing_warning(best.number, best.value)


def storage_url_for(hpo: HpoConfig, override: str | None = None) -> str | None:
    """The shared storage URL: CLI/API ``override``, else ``HPO_STORAGE_URL``, else config."""
    from ..core.redaction import register_url_secret
    from ..core.runtime import environ
    from ..settings.config import check_storage_url

    url = override or environ().get("HPO_STORAGE_URL") or hpo.storage_url
    register_url_secret(url)  # masked wherever it turns up from now on
    return check_storage_url(hpo.source, url) if url else None


def durable_url_for(hpo: HpoConfig, override: str | None = None) -> str | None:
    """The bucket that holds the durable copy: CLI/API ``override``, else ``HPO_DURABLE_URL``,
    else the config's ``durable_url`` (None: the runtime's durable folder)."""
    from ..core.runtime import environ
    from ..settings.config import check_durable_url

    env = environ().get("HPO_DURABLE_URL")
    url = override or env or hpo.durable_url
    if not url:
        return None
    source = "--durable-url" if override else "HPO_DURABLE_URL" if env else hpo.source
    return check_durable_url(source, url)


def resume_from_folder(cfg: Configs, resume_from: Path | str | None = None,
                       cwd: Path | str | None = None) -> tuple[Path, str] | None:
    """The earlier output to continue from and how it was named: ``resume_from``
    (``--resume-from``: relative to ``cwd``, default the current folder) wins over the
    config's ``resume_from`` (relative to the project folder); None when neither is set."""
    import os

    if resume_from:
        return Path(os.path.abspath(Path(cwd or Path.cwd()) / Path(resume_from))), \
            "--resume-from"
    if cfg.hpo.resume_from:
        project = cfg.config_dir.absolute().parent
        return Path(os.path.abspath(project / Path(cfg.hpo.resume_from))), \
            f"resume_from in {cfg.hpo.source}"
    return None


def earlier_copy(cfg: Configs, paths: StudyPaths, runtime: Runtime, name: str,
                 resume_from: Path | str | None = None) -> tuple[Path, str] | None:
    """``(local copy, its source)`` of the earlier study a run would continue here (named, or
    on Kaggle the furthest-along attached one), for reading; None when there is none. The
    copy is checked and private to this process; nothing here is written."""
    from ..core.runtime import KAGGLE
    from ..storage.earlier import Target, choose, find
    from ..storage.layout import kaggle_inputs
    from ..storage.snapshot import read_copy_folder

    named = resume_from_folder(cfg, resume_from)
    target = Target(paths, name)
    if named is not None:
        candidates = [e for e in [find(named[0], target)] if e] if named[0].is_dir() else []
    elif runtime.kind == KAGGLE:
        candidates = [e for f in kaggle_inputs(runtime.root) if (e := find(f, target))]
    else:
        return None
    chosen = choose(candidates, target, read_copy_folder("earlier")) if candidates else None
    if chosen is None:
        return None
    return chosen[1].files[target.study_key], str(chosen[0].db)


def study_paths(cfg: Configs, *, backbone: str | None = None,
                output_dir: Path | str | None = None,
                runtime: Runtime | None = None,
                durable_url: str | None = None) -> StudyPaths:
    """The study's resolved folders on ``runtime`` (resolve once per call, pass it down)."""
    return resolve(runtime or detect(), backbone=backbone or cfg.hpo.backbone,
                   storage_path=cfg.hpo.checkpoint.storage_path, output_dir=output_dir,
                   durable_url=durable_url_for(cfg.hpo, durable_url))


def _empty(cfg: Configs, name: str, backbone: str, enabled: bool) -> dict[str, Any]:
    return {"study_name": name, "backbone": backbone, "checkpoint_enabled": enabled,
            "checkpoint_path": None, "exists": False, "max_trials": cfg.hpo.max_trials,
            "config_max_trials": cfg.hpo.max_trials,
            "n_trials": 0, "n_complete": 0, "n_running": 0, "n_failed": 0, "n_pruned": 0,
            "n_waiting": 0, "n_interrupted": 0, "n_oom": 0, "n_learned_nothing": 0,
            "running": [], "best_value": None, "best_params": None, "best_trial": None,
            "best_learned_nothing": False}


def _describe(study: optuna.Study, out: dict[str, Any]) -> None:
    from optuna.trial import TrialState

    from ..settings.schema import DEVICE, RETRY_OF
    from .queries import (
        best_trial,
        interrupted_numbers,
        learned_nothing_numbers,
        oom_numbers,
        state_counts,
        trials_in,
    )

    counts = state_counts(study)  # targeted reads: never every trial (see queries)
    out.update(exists=True, n_trials=sum(counts.values()), n_complete=counts["COMPLETE"],
               n_running=counts["RUNNING"], n_failed=counts["FAIL"], n_pruned=counts["PRUNED"],
               n_waiting=counts["WAITING"], n_interrupted=len(interrupted_numbers(study)),
               n_oom=len(oom_numbers(study)),
               n_learned_nothing=len(learned_nothing_numbers(study)),
               running=[{"trial": t.number, "device": t.user_attrs.get(DEVICE),
                         "retry_of": t.user_attrs.get(RETRY_OF),
                         "started": t.datetime_start.isoformat() if t.datetime_start else None}
                        for t in trials_in(study, (TrialState.RUNNING,))])
    best = best_trial(study) if counts["COMPLETE"] else None
    if best is not None:
        out.update(best_value=best.value, best_params=best.params, best_trial=best.number,
                   best_learned_nothing=bool(best.user_attrs.get(LEARNED_NOTHING)))
        if FOLD_F1 in best.user_attrs:  # k-fold: the best trial's per-fold scores and spread
            out.update(best_fold_f1=best.user_attrs[FOLD_F1],
                       best_fold_f1_std=best.user_attrs.get(FOLD_F1_STD))
    _describe_results(study.user_attrs, out)


def _describe_rungs(hpo: HpoConfig, study: optuna.Study, out: dict[str, Any]) -> None:
    """Scheduler hyperband: configurations started (what ``max_trials`` counts) and, per
    rung, the chains that reached it, wait there paused and were promoted from it."""
    from .halving import occupancy, rungs_of, view

    rungs = rungs_of(hpo)
    if rungs is None:
        return
    out["scheduler"] = "hyperband"
    out["configurations_started"] = len(view(study, rungs).started)
    out["rungs"] = occupancy(study, rungs)


def _describe_population(hpo: HpoConfig, study: optuna.Study, out: dict[str, Any]) -> None:
    """Scheduler pbt: members started (what ``max_trials`` counts) and one row per member:
    the epoch it has reached, its latest score, its exploits, its state and params."""
    from .population import members, population_of, view

    pop = population_of(hpo)
    if pop is None:
        return
    v = view(study, pop)
    rows = members(v)
    out.update(scheduler="pbt", configurations_started=len(v.started),
               population=rows, pbt_failed=sum(r["state"] == "failed" for r in rows),
               pbt_done=sum(r["state"] == "done" for r in rows),
               pbt_exploits=sum(r["exploits"] for r in rows))


def _describe_results(attrs: dict[str, Any], out: dict[str, Any]) -> None:
    """Data summary, test scores (all kept models; the best trial's apart) and the refit."""
    out["created_at"] = attrs.get(CREATED_AT)
    if attrs.get(MAX_TRIALS) is not None:  # a notebook or --max-trials raised the budget:
        # COMPLETE is counted against the larger one (never "8/3"); a lower one given once
        # does not hide the config's, which a plain re-run still continues to
        out["max_trials"] = max(int(attrs[MAX_TRIALS]), out["max_trials"])
    if DATA in attrs:
        out["data"] = attrs[DATA]
    out["refit"] = attrs.get(REFIT)
    out["run_inputs"] = attrs.get(RUN_INPUTS) or {}  # data files and devices given to run
    tested = attrs.get(TEST_SCORES) or {}
    out["test_scores"] = tested
    best = tested.get(str(out["best_trial"])) if out["best_trial"] is not None else None
    out["test_f1"] = best["f1"] if best else None
    out["test_macro_f1"] = best["macro_f1"] if best else None
    out["test_per_entity"] = {k: v["f1"] for k, v in best["per_type"].items()} if best else None


def status(cfg: Configs, *, backbone: str | None = None, output_dir: Path | str | None = None,
           runtime: Runtime | None = None, storage_url: str | None = None,
           paths: StudyPaths | None = None, durable_url: str | None = None,
           resume_from: Path | str | None = None) -> dict[str, Any]:
    """Where a study stands, read without taking its lock (safe while a sweep runs).

    For a shared study (``storage_url``) it also lists ``workers``: the running trials with
    their worker (host:pid) and heartbeat age. Passwords in URLs are masked. ``paths`` saves
    resolving again when the caller has them. With a bucket (``durable_url``) and no study on
    this machine, the bucket's snapshot is read from a private local copy. With no study here
    and an earlier output a run would continue (``resume_from``, the config's, or on Kaggle an
    attached one), that study is read from a private local copy and ``earlier_output`` names
    it.
    """
    import optuna
    import sqlalchemy.exc

    from .store import reader_storage, unreadable_database

    hpo = cfg.hpo
    name_bb = backbone or hpo.backbone
    name = study_name(name_bb, hpo.study_name)
    url = storage_url_for(hpo, storage_url)
    out = _empty(cfg, name, name_bb, hpo.checkpoint.enabled or bool(url))
    shared = None
    if url:
        from .distributed import SharedStudy

        out["checkpoint_path"] = mask(url)
        storage = reader_storage(url)  # read-only: a reader never creates tables
        if storage is None:
            return out
        shared = SharedStudy(storage, name)
    elif not hpo.checkpoint.enabled:
        return out
    else:
        paths = paths or study_paths(cfg, backbone=name_bb, output_dir=output_dir,
                                     runtime=runtime, durable_url=durable_url)
        out["checkpoint_path"] = str(paths.durable_db)
        db = paths.working_db if paths.working_db.exists() else paths.durable_db
        if not db.exists() and paths.durable_url:
            from ..storage.bucket import read_copy

            db, out["checkpoint_path"] = read_copy(paths)
        if not db.exists() and (earlier := earlier_copy(cfg, paths, runtime or detect(), name,
                                                        resume_from)):
            db, out["earlier_output"] = earlier
        storage = reader_storage(db)
        if storage is None:
            return out
    try:
        if name not in optuna.get_all_study_names(storage):
            return out
        study = optuna.load_study(study_name=name, storage=storage)
        _describe(study, out)
        _describe_rungs(hpo, study, out)
        _describe_population(hpo, study, out)
    except (ValueError, optuna.exceptions.StorageInternalError,
            sqlalchemy.exc.SQLAlchemyError) as exc:
        # damage that passes SQLite's own check (a stored attribute that is not JSON): one
        # line, and the next run sets the file aside
        raise unreadable_database(url or db, f"{type(exc).__name__}: {exc}") from None
    if shared is not None:
        out["workers"] = shared.workers()
    return out


def plan(cfg: Configs, *, backbone: str | None = None, output_dir: Path | str | None = None,
         runtime: Runtime | None = None, storage_url: str | None = None) -> dict[str, Any]:
    """What a run would do now (the resume panel's text), read without taking the lock."""
    from .store import lock_holder

    paths = None
    if cfg.hpo.checkpoint.enabled and not storage_url_for(cfg.hpo, storage_url):
        paths = study_paths(cfg, backbone=backbone, output_dir=output_dir, runtime=runtime)
    info = status(cfg, backbone=backbone, output_dir=output_dir, runtime=runtime,
                  storage_url=storage_url, paths=paths)
    holder = lock_holder(paths.working_db) if paths else None
    max_trials = info["max_trials"] = cfg.hpo.max_trials  # what a run would do now
    if info.get("workers"):
        action = (f"Shared study: {info['n_complete']} of {max_trials} trials complete, "
                  f"{len(info['workers'])} running on other workers")
    elif holder:
        action = f"A sweep is running this study ({holder})"
    elif not info["exists"]:
        action = f"New study {info['study_name']}: 0 of {max_trials} trials"
    elif info.get("scheduler") == "hyperband":  # max_trials counts configurations started
        action = (f"Resume: {info['configurations_started']} of {max_trials} configurations "
                  "started; " + "; ".join(
                      f"rung {r['rung']}: {r['reached']} reached, {r['paused']} waiting, "
                      f"{r['promoted']} promoted" for r in info["rungs"]))
    elif info.get("scheduler") == "pbt" and info["pbt_done"] + info["pbt_failed"] >= max_trials:
        action = (f"PBT complete: {info['pbt_done']} of {max_trials} members have trained "
                  "their epochs" + (f", {info['pbt_failed']} failed" if info["pbt_failed"]
                                    else ""))
    elif info.get("scheduler") == "pbt":  # max_trials counts members
        action = (f"Resume: {info['configurations_started']} of {max_trials} PBT members "
                  f"started, {info['pbt_done']} done; epochs reached " + ", ".join(
                      str(r["epoch"]) for r in info["population"]))
    elif info["n_complete"] >= max_trials:
        action = f"All {max_trials} trials already complete"
    else:
        action = f"Resume: {info['n_complete']} of {max_trials} trials complete"
    info.update(action=action, running_elsewhere=holder,
                stale=0 if holder else info["n_running"],
                working_path=str(paths.working_db) if paths else info["checkpoint_path"],
                durable_path=str(paths.durable_db) if paths else info["checkpoint_path"])
    return info
