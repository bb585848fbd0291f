"""Cloud storage (Azure Blob, S3, Google Cloud Storage) as the durable folder, through fsspec.

With ``durable_url: az://container/path`` (or ``s3://``, ``gs://``) the study runs exactly as on
a local machine: the live SQLite files, checkpoints and kept models are on local disk (the
working folder is also the durable folder, as locally and on Kaggle). A :class:`BucketSync`
sends that folder to the bucket in a background thread; SQLite never opens a file in the
bucket. On a fresh machine :func:`restore` brings the bucket's copy to local disk before the
study opens. What goes where (``<url>`` is the ``durable_url``)::

    <url>/hpo/<study folder>/...               the study folder (``{backbone}/``): checkpoints,
                                               kept models, refit; study.db as a snapshot
    <url>/hpo/.backbones/...                   the tokenizer cache (same vocabulary everywhere)
    <url>/mlruns/mlflow.db                     a snapshot of the local MLflow store
    <url>/hpo/<study folder>/<db>.manifest.json  the manifest, written last

How one sync is made safe against a kill at any moment:

1. the files are listed and hard-linked into a private staging folder (writers replace files by
   rename, so the staged bytes never change), then each SQLite file is copied with SQLite's
   online backup API and integrity-checked on local disk (listing first: every checkpoint the
   bucket receives belongs to a trial the uploaded study already knows);
2. a manifest announcing every file to be sent with its SHA-256 (and the checksum of the copy it
   replaces) is written; each file is then sent whole to its final key by the store's own atomic
   put (an object appears complete or not at all; ``file://`` writes a temporary name and
   renames), databases first, checkpoint completion markers last; the streamed bytes are
   checked against the announced checksum;
3. the final manifest is written, then the keys it no longer lists are deleted.

So every object the bucket holds matches a checksum its manifest lists, and a restore verifies
each file it copies down (a mismatch is skipped and logged, never used). Trouble with the store
(refused writes, unreachable, wrong key) goes through :class:`~.durable.DurableWrites`: warned
once, retried after later trials, never a lost trial. Credentials come only from the
environment or the store's own configuration and are registered for masking; nothing here
writes them anywhere. The cloud libraries are imported only when a ``durable_url`` is set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import faults
from ..core.errors import ConfigError, DurableStoreError
from ..core.redaction import mask, register_secret
from .durable import DurableWrites, set_aside, write_file, write_stream
from .layout import HPO_DIR, MLFLOW_DB

__all__ = [
    "BucketSync",
    "NoSync",
    "Store",
    "check_url",
    "local_files",
    "local_path",
    "open_store",
    "read_copy",
    "restore",
    "remove_leftovers",
    "restore_database",
    "stage",
    "study_sync_plan",
    "url_problem",
]

logger = logging.getLogger(__name__)

#: scheme -> (fsspec implementation's package, the extra that installs it)
BACKENDS = {"az": ("adlfs", "azure-storage"), "abfs": ("adlfs", "azure-storage"),
            "s3": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs"),
            "file": (None, None), "memory": (None, None)}
_URL = re.compile(r"^(?P<scheme>[a-z0-9]+)://(?P<path>[A-Za-z0-9._\-/]+)$")
HPO_PREFIX = HPO_DIR[-1]  # the bucket holds what Drive's resume-ner-checkpoints/ holds
MLFLOW_KEY = "/".join(MLFLOW_DB)
MANIFEST_SUFFIX = ".manifest.json"
STATE_SUFFIX = ".bucket.json"  # local: the lineage and generation this folder last synced
EARLIER_SUFFIX = ".earlier.json"  # local: the earlier output this folder continued from
_CHUNK = 1 << 20
_LINK_FROM = 4 << 20  # staged by hard link from this size on, copied below it
_FORMAT = 1
#: Environment variables that hold a credential of a store (masked wherever printed).
SECRET_ENV = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_ACCOUNT_KEY",
              "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CLIENT_SECRET", "AZURE_CLIENT_SECRET",
              "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "GOOGLE_CREDENTIALS")
#: Local files never sent: live SQLite files and their side files, this module's state, the
#: leftovers of killed writers and set-aside evidence (it stays on the machine that made it).
_SKIP = re.compile(r"(\.db|-wal|-shm|-journal|\.lock|" + re.escape(STATE_SUFFIX) + "|"
                   + re.escape(EARLIER_SUFFIX) + r")$"
                   r"|\.(tmp|old|snapshot|restore|init|adopt|part)-\d"
                   r"|\.(corrupt|empty|stale|archived|unreadable|partial|damaged)-\d{8}-\d{6}")
_STAGING = ".bucket-staging-"
_SETTINGS = {"az": "AZURE_STORAGE_CONNECTION_STRING (or AZURE_STORAGE_ACCOUNT_NAME with "
                   "AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN)",
             "s3": "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE; "
                   "AWS_ENDPOINT_URL for a non-AWS server)",
             "gs": "GOOGLE_APPLICATION_CREDENTIALS"}


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a durable store (with the fix), or None when it can."""
    m = _URL.match(url.strip())
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if m is not None and scheme in BACKENDS and "//" not in m.group("path") \
            and ".." not in m.group("path").split("/"):
        return None
    if "@" in url or "?" in url or "#" in url:
        return ("holds credentials or a query. Fix: write only the bucket and folder "
                "(az://container/path) and put credentials in the environment")
    return ("is not a bucket URL. Fix: use az://container/path (Azure Blob), "
            "s3://bucket/path or gs://bucket/path (letters, digits, '._-/')")


