"""The study bundle (issue 22 item 2): ``bundle export`` writes one plain tar, ``bundle import``
checks all of it before it writes anything. Damage is one ``error:`` line, exit 2, nothing
written. The Colab -> Kaggle -> Colab hop runs real sweeps in subprocesses."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo_helpers.frontends.cli import main

from .conftest import TINY_HPO, make_project
from .test_durability import AUDITED
from .test_kill_resume import (
    _env,
    _running_trial,
    _slower_trials,
    _wait_for,
    has_checkpoint,
    newest_step,
)
from .transfer_fixtures import (
    MODELS,
    STUDY,
    finished_values,
    make_output,
    project_fingerprint,
    tree,
)


def _cli(project, verb: str, path: Path, out: Path, *extra: str) -> int:
    return main(["bundle", verb, "--config", str(project.hpo), "--output-dir", str(out),
                 *extra, str(path)])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A study killed inside trial 2 (a checkpoint, a kept model, the tokenizer cache, an
    MLflow store), exported once for the module's tests."""
    base = tmp_path_factory.mktemp("bundle")
    project = make_project(base)
    parts = project_fingerprint(project)
    out = base / "out"
    make_output(out, base / "mlruns" / "mlflow.db", finished=2, parts=parts)
    here = os.getcwd()
    os.chdir(base)  # MLflow's local store is ./mlruns
    try:
        assert _cli(project, "export", base / "hpo_tiny.tar", out) == 0
    finally:
        os.chdir(here)
    return project, base / "hpo_tiny.tar", out


def test_export_then_import_carries_the_study_whole(exported, tmp_path, monkeypatch,
                                                    capsys) -> None:
    project, bundle, source = exported
    monkeypatch.chdir(tmp_path)  # another machine: its own ./mlruns
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert names[0] == "manifest.json" and names[1] == "hpo/tiny/study.db"
    assert "mlruns/mlflow.db" in names
    assert not [n for n in names if "checkpoint-12" in n]  # cut off by the kill: left out
    manifest = json.loads(tarfile.open(bundle).extractfile("manifest.json").read())
    assert manifest["format"] == 1 and manifest["study_name"] == STUDY
    assert manifest["fingerprint"] == project_fingerprint(project)
    assert set(manifest["files"]) == set(names[1:])
    assert _cli(project, "import", bundle, tmp_path / "out") == 0
    assert "imported: study hpo_tiny (2 finished trials)" in capsys.readouterr().out
    got, had = tree(tmp_path / "out" / "tiny"), tree(source / "tiny")
    assert got["trials/hpo_tiny/trial_2/checkpoint-6/model.pt"] == \
        had["trials/hpo_tiny/trial_2/checkpoint-6/model.pt"]
    assert {k: v for k, v in got.items() if k != "study.db"} == \
        {k: v for k, v in had.items() if "checkpoint-12" not in k and k != "study.db"}
    assert finished_values(tmp_path / "out" / "tiny" / "study.db") == {0: 0.0, 1: 0.1}
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    assert not list((tmp_path / "out").glob(".bundle*"))


def _members(path: Path) -> tuple[dict, list[tuple[tarfile.TarInfo, bytes]]]:
    with tarfile.open(path) as tar:
        items = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    return json.loads(items[0][1]), items[1:]


def _write(path: Path, manifest: dict | None, items, *, first: bool = True) -> None:
    with tarfile.open(path, "w") as tar:
        body = json.dumps(manifest).encode() if manifest is not None else None
        entries = list(items)
        if body is not None:
            info = tarfile.TarInfo("manifest.json")
            info.size = len(body)
            entries.insert(0 if first else len(entries), (info, body))
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def _with_member(name: str, data: bytes = b"evil", kind: bytes = tarfile.REGTYPE):
    def edit(manifest, items, path):
        import hashlib

        info = tarfile.TarInfo(name)
        info.type, info.size = kind, len(data) if kind == tarfile.REGTYPE else 0
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(),
                                   "size": len(data)}
        _write(path, manifest, [*items, (info, data)])
    return edit


def _altered(manifest, items, path) -> None:
    info, data = next((i, d) for i, d in items if i.name.endswith("model.safetensors"))
    items[items.index((info, data))] = (info, bytes([data[0] ^ 1]) + data[1:])
    _write(path, manifest, items)


