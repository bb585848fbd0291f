"""A bucket as the durable folder, against real servers the tests start on 127.0.0.1:
Azurite (``az://``) and moto's S3 server (``s3://``), with made-up keys.

Killed sweeps, fresh machines (the local working folder deleted), a bucket that refuses writes,
a wrong key, the Colab -> Kaggle -> Colab hop, and a grep for the secret after a bucket run.
GCS has no emulator here: it is tested through fsspec's memory filesystem (test_bucket.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo_helpers import load_configs, run_sweep
from hpo_helpers.frontends.cli import main

from . import bucket_servers
from .bucket_servers import Azurite, MotoS3
from .test_kill_resume import _running_trial, _slower_trials

azurite = bucket_servers.azurite  # the servers (session fixtures)
moto_s3 = bucket_servers.moto_s3

MANIFEST = "hpo/tiny/study.db.manifest.json"


def _hpo(project) -> dict:
    import yaml

    return yaml.safe_load(project.hpo.read_text())


def _sweep_env(server, **extra: str) -> dict[str, str]:
    return server.env(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
                      **extra)


def _s3_manifest(s3: MotoS3, bucket: str, prefix: str) -> dict:
    try:
        body = s3.client().get_object(Bucket=bucket, Key=f"{prefix}/{MANIFEST}")["Body"].read()
    except Exception:  # noqa: BLE001 - not written yet
        return {}
    return json.loads(body)


def _az_objects(az: Azurite, container: str) -> dict[str, bytes]:
    from azure.storage.blob import ContainerClient

    client = ContainerClient.from_connection_string(az.connection_string(), container)
    return {b.name: client.download_blob(b.name).readall() for b in client.list_blobs()}


def _checkpoint_sent(manifest: dict, trial: int) -> bool:
    """The bucket's final manifest lists a complete checkpoint of ``trial``."""
    pattern = re.compile(rf"/trial_{trial}/checkpoint-\d+/COMPLETE$")
    return any(pattern.search(k) and "previous" not in e
               for k, e in (manifest.get("files") or {}).items())


def _verified(objects: dict[str, bytes], prefix: str) -> None:
    """Every object the manifest lists matches a checksum the manifest gives for it."""
    manifest = json.loads(objects[f"{prefix}{MANIFEST}"])
    for key, entry in manifest["files"].items():
        if f"{prefix}{key}" in objects:
            sha = hashlib.sha256(objects[f"{prefix}{key}"]).hexdigest()
            assert sha in {entry["sha256"], *(entry.get("previous") or [])}, key


def _complete(db: Path) -> dict[int, float]:
    study = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{db}")
    return {t.number: t.value for t in study.get_trials(states=(TrialState.COMPLETE,))}


def _study_in(objects: dict[str, bytes], key: str, tmp: Path) -> dict[int, float]:
    db = tmp / f"snapshot-{time.monotonic_ns()}.db"
    db.write_bytes(objects[key])
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    con.close()
    return _complete(db)


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 240) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            proc.send_signal(signal.SIGKILL)
            out = proc.communicate(timeout=30)[0]
            return out
        if proc.poll() is not None:
            raise AssertionError(f"sweep exited early ({proc.returncode}):\n"
                                 f"{proc.communicate()[0][-3000:]}")
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"timed out:\n{proc.communicate()[0][-3000:]}")


# -- quick ------------------------------------------------------------------------------------


