"""Drive trouble never costs a trial (#14 item 4): read-only, full, unmounted mid-sweep.

Root ignores ``chmod``, so read-only and full Drives are real mounts (a read-only bind mount,
a tiny tmpfs); where ``mount`` is not permitted the test is skipped with the reason, and the
injected-error test covers the same policy at the one durable-copy boundary.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from optuna.trial import TrialState

from hpo_helpers import load_configs, run_sweep
from hpo_helpers.core.runtime import detect
from hpo_helpers.sweep.events import SweepEvents

from .test_durability import DRIVE, DURABLE, WORKING

WARNING = "The durable folder refuses writes"


def _sweep(project, rt, max_trials: int = 3, events: SweepEvents | None = None):
    cfg = load_configs(project.config_dir, project.hpo)
    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(
        cfg.hpo, max_trials=max_trials, keep_top_k=2, mirror_trial_checkpoints=True))
    return run_sweep(cfg, runtime=rt, events=events)


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    root = tmp_path / "vm"
    drive = root.joinpath(*DRIVE)
    drive.mkdir(parents=True)
    yield root, drive
    subprocess.run(["umount", str(drive)], capture_output=True)


def _check_everything_local(project, root: Path, out, caplog, max_trials: int = 3) -> None:
    assert len(out.study.get_trials(states=(TrialState.COMPLETE,))) == max_trials
    assert caplog.text.count(WARNING) == 1, caplog.text[-3000:]
    assert "not durable" in caplog.text.lower() and "MB free" in caplog.text
    assert root.joinpath(*WORKING, "study.db").is_file()
    local_models = root.joinpath(*WORKING, "models")
    kept = sorted(p.name for p in local_models.glob("*/trial_*"))
    assert len(kept) == 2, kept  # the top 2 wait on local disk: nothing lost


def test_read_only_drive_costs_no_trial(project, vm, caplog) -> None:
    root, drive = vm
    if not _mount("--bind", "-o", "ro", str(drive), str(drive)):
        pytest.skip("read-only bind mount not permitted here (the injected-error test covers "
                    "the policy)")
    with caplog.at_level(logging.INFO):
        out = _sweep(project, detect({"COLAB_GPU": "1"}, root=root))
    _check_everything_local(project, root, out, caplog)
    assert not any(drive.iterdir())


def test_full_drive_costs_no_trial(project, vm, caplog) -> None:
    root, drive = vm
    if not _mount("-t", "tmpfs", "-o", "size=8k", "tmpfs", str(drive)):
        pytest.skip("tmpfs mount not permitted here (the injected-error test covers the policy)")
    with caplog.at_level(logging.INFO):
        out = _sweep(project, detect({"COLAB_GPU": "1"}, root=root))
    _check_everything_local(project, root, out, caplog)
    assert "No space left on device" in caplog.text
    assert not list(drive.rglob("*.tmp-*")), "a partial copy must not stay on the full disk"


class _Unplug(SweepEvents):
    """Drive vanishes when trial 0 ends and comes back when trial ``back_after`` ends (never
    during the sweep: None)."""

    def __init__(self, drive: Path, back_after: int | None = 1) -> None:
        super().__init__()
        self.drive, self.back_after = drive, back_after

    def trial_finished(self, number, state, value, n_complete, best) -> None:
        super().trial_finished(number, state, value, n_complete, best)
        away = self.drive.with_name("MyDrive.unmounted")
        if number == 0:
            self.drive.rename(away)
        elif number == self.back_after:
            away.rename(self.drive)


def test_drive_unmounted_mid_sweep_costs_no_trial_and_catches_up(project, vm, caplog) -> None:
    root, drive = vm
    with caplog.at_level(logging.INFO):
        out = _sweep(project, detect({"COLAB_GPU": "1"}, root=root), events=_Unplug(drive))
    assert len(out.study.get_trials(states=(TrialState.COMPLETE,))) == 3
    assert caplog.text.count(WARNING) == 1 and "Drive unmounted?" in caplog.text
    assert "Durable copies caught up" in caplog.text
    # Nothing was written under the empty mount point while Drive was away ...
    assert not drive.with_name("MyDrive.unmounted").exists()
    # ... and once it came back, the durable side caught up: study and the top-2 models.
    import optuna

    durable = optuna.load_study(study_name="hpo_tiny",
                                storage=f"sqlite:///{root.joinpath(*DURABLE, 'study.db')}")
    assert len(durable.get_trials(states=(TrialState.COMPLETE,))) == 3
    ranked = sorted(out.study.get_trials(states=(TrialState.COMPLETE,)),
                    key=lambda t: (-t.value, t.number))
    models = root.joinpath(*DURABLE, "models")
    assert sorted(p.name for p in models.glob("*/trial_*")) == sorted(
        f"trial_{t.number}" for t in ranked[:2])
    assert not list(root.joinpath(*WORKING, "models").glob("*/trial_*"))
    assert not list(root.joinpath(*DURABLE, "trials").rglob("checkpoint-*")), \
        "the mirror of the trial that ended while Drive was away is removed once it is back"


def test_injected_enospc_at_the_durable_copy_costs_no_trial(project, tmp_path, caplog,
                                                            monkeypatch) -> None:
    """Where mounts are not permitted: ENOSPC and EROFS raised at the one copy boundary."""
    import hpo_helpers.storage.durable as durable

    real = durable.write_folder
    calls = {"n": 0}

    def refuse(final: Path, *args, **kwargs):
        if DRIVE[-1] in final.parts:
            calls["n"] += 1
            raise OSError(errno.ENOSPC if calls["n"] % 2 else errno.EROFS,
                          "No space left on device" if calls["n"] % 2
                          else "Read-only file system")
        return real(final, *args, **kwargs)

    monkeypatch.setattr(durable, "write_folder", refuse)
    real_bytes = durable.copy_bytes

    def refuse_bytes(source: Path, target: Path, **kwargs):
        if DRIVE[-1] in target.parts:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_bytes(source, target, **kwargs)

    monkeypatch.setattr("hpo_helpers.storage.snapshot.copy_bytes", refuse_bytes)
    root = tmp_path / "vm"
    root.joinpath(*DRIVE).mkdir(parents=True)
    with caplog.at_level(logging.INFO):
        out = _sweep(project, detect({"COLAB_GPU": "1"}, root=root))
    _check_everything_local(project, root, out, caplog)
    assert calls["n"] > 0


def test_models_waiting_on_local_disk_are_scored_found_and_sent_next_session(
        project, vm, caplog) -> None:
    from hpo_helpers.results.evaluate import best_model_dir

    root, drive = vm
    rt = detect({"COLAB_GPU": "1"}, root=root)
    cfg = load_configs(project.config_dir, project.hpo)
    with caplog.at_level(logging.INFO):
        out = _sweep(project, rt, events=_Unplug(drive, back_after=None))
    ranked = sorted(out.study.get_trials(states=(TrialState.COMPLETE,)),
                    key=lambda t: (-t.value, t.number))
    top = sorted(t.number for t in ranked[:2])
    waiting = root.joinpath(*WORKING, "models")
    assert sorted(int(p.name[6:]) for p in waiting.glob("*/trial_*")) == top
    # the user still gets the test scores of the top models and `--model best`
    assert sorted(int(n) for n in out.test_scores) == top
    best = best_model_dir(cfg, runtime=rt)
    assert waiting in best.parents and best.name == f"trial_{ranked[0].number}"

    drive.with_name("MyDrive.unmounted").rename(drive)  # Drive is back for the next session
    with caplog.at_level(logging.INFO):
        again = _sweep(project, rt)
    assert again.trials_run == 0
    models = root.joinpath(*DURABLE, "models")
    assert sorted(int(p.name[6:]) for p in models.glob("*/trial_*")) == top
    assert not list(waiting.glob("*/trial_*"))
    assert models in best_model_dir(cfg, runtime=rt).parents
    assert (best_model_dir(cfg, runtime=rt) / "metrics.json").is_file()
