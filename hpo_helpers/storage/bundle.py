"""A study bundle: one plain tar archive that carries a study to another machine.

Members are named by the bucket's keys (``hpo/<study folder>/...``, ``hpo/.backbones/...``,
``mlruns/mlflow.db``; see :mod:`.earlier`), so an unpacked bundle is also a folder that
``--resume-from`` reads. ``manifest.json`` comes first::

    {"format": 1, "study_name": ..., "fingerprint": {...}, "finished": N, "last": ...,
     "study_prefix": "hpo/tiny", "database": "hpo/tiny/study.db", "cache_prefix": ...,
     "mlflow": "mlruns/mlflow.db" | null, "files": {key: {"sha256": ..., "size": ...}}}

:func:`export` lists the study's files (working and durable folders: on Colab the newest
checkpoint may be on either side), hard-links them into a staging folder (so the bytes cannot
change under the archive), then copies the SQLite files with the online backup API (after the
listing: every checkpoint belongs to a trial the copied study knows), and writes the archive to
``<path>.tmp`` before renaming it.

:func:`check` reads the whole archive without writing anything: the manifest first, then every
member's name (relative, no ``..``, under the study's prefixes, a regular file: no link or
device), size and SHA-256; any damage (a truncated archive, an altered or missing member, a
member the manifest does not list) is one :class:`~hpo_helpers.core.errors.BundleError` line.
:func:`unpack` then writes the members into a staging folder under this machine's keys,
checking each again, and :func:`earlier.place` moves them into place.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import socket
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..core.errors import BundleError
from .bucket import SyncPlan, local_files, stage
from .durable import copy_bytes, sha256, write_stream
from .earlier import (
    Incoming,
    Target,
    checked_database,
    newest_checkpoints,
    staging_folder,
    verify_checkpoints,
)
from .snapshot import backup, check_database, study_facts

__all__ = ["FORMAT", "MANIFEST", "check", "export", "unpack"]

logger = logging.getLogger(__name__)

FORMAT = 1
MANIFEST = "manifest.json"
STAGING = ".bundle.tmp-"
_MANIFEST_MAX = 64 << 20
_CHUNK = 1 << 20


# -- export -----------------------------------------------------------------------------------


def _database_copy(live: Path, durable: Path, local: Path) -> Path | None:
    """A consistent, checked copy of a SQLite file at ``local``: from the live file with the
    backup API, else from its durable copy byte for byte (SQLite never opens a Drive file)."""
    if live.exists():
        return backup(live, local)
    if not durable.exists():
        return None
    copy_bytes(durable, local)
    problem = check_database(local)
    if problem:
        raise BundleError(f"the study database {durable} is damaged ({problem}). Fix: run the "
                          "sweep once (it restores or sets the file aside), then export again.")
    return local


def _files(target: Target) -> dict[str, Path]:
    """The study's files by key: durable folder first, working folder last (it wins)."""
    paths, plan = target.paths, target.plan
    prefix = plan.folders[0][1]
    folders = [(paths.durable_db.parent, prefix), (paths.working_db.parent, prefix),
               *plan.folders[1:]]
    return newest_checkpoints(local_files(SyncPlan(tuple(folders), (), "", Path())))