def check_url(url: str, *, key: str = "durable_url") -> str:
    """``url`` (without a trailing ``/``) when it names a store this package can use, else a
    :class:`ConfigError` (credentials in the URL are refused: they belong in the environment)."""
    problem = url_problem(url)
    if problem:
        raise ConfigError(f"{key} {mask(url)[:80]!r} {problem}.")
    return url.strip().rstrip("/")


def _environ() -> Mapping[str, str]:
    from ..core.runtime import environ

    return environ()


def register_credentials(env: Mapping[str, str] | None = None) -> None:
    """Mask every store credential in the environment wherever it would be printed (the
    whole value, and each secret part of a connection string)."""
    env = _environ() if env is None else env
    for name in SECRET_ENV:
        value = env.get(name)
        if not value:
            continue
        register_secret(value)
        for part in value.split(";"):  # AccountKey=...;SharedAccessSignature=...
            k, _, v = part.partition("=")
            if v and k.strip().lower() in ("accountkey", "sharedaccesssignature"):
                register_secret(v.strip())
                register_secret(v.strip().rstrip("="))


def _options(scheme: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The filesystem's options: credentials from the environment only; where none is set,
    the store's own configuration decides (adlfs/botocore/gcsfs defaults)."""
    if scheme in ("az", "abfs"):
        if env.get("AZURE_STORAGE_CONNECTION_STRING"):
            return {"connection_string": env["AZURE_STORAGE_CONNECTION_STRING"]}
        opts: dict[str, Any] = {"account_name": env.get("AZURE_STORAGE_ACCOUNT_NAME")}
        if env.get("AZURE_STORAGE_ACCOUNT_KEY"):
            opts["account_key"] = env["AZURE_STORAGE_ACCOUNT_KEY"]
        if env.get("AZURE_STORAGE_SAS_TOKEN"):
            opts["sas_token"] = env["AZURE_STORAGE_SAS_TOKEN"]
        return opts
    if scheme == "s3":
        # Few, short retries: a store outage must cost the search seconds, not minutes.
        opts = {"config_kwargs": {"retries": {"max_attempts": 2, "mode": "standard"},
                                  "connect_timeout": 10, "read_timeout": 60}}
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        if endpoint:
            opts["client_kwargs"] = {"endpoint_url": endpoint}
        return opts
    return {}


def _filesystem(scheme: str, env: Mapping[str, str]) -> Any:
    package, extra = BACKENDS[scheme]
    try:
        import fsspec

        if package is not None:
            __import__(package)
    except ImportError as exc:
        missing = package or "fsspec"
        install = f"pip install 'hpo-helpers[{extra}]'" if extra else "pip install fsspec"
        raise DurableStoreError(
            f"durable_url {scheme}:// needs the package {missing}, which is not installed "
            f"({exc.name or missing}). Fix: {install}") from None
    try:
        return fsspec.filesystem(scheme, skip_instance_cache=True, **_options(scheme, env))
    except Exception as exc:  # noqa: BLE001 - e.g. no credentials at all: one line
        where = _SETTINGS.get({"abfs": "az", "gcs": "gs"}.get(scheme, scheme), "the store")
        raise DurableStoreError(f"the durable store {scheme}:// cannot be set up "
                                f"({one_line(exc)}). Fix: set {where} in the environment.") \
            from None


def one_line(exc: BaseException) -> str:
    """An exception as one masked line (cloud SDKs write several lines and request ids)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return mask(f"{type(exc).__name__}: {text}")[:300]


@dataclass
class Store:
    """A bucket URL and its fsspec filesystem: whole-file puts and gets, nothing else."""

    url: str
    fs: Any
    root: str

    @property
    def scheme(self) -> str:
        return self.url.split("://", 1)[0]

    def path(self, key: str) -> str:
        return f"{self.root}/{key}"

    def read_json(self, key: str) -> dict[str, Any] | None:
        """The JSON object at ``key``; None when there is none (or no bucket yet)."""
        try:
            raw = self.fs.cat_file(self.path(key))
        except FileNotFoundError:
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            logger.error("%s/%s is not JSON: ignored", self.url, key)
            return None
        return data if isinstance(data, dict) else None

    def put_bytes(self, key: str, data: bytes) -> None:
        self._commit(key, lambda fh: fh.write(data))

    def put(self, local: Path, key: str, expected: str | None = None) -> str:
        """Send ``local`` whole to ``key``; returns the SHA-256 of the bytes sent.

        The object store's put is atomic (the object appears complete when the upload is
        committed at close, or not at all); the ``bucket_upload`` fault point kills the process
        halfway through the bytes. ``expected``: the checksum the manifest announced (a
        mismatch raises)."""
        half = local.stat().st_size // 2
        digest = hashlib.sha256()

        def stream(fh: Any) -> None:
            sent, hit = 0, False
            with open(local, "rb") as src:
                while chunk := src.read(_CHUNK if hit else max(1, min(_CHUNK, half - sent))):
                    fh.write(chunk)
                    digest.update(chunk)
                    sent += len(chunk)
                    if not hit and sent >= half:
                        hit = True
                        faults.point("bucket_upload")

        self._commit(key, stream)
        if expected is not None and digest.hexdigest() != expected:
            raise OSError(f"{local} changed while it was sent to {self.url}/{key}")
        return digest.hexdigest()

    def _commit(self, key: str, write: Any) -> None:
        target = self.path(key)
        if self.scheme == "file":  # a plain folder has no atomic put: tmp + rename
            write_stream(Path(target), write)
            return
        with self.fs.open(target, "wb") as fh:
            write(fh)

    def get(self, key: str, local: Path) -> str:
        """Copy ``key`` to ``local`` (written beside it, then renamed); its SHA-256."""
        digest = hashlib.sha256()

        def copy(dst: Any) -> None:
            with self.fs.open(self.path(key), "rb") as src:
                while chunk := src.read(_CHUNK):
                    dst.write(chunk)
                    digest.update(chunk)

        write_stream(local, copy, tmp=local.with_name(f"{local.name}.part-{os.getpid()}"))
        return digest.hexdigest()

    def delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self.path(key))
        except FileNotFoundError:
            pass


def open_store(url: str, env: Mapping[str, str] | None = None) -> Store:
    """The store behind ``url``: its library imported now (a missing one is a one-line error
    with the install command), credentials from the environment registered for masking."""
    url = check_url(url)
    env = _environ() if env is None else env
    register_credentials(env)
    scheme, _, rest = url.partition("://")
    fs = _filesystem(scheme, env)
    root = rest if scheme != "file" or rest.startswith("/") else "/" + rest
    return Store(url, fs, root)


# -- what one study sends ---------------------------------------------------------------------


@dataclass(frozen=True)
class SyncPlan:
    """Which local folders and SQLite files map to which keys, for one study.

    ``folders``: local folder -> key prefix; ``databases``: live SQLite file -> key;
    ``manifest``: the manifest's key; ``state``: the local file recording the lineage and
    generation of the bucket copy this folder last matched."""

    folders: tuple[tuple[Path, str], ...]
    databases: tuple[tuple[Path, str], ...]
    manifest: str
    state: Path
    study_folder: Path = field(default=Path("."))


def study_sync_plan(working_root: Path, working_db: Path, *, cache_folder: str,
                    mlflow_db: Path | None = None) -> SyncPlan:
    """The sync plan of the study whose live file is ``working_db`` under ``working_root``
    (the output folder); ``mlflow_db``: the local MLflow store, when tracking uses one."""
    folder = working_db.parent
    rel = folder.relative_to(working_root).as_posix()
    prefix = HPO_PREFIX if rel == "." else f"{HPO_PREFIX}/{rel}"
    folders = [(folder, prefix)]
    if rel != ".":
        folders.append((working_root / cache_folder, f"{HPO_PREFIX}/{cache_folder}"))
    databases = [(working_db, f"{prefix}/{working_db.name}")]
    if mlflow_db is not None:
        databases.append((mlflow_db, MLFLOW_KEY))
    return SyncPlan(tuple(folders), tuple(databases),
                    f"{prefix}/{working_db.name}{MANIFEST_SUFFIX}",
                    working_db.with_name(working_db.name + STATE_SUFFIX), folder)


def local_files(plan: SyncPlan) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, prefix in plan.folders:
        if not folder.is_dir():
            continue
        for f in sorted(folder.rglob("*")):
            rel = f.relative_to(folder)
            if not f.is_file() or _SKIP.search(f.name) or any(
                    p.startswith((_STAGING, ".mirror-")) or _SKIP.search(p)
                    for p in rel.parts[:-1]):
                continue
            found[f"{prefix}/{rel.as_posix()}"] = f
    return found


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def stage(files: Mapping[str, Path], staging: Path) -> dict[str, Path]:
    """Freeze the bytes to send in ``staging``, so they cannot change or vanish under the
    upload: large files (weights, optimizer state: written whole and renamed into place) are
    hard-linked, small ones copied (some are rewritten in place, e.g. a kept model's
    ``metrics.json``)."""
    staged = {}
    for i, (key, src) in enumerate(files.items()):
        target = staging / str(i)
        try:
            if src.stat().st_size < _LINK_FROM:
                shutil.copy2(src, target)
            else:
                try:
                    os.link(src, target)
                except OSError:  # a file system without hard links
                    shutil.copy2(src, target)
        except FileNotFoundError:
            continue  # removed since it was listed (a pruned checkpoint)
        staged[key] = target
    return staged


def _is_marker(key: str) -> bool:
    from .checkpoints import MARKER

    return key.rsplit("/", 1)[-1] == MARKER


class NoSync:
    """What a sweep without a bucket holds in the bucket sync's place: does nothing."""

    active = False

    def request(self, *_: Any) -> None: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self, timeout: float | None = None) -> None: ...


