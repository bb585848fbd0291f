"""Moving a search between machines: an earlier run's output continued here
(``--resume-from``, ``resume_from:``, a Kaggle version's output attached to the next one) and
the study bundle (``bundle export``/``import``).

The files move as :mod:`~hpo_helpers.storage.earlier` and :mod:`~hpo_helpers.storage.bundle`
describe; this module decides what moves: which study (the config's, for one backbone), from
where, whether it may replace the study already here, and whether MLflow's store may be
written (not while a tracking set-up has it open).

Rules, in the order they apply:

- a folder named by ``--resume-from`` (relative: to the current folder) wins over the
  config's ``resume_from:`` (relative: to the project folder); a named folder that does not
  hold the study is one error line;
- on Kaggle with nothing named, and no study in ``/kaggle/working``, the newest study of this
  backbone among the attached folders (``/kaggle/input/*/``, our layout or the original
  tool's) is used: most finished trials, then the newest trial; the log names it;
- nothing moves while a sweep runs this study (its lock), nor when this output already
  continued from the same earlier study (``<study file>.earlier.json``);
- an earlier study replaces the one here only with more finished trials and the same
  fingerprint; otherwise the log says why nothing was copied (never newer work overwritten).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from ..core.errors import BundleError, ConfigError
from ..core.filelocks import holder
from ..core.runtime import KAGGLE, Runtime, detect
from ..data.dataset import load_data
from ..settings.config import Configs
from ..settings.schema import FINGERPRINT, study_name
from ..storage import bundle
from ..storage.earlier import (
    Earlier,
    Target,
    choose,
    find,
    judge,
    place,
    present,
    record,
    recorded,
    stage_files,
    staging_folder,
)
from ..storage.layout import earlier_output_roots, kaggle_inputs, lock_file
from ..storage.paths import mlflow_db_paths
from ..study.status import (
    durable_url_for,
    resume_from_folder,
    storage_url_for,
    study_paths,
)
from ..study.store import archive_study, fingerprint, fingerprint_change

__all__ = ["export_bundle", "import_bundle", "take_earlier_output", "target_for"]

logger = logging.getLogger(__name__)


def target_for(cfg: Configs, *, backbone: str | None = None, output_dir: Path | str | None = None,
               runtime: Runtime | None = None, durable_url: str | None = None,
               cwd: Path | str | None = None, mlflow: bool = True) -> Target:
    """This machine's side of a move: the study's folders and, with ``mlflow``, the local
    MLflow store (``cwd``: the folder whose ``mlruns/`` a local run uses)."""
    runtime = runtime or detect()
    name = backbone or cfg.hpo.backbone
    bucket = durable_url_for(cfg.hpo, durable_url)
    paths = study_paths(cfg, backbone=name, output_dir=output_dir, runtime=runtime,
                        durable_url=durable_url)
    store = mlflow_db_paths(runtime, cwd=cwd, durable_url=bucket) if mlflow else None
    return Target(paths, study_name(name, cfg.hpo.study_name), store)


def _not_found(folder: Path, how: str, target: Target) -> ConfigError:
    rel = target.paths.durable_db.relative_to(target.paths.durable_dir)
    where = ", ".join(str(Path(*p, rel)) if p else str(rel) for p in earlier_output_roots()[:4])
    if not folder.is_dir():
        return ConfigError(f"{how} {str(folder)!r} is not a folder. Fix: name the folder that "
                           "holds the earlier run's output (on Kaggle: /kaggle/input/<name>; "
                           "check that it is attached).")
    return ConfigError(f"{how} {str(folder)!r} holds no study {target.study_name} (looked for "
                       f"{where} and the original tool's layout). Fix: name the folder that "
                       "holds the earlier run's output, or pass the --backbone it ran.")


def take_earlier_output(cfg: Configs, resume_from: Path | str | None = None, *,
                        backbone: str | None = None, output_dir: Path | str | None = None,
                        runtime: Runtime | None = None, durable_url: str | None = None,
                        cwd: Path | str | None = None, mlflow: bool = True) -> str | None:
    """Before a run: continue from an earlier run's output (see the module docstring).

    ``mlflow``: MLflow's local store may be written (no tracking set-up has it open yet).
    Returns the earlier study file used, or None when nothing was copied."""
    runtime = runtime or detect()
    named = resume_from_folder(cfg, resume_from, cwd)
    if not cfg.hpo.checkpoint.enabled or storage_url_for(cfg.hpo):
        if named:
            logger.warning("%s is ignored: %s", named[1], "the study is shared (storage_url)"
                           if cfg.hpo.checkpoint.enabled else "checkpoint.enabled is false")
        return None
    if named is None and runtime.kind != KAGGLE:
        return None
    target = target_for(cfg, backbone=backbone, output_dir=output_dir, runtime=runtime,
                        durable_url=durable_url, cwd=cwd, mlflow=mlflow)
    if holder(lock_file(target.paths.working_db)) is not None:
        return None  # a sweep runs this study: it refuses to open anyway; nothing moves
    here = present(target) is not None or target.paths.durable_db.exists()
    if named is not None:
        earlier = find(named[0], target) if named[0].is_dir() else None
        if earlier is None and not here:  # a new study would start where one was asked for
            raise _not_found(named[0], named[1], target)
        if earlier is None:
            logger.warning("%s (%s) does not hold the earlier study (any more): the study in %s "
                           "is continued as it is", named[1], named[0], target.paths.durable_db)
            return None
        candidates = [earlier]
    elif here:
        return None  # Kaggle: /kaggle/working has a study: it is continued as it is
    else:
        candidates = [e for folder in kaggle_inputs(runtime.root)
                      if (e := find(folder, target)) is not None]
    if not candidates or any(recorded(target, e) for e in candidates):
        if candidates:
            logger.debug("This output already continued from %s", candidates[0].db)
        return None
    staging = staging_folder(target.paths.durable_dir)
    try:
        return _take(target, candidates, staging, mlflow, kaggle=named is None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _take(target: Target, candidates: list[Earlier], staging: Path, mlflow: bool, *,
          kaggle: bool) -> str | None:
    chosen = choose(candidates, target, staging)
    if chosen is None:
        return None
    earlier, incoming, others = chosen
    why_not = judge(incoming.facts, present(target), FINGERPRINT)
    if why_not:
        logger.warning("The earlier study %s is not copied over the study in %s: %s",
                       earlier.db, target.paths.durable_db, why_not)
        return None
    stage_files(earlier, incoming, target)
    n_files = len(incoming.files)  # the study file included
    mlflow_too = mlflow and target.mlflow_key in incoming.files
    moved = place(incoming, target, mlflow=mlflow)
    record(target, earlier, incoming.facts)
    if kaggle:
        logger.info("Kaggle: %s holds no study; continuing from the attached output %s%s",
                    target.paths.durable_dir, earlier.folder,
                    f" (the newest; also attached: {', '.join(others)})" if others else "")
    logger.info("Continuing from the earlier output %s (%d finished trial(s)): copied to %s, "
                "%d file(s) with %d checkpoint(s)%s, verified%s", earlier.db,
                incoming.facts.finished, target.paths.durable_db, n_files,
                incoming.checkpoints, " and MLflow's store" if mlflow_too else "",
                f"; set aside: {', '.join(moved)}" if moved else "")
    if incoming.skipped:
        logger.warning("Not copied (damaged in the earlier output): %s",
                       ", ".join(incoming.skipped[:10]))
    return str(earlier.db)


def export_bundle(cfg: Configs, path: Path | str, *, backbone: str | None = None,
                  output_dir: Path | str | None = None,
                  runtime: Runtime | None = None) -> dict[str, Any]:
    """Write the study's bundle to ``path`` (see ``storage.bundle``); returns its manifest."""
    target = target_for(cfg, backbone=backbone, output_dir=output_dir, runtime=runtime)
    manifest = bundle.export(target, Path(path), fingerprint_key=FINGERPRINT)
    if target.mlflow_key not in manifest["files"] and target.mlflow is not None:
        logger.info("No MLflow store at %s: the bundle carries the study only", target.mlflow[0])
    return manifest


