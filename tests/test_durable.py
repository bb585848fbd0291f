"""Durable copies, checkpoints and the mirror, one module at a time (no sweeps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo_helpers.storage.checkpoints import (
    MARKER,
    latest_checkpoint,
    resume_checkpoint,
    write_checkpoint,
)
from hpo_helpers.storage.durable import (
    DurableWrites,
    copy_folder,
    folder_bytes,
    set_aside,
    write_file,
    write_folder,
)
from hpo_helpers.storage.layout import StudyLayout
from hpo_helpers.storage.mirror import CheckpointMirror


def _fill(text: str):
    def fill(tmp: Path) -> None:
        (tmp / "a.txt").write_text(text)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.txt").write_text(text)
    return fill


def test_write_folder_replaces_atomically_and_leaves_no_tmp(tmp_path: Path) -> None:
    final = tmp_path / "f"
    write_folder(final, _fill("one"), marker="DONE", marker_text="1")
    write_folder(final, _fill("two"), marker="DONE", marker_text="2")
    assert (final / "a.txt").read_text() == "two" and (final / "DONE").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
    assert folder_bytes(final) == len("two") * 2 + 1 and folder_bytes(tmp_path / "x") == 0


def test_a_writer_that_dies_midway_keeps_the_old_folder(tmp_path: Path) -> None:
    final = tmp_path / "f"
    write_folder(final, _fill("old"))

    def broken(tmp: Path) -> None:
        (tmp / "a.txt").write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_folder(final, broken)
    assert (final / "a.txt").read_text() == "old"
    write_folder(final, _fill("new"))  # the next writer clears the leftover
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_a_durable_side_that_vanishes_mid_copy_is_never_recreated(tmp_path: Path) -> None:
    """Drive unmounted while a copy runs: the copy fails; no folder appears under the empty
    mount point (a later copy would otherwise land on the VM's disk, looking durable)."""
    drive = tmp_path / "drive" / "MyDrive"
    drive.mkdir(parents=True)
    writes = DurableWrites.for_folder(drive / "resume-ner-checkpoints" / "hpo" / "tiny")
    source = tmp_path / "ckpt"
    (source / "deep" / "er").mkdir(parents=True)
    (source / "deep" / "er" / "w.bin").write_bytes(b"w")
    (source / "a.bin").write_bytes(b"a")
    final = drive / "resume-ner-checkpoints" / "hpo" / "tiny" / "trials" / "trial_0" / "c-1"

    def unmount_then_copy() -> None:
        copy_folder(source, final)  # the first copy works
        drive.rename(drive.with_name("MyDrive.unmounted"))
        copy_folder(source, final.with_name("c-2"))

    assert not writes.attempt("k", "checkpoints of trial_0", unmount_then_copy)
    assert not drive.exists() and "checkpoints of trial_0" in writes.pending[0]

    # a copy already filling its folder when the mount goes creates nothing either
    drive.with_name("MyDrive.unmounted").rename(drive)

    def vanish(tmp: Path) -> None:
        drive.rename(drive.with_name("MyDrive.gone"))
        copy_folder(source, tmp / "inner")

    with pytest.raises(FileNotFoundError):
        write_folder(final.with_name("c-3"), vanish)
    assert not drive.exists()


def test_write_file_and_set_aside(tmp_path: Path) -> None:
    f = write_file(tmp_path / "x" / "r.json", b"{}")
    moved = set_aside(f, "corrupt")
    assert moved.name.startswith("r.json.corrupt-") and moved.read_bytes() == b"{}"
    assert not f.exists()


def _ckpt(folder: Path, step: int) -> Path:
    return write_checkpoint(folder, step, model_state={}, training_state={},
                            state={"epoch": step, "step": step})


def test_latest_checkpoint_is_a_getter_and_resume_sets_incomplete_aside(tmp_path: Path) -> None:
    trial = tmp_path / "trial_0"
    _ckpt(trial, 3)
    good = _ckpt(trial, 5)
    assert sorted(p.name for p in trial.iterdir()) == ["checkpoint-5"]
    broken = trial / "checkpoint-9"
    broken.mkdir()
    (broken / "model.pt").write_bytes(b"")
    assert latest_checkpoint(trial) == good and broken.exists()
    assert resume_checkpoint(trial) == good and not broken.exists()
    assert any(p.name.startswith("trial_0-checkpoint-9.incomplete-") for p in tmp_path.iterdir())
    assert (good / MARKER).read_text() == "5\n"


def _layout(tmp_path: Path) -> StudyLayout:
    return StudyLayout.for_study("hpo_x", working_dir=tmp_path / "work",
                                 durable_dir=tmp_path / "drive", created_at="2026-01-01T00:00:00")


def test_mirror_keeps_folds_under_their_trial_and_a_fresh_vm_pulls_them(tmp_path: Path) -> None:
    lay = _layout(tmp_path)
    trial = lay.trial_dir(2)
    fold0, fold1 = (StudyLayout.fold_dir(trial, f, 2) for f in (0, 1))
    mirror = CheckpointMirror(lay)
    try:
        _ckpt(fold0, 4)
        best = StudyLayout.best_model_dir(fold0)
        write_folder(best, _fill("weights"))
        mirror.submit(_ckpt(fold0, 8))
        write_file(StudyLayout.fold_result(fold0), json.dumps({"best_f1": 0.5}).encode())
        mirror.submit(StudyLayout.fold_result(fold0))
        mirror.submit(_ckpt(fold1, 3))
        mirror.flush()
    finally:
        mirror.close()
    remote = lay.mirror_of(trial)
    assert remote == tmp_path / "drive" / "trials" / "hpo_x" / "trial_2"
    assert sorted(p.name for p in (remote / "fold_0").iterdir()) == [
        "best-model", "checkpoint-8", "fold_result.json"]
    assert [p.name for p in (remote / "fold_1").iterdir()] == ["checkpoint-3"]
    import shutil

    shutil.rmtree(tmp_path / "work")  # fresh VM
    fresh = CheckpointMirror(lay)
    try:
        pulled = fresh.pull(trial)
    finally:
        fresh.close()
    assert sorted(p.relative_to(trial).as_posix() for p in pulled) == [
        "fold_0/checkpoint-8", "fold_1/checkpoint-3"]
    assert (StudyLayout.best_model_dir(fold0) / "sub" / "b.txt").read_text() == "weights"
    assert json.loads(StudyLayout.fold_result(fold0).read_text()) == {"best_f1": 0.5}
    assert latest_checkpoint(fold1).name == "checkpoint-3"
    fresh = CheckpointMirror(lay)
    try:
        assert fresh.pull(trial) == []  # local is as new as the mirror
        fresh.discard(trial)
    finally:
        fresh.close()
    assert not remote.exists()