class BucketSync:
    """Sends one study's local files to the bucket, in the background.

    It syncs once as it starts, then whenever :meth:`request` asks (after each checkpoint and
    each trial; it returns at once); one thread syncs while requests keep coming. A failure is
    recorded with ``writes`` (warned once, retried after the next trial through
    :meth:`request`).
    """

    def __init__(self, store: Store, plan: SyncPlan, writes: DurableWrites) -> None:
        self.store, self.plan, self.writes = store, plan, writes
        self.active = True
        state = _read_state(plan.state)
        self.lineage = state.get("lineage") or uuid.uuid4().hex
        self.generation = int(state.get("generation", 0))
        self._sent: dict[str, tuple[int, int, str]] = {}  # key -> (size, mtime_ns, sha256)
        self._cond = threading.Condition()
        self._wanted = True  # first: what an earlier session here committed but did not send
        self._busy = False
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="bucket-sync", daemon=True)
        self._thread.start()

    def request(self, *_: Any) -> None:
        """Ask for a sync (any arguments ignored: it serves as a checkpoint hook)."""
        with self._cond:
            self._wanted = True
            self._cond.notify_all()

    def flush(self, timeout: float | None = 600) -> None:
        """Sync now and wait until it is done (or ``timeout`` passes)."""
        self.request()
        with self._cond:
            self._cond.wait_for(lambda: not self._wanted and not self._busy, timeout)

    def close(self, timeout: float | None = 600) -> None:
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(10)

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted or self._closed)
                if not self._wanted:
                    return
                self._wanted = False
                self._busy = True
            try:
                self._attempt()
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _attempt(self) -> None:
        try:
            self.sync_once()
        except Exception as exc:  # noqa: BLE001 - store trouble must not stop the search
            self.writes.failed("bucket", f"the changes since the last copy to {self.store.url}",
                               DurableStoreError(one_line(exc)), self.request,
                               background=True)
            return
        self.writes.forget("bucket", exact=True)

    def sync_once(self) -> None:
        """One sync (see the module docstring); raises on any trouble with the store."""
        staging = self.plan.study_folder.parent / f"{_STAGING}{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            self._sync(staging)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _sync(self, staging: Path) -> None:
        from .snapshot import backup

        staged = stage(local_files(self.plan), staging)  # listed before the databases
        for i, (live, key) in enumerate(self.plan.databases):
            if live.exists():
                staged[key] = backup(live, staging / f"db-{i}.db")
        old = self.store.read_json(self.plan.manifest) or {}
        old_files: dict[str, dict[str, Any]] = old.get("files") or {}
        new_files: dict[str, dict[str, Any]] = {}
        changed: list[str] = []
        for key, path in staged.items():
            sha = self._checksum(key, path)
            new_files[key] = {"sha256": sha, "size": path.stat().st_size}
            if _committed(old_files.get(key)) != sha:
                changed.append(key)
        gone = sorted(set(old_files) - set(new_files))
        if not changed and not gone and old.get("lineage") == self.lineage:
            return
        # each changed file: its new checksum, and every one the bucket may still hold for it
        announced = {**old_files, **{k: dict(new_files[k], previous=sorted(_accepted(
            old_files.get(k, {})))) for k in changed}}
        self._write_manifest(announced, self.generation)  # every object to come, announced
        order = sorted(changed, key=lambda k: (not k.endswith(".db"), _is_marker(k), k))
        for key in order:
            self.store.put(staged[key], key, expected=new_files[key]["sha256"])
            st = staged[key].stat()
            self._sent[key] = (st.st_size, st.st_mtime_ns, new_files[key]["sha256"])
        self.generation += 1
        self._write_manifest(new_files, self.generation)
        write_file(self.plan.state, json.dumps(
            {"url": self.store.url, "lineage": self.lineage,
             "generation": self.generation}).encode())
        for key in gone:
            self.store.delete(key)
        logger.info("Bucket copy updated: %d file(s) sent, %d removed (%s, generation %d)",
                    len(changed), len(gone), self.store.url, self.generation)
        logger.debug("Sent %s; removed %s", changed, gone)

    def _checksum(self, key: str, path: Path) -> str:
        """The file's SHA-256, reused from the last upload while size and time are the same
        (a hard link keeps them)."""
        stat = path.stat()
        known = self._sent.get(key)
        if known and known[:2] == (stat.st_size, stat.st_mtime_ns) and path.stat().st_nlink > 1:
            return known[2]
        return _sha256(path)

    def _write_manifest(self, files: Mapping[str, Any], generation: int) -> None:
        body = {"format": _FORMAT, "lineage": self.lineage, "generation": generation,
                "host": socket.gethostname(), "written": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "files": dict(sorted(files.items()))}
        self.store.put_bytes(self.plan.manifest, json.dumps(body, indent=1).encode())


