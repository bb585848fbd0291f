"""SQLite never opens a Drive file (#14 item 5): status, panel, 03's listing, dashboard, start
fresh on a simulated Colab, each recorded by an audit hook on ``sqlite3.connect``."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from hpo_helpers import load_configs
from hpo_helpers.core.runtime import detect
from hpo_helpers.results.inspection import default_roots, find_study_files, load_studies
from hpo_helpers.study.status import plan, status, study_paths
from hpo_helpers.study.store import archive_study

from .test_durability import DRIVE, DURABLE, WORKING, _run

_OPENED: list[str] = []
_RECORDING = [False]


def _hook(event: str, args: tuple) -> None:
    if event == "sqlite3.connect" and _RECORDING[0]:
        _OPENED.append(str(args[0]))


sys.addaudithook(_hook)  # audit hooks cannot be removed: it records only while _RECORDING


@pytest.fixture
def audit():
    _OPENED.clear()
    _RECORDING[0] = True
    yield _OPENED
    _RECORDING[0] = False


def _on_drive(opened: list[str], root: Path) -> list[str]:
    drive = str(root.joinpath(*DRIVE).resolve())
    return [p for p in opened if drive in str(Path(p).resolve()) or str(root / "content/drive")
            in p]


def test_no_reader_opens_sqlite_on_drive(project, tmp_path, audit) -> None:
    root = tmp_path / "vm"
    root.joinpath(*DRIVE).mkdir(parents=True)
    rt = detect({"COLAB_GPU": "1"}, root=root)
    _RECORDING[0] = False
    _run(project, rt)
    shutil.rmtree(root / "content" / "resume-ner")  # a fresh VM: only Drive is left
    _RECORDING[0] = True
    cfg = load_configs(project.config_dir, project.hpo)

    info = status(cfg, runtime=rt)  # what the panel shows first on a fresh VM
    assert info["n_complete"] == 1
    assert plan(cfg, runtime=rt)["n_complete"] == 1
    if importlib.util.find_spec("ipywidgets"):
        from hpo_helpers.frontends.widgets import ResumePanel

        panel = ResumePanel(config_dir=project.config_dir, hpo_config=project.hpo, runtime=rt)
        assert panel.info["n_complete"] == 1
    roots = default_roots(project.config_dir, project.hpo, runtime=rt)
    files = find_study_files(roots)
    assert files == [root.joinpath(*DURABLE, "study.db").resolve()]
    assert [s.study_name for s in load_studies(files)] == ["hpo_tiny"]  # 03's listing
    assert audit and not _on_drive(audit, root), audit

    # A second session: the live copy and the Drive snapshot both exist; 03 lists it once.
    _RECORDING[0] = False
    _run(project, rt, max_trials=2)
    _RECORDING[0] = True
    files = find_study_files(default_roots(project.config_dir, project.hpo, runtime=rt))
    assert files == [root.joinpath(*WORKING, "study.db").resolve()]
    studies = load_studies(files)
    assert len(studies) == 1 and len(studies[0].trials) == 2

    # Start fresh: archives both copies; only the local one is opened (WAL folded in).
    moved = archive_study(study_paths(cfg, runtime=rt), "hpo_tiny")
    assert any(root.joinpath(*DRIVE) in p.parents for p in moved)
    assert not _on_drive(audit, root), audit


def test_dashboard_serves_a_local_copy_of_a_drive_study(project, tmp_path) -> None:
    pytest.importorskip("optuna_dashboard")
    from hpo_helpers.frontends.dashboard import start_dashboard

    root = tmp_path / "vm"
    root.joinpath(*DRIVE).mkdir(parents=True)
    rt = detect({"COLAB_GPU": "1"}, root=root)
    _run(project, rt)
    shutil.rmtree(root / "content" / "resume-ner")
    durable = root.joinpath(*DURABLE, "study.db")
    dash = start_dashboard(durable, runtime=detect({}, root=root))
    try:
        # the storage reaches the server through its environment, never its arguments (#11)
        from hpo_helpers.frontends.dashboard import STORAGE_ENV

        env = Path(f"/proc/{dash.process.pid}/environ").read_bytes().split(b"\0")
        served = next(v.split(b"=", 1)[1].decode() for v in env
                      if v.startswith(STORAGE_ENV.encode() + b"="))
        assert "://" not in served and "drive" not in served, served
        import json
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{dash.port}/api/studies") as r:
            assert "hpo_tiny" in json.dumps(json.load(r))
    finally:
        dash.stop()


def test_read_copies_of_a_drive_study_are_removed_and_replaced_whole(tmp_path,
                                                                   monkeypatch) -> None:
    """Each process's read copies go with it (a killed one's with the next process that makes
    one), and a re-copy never truncates the file a reader still has open."""
    import sqlite3
    import subprocess
    import tempfile

    drive = tmp_path.joinpath(*DRIVE)
    drive.mkdir(parents=True)
    db = drive / "study.db"
    con = sqlite3.connect(db)
    con.execute("create table t (x)")
    con.executemany("insert into t values (?)", [(i,) for i in range(1000)])
    con.commit()
    con.close()
    reader = (f"import sys, time, sqlite3; from pathlib import Path; "
              f"from hpo_helpers.storage.snapshot import readable; local = readable(Path({str(db)!r})); "
              f"print(local, flush=True); "
              f"print(sqlite3.connect(local).execute('select count(*) from t').fetchone()[0], "
              f"flush=True); time.sleep(float(sys.argv[1]))")
    done = subprocess.run([sys.executable, "-c", reader, "0"], capture_output=True, text=True,
                          check=True)
    local, count = done.stdout.split()
    assert count == "1000" and "drive" not in local.lower()
    assert Path(local).parents[1].parent == Path(tempfile.gettempdir())
    assert not Path(local).parents[1].exists()  # removed at exit

    killed = subprocess.Popen([sys.executable, "-c", reader, "60"], stdout=subprocess.PIPE,
                              text=True)
    left = Path(killed.stdout.readline().strip())
    assert killed.stdout.readline().strip() == "1000"
    killed.kill()  # SIGKILL: no exit handler runs
    killed.wait()
    assert left.exists()
    alive = subprocess.Popen([sys.executable, "-c", reader, "60"], stdout=subprocess.PIPE,
                             text=True)
    kept = Path(alive.stdout.readline().strip())
    from hpo_helpers.storage import snapshot

    monkeypatch.setattr(snapshot, "_read_folder", None)  # as in a process that made none yet
    first = snapshot.readable(db)
    assert not left.parents[1].exists()  # the dead process's, when this one made its own
    assert kept.exists()  # a live process's stay
    alive.kill()
    alive.wait()
    held = sqlite3.connect(first)
    cursor = held.execute("select x from t")
    cursor.fetchmany(10)
    con = sqlite3.connect(db)
    con.executemany("insert into t values (?)", [(i,) for i in range(1000, 3000)])
    con.commit()
    con.close()
    second = snapshot.readable(db)  # a refresh while `held` is mid-read
    assert second == first
    assert len(cursor.fetchall()) == 990  # the old copy, whole
    assert sqlite3.connect(second).execute("select count(*) from t").fetchone()[0] == 3000
    held.close()
