"""Portability (issue 14): the package and a CPU sweep work where ``fcntl`` does not exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpo_helpers import StudyLockedError
from hpo_helpers.core.filelocks import ProcessLock, holder
from hpo_helpers.study.store import StudyLock

from .conftest import REPO

# Run Python with fcntl unimportable, as on Windows (msvcrt is absent too on Linux, so the
# pid-file backend is what runs).
NO_FCNTL = "import sys; sys.modules['fcntl'] = None; sys.modules['msvcrt'] = None\n"


def _run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NO_FCNTL + code], cwd=cwd, text=True,
                          capture_output=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_import_and_lock_without_fcntl(tmp_path: Path) -> None:
    code = f"""
import hpo_helpers
from hpo_helpers.core import filelocks
from hpo_helpers.study.store import StudyLock, lock_holder
from pathlib import Path
db = Path({str(tmp_path / 'study.db')!r})
lock = StudyLock(db)
try:
    StudyLock(db)
except hpo_helpers.StudyLockedError as exc:
    print("refused:", exc)
print("holder:", lock_holder(db))
lock.close()
print("after:", lock_holder(db), filelocks._backend())
"""
    res = _run(code, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "refused: another sweep is already running this study (pid" in res.stdout
    assert "holder: pid" in res.stdout and "after: None pidfile" in res.stdout


def test_pidfile_lock_of_a_dead_process_is_free(tmp_path: Path) -> None:
    lock_file = tmp_path / "study.db.lock"
    code = f"""
from hpo_helpers.core.filelocks import ProcessLock
import os
assert ProcessLock({str(lock_file)!r}).acquire()
os._exit(0)  # dies holding it: no release
"""
    assert _run(code, tmp_path).returncode == 0
    assert lock_file.exists()
    res = _run(f"""
from hpo_helpers.core.filelocks import ProcessLock, holder
print(holder({str(lock_file)!r}), ProcessLock({str(lock_file)!r}).acquire())
""", tmp_path)
    assert res.stdout.strip() == "None True", res.stderr[-2000:]


def test_os_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    db = tmp_path / "study.db"
    lock = StudyLock(db)
    try:
        assert ProcessLock(tmp_path / "study.db.lock").acquire() is False
        assert holder(tmp_path / "study.db.lock").startswith("pid ")
        with pytest.raises(StudyLockedError, match=r"already running this study \(pid \d+ on "):
            StudyLock(db)
    finally:
        lock.close()
    assert holder(tmp_path / "study.db.lock") is None


@pytest.mark.slow
def test_cpu_sweep_without_fcntl(project, tmp_path: Path) -> None:
    code = f"""
import sys
from hpo_helpers.frontends.cli import main
sys.exit(main(["run", "--config", {str(project.hpo)!r}, "--output-dir",
               {str(project.output_dir)!r}, "--max-trials", "1"]))
"""
    res = _run(code, tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    status = _run(f"""
import sys
from hpo_helpers.frontends.cli import main
sys.exit(main(["status", "--config", {str(project.hpo)!r}, "--output-dir",
               {str(project.output_dir)!r}, "--json"]))
""", tmp_path)
    assert json.loads(status.stdout)["n_complete"] == 1, status.stderr[-2000:]
