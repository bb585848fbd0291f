"""An earlier run's output as the start of this run: a folder named by ``--resume-from``
(``resume_from:``), a Kaggle version's output attached to the next version, an unpacked or
imported bundle.

Files are named by the bucket's keys (:func:`~.bucket.study_sync_plan`): ``hpo/<study
folder>/...``, ``hpo/.backbones/...`` and ``mlruns/mlflow.db``, so a folder, a bundle and a
bucket hold the same things under the same names, and a key maps onto this machine's study
through its own :class:`Target`.

How an earlier study comes in, so that a kill at any moment leaves the study here whole:

1. :func:`find` looks for the study file in the folder's known layouts
   (:func:`~.layout.earlier_output_roots`: an output folder, Drive's ``resume-ner-checkpoints``,
   a Kaggle version's ``/kaggle/working``, a project folder, an unpacked bundle, the seed's);
2. :func:`stage_study` copies the study file (with its ``-wal``: a killed session's last
   changes) into a staging folder beside the output (the same file system) and checks it there
   (SQLite's integrity check; SQLite never opens the source, which is read-only or on Drive);
3. the caller judges it against the study already here (:func:`judge`): an earlier study with
   no more finished trials than this one, or made for another search, is never copied over it;
4. :func:`stage_files` copies the newest complete checkpoint of every trial (and fold) folder,
   the kept models, the tokenizer cache and the MLflow store into staging, each verified: the
   bytes written against the bytes read, checkpoints against their own checksums
   (``checkpoints.verify``), and every file against an unpacked bundle's ``manifest.json``;
5. :func:`place` moves it all into place with ``os.replace`` (what it replaces is set aside as
   ``.stale-<time>``, never deleted), the study file last; the caller then writes
   :func:`record` (``<study file>.earlier.json``), so a second run with the same source copies
   nothing. A kill before the study file is in place leaves the next run to copy again;
   staging folders of dead processes are removed (:func:`staging_folder`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import CheckpointError
from .bucket import EARLIER_SUFFIX, SyncPlan, local_files, remove_leftovers, study_sync_plan
from .checkpoints import MARKER, verify
from .durable import copy_bytes, fsync_dir, set_aside, sha256, write_file
from .layout import (
    BACKBONE_CACHE,
    checkpoint_step,
    earlier_output_roots,
    mlflow_beside,
    on_drive,
    seed_study_beside,
)
from .paths import StudyPaths
from .snapshot import BUSY_TIMEOUT_S, StudyFacts, adopt, readable, study_facts

__all__ = ["Earlier", "Incoming", "Target", "checked_database", "choose", "find", "judge",
           "newest_checkpoints", "place", "present", "record", "recorded", "stage_files",
           "stage_study", "staging_folder", "verify_checkpoints"]

logger = logging.getLogger(__name__)

STAGING = ".earlier.tmp-"  # ``.tmp-<pid>``: the bucket's listing skips it
BUNDLE_MANIFEST = "manifest.json"  # at the top of a bundle (and of an unpacked one)


@dataclass(frozen=True)
class Target:
    """This machine's side: the study's folders, its name, and MLflow's local store as
    ``(working, durable)`` (None: tracking is not this copy's business)."""

    paths: StudyPaths
    study_name: str
    mlflow: tuple[Path, Path] | None = None

    @property
    def plan(self) -> SyncPlan:
        return study_sync_plan(self.paths.durable_dir, self.paths.durable_db,
                               cache_folder=BACKBONE_CACHE,
                               mlflow_db=self.mlflow[1] if self.mlflow else None)

    @property
    def study_key(self) -> str:
        return self.plan.databases[0][1]

    @property
    def mlflow_key(self) -> str | None:
        databases = self.plan.databases
        return databases[1][1] if len(databases) > 1 else None


@dataclass
class Earlier:
    """An earlier output found on disk: its study file, its other files by key (this
    machine's keys), its MLflow store, and the checksums an unpacked bundle lists."""

    folder: Path
    db: Path
    files: dict[str, Path] = field(default_factory=dict)
    mlflow: Path | None = None
    expected: dict[Path, str] = field(default_factory=dict)

    def identity(self) -> str:
        """What says that two runs look at the same earlier study: its file's path and bytes
        (with its ``-wal``)."""
        wal = Path(f"{self.db}-wal")
        return ":".join([str(self.db), sha256(self.db), *([sha256(wal)] if wal.is_file()
                                                           else [])])


@dataclass
class Incoming:
    """An earlier study staged beside the output: the staged files by key (the study file
    included), what the study file says, and where it came from (for the log)."""

    staging: Path
    source: str
    facts: StudyFacts
    files: dict[str, Path] = field(default_factory=dict)
    checkpoints: int = 0
    skipped: list[str] = field(default_factory=list)


def staging_folder(base: Path, kind: str = STAGING) -> Path:
    """A fresh staging folder of this process in ``base`` (the output folder: the same file
    system, so placing is a rename); those that killed processes left there are removed."""
    remove_leftovers(base, kind)
    folder = base / f"{kind}{os.getpid()}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def _source_folders(root: Path, db: Path, target: Target) -> list[tuple[Path, str]]:
    """The earlier output's folders, paired with the keys they map to here."""
    targets = target.plan.folders
    found = [(db.parent, targets[0][1])]
    if len(targets) > 1 and db.parent != root:
        found.append((root / BACKBONE_CACHE, targets[1][1]))
    return found


def find(folder: Path, target: Target) -> Earlier | None:
    """The earlier output of ``target``'s study in ``folder`` (its known layouts, most
    specific first), or None."""
    rel = target.paths.durable_db.relative_to(target.paths.durable_dir)
    roots = earlier_output_roots()
    for parts in roots:
        root = folder.joinpath(*parts)
        seed = parts == roots[-1]
        for db in (root / rel, seed_study_beside(root, target.study_name)):
            if not db.is_file() or db.resolve() == target.paths.durable_db.resolve():
                continue
            found = Earlier(folder, db)
            if not seed:  # the seed's folders hold its own checkpoints: only its study
                plan = SyncPlan(tuple(_source_folders(root, db, target)), (), "", Path())
                found.files = local_files(plan)
                found.mlflow = next((m for m in mlflow_beside(root) if m.is_file()), None)
                found.expected = _bundle_checksums(folder)
            return found
    return None


def _bundle_checksums(folder: Path) -> dict[Path, str]:
    """An unpacked bundle's checksums (file -> SHA-256), empty for any other folder."""
    try:
        manifest = json.loads((folder / BUNDLE_MANIFEST).read_text())
        return {folder / key: entry["sha256"] for key, entry in manifest["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def checked_database(src: Path, dst: Path, study_name: str | None = None,
                     ) -> tuple[str | None, StudyFacts | None]:
    """Copy SQLite file ``src`` (with its ``-wal``, folded in) to ``dst`` and check it with
    SQLite: ``(problem, facts of study_name)``. The check runs on local disk: where ``dst``
    is on Drive, on a local copy that is then copied byte for byte (SQLite never opens a
    Drive file)."""
    if not on_drive(dst):
        problem = adopt(src, dst)
        facts = study_facts(dst, study_name) if study_name and not problem else None
        return problem, facts
    with tempfile.TemporaryDirectory(prefix="hpo-earlier-") as tmp:
        problem, facts = checked_database(src, Path(tmp) / dst.name, study_name)
        if not problem and copy_bytes(Path(tmp) / dst.name, dst) != sha256(dst):
            problem = "the copy differs from what was read"
    return problem, facts


def stage_study(earlier: Earlier, target: Target, staging: Path) -> Incoming | None:
    """Copy the earlier study file (with its ``-wal``) into ``staging`` and check it; None
    (logged) when it is damaged or holds no study of this name."""
    local = staging / target.study_key
    local.parent.mkdir(parents=True, exist_ok=True)
    expected = earlier.expected.get(earlier.db)
    problem, facts = ("checksum does not match the bundle's manifest", None) \
        if expected and sha256(earlier.db) != expected \
        else checked_database(earlier.db, local, target.study_name)
    if facts is None:
        logger.warning("The earlier study %s is not usable (%s): not copied", earlier.db,
                       problem or f"it holds no study {target.study_name}")
        local.unlink(missing_ok=True)
        return None
    return Incoming(staging, str(earlier.db), facts, {target.study_key: local})


def choose(candidates: list[Earlier], target: Target,
           staging: Path) -> tuple[Earlier, Incoming, list[str]] | None:
    """The candidate whose study is furthest along (most finished trials, then the newest
    trial; the first listed on a tie), its study file staged in ``staging/<i>``; the others as
    text for the log. None when none is usable."""
    staged = []
    for i, earlier in enumerate(candidates):
        incoming = stage_study(earlier, target, staging / str(i))
        if incoming is not None:
            staged.append((incoming.facts.finished, incoming.facts.last, -i, earlier, incoming))
    if not staged:
        return None
    staged.sort(key=lambda s: s[:3], reverse=True)
    others = [f"{s[3].db} ({s[0]} finished)" for s in staged[1:]]
    return staged[0][3], staged[0][4], others


def present(target: Target) -> StudyFacts | None:
    """What the study already here says (the live file, else its durable copy read through a
    local copy), or None when there is none."""
    for db in dict.fromkeys((target.paths.working_db, target.paths.durable_db)):
        if db.is_file():
            return study_facts(readable(db) if on_drive(db) else db, target.study_name)
    return None


def judge(incoming: StudyFacts, here: StudyFacts | None, fingerprint_key: str) -> str | None:
    """Why the earlier study must not replace the one here (None: it may). It must hold more
    finished trials than this one, and be made for the same search."""
    if here is None:
        return None
    theirs, ours = incoming.attrs.get(fingerprint_key), here.attrs.get(fingerprint_key)
    if theirs is not None and ours is not None and \
            json.dumps(theirs, sort_keys=True) != json.dumps(ours, sort_keys=True):
        return "it was made for another search space, objective or dataset"
    if incoming.finished <= here.finished:
        return (f"it has {incoming.finished} finished trial(s), the study here "
                f"{here.finished}: it is not newer")
    return None


def newest_checkpoints(files: Mapping[str, Path]) -> dict[str, Path]:
    """``files`` with only the newest complete checkpoint of each trial (or fold) folder:
    ``.../checkpoint-<step>/...`` files of older or unmarked checkpoints are left out."""
    newest: dict[tuple[str, ...], int] = {}
    for key in files:
        parts = tuple(key.split("/"))
        if parts[-1] == MARKER and len(parts) > 1:
            step = checkpoint_step(Path(parts[-2]))
            if step >= 0:
                newest[parts[:-2]] = max(step, newest.get(parts[:-2], -1))
    kept = {}
    for key, path in files.items():
        names = key.split("/")
        at = next((i for i, p in enumerate(names[:-1]) if checkpoint_step(Path(p)) >= 0), None)
        if at is None or newest.get(tuple(names[:at])) == checkpoint_step(Path(names[at])):
            kept[key] = path
    return kept


def stage_files(earlier: Earlier, incoming: Incoming, target: Target) -> None:
    """Copy the earlier output's files into staging, each verified; a damaged checkpoint or
    file is left out and logged (its trial continues from an older checkpoint or epoch 0)."""
    sources = dict(newest_checkpoints(earlier.files))
    if earlier.mlflow is not None and target.mlflow_key is not None:
        sources[target.mlflow_key] = earlier.mlflow
    for key, src in sources.items():
        dst = incoming.staging / key
        dst.parent.mkdir(parents=True, exist_ok=True)
        if key == target.mlflow_key:
            problem = checked_database(src, dst)[0]  # its -wal too; checked on local disk
        else:
            problem = _copy_checked(src, dst, earlier.expected.get(src))
        if problem:
            dst.unlink(missing_ok=True)
            incoming.skipped.append(key)
            logger.error("%s in the earlier output is damaged (%s): not copied", src, problem)
            continue
        incoming.files[key] = dst
    verify_checkpoints(incoming)


def _copy_checked(src: Path, dst: Path, expected: str | None) -> str | None:
    written = copy_bytes(src, dst)
    if expected is not None and written != expected:
        return "checksum does not match the bundle's manifest"
    if sha256(dst) != written:
        return "the copy differs from what was read"
    return None


def verify_checkpoints(incoming: Incoming) -> None:
    """Check every staged checkpoint against its own checksums; a bad one is dropped."""
    folders = {path.parent for key, path in incoming.files.items()
               if key.rsplit("/", 1)[-1] == MARKER}
    for folder in sorted(folders):
        try:
            verify(folder)
        except CheckpointError as exc:
            logger.error("%s Not copied: the trial continues from epoch 0.", exc)
            shutil.rmtree(folder, ignore_errors=True)
            for key in [k for k, p in incoming.files.items() if folder in p.parents]:
                incoming.skipped.append(incoming.files.pop(key).name)
            continue
        incoming.checkpoints += 1


def _set_aside_database(db: Path) -> Path | None:
    """Set a SQLite file aside whole (its WAL folded in first, on local disk only)."""
    if not db.exists():
        return None
    if Path(f"{db}-wal").exists() and not on_drive(db):
        con = sqlite3.connect(db, timeout=BUSY_TIMEOUT_S)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
    moved = set_aside(db, "stale")
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return moved


def _move_in(staged: Path, final: Path, *, keep: bool = False) -> None:
    """Move a staged folder's entries into ``final``: an entry already there is set aside,
    or kept (``keep``: the tokenizer cache, whose entries never change)."""
    if not final.exists():
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, final)
        return
    for entry in sorted(staged.iterdir()):
        there = final / entry.name
        if there.exists() and keep:
            continue
        if there.exists():
            set_aside(there, "stale")
        os.replace(entry, there)
    fsync_dir(final)


def place(incoming: Incoming, target: Target, *, mlflow: bool) -> list[str]:
    """Move the staged study into place, the study file last; returns what was set aside.

    A study already here (the caller judged it older: :func:`judge`) is set aside first,
    working and durable copies both (``.stale-<time>``). ``mlflow``: MLflow's store may be
    written (nothing has it open): the earlier one is copied where this machine has none, and
    replaces this machine's when the study replaces this machine's."""
    paths, moved = target.paths, []
    study_folder = paths.durable_db.parent
    staged_db = incoming.files.pop(target.study_key)
    parked = incoming.staging / "study.incoming"
    os.replace(staged_db, parked)
    here = [db for db in dict.fromkeys((paths.working_db, paths.durable_db)) if db.exists()]
    for db in here:
        if db.parent != paths.durable_dir and db.parent != paths.working_dir:
            moved.append(set_aside(db.parent, "stale"))
        elif (aside := _set_aside_database(db)) is not None:
            moved.append(aside)
    if staged_db.parent.exists():
        _move_in(staged_db.parent, study_folder)
    for folder, prefix in target.plan.folders[1:]:  # the tokenizer cache
        if (incoming.staging / prefix).is_dir():
            _move_in(incoming.staging / prefix, folder, keep=True)
    if mlflow and target.mlflow is not None:
        moved += _place_mlflow(incoming, target, bool(here))
    study_folder.mkdir(parents=True, exist_ok=True)
    for suffix in ("-wal", "-shm"):  # a stale WAL must never replay into the copy
        Path(f"{paths.durable_db}{suffix}").unlink(missing_ok=True)
    os.replace(parked, paths.durable_db)
    fsync_dir(study_folder)
    return [str(m) for m in moved]


def _place_mlflow(incoming: Incoming, target: Target, replace: bool) -> list[Path]:
    staged = incoming.files.pop(target.mlflow_key or "", None)
    if staged is None or target.mlflow is None:
        return []
    working, durable = target.mlflow
    here = [db for db in dict.fromkeys((working, durable)) if db.exists()]
    if here and not replace:
        logger.info("MLflow's store %s is kept (this machine's runs); the earlier runs stay in "
                    "%s", here[0], incoming.source)
        return []
    moved = [m for db in here if (m := _set_aside_database(db)) is not None]
    durable.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, durable)
    return moved


def recorded(target: Target, earlier: Earlier) -> bool:
    """Whether this output already continued from ``earlier`` as it is now."""
    try:
        data = json.loads(Path(f"{target.paths.durable_db}{EARLIER_SUFFIX}").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and data.get("identity") == earlier.identity()


def record(target: Target, earlier: Earlier, facts: StudyFacts) -> None:
    """Note beside the study file which earlier study it continued (see :func:`recorded`)."""
    body: dict[str, Any] = {"source": str(earlier.db), "identity": earlier.identity(),
                            "finished": facts.finished}
    write_file(Path(f"{target.paths.durable_db}{EARLIER_SUFFIX}"),
               json.dumps(body, indent=1).encode())