# -- a fresh machine ------------------------------------------------------------------------


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _finished(db: Path) -> int:
    """Finished trials in a study file (-1 when it cannot be read): which copy is newer."""
    from .snapshot import study_facts

    facts = study_facts(db)
    return -1 if facts is None else facts.finished


def _committed(entry: Mapping[str, Any] | None) -> str | None:
    """The checksum the bucket surely holds for a manifest entry: None for an entry announced
    by a sync that did not finish (either version may be there: send it again)."""
    if entry is None or "previous" in entry:
        return None
    return entry.get("sha256")


def _accepted(entry: Mapping[str, Any]) -> set[str]:
    """Every checksum the object of a manifest entry may have (``previous``: a list)."""
    previous = entry.get("previous") or []
    return {s for s in (entry.get("sha256"), *previous) if isinstance(s, str) and s}


def local_path(plan: SyncPlan, key: str) -> Path | None:
    for live, db_key in plan.databases:
        if key == db_key:
            return live
    for folder, prefix in plan.folders:
        if key.startswith(prefix + "/"):
            return folder / key[len(prefix) + 1:]
    return None


def restore(store: Store, plan: SyncPlan, *, local_exists: bool) -> str | None:
    """Before the study opens: bring the bucket's copy to local disk where it is newer.

    ``local_exists``: the live study file is on this machine. Nothing happens when the bucket
    has no manifest, or when this folder last matched the bucket's newest generation. When the
    bucket holds work this folder has not seen (another machine ran the study since), the
    local study folder is set aside (``.stale-<time>``, never deleted) and the bucket's copy
    is used, unless the local study has at least as many finished trials. Returns what was
    done (for the log), or None. Raises :class:`DurableStoreError` when the store cannot be
    read and no local study exists (only the store can say whether one should be restored).
    """
    from ..core.filelocks import holder
    from .layout import lock_file

    remove_leftovers(plan.study_folder.parent)
    if local_exists and holder(lock_file(plan.databases[0][0])) is not None:
        return None  # a sweep runs this study here: the study refuses to open, nothing moves
    try:
        manifest = store.read_json(plan.manifest)
    except Exception as exc:  # noqa: BLE001 - any store trouble: judged below
        if not local_exists:
            raise DurableStoreError(
                f"the durable store {store.url} cannot be read ({one_line(exc)}), and this "
                "machine has no copy of the study, so the run cannot tell whether to restore "
                f"one. Fix: {_fix(store)}, then run again.") from None
        logger.warning("The durable store %s cannot be read (%s): going on with the local "
                       "study; copies to the store are retried after each trial", store.url,
                       one_line(exc))
        return None
    if not manifest or not manifest.get("files"):
        return None
    state = _read_state(plan.state)
    current = state.get("lineage") == manifest.get("lineage") and \
        int(state.get("generation", -1)) >= int(manifest.get("generation", 0))
    if local_exists and current:
        return None
    if local_exists and not _bucket_is_newer(store, plan, manifest):
        logger.warning("The study in %s is older than the local one (%s): the local study is "
                       "kept and replaces it at the next copy", store.url, plan.study_folder)
        return None
    if local_exists:
        moved = set_aside(plan.study_folder, "stale")
        logger.warning("The durable store %s holds newer work than %s (written by %s at %s): "
                       "the local study folder is set aside as %s and the store's copy is used",
                       store.url, plan.study_folder, manifest.get("host"),
                       manifest.get("written"), moved.name)
    pulled = _pull(store, plan, manifest)
    write_file(plan.state, json.dumps({"url": store.url, "lineage": manifest.get("lineage"),
                                       "generation": manifest.get("generation")}).encode())
    return pulled


