"""The fault-injection harness, as CI runs it: real processes SIGKILLed at awkward moments."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


def test_five_kills_with_fresh_vms_lose_nothing() -> None:
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fault_injection.py"),
                          "--kills", "5", "--fresh-vm-every", "2", "--seed", "1"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert report["kills"] >= 5 and report["fresh_vm_kills"] >= 2
    assert report["completed_trials_lost"] == 0
    assert report["trials_left_running"] == 0
    assert report["completed_trials"] == 4
    assert report["redone_steps_per_kill"], "no kill landed inside a trial"
    # Local disk: checkpoints are synchronous, so a kill costs at most one interval. A fresh VM
    # resumes from Drive, where the newest checkpoint may still be in flight (copied in the
    # background so that training never waits): at most one more interval.
    assert report["max_redone_fraction_local"] <= 1.0
    assert report["max_redone_fraction_fresh_vm"] <= 2.0
    assert report["database_integrity"] == "ok"
    assert report["durable_snapshot_integrity"] == "ok"
    assert report["mlflow"] == {"parents": 1, "finished_children_of_complete": 4, "ok": True}


def test_readers_during_kills_see_no_error_and_break_nothing() -> None:
    """status, a hand-typed optuna.load_study and optuna-dashboard read throughout (issue 11)."""
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fault_injection.py"),
                          "--kills", "3", "--fresh-vm-every", "2", "--seed", "2", "--readers",
                          "--max-trials", "3", "--epochs", "2"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    readers = report["readers"]
    assert readers["errors"] == 0, readers["error_samples"]
    assert all(n > 0 for n in readers["calls"].values()), readers["calls"]
    assert report["sweep_crashes"] == 0
    assert report["completed_trials_lost"] == 0 and report["completed_trials"] == 3