DAMAGE = {
    "truncated": lambda raw, path: path.write_bytes(raw[: len(raw) // 2]),
    "not a tar": lambda raw, path: path.write_bytes(b"PK\x03\x04" + raw[:3000]),
    "altered member": lambda raw, path: _altered(*_members_of(raw, path), path),
    "missing manifest": lambda raw, path: _write(path, None, _members_of(raw, path)[1]),
    "manifest last": lambda raw, path: _write(path, *_members_of(raw, path), first=False),
    "newer format": lambda raw, path: _write(
        path, {**_members_of(raw, path)[0], "format": 2}, _members_of(raw, path)[1]),
    "parent folder": lambda raw, path: _with_member("hpo/tiny/../../../evil.sh")(
        *_members_of(raw, path), path),
    "absolute path": lambda raw, path: _with_member("/tmp/evil.sh")(*_members_of(raw, path),
                                                                    path),
    "symlink": lambda raw, path: _with_member("hpo/tiny/models/link", b"",
                                              tarfile.SYMTYPE)(*_members_of(raw, path), path),
    "unlisted member": lambda raw, path: _write(path, *_unlisted(raw, path)),
}


def _members_of(raw: bytes, path: Path):
    path.write_bytes(raw)
    return _members(path)


def _unlisted(raw: bytes, path: Path):
    manifest, items = _members_of(raw, path)
    info = tarfile.TarInfo("hpo/tiny/extra.bin")
    info.size = 3
    return manifest, [*items, (info, b"abc")]


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_bundle_is_one_error_line_and_nothing_is_written(exported, tmp_path, capsys,
                                                                   monkeypatch, damage) -> None:
    project, bundle, _ = exported
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.tar"
    DAMAGE[damage](bundle.read_bytes(), bad)
    capsys.readouterr()
    rc = _cli(project, "import", bad, tmp_path / "out")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: bundle "), err
    assert "format 2" in err[0] if damage == "newer format" else "damaged" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar"]  # nothing written
    assert not Path("/tmp/evil.sh").exists()


def test_the_command_prints_one_line_for_a_truncated_bundle(exported, tmp_path) -> None:
    project, bundle, _ = exported
    bad = tmp_path / "cut.tar"
    bad.write_bytes(bundle.read_bytes()[: bundle.stat().st_size * 2 // 3])
    res = subprocess.run([sys.executable, "-m", "hpo_helpers", "bundle", "import", "--config",
                          str(project.hpo), "--output-dir", str(tmp_path / "out"), str(bad)],
                         capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith(f"error: bundle {bad} is "
                                                                  "damaged"), res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tar"]


def test_another_search_is_refused_unless_a_new_study_is_asked_for(exported, tmp_path,
                                                                   monkeypatch, capsys) -> None:
    project, bundle, _ = exported
    monkeypatch.chdir(tmp_path)
    other = make_project(tmp_path / "p2")
    space = dict(TINY_HPO["search_space"], dropout={"type": "uniform", "low": 0.1, "high": 0.3})
    other.write_hpo(search_space=space)
    capsys.readouterr()
    assert _cli(other, "import", bundle, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: bundle ") and "made for another search: " \
        "search_space.dropout" in err[-1] and "--new-study" in err[-1]
    assert not (tmp_path / "out").exists()
    assert _cli(other, "import", bundle, tmp_path / "out", "--new-study") == 0
    assert "the next run starts a new study" in capsys.readouterr().out
    (archived,) = (tmp_path / "out" / "tiny").glob("study.db.archived-*")
    assert finished_values(archived) == {0: 0.0, 1: 0.1}  # kept aside, not lost
    assert not (tmp_path / "out" / "tiny" / "study.db").exists()


def test_a_study_with_more_finished_trials_is_not_overwritten(exported, tmp_path, monkeypatch,
                                                              capsys) -> None:
    project, bundle, _ = exported
    monkeypatch.chdir(tmp_path)
    parts = project_fingerprint(project)
    ahead, behind = tmp_path / "ahead", tmp_path / "behind"
    make_output(ahead, None, finished=3, parts=parts, offset=1.0)
    make_output(behind, None, finished=1, parts=parts, offset=1.0)
    before = tree(ahead)
    capsys.readouterr()
    assert _cli(project, "import", bundle, ahead) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: the study in {ahead / 'tiny' / 'study.db'} has 3 "
                              "finished trials, bundle ")
    assert tree(ahead) == before
    assert _cli(project, "import", bundle, behind) == 0
    assert finished_values(behind / "tiny" / "study.db") == {0: 0.0, 1: 0.1}
    (aside,) = behind.glob("tiny.stale-*")
    assert finished_values(aside / "study.db") == {0: 1.0}  # set aside, never deleted
    assert (behind / "tiny" / MODELS / "trial_0").is_dir()


def test_other_refusals_are_one_line_each(exported, tmp_path, monkeypatch, capsys) -> None:
    """No study to export, no such bundle, another study's bundle, a sweep running here."""
    from hpo_helpers.study.store import StudyLock

    project, bundle, source = exported
    monkeypatch.chdir(tmp_path)

    def refused(*args: str) -> str:
        capsys.readouterr()
        assert main(["bundle", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        return err[0]

    hpo = ["--config", str(project.hpo)]
    assert "no study at " in refused("export", *hpo, "--output-dir", str(tmp_path / "none"),
                                     str(tmp_path / "b.tar"))
    assert not (tmp_path / "b.tar").exists() and not (tmp_path / "b.tar.tmp").exists()
    assert "does not exist" in refused("import", *hpo, str(tmp_path / "missing.tar"))
    assert "holds study hpo_tiny; this config's study is hpo_distilbert" in refused(
        "import", *hpo, "--backbone", "distilbert", "--output-dir", str(tmp_path / "o"),
        str(bundle))
    lock = StudyLock(source / "tiny" / "study.db")  # a sweep holds this study
    try:
        assert "a sweep is running the study in" in refused(
            "import", *hpo, "--output-dir", str(source), str(bundle))
    finally:
        lock.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# -- Colab -> Kaggle -> Colab with a bundle (end to end) -------------------------------------


def _colab_env(root: Path) -> dict[str, str]:
    return {**_env(), "COLAB_RELEASE_TAG": "test", "HPO_RUNTIME_ROOT": str(root)}


def _kaggle_env(root: Path) -> dict[str, str]:
    return {**_env(), "KAGGLE_KERNEL_RUN_TYPE": "Interactive", "HPO_RUNTIME_ROOT": str(root)}


def _bundle(project, verb: str, path: Path, env: dict, cwd: Path, *extra: str):
    return subprocess.run(project.cli("bundle", verb, "--config", str(project.hpo), *extra,
                                      str(path)), env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_colab_kaggle_colab_hop_with_a_bundle(project, tmp_path) -> None:
    """Started on simulated Colab (Drive mounted) and SIGKILLed inside trial 1; exported and
    imported on simulated Kaggle (empty /kaggle/working), which continues trial 1 from its
    checkpoint; exported again and imported on a fresh Colab VM whose Drive still holds the
    older study (set aside, not lost). No completed trial is lost on the way."""
    _slower_trials(project, n_docs=40, epochs=3)
    run = project.cli("run", "--config", str(project.hpo), "--mlflow-experiment", "hop")
    colab = tmp_path / "colab"
    colab.joinpath("content", "drive", "MyDrive").mkdir(parents=True)
    working = colab / "content/resume-ner/outputs/hpo/tiny/study.db"
    trial1 = working.parent / "trials" / STUDY / "trial_1"
    proc = subprocess.Popen(run, env=_colab_env(colab), cwd=colab / "content", text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait_for(lambda: _running_trial(working) == 1
              and has_checkpoint(trial1), 240, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    first = finished_values(working)
    newest = newest_step(trial1)
    b1 = tmp_path / "colab.tar"
    res = _bundle(project, "export", b1, _colab_env(colab), colab / "content")
    assert res.returncode == 0, res.stderr[-3000:]

    kaggle = tmp_path / "kaggle"
    (kaggle / "kaggle" / "working").mkdir(parents=True)
    kwd = kaggle / "kaggle" / "working"
    res = _bundle(project, "import", b1, _kaggle_env(kaggle), kwd)
    assert res.returncode == 0, res.stderr[-3000:]
    res = subprocess.run([*run, "--max-trials", "2"], env=_kaggle_env(kaggle), cwd=kwd,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    db2 = kwd / "resume-ner/outputs/hpo/tiny/study.db"
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{db2}")
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 1)
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from_step"] == newest, "continued from Colab's checkpoint"
    second = finished_values(db2)
    assert second[0] == first[0] and len(second) == 2
    b2 = tmp_path / "kaggle.tar"
    assert _bundle(project, "export", b2, _kaggle_env(kaggle), kwd).returncode == 0

    shutil.rmtree(colab / "content" / "resume-ner")  # a fresh VM; Drive keeps the old study
    drive = colab / "content/drive/MyDrive/resume-ner-checkpoints/hpo"
    assert finished_values(drive / "tiny" / "study.db") == first
    opened = tmp_path / "opened.json"  # every file SQLite opens during the import
    res = subprocess.run([sys.executable, "-c", AUDITED, str(opened), "bundle", "import",
                          "--config", str(project.hpo), str(b2)], env=_colab_env(colab),
                         cwd=colab / "content", capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert len(list(drive.glob("tiny.stale-*"))) == 1  # Drive's older study, set aside
    seen = json.loads(opened.read_text())
    assert seen and not [p for p in seen if "MyDrive" in p], seen  # never a Drive file
    res = _bundle(project, "import", b1, _colab_env(colab), colab / "content")
    assert res.returncode == 2 and "has 3 finished trials, bundle" in res.stderr
    res = subprocess.run(run, env=_colab_env(colab), cwd=colab / "content",
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-4000:]
    assert "Restored the study from the durable copy" in res.stderr
    third = finished_values(working)
    assert len(third) == 3 and all(third[n] == v for n, v in second.items())