def _fix(store: Store) -> str:
    scheme = {"abfs": "az", "gcs": "gs"}.get(store.scheme, store.scheme)
    where = _SETTINGS.get(scheme)
    return (f"check the credentials in the environment ({where}) and that the store is "
            "reachable" if where else "check that the store is reachable")


def _bucket_is_newer(store: Store, plan: SyncPlan, manifest: Mapping[str, Any]) -> bool:
    live, key = plan.databases[0]
    entry = (manifest.get("files") or {}).get(key)
    if entry is None:
        return False
    probe = live.with_name(f"{live.name}.restore-{os.getpid()}")
    try:
        if store.get(key, probe) not in _accepted(entry):
            return False
        return _finished(probe) > _finished(live)
    finally:
        probe.unlink(missing_ok=True)


def _pull(store: Store, plan: SyncPlan, manifest: Mapping[str, Any]) -> str:
    """Copy down every file of ``manifest`` that local disk lacks (databases last, only where
    missing), each verified against its announced checksum."""
    files: dict[str, dict[str, Any]] = manifest.get("files") or {}
    databases = {key for _, key in plan.databases}
    got = skipped = 0
    for key in sorted(files, key=lambda k: (k in databases, _is_marker(k), k)):
        local = local_path(plan, key)
        if local is None:
            continue
        accepted = _accepted(files[key])
        if local.exists() and (key in databases or _sha256(local) in accepted):
            continue  # a live database is never replaced; an equal file is not fetched again
        if key in databases:
            if restore_database(store, key, local, accepted):
                got += 1
            continue
        try:
            sha = store.get(key, local)
        except FileNotFoundError:
            skipped += 1  # announced, never sent (a sync cut off): not there
            continue
        if sha not in accepted:
            local.unlink(missing_ok=True)
            skipped += 1
            logger.error("%s/%s does not match its checksum in the manifest: not used", store.url,
                         key)
            continue
        got += 1
    what = f"{got} file(s) restored from {store.url}"
    logger.info("Restored from the durable store: %s%s", what,
                f" ({skipped} announced but absent or damaged: skipped)" if skipped else "")
    return what