def test_a_wrong_key_is_one_line_naming_the_store(azurite, project, monkeypatch,
                                                  capsys) -> None:
    azurite.make_container("wrongkey")
    wrong = "d3Jvbmcta2V5LW1hZGUtdXAtZm9yLXRoZS10ZXN0LTEyMzQ1Ng=="
    for key, value in azurite.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string(wrong))
    rc = main(["run", "--config", str(project.hpo), "--output-dir", str(project.output_dir),
               "--durable-url", "az://wrongkey/study"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1, err
    assert err[0].startswith("error: the durable store az://wrongkey/study cannot be read")
    assert "AZURE_STORAGE_CONNECTION_STRING" in err[0]  # the fix names where the key goes
    assert wrong not in err[0] and wrong.rstrip("=") not in err[0]
    assert azurite.key not in err[0]
    assert not (project.output_dir / "tiny" / "study.db").exists(), "nothing started"


# -- end to end -------------------------------------------------------------------------------


@pytest.mark.slow
def test_s3_sweep_killed_then_a_fresh_vm_continues_and_no_secret_leaks(moto_s3, project,
                                                                      tmp_path) -> None:
    """A sweep with an S3 bucket as its durable folder, SIGKILLed inside trial 1 once the
    bucket has its checkpoint; the VM is lost; a new one restores the study, MLflow's store
    and the checkpoint from the bucket and finishes. Then the secret is grepped for."""
    _slower_trials(project, n_docs=40, epochs=2)
    project.write_hpo(**{**_hpo(project), "max_trials": 2})
    moto_s3.make_bucket("hpo")
    vm = tmp_path / "vm"
    vm.mkdir()
    args = project.cli("run", "--config", str(project.hpo), "--output-dir", str(vm / "out"),
                       "--durable-url", "s3://hpo/search", "--mlflow-experiment", "bucket")
    env = _sweep_env(moto_s3)
    proc = subprocess.Popen(args, env=env, cwd=vm, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    logs = [_kill_when(proc, lambda: _checkpoint_sent(_s3_manifest(moto_s3, "hpo", "search"),
                                                      1))]
    before = _study_in(moto_s3.objects("hpo"), "search/hpo/tiny/study.db", tmp_path)
    assert list(before) == [0]
    _verified(moto_s3.objects("hpo"), "search/")
    shutil.rmtree(vm)  # the VM is gone: output folder and MLflow's store with it
    vm.mkdir()
    res = subprocess.run(args, env=env, cwd=vm, capture_output=True, text=True, timeout=300)
    logs += [res.stdout, res.stderr]
    assert res.returncode == 0, res.stderr[-4000:]
    assert "Restored from the durable store" in res.stderr
    assert "--durable-url s3://hpo/search" in " ".join(args)
    after = optuna.load_study(study_name="hpo_tiny",
                              storage=f"sqlite:///{vm / 'out' / 'tiny' / 'study.db'}")
    done = {t.number: t.value for t in after.get_trials(states=(TrialState.COMPLETE,))}
    assert done[0] == before[0] and len(done) == 2
    retry = next(t for t in after.trials if t.user_attrs.get("retry_of") == 1)
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from_epoch"] >= 1, "continued from the bucket's checkpoint"
    objects = moto_s3.objects("hpo")
    assert _complete_in_bucket(objects, tmp_path) == done
    assert any(k.startswith("search/hpo/tiny/models/") for k in objects)
    assert "search/mlruns/mlflow.db" in objects
    assert not any("/trials/" in k for k in objects), "finished trials leave no checkpoints"
    _verified(objects, "search/")
    _no_secret_anywhere(moto_s3.secret, [vm], logs, objects)


def _complete_in_bucket(objects: dict[str, bytes], tmp: Path) -> dict[int, float]:
    return _study_in(objects, "search/hpo/tiny/study.db", tmp)


def _no_secret_anywhere(secret: str, folders: list[Path], logs: list[str],
                        objects: dict[str, bytes]) -> None:
    """The secret in none of the files (output folder, MLflow's store, the study database),
    the logs or the bucket's objects; SQLite files are searched as raw bytes."""
    needles = [secret.encode(), secret.encode("utf-16-le")]
    checked = 0
    for folder in folders:
        for f in folder.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                assert not any(n in data for n in needles), f
                checked += 1
    assert checked > 10 and any(f.name == "study.db" for d in folders for f in d.rglob("*"))
    assert any(f.name == "mlflow.db" for d in folders for f in d.rglob("*"))
    for text in logs:
        assert secret not in text
    for key, data in objects.items():
        assert not any(n in data for n in needles), key


@pytest.mark.slow
def test_azure_sigkill_during_an_upload_then_a_fresh_vm_finishes(azurite, project,
                                                                tmp_path) -> None:
    """SIGKILL halfway through an upload to Azurite (fault point ``bucket_upload``): every
    object the bucket holds still matches its manifest, and a fresh VM finishes the study
    with every trial the bucket had recorded COMPLETE."""
    _slower_trials(project, n_docs=40, epochs=2)
    project.write_hpo(**{**_hpo(project), "max_trials": 2})
    azurite.make_container("killed")
    vm = tmp_path / "vm"
    vm.mkdir()
    args = project.cli("run", "--config", str(project.hpo), "--output-dir", str(vm / "out"),
                       "--durable-url", "az://killed/run")
    env = _sweep_env(azurite)
    killed = subprocess.run(args, env={**env, "HPO_FAULT_KILL_AT": "bucket_upload:30"}, cwd=vm,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    objects = _az_objects(azurite, "killed")
    _verified(objects, "run/")
    before = _study_in(objects, "run/hpo/tiny/study.db", tmp_path)
    shutil.rmtree(vm)
    vm.mkdir()
    res = subprocess.run(args, env=env, cwd=vm, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "Restored from the durable store" in res.stderr
    done = _complete(vm / "out" / "tiny" / "study.db")
    assert len(done) == 2
    for number, value in before.items():
        assert done[number] == value, "a trial the bucket had recorded was lost"
    objects = _az_objects(azurite, "killed")
    _verified(objects, "run/")
    for text in (killed.stderr, res.stderr, res.stdout):
        assert azurite.key not in text


@pytest.mark.slow
def test_a_bucket_that_refuses_writes_costs_no_trial(azurite, project, monkeypatch,
                                                     caplog) -> None:
    """A read-only SAS: the sweep goes on on local disk, warns once, and says at the end
    that the bucket is behind."""
    azurite.make_container("readonly")
    for key, value in azurite.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       azurite.read_only_connection_string("readonly"))
    cfg = load_configs(project.config_dir, project.hpo)
    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=1))
    caplog.set_level(logging.INFO)
    outcome = run_sweep(cfg, output_dir=project.output_dir, durable_url="az://readonly/run")
    assert len(_complete(project.output_dir / "tiny" / "study.db")) == 1
    assert not outcome.interrupted
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and "refuses writes" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("The durable store az://readonly/run refuses writes")
    assert "Still not durable (local disk only)" in caplog.text
    assert _az_objects(azurite, "readonly") == {}


@pytest.mark.slow
def test_colab_kaggle_colab_hop_with_a_bucket(moto_s3, project, tmp_path) -> None:
    """Started on simulated Colab and killed inside trial 1; continued on simulated Kaggle
    (empty /kaggle/working, same durable_url) from trial 1's checkpoint; finished on a fresh
    simulated Colab. No completed trial is lost on the way. Three epochs: with two, a sweep
    slowed by a loaded machine could finish trial 1 before a sync sent its checkpoint, and
    the kill never came (seen once in CI)."""
    _slower_trials(project, n_docs=40, epochs=3)
    moto_s3.make_bucket("hop")
    base = _sweep_env(moto_s3, HPO_DURABLE_URL="s3://hop/search")
    run = project.cli("run", "--config", str(project.hpo))

    colab1 = tmp_path / "colab1"
    (colab1 / "content").mkdir(parents=True)
    env1 = {**base, "COLAB_RELEASE_TAG": "test", "HPO_RUNTIME_ROOT": str(colab1)}
    working1 = colab1 / "content/resume-ner/outputs/hpo/tiny/study.db"
    proc = subprocess.Popen(run, env=env1, cwd=colab1 / "content", stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _kill_when(proc, lambda: _running_trial(working1) == 1
               and _checkpoint_sent(_s3_manifest(moto_s3, "hop", "search"), 1))
    first = _study_in(moto_s3.objects("hop"), "search/hpo/tiny/study.db", tmp_path)
    assert list(first) == [0]

    kaggle = tmp_path / "kaggle"
    (kaggle / "kaggle" / "working").mkdir(parents=True)
    env2 = {**base, "KAGGLE_KERNEL_RUN_TYPE": "Interactive", "HPO_RUNTIME_ROOT": str(kaggle)}
    res = subprocess.run([*run, "--max-trials", "2"], env=env2, cwd=kaggle / "kaggle/working",
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "Restored from the durable store" in res.stderr
    db2 = kaggle / "kaggle/working/resume-ner/outputs/hpo/tiny/study.db"
    study = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{db2}")
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 1)
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from_epoch"] >= 1, "continued from Colab's checkpoint"
    second = _complete(db2)
    assert second[0] == first[0] and len(second) == 2

    colab2 = tmp_path / "colab2"  # a fresh Colab VM
    (colab2 / "content").mkdir(parents=True)
    env3 = {**base, "COLAB_RELEASE_TAG": "test", "HPO_RUNTIME_ROOT": str(colab2)}
    res = subprocess.run(run, env=env3, cwd=colab2 / "content", capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "Restored from the durable store" in res.stderr
    third = _complete(colab2 / "content/resume-ner/outputs/hpo/tiny/study.db")
    assert len(third) == 3
    assert all(third[n] == v for n, v in second.items()), "a completed trial was lost"
    assert _study_in(moto_s3.objects("hop"), "search/hpo/tiny/study.db", tmp_path) == third