def export(target: Target, path: Path, *, fingerprint_key: str) -> dict[str, Any]:
    """Write the bundle of ``target``'s study to ``path`` (``path.tmp``, then renamed);
    returns its manifest."""
    paths = target.paths
    if not (paths.working_db.exists() or paths.durable_db.exists()):
        raise BundleError(f"no study at {paths.durable_db} to export. Fix: pass the run's "
                          "--output-dir and --backbone.")
    staging = staging_folder(paths.working_dir, STAGING)  # local disk: links to live files
    try:
        staged = stage(_files(target), staging)  # listed before the databases are copied
        db = _database_copy(paths.working_db, paths.durable_db, staging / "snapshot-0")
        facts = study_facts(db, target.study_name) if db else None
        if db is None or facts is None:
            raise BundleError(f"{paths.durable_db} holds no study {target.study_name}. Fix: "
                              "pass the run's --backbone (and the config with its study_name).")
        staged[target.study_key] = db
        if target.mlflow is not None and target.mlflow_key is not None:
            mlflow = _database_copy(*target.mlflow, staging / "snapshot-1")
            if mlflow is not None:
                staged[target.mlflow_key] = mlflow
        manifest = _manifest(target, facts, staged, fingerprint_key)
        _write(path, manifest, staged)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _manifest(target: Target, facts: Any, staged: dict[str, Path],
              fingerprint_key: str) -> dict[str, Any]:
    plan = target.plan
    return {"format": FORMAT, "study_name": target.study_name,
            "fingerprint": facts.attrs.get(fingerprint_key), "finished": facts.finished,
            "last": facts.last, "study_prefix": plan.folders[0][1],
            "database": target.study_key,
            "cache_prefix": plan.folders[1][1] if len(plan.folders) > 1 else None,
            "mlflow": target.mlflow_key if target.mlflow_key in staged else None,
            "host": socket.gethostname(), "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "files": {key: {"sha256": sha256(p), "size": p.stat().st_size}
                      for key, p in sorted(staged.items())}}


def _write(path: Path, manifest: dict[str, Any], staged: dict[str, Path]) -> None:
    """The archive at ``path.tmp``, fsynced, renamed to ``path``."""
    body = json.dumps(manifest, indent=1).encode()
    order = sorted(staged, key=lambda k: (k != manifest["database"], k))

    def fill(fh: IO[bytes]) -> None:
        with tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
            tar.addfile(_info(MANIFEST, len(body)), io.BytesIO(body))
            for key in order:
                with open(staged[key], "rb") as src:
                    tar.addfile(_info(key, staged[key].stat().st_size), src)

    write_stream(path, fill, tmp=path.with_name(f"{path.name}.tmp"))


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, int(time.time())
    return info


# -- import -----------------------------------------------------------------------------------


def _damaged(path: Path, what: str) -> BundleError:
    return BundleError(f"bundle {path} is damaged or not a bundle: {what}. Nothing was "
                       "imported. Fix: copy the file again or export it again.")


def _safe_key(path: Path, name: str, manifest: dict[str, Any]) -> str:
    """``name`` when it is a plain relative path under one of the bundle's prefixes."""
    p = PurePosixPath(name)
    if name.startswith("/") or "\\" in name or p.is_absolute() \
            or any(part in ("", ".", "..") for part in name.split("/")):
        raise _damaged(path, f"member name {name[:120]!r} leaves the study folder (refused)")
    prefixes = [manifest.get("study_prefix"), manifest.get("cache_prefix")]
    if name != manifest.get("mlflow") and not any(
            isinstance(pre, str) and name.startswith(pre + "/") for pre in prefixes):
        raise _damaged(path, f"member {name[:120]!r} is outside the study's folders")
    return name


def _read_manifest(path: Path, tar: tarfile.TarFile,
                   first: tarfile.TarInfo | None) -> dict[str, Any]:
    if first is None or first.name != MANIFEST or not first.isfile() \
            or first.size > _MANIFEST_MAX:
        raise _damaged(path, f"it does not start with {MANIFEST}")
    fh = tar.extractfile(first)
    try:
        manifest = json.loads(fh.read() if fh else b"")
    except ValueError:
        raise _damaged(path, f"{MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise _damaged(path, f"{MANIFEST} lists no files")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"bundle {path} has format {manifest.get('format')!r}; this version "
                          f"reads format {FORMAT}. Fix: import it with the version that "
                          "exported it (or newer).")
    if manifest.get("database") not in manifest["files"] \
            or not isinstance(manifest.get("study_name"), str):
        raise _damaged(path, f"{MANIFEST} names no study database")
    for key in manifest["files"]:
        _safe_key(path, str(key), manifest)
    return manifest


