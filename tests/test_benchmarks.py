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


def test_quality_runs_a_preset_as_a_user_and_prints_test_scores() -> None:
    r = _run("quality.py", "--config", str(REPO / "config" / "hpo" / "smoke.yaml"),
             "--backbone", "tiny", "--docs", "12", "--max-trials", "1", "--epochs", "1")
    assert 0 <= r["test_micro_f1"] <= 1 and 0 <= r["test_macro_f1"] <= 1
    assert r["test_per_type"] and all(v["train_entities"] > 0 for v in r["test_per_type"].values())
    assert len(r["best_trial_epoch_curve"]) == 1 and r["trials"] == 1
    assert r["wall_minutes"] > 0 and r["anytime_minutes_best_f1"]


def test_quality_trainer_only_trains_the_baseline_for_the_cpu_time_given() -> None:
    r = _run("quality.py", "--config", str(REPO / "config" / "hpo" / "smoke.yaml"),
             "--backbone", "tiny", "--docs", "12", "--trainer-only", "0.3")
    trainer = r["trainer"]
    assert r["budget_cpu_minutes"] == 0.3 and "test_micro_f1" not in r  # ours did not run
    assert 0 <= trainer["test_micro_f1"] <= 1 and trainer["epochs_trained"] > 0
    assert trainer["cpu_minutes"] >= 0.3  # it stops once the budget is spent, not before


def test_search_efficiency_stops_every_method_at_the_same_epoch_budget() -> None:
    r = _run("search_efficiency.py", "--seeds", "1", "--budget", "5", "--epochs", "3",
             "--docs", "6", "--eval-docs", "3")
    assert r["budget_epochs"] == 5 and r["seeds"] == 1
    assert set(r["methods"]) == {"random", "tpe_median", "tpe_hyperband_pruner",
                                 "hyperband_continue", "pbt"}
    for name, m in r["methods"].items():
        assert m["epochs_trained"] == 5, name
        assert set(m["best_val_f1_at"]) == {"0.25", "0.5", "1.0"}, name
        assert m["best_val_f1_at"]["0.25"] <= m["best_val_f1_at"]["1.0"], name
        assert m["test_f1_of_best"] is not None, name
    assert r["verdict"].startswith("not judged")