def restore_database(store: Store, key: str, local: Path,
                     accepted: Iterable[str] | None = None) -> bool:
    """Copy the SQLite snapshot at ``key`` to ``local`` (missing there), verified by checksum
    and SQLite's own check on local disk; False when the store has none or it is damaged."""
    from .snapshot import check_database

    if accepted is None:
        listing = _manifests_listing(store, key)
        if not listing:
            return False
        accepted = _accepted(listing[0]["files"][key])
    probe = local.with_name(f"{local.name}.restore-{os.getpid()}")
    try:
        try:
            sha = store.get(key, probe)
        except FileNotFoundError:
            return False
        problem = None if sha in set(accepted) else "checksum does not match the manifest"
        problem = problem or check_database(probe)
        if problem:
            logger.error("The snapshot %s/%s is not usable (%s): not restored", store.url, key,
                         problem)
            return False
        for suffix in ("-wal", "-shm"):
            Path(f"{local}{suffix}").unlink(missing_ok=True)
        os.replace(probe, local)
    finally:
        probe.unlink(missing_ok=True)
    logger.info("Restored %s from the durable store %s", local, store.url)
    return True


def _manifests_listing(store: Store, key: str) -> list[dict[str, Any]]:
    """The manifests that list ``key``, newest first (MLflow's store is listed by the manifest
    of every study that sent it). Study folders are looked for one level deep (the default
    ``{backbone}/study.db``) and at the top."""
    found: list[str] = []
    for pattern in (f"{HPO_PREFIX}/*{MANIFEST_SUFFIX}", f"{HPO_PREFIX}/*/*{MANIFEST_SUFFIX}"):
        try:
            found += store.fs.glob(store.path(pattern))
        except FileNotFoundError:
            continue
    root = store.root.strip("/")
    manifests = []
    for path in found:
        data = store.read_json(path.strip("/")[len(root) + 1:])
        if data and key in (data.get("files") or {}):
            manifests.append(data)
    return sorted(manifests, key=lambda m: str(m.get("written")), reverse=True)


