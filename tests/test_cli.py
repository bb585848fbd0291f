from __future__ import annotations

import json
import subprocess
import sys

import hpo_helpers

from .conftest import PYTHON, REPO


def _run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "hpo_helpers", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def test_bad_config_is_one_line_without_traceback(project) -> None:
    project.hpo.write_text(project.hpo.read_text() + "max_trails: 4\n")
    res = _run("run", "--config", str(project.hpo), "--output-dir", str(project.output_dir))
    assert res.returncode == 2
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "unknown key(s) max_trails" in lines[0]
    assert "Traceback" not in res.stderr
    debug = _run("run", "--config", str(project.hpo), "--debug")
    assert "Traceback" in debug.stderr and "ConfigError" in debug.stderr


def test_unknown_backbone_names_the_offline_choices(project) -> None:
    res = _run("run", "--config", str(project.hpo), "--backbone", "bert-large-nope",
               "--output-dir", str(project.output_dir))
    assert res.returncode == 2
    assert "unknown backbone 'bert-large-nope'" in res.stderr and "minilm" in res.stderr


def test_hub_backbone_offline_says_use_minilm_or_tiny(project) -> None:
    res = _run("run", "--config", str(project.hpo), "--backbone", "distilbert",
               "--output-dir", str(project.output_dir))
    assert res.returncode == 2, res.stderr[-2000:]
    assert "--backbone minilm" in res.stderr and "--backbone tiny" in res.stderr


def test_run_then_status_json(project) -> None:
    res = _run("run", "--config", str(project.hpo), "--output-dir", str(project.output_dir),
               "--max-trials", "1")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "best F1:" in res.stdout and "checkpoint:" in res.stdout
    st = _run("status", "--config", str(project.hpo), "--output-dir", str(project.output_dir),
              "--json")
    info = json.loads(st.stdout)
    for key in ("study_name", "checkpoint_path", "n_trials", "n_complete", "n_running",
                "n_failed", "n_pruned", "best_value", "best_params"):
        assert key in info
    assert info["n_complete"] == 1 and info["study_name"] == "hpo_tiny"
    plain = _run("status", "--config", str(project.hpo), "--output-dir", str(project.output_dir))
    assert "COMPLETE 1/2" in plain.stdout


def test_status_of_a_study_not_started(project) -> None:
    st = _run("status", "--config", str(project.hpo), "--output-dir", str(project.output_dir),
              "--json")
    info = json.loads(st.stdout)
    assert info["exists"] is False and info["n_trials"] == 0
    assert not project.output_dir.exists()  # reading status creates nothing


def test_make_demo_data_writes_three_splits(tmp_path) -> None:
    res = _run("make-demo-data", "--out", str(tmp_path / "d"))
    assert res.returncode == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == [
        "test.json", "train.json", "validation.json"]


def test_public_api_is_sorted_and_import_is_light() -> None:
    assert hpo_helpers.__all__ == sorted(hpo_helpers.__all__)
    code = "import sys, hpo_helpers; print('torch' in sys.modules, 'optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO).stdout
    assert out.strip() == "False False"