def _members(path: Path) -> Iterator[tuple[dict[str, Any], tarfile.TarInfo | None, IO[bytes]]]:
    """The manifest, then each member with its data; every kind of damage is a BundleError."""
    try:
        with tarfile.open(path, "r:") as tar:
            first = tar.next()
            manifest = _read_manifest(path, tar, first)
            yield manifest, None, io.BytesIO()
            seen: set[str] = set()
            for member in tar:
                if member is first:
                    continue  # the manifest, read above
                key = _safe_key(path, member.name, manifest)
                if not member.isfile():
                    raise _damaged(path, f"member {key!r} is a link or special file (refused)")
                if key in seen or key not in manifest["files"]:
                    raise _damaged(path, f"member {key!r} is not listed once in {MANIFEST}")
                seen.add(key)
                data = tar.extractfile(member)
                if data is None:
                    raise _damaged(path, f"member {key!r} has no data")
                yield manifest, member, data
            missing = sorted(set(manifest["files"]) - seen)
            if missing:
                raise _damaged(path, f"{len(missing)} member(s) missing, e.g. {missing[0]!r} "
                               "(a truncated copy?)")
    except (tarfile.TarError, EOFError) as exc:
        raise _damaged(path, f"truncated or not a tar archive ({exc})") from None
    except FileNotFoundError:
        raise BundleError(f"bundle {path} does not exist. Fix: check the path.") from None


def _copy_member(path: Path, manifest: dict[str, Any], key: str, data: IO[bytes],
                 out: IO[bytes] | None) -> None:
    """Read one member (writing it to ``out`` when given), checked against the manifest."""
    digest, size = hashlib.sha256(), 0
    try:
        while chunk := data.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            if out is not None:
                out.write(chunk)
    except (tarfile.TarError, EOFError) as exc:  # the archive ends inside this member
        raise _damaged(path, f"truncated inside member {key!r} ({exc})") from None
    entry = manifest["files"][key]
    if not isinstance(entry, dict) or entry.get("sha256") != digest.hexdigest() \
            or entry.get("size") != size:
        raise _damaged(path, f"member {key!r} does not match its checksum in {MANIFEST}")


def check(path: Path) -> dict[str, Any]:
    """Read the whole bundle, writing nothing; its manifest when every member is whole."""
    manifest: dict[str, Any] = {}
    for manifest, member, data in _members(path):
        if member is not None:
            _copy_member(path, manifest, member.name, data, None)
    return manifest


def rekey(key: str, manifest: dict[str, Any], target: Target) -> str | None:
    """A bundle member's key on this machine (the study's folder may be named otherwise)."""
    plan = target.plan
    if key == manifest.get("mlflow"):
        return target.mlflow_key
    pairs = [(manifest.get("study_prefix"), plan.folders[0][1])]
    if len(plan.folders) > 1:
        pairs.append((manifest.get("cache_prefix"), plan.folders[1][1]))
    for theirs, ours in pairs:
        if isinstance(theirs, str) and key.startswith(theirs + "/"):
            return ours + key[len(theirs):]
    return None


def unpack(path: Path, target: Target, staging: Path) -> Incoming:
    """Write the bundle's members into ``staging`` under this machine's keys, each checked
    again (the file may change between two reads); SQLite files and checkpoints are checked
    on local disk too. Call :func:`check` first: it writes nothing."""
    files: dict[str, Path] = {}
    facts = None
    for manifest, member, data in _members(path):
        if member is None:
            continue
        key = rekey(member.name, manifest, target)
        if key is None:  # no MLflow store here (tracking is not this import's business)
            _copy_member(path, manifest, member.name, data, None)
            continue
        dst = files[key] = staging / key
        dst.parent.mkdir(parents=True, exist_ok=True)
        database = member.name in (manifest["database"], manifest.get("mlflow"))
        with open(dst.with_name(f"{dst.name}.part") if database else dst, "wb") as out:
            _copy_member(path, manifest, member.name, data, out)
        if database:  # checked by SQLite on local disk (never on Drive)
            name = manifest["study_name"] if member.name == manifest["database"] else None
            problem, found = checked_database(dst.with_name(f"{dst.name}.part"), dst, name)
            dst.with_name(f"{dst.name}.part").unlink()
            if problem or (name and found is None):
                raise _damaged(path, f"{member.name} is not a healthy study database "
                               f"({problem or 'no study ' + manifest['study_name']})")
            facts = found or facts
    if facts is None:
        raise _damaged(path, "no study database")
    incoming = Incoming(staging, str(path), facts, files)
    verify_checkpoints(incoming)
    return incoming
