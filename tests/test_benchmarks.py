"""The benchmark scripts run from a clean checkout and print their JSON (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


def _run(script: str, *args: str) -> dict:
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_train_throughput_compares_with_the_trainer() -> None:
    r = _run("train_throughput.py", "--model", "tiny", "--docs", "12", "--batch-size", "8")
    assert r["ours_tokens_per_s"] > 0 and r["trainer_tokens_per_s"] > 0
    assert r["ratio"] > 0 and 0 <= r["ours_padding_share"] <= r["trainer_padding_share"]


def test_memory_reports_a_peak_per_trial() -> None:
    r = _run("memory.py", "--backbone", "tiny", "--trials", "3", "--docs", "8")
    assert r["trials"] == 3 and len(r["peak_rss_mb_per_trial"]) == 3


def test_bookkeeping_reports_per_size_and_resume_latency() -> None:
    r = _run("bookkeeping.py", "--sizes", "10,30", "--extra", "2", "--smoke-trial-s", "30")
    assert [row["trials_in_study"] for row in r["per_size"]] == [10, 30]
    assert r["resume_latency_s_at_largest"] > 0 and r["checkpoint_write_s_minilm"] > 0
    assert r["growth"]["10->30"]["resume_s"] > 0 and r["per_size"][1]["status_cli_wall_s"] > 0
    assert r["per_size"][1]["notebook03_table_s"] > 0


def test_quality_prints_test_scores_of_sweep_and_refit() -> None:
    r = _run("quality.py", "--docs", "12", "--trials", "1", "--epochs", "1")
    assert 0 <= r["refit_test_micro_f1"] <= 1 and 0 <= r["best_trial_test_micro_f1"] <= 1
    assert r["refit_epochs"] == 1 and r["refit_test_per_type_f1"]