def remove_leftovers(folder: Path, prefix: str = _STAGING) -> None:
    """Staging folders of killed processes (``<prefix><pid>``: ``.bucket-staging-<pid>`` by
    default) in ``folder``, unless their process still runs (several backbones' sweeps in one
    output folder)."""
    if folder.is_dir():
        for old in folder.glob(f"{prefix}*"):
            pid = old.name[len(prefix):]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue
            shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def read_copy(paths: Any) -> tuple[Path, str]:
    """``(local file, what it copies)`` for reading the study of ``paths`` (``StudyPaths``
    with a ``durable_url``) from the bucket on a machine that has no copy: the snapshot is
    verified and written to this process's private read-copy folder. The file does not exist
    when the bucket holds no study."""
    from .layout import BACKBONE_CACHE
    from .snapshot import read_copy_folder

    store = open_store(paths.durable_url)
    plan = study_sync_plan(paths.working_dir, paths.working_db, cache_folder=BACKBONE_CACHE)
    key = plan.databases[0][1]
    shown = f"{store.url}/{key}"
    folder = read_copy_folder(hashlib.sha256(shown.encode()).hexdigest()[:12])
    local = folder / paths.working_db.name
    try:
        manifest = store.read_json(plan.manifest)
    except Exception as exc:  # noqa: BLE001 - one line naming the store
        raise DurableStoreError(f"the durable store {store.url} cannot be read "
                                f"({one_line(exc)}). Fix: {_fix(store)}.") from None
    entry = ((manifest or {}).get("files") or {}).get(key)
    if entry is not None:
        local.unlink(missing_ok=True)
        restore_database(store, key, local, _accepted(entry))
    return local, shown
