"""A bucket as the durable folder, without a server: the sync protocol on fsspec's memory and
local filesystems (how GCS is tested: no emulator here), URL checks, missing extras, masking.

The servers (Azurite for ``az://``, moto for ``s3://``) are in ``test_bucket_servers.py``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from hpo_helpers import ConfigError, DurableStoreError, load_configs
from hpo_helpers.core.redaction import mask
from hpo_helpers.storage import bucket
from hpo_helpers.storage.bucket import BucketSync, open_store, restore, study_sync_plan
from hpo_helpers.storage.durable import DurableWrites


def _study(db: Path, finished: int) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE IF NOT EXISTS trials (number INTEGER, state TEXT)")
    con.execute("DELETE FROM trials")
    con.executemany("INSERT INTO trials VALUES (?, 'COMPLETE')", [(i,) for i in range(finished)])
    con.commit()
    con.close()


def _checkpoint(folder: Path, step: int, payload: bytes = b"w" * 2048) -> Path:
    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "model.pt").write_bytes(payload)
    (ckpt / "COMPLETE").write_text(str(step))
    return ckpt


@pytest.fixture
def machine(tmp_path: Path):
    """A study folder as a sweep leaves it, and the memory bucket it syncs to."""
    root = tmp_path / "out"
    db = root / "tiny" / "study.db"
    _study(db, 2)
    _checkpoint(root / "tiny" / "trials" / "hpo_tiny" / "trial_2", 4)
    (root / ".backbones" / "tiny-abc").mkdir(parents=True)
    (root / ".backbones" / "tiny-abc" / "tokenizer.json").write_text("{}")
    store = open_store(f"memory://bkt/{uuid.uuid4().hex}")
    return root, db, store, study_sync_plan(root, db, cache_folder=".backbones")


def _sync(store, plan) -> BucketSync:
    sync = BucketSync(store, plan, DurableWrites(None, name=f"The durable store {store.url}"))
    sync.close()
    return sync


def test_a_sync_sends_the_study_and_a_fresh_machine_gets_it_back(machine) -> None:
    root, db, store, plan = machine
    _sync(store, plan)
    manifest = store.read_json(plan.manifest)
    assert set(manifest["files"]) == {
        "hpo/tiny/study.db", "hpo/.backbones/tiny-abc/tokenizer.json",
        "hpo/tiny/trials/hpo_tiny/trial_2/checkpoint-4/model.pt",
        "hpo/tiny/trials/hpo_tiny/trial_2/checkpoint-4/COMPLETE"}
    assert not any("previous" in e for e in manifest["files"].values()), "final manifest"
    import shutil

    shutil.rmtree(root)  # a fresh machine
    assert restore(store, plan, local_exists=False)
    assert (root / "tiny/trials/hpo_tiny/trial_2/checkpoint-4/model.pt").read_bytes() == \
        b"w" * 2048
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 2
    con.close()
    assert json.loads(plan.state.read_text())["generation"] == manifest["generation"]


def test_deletions_follow_the_final_manifest_and_damage_is_never_restored(machine) -> None:
    root, db, store, plan = machine
    _sync(store, plan)
    trial = root / "tiny/trials/hpo_tiny/trial_2"
    _checkpoint(trial, 8, b"n" * 4096)
    import shutil

    shutil.rmtree(trial / "checkpoint-4")
    _sync(store, plan)
    keys = {p.split("/bkt/", 1)[1].split("/", 1)[1] for p in store.fs.find(store.root)}
    assert "hpo/tiny/trials/hpo_tiny/trial_2/checkpoint-8/COMPLETE" in keys
    assert not any("checkpoint-4" in k for k in keys), "removed once the manifest moved on"
    # an object whose bytes match no checksum of its manifest (damage) is skipped on restore
    store.fs.pipe_file(store.path("hpo/tiny/trials/hpo_tiny/trial_2/checkpoint-8/model.pt"),
                       b"damaged")
    shutil.rmtree(root)
    restore(store, plan, local_exists=False)
    assert not (trial / "checkpoint-8" / "model.pt").exists()
    assert (root / "tiny" / "study.db").exists()


def test_a_sync_cut_off_after_its_announcement_leaves_a_restorable_bucket(machine) -> None:
    root, db, store, plan = machine
    _sync(store, plan)
    _study(db, 3)  # the study moved on: a new snapshot is announced, then the sync dies
    _checkpoint(root / "tiny/trials/hpo_tiny/trial_3", 2)
    sent = []
    real_put = bucket.Store.put

    def dies_after_the_database(self, local, key, expected=None):
        if sent:
            raise ConnectionError("killed mid-sync")
        sent.append(key)
        return real_put(self, local, key, expected)

    bucket.Store.put = dies_after_the_database  # type: ignore[method-assign]
    try:
        BucketSync(store, plan, DurableWrites(None)).close()
    finally:
        bucket.Store.put = real_put  # type: ignore[method-assign]
    assert sent == ["hpo/tiny/study.db"], "databases go first"
    announced = store.read_json(plan.manifest)
    assert "previous" in announced["files"]["hpo/tiny/study.db"]
    import shutil

    shutil.rmtree(root)
    restore(store, plan, local_exists=False)
    con = sqlite3.connect(db)  # the newer snapshot (sent whole) matches its announcement
    assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 3
    con.close()
    assert not (root / "tiny/trials/hpo_tiny/trial_3/checkpoint-2/COMPLETE").exists()
    # the next sync sends everything the cut-off one had only announced
    _sync(store, plan)
    final = store.read_json(plan.manifest)
    assert not any("previous" in e for e in final["files"].values())


def test_newer_work_in_the_bucket_sets_the_stale_local_study_aside(machine, caplog) -> None:
    root, db, store, plan = machine
    _sync(store, plan)
    other = root.parent / "elsewhere"  # another machine continued the study: 5 trials
    import shutil

    shutil.copytree(root, other)
    other_db = other / "tiny" / "study.db"
    _study(other_db, 5)
    _sync(store, study_sync_plan(other, other_db, cache_folder=".backbones"))
    plan.state.unlink()  # this folder does not know the bucket's lineage
    with caplog.at_level(logging.WARNING):
        assert restore(store, plan, local_exists=True)
    assert "holds newer work" in caplog.text
    assert list(root.glob("tiny.stale-*")), "set aside, never deleted"
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 5
    con.close()
    # the same folder, now current: nothing more happens
    assert restore(store, plan, local_exists=True) is None


def test_an_older_bucket_never_replaces_more_local_work(machine, caplog) -> None:
    root, db, store, plan = machine
    _sync(store, plan)
    plan.state.unlink()
    _study(db, 7)
    with caplog.at_level(logging.WARNING):
        assert restore(store, plan, local_exists=True) is None
    assert "older than the local one" in caplog.text
    assert not list(root.glob("tiny.stale-*"))


def test_store_trouble_warns_once_and_the_sync_catches_up(machine, caplog) -> None:
    root, db, store, plan = machine
    writes = DurableWrites(None, name=f"The durable store {store.url}")
    real = bucket.Store.put_bytes

    def refused(self, key, data):
        raise PermissionError("This request is not authorized to perform this operation")

    caplog.set_level(logging.INFO)
    bucket.Store.put_bytes = refused  # type: ignore[method-assign]
    try:
        sync = BucketSync(store, plan, writes)
        sync.flush()
        writes.retry()  # after a trial: asks the sync thread to try again
        sync.flush()
    finally:
        bucket.Store.put_bytes = real  # type: ignore[method-assign]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert f"The durable store {store.url} refuses writes" in warnings[0].getMessage()
    assert writes.pending
    writes.retry()
    sync.close()
    assert not writes.pending
    assert "Durable copies caught up" in caplog.text


def test_file_urls_write_a_temporary_name_then_rename(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path / 'bucket'}")
    local = tmp_path / "x.bin"
    local.write_bytes(b"abc" * 1000)
    store.put(local, "a/x.bin")
    assert (tmp_path / "bucket" / "a" / "x.bin").read_bytes() == b"abc" * 1000
    assert not list((tmp_path / "bucket" / "a").glob("*.tmp-*"))


@pytest.mark.parametrize("url", ["s3://bucket", "gs://b/a/b", "az://c/p", "memory://m/x"])
def test_bucket_urls_are_accepted(url: str) -> None:
    assert bucket.check_url(url + "/") == url


@pytest.mark.parametrize(("url", "why"), [
    ("s3://key:secret@bucket/p", "holds credentials"),
    ("az://c/p?sv=2024&sig=abc", "holds credentials"),
    ("ftp://host/p", "is not a bucket URL"),
    ("s3://bucket/../x", "is not a bucket URL"),
    ("/content/drive", "is not a bucket URL")])
def test_bad_durable_urls_are_one_config_line(project, url: str, why: str) -> None:
    project.write_hpo(durable_url=url)
    with pytest.raises(ConfigError, match=f"key 'durable_url' = .* {why}") as info:
        load_configs(project.config_dir, project.hpo)
    assert "secret" not in str(info.value) and "sig=abc" not in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_durable_url_with_a_shared_study_is_refused(project) -> None:
    project.write_hpo(durable_url="s3://b/p", storage_url="postgresql+psycopg://u@h/db")
    with pytest.raises(ConfigError, match="durable_url' cannot be used with storage_url"):
        load_configs(project.config_dir, project.hpo)


def test_a_missing_extra_names_its_install_command(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # as if not installed
    with pytest.raises(DurableStoreError, match=r"needs the package gcsfs.*"
                       r"pip install 'hpo-helpers\[gcs\]'"):
        open_store("gs://bucket/path")
    monkeypatch.setitem(sys.modules, "adlfs", None)
    with pytest.raises(DurableStoreError, match=r"pip install 'hpo-helpers\[azure-storage\]'"):
        open_store("az://container/path")


def test_nothing_cloud_is_imported_without_a_durable_url() -> None:
    code = ("import sys; import hpo_helpers.frontends.cli, hpo_helpers.sweep.run, "
            "hpo_helpers.storage.bucket; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('adlfs', 's3fs', 'gcsfs', 'botocore', 'aiobotocore', 'moto') "
            "or m.startswith('azure.storage')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_store_credentials_in_the_environment_are_masked() -> None:
    key = "bWFkZS11cC1rZXktZm9yLW1hc2tpbmctdGVzdHM" + "=="
    conn = f"DefaultEndpointsProtocol=http;AccountName=a;AccountKey={key};BlobEndpoint=x"
    sas = "sv=2024-01-01&sp=r&sig=bWFkZXVwc2lnbmF0dXJl"
    bucket.register_credentials({"AZURE_STORAGE_CONNECTION_STRING": conn,
                                 "AWS_SECRET_ACCESS_KEY": "made-up-secret-mask-me",
                                 "AZURE_STORAGE_SAS_TOKEN": sas})
    text = mask(f"failed with key {key[:-2]} and {conn} made-up-secret-mask-me {sas}")
    assert key[:-2] not in text and "made-up-secret-mask-me" not in text
    assert "bWFkZXVwc2lnbmF0dXJl" not in text


def test_set_aside_files_stay_local_and_kept_models_of_dotted_studies_go(tmp_path) -> None:
    root = tmp_path / "out"
    db = root / "bert.base" / "study.db"
    _study(db, 1)
    kept = root / "bert.base" / "models" / "hpo_bert.base-20250101-101010" / "trial_0"
    kept.mkdir(parents=True)
    (kept / "model.safetensors").write_bytes(b"m")
    (db.parent / "study.db.corrupt-20250101-101010").write_bytes(b"x")
    (db.parent / "study.db.lock").write_bytes(b"")
    (db.parent / "trials" / "hpo_x" / "trial_0-checkpoint-2.unreadable-20250101-101010").mkdir(
        parents=True)
    (db.parent / "trials" / "hpo_x" / "trial_0-checkpoint-2.unreadable-20250101-101010"
     / "model.pt").write_bytes(b"bad")
    plan = study_sync_plan(root, db, cache_folder=".backbones")
    keys = set(bucket.local_files(plan))
    assert keys == {"hpo/bert.base/models/hpo_bert.base-20250101-101010/trial_0/"
                    "model.safetensors"}


def test_status_reads_the_buckets_study_on_a_machine_without_it(project, tmp_path) -> None:
    import optuna

    from hpo_helpers import study_status

    first = tmp_path / "first"
    db = first / "tiny" / "study.db"
    db.parent.mkdir(parents=True)
    study = optuna.create_study(study_name="hpo_tiny", storage=f"sqlite:///{db}",
                                direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, params={}, distributions={}))
    url = f"file://{tmp_path / 'bucket'}"
    _sync(open_store(url), study_sync_plan(first, db, cache_folder=".backbones"))
    cfg = load_configs(project.config_dir, project.hpo)
    info = study_status(cfg, output_dir=tmp_path / "elsewhere", durable_url=url)
    assert info["exists"] and info["n_complete"] == 1 and info["best_value"] == 0.5
    assert info["checkpoint_path"] == f"{url}/hpo/tiny/study.db"
    assert not (tmp_path / "elsewhere").exists(), "a reader writes nothing"


def test_two_syncs_cut_off_in_a_row_still_accept_what_the_bucket_holds(machine) -> None:
    root, db, store, plan = machine
    _sync(store, plan)  # the bucket holds the study with 2 trials
    real_put = bucket.Store.put

    def refused(self, local, key, expected=None):
        raise ConnectionError("cut off after the announcement")

    bucket.Store.put = refused  # type: ignore[method-assign]
    try:
        for finished in (3, 4):  # each sync announces a newer study, sends nothing
            _study(db, finished)
            BucketSync(store, plan, DurableWrites(None)).close()
    finally:
        bucket.Store.put = real_put  # type: ignore[method-assign]
    import shutil

    shutil.rmtree(root)
    restore(store, plan, local_exists=False)
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM trials").fetchone()[0] == 2
    con.close()