def import_bundle(cfg: Configs, path: Path | str, *, backbone: str | None = None,
                  output_dir: Path | str | None = None, runtime: Runtime | None = None,
                  new_study: bool = False, dataset_path: Path | str | None = None,
                  split_files: dict[str, Any] | None = None) -> dict[str, Any]:
    """Import a bundle into this machine's study folder; every check runs before anything is
    written (:class:`BundleError`, one line, when one fails). ``new_study``: a bundle of
    another search space or data is imported too, and set aside at once (archived, as "Start
    fresh" does), so the next run starts a new study beside it."""
    path = Path(path)
    manifest = bundle.check(path)  # the whole archive, read; nothing written
    target = target_for(cfg, backbone=backbone, output_dir=output_dir, runtime=runtime)
    if manifest["study_name"] != target.study_name:
        raise BundleError(f"bundle {path} holds study {manifest['study_name']}; this config's "
                          f"study is {target.study_name}. Fix: pass the --backbone it ran (or "
                          f"set study_name: {manifest['study_name']}).")
    if not new_study:
        dataset = load_data(cfg, dataset_path, split_files)
        change = fingerprint_change(manifest.get("fingerprint"),
                                    fingerprint(cfg.hpo, dataset.fingerprint))
        if change:
            raise BundleError(f"bundle {path} was made for another search: {change}. Fix: "
                              "import it with the config and data it was made with, or pass "
                              "--new-study to keep it aside and start a new study.")
    _check_here(target, path, int(manifest.get("finished") or 0))
    staging = staging_folder(target.paths.durable_dir, bundle.STAGING)
    try:
        incoming = bundle.unpack(path, target, staging)
        stored = incoming.facts.attrs.get(FINGERPRINT)
        if json.dumps(stored, sort_keys=True) != json.dumps(manifest.get("fingerprint"),
                                                            sort_keys=True):
            raise BundleError(f"bundle {path} is damaged: its study's fingerprint is not the "
                              "one its manifest lists. Nothing was imported.")
        moved = place(incoming, target, mlflow=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Imported bundle %s: study %s (%d finished trials) into %s%s", path,
                target.study_name, incoming.facts.finished, target.paths.durable_db,
                f"; set aside: {', '.join(moved)}" if moved else "")
    if new_study:
        archive_study(target.paths, target.study_name)
        logger.info("--new-study: the imported study is kept aside (*.archived-<time>); the "
                    "next run starts a new study")
    return {**manifest, "set_aside": moved, "target": str(target.paths.durable_db)}


def _check_here(target: Target, path: Path, finished: int) -> None:
    """Refuse to write over a running sweep or a study with more finished trials."""
    running = holder(lock_file(target.paths.working_db))
    if running is not None:
        raise BundleError(f"a sweep is running the study in {target.paths.durable_db} "
                          f"({running}). Fix: stop it first, then import.")
    here = present(target)
    if here is not None and here.finished > finished:
        raise BundleError(f"the study in {target.paths.durable_db} has {here.finished} finished "
                          f"trials, bundle {path} {finished}: not overwritten. Fix: export this "
                          "one instead, or import into another --output-dir.")
