"""Continuing from an earlier run's output (issue 22 item 1): ``--resume-from DIR``,
``resume_from:``, and on Kaggle the newest attached output when ``/kaggle/working`` has none.

The fast tests build earlier outputs in a second (transfer_fixtures); the Kaggle version chain
runs real sweeps in subprocesses on a simulated Kaggle (HPO_RUNTIME_ROOT), kills one with
SIGKILL from outside, and attaches each version's output read-only to the next.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo_helpers import ConfigError, load_configs, study_status
from hpo_helpers.core.runtime import detect
from hpo_helpers.frontends.cli import main
from hpo_helpers.sweep.transfer import take_earlier_output

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
    read_only,
    tree,
)

KAGGLE_OUTPUT = ("resume-ner", "outputs", "hpo")  # inside /kaggle/working, and so its copy


def _cfg(project):
    return load_configs(project.config_dir, project.hpo)


def _kaggle(tmp_path: Path, name: str = "vm"):
    root = tmp_path / name
    (root / "kaggle" / "working").mkdir(parents=True)
    return root, detect({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, root=root)


def test_an_earlier_output_is_copied_verified_and_a_second_run_copies_nothing(
        project, tmp_path, caplog) -> None:
    parts = project_fingerprint(project)
    src = tmp_path / "version1"  # a Kaggle version's /kaggle/working, as attached
    make_output(src.joinpath(*KAGGLE_OUTPUT), src / "resume-ner" / "mlruns" / "mlflow.db",
                finished=2, parts=parts)
    before = tree(src)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        used = take_earlier_output(_cfg(project), src, output_dir=out, cwd=tmp_path)
    assert used == str(src.joinpath(*KAGGLE_OUTPUT, "tiny", "study.db"))
    assert finished_values(out / "tiny" / "study.db") == {0: 0.0, 1: 0.1}
    trial = out / "tiny" / "trials" / STUDY / "trial_2"
    assert sorted(p.name for p in trial.iterdir()) == ["checkpoint-6"]  # newest complete only
    assert (out / "tiny" / MODELS / "trial_0" / "model.safetensors").read_bytes() == \
        (src.joinpath(*KAGGLE_OUTPUT, "tiny", MODELS, "trial_0", "model.safetensors")
         ).read_bytes()
    assert (out / ".backbones" / "tiny-0123456789abcdef" / "tokenizer.json").is_file()
    assert (tmp_path / "mlruns" / "mlflow.db").is_file()  # MLflow's store came with it
    assert "Continuing from the earlier output" in caplog.text
    assert "with 1 checkpoint(s) and MLflow's store, verified" in caplog.text
    assert tree(src) == before  # the source is only read
    assert not list(out.glob(".earlier*"))  # no staging left behind
    copied = tree(out)
    caplog.clear()
    assert take_earlier_output(_cfg(project), src, output_dir=out, cwd=tmp_path) is None
    assert tree(out) == copied and "Continuing" not in caplog.text


def test_status_with_resume_from_reads_the_earlier_study_and_writes_nothing(
        project, tmp_path, capsys) -> None:
    make_output(tmp_path / "earlier" / "hpo", None, finished=2, parts=project_fingerprint(project))
    before = tree(tmp_path / "earlier")
    assert main(["status", "--config", str(project.hpo), "--output-dir", str(tmp_path / "out"),
                 "--resume-from", str(tmp_path / "earlier")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"No study hpo_tiny at {tmp_path / 'out' / 'tiny' / 'study.db'} "
                             "yet: a run continues the earlier one at ")
    assert out[2].startswith("  COMPLETE 2/2  RUNNING 1")
    assert not (tmp_path / "out").exists() and tree(tmp_path / "earlier") == before


def test_a_stale_source_is_never_copied_over_newer_work(project, tmp_path, caplog) -> None:
    parts = project_fingerprint(project)
    src, out = tmp_path / "drive-copy", tmp_path / "out"
    make_output(src / "hpo", src / "mlruns" / "mlflow.db", finished=2, parts=parts)
    make_output(out, None, finished=3, parts=parts, offset=1.0)  # newer work here
    here = tree(out)
    with caplog.at_level(logging.WARNING):
        assert take_earlier_output(_cfg(project), src, output_dir=out, cwd=tmp_path) is None
    assert tree(out) == here
    assert "is not copied over the study in" in caplog.text
    assert "it has 2 finished trial(s), the study here 3: it is not newer" in caplog.text


def test_a_newer_source_replaces_the_study_here_which_is_set_aside(project, tmp_path,
                                                                    caplog) -> None:
    parts = project_fingerprint(project)
    src, out = tmp_path / "downloaded", tmp_path / "out"
    make_output(src / "hpo", src / "mlruns" / "mlflow.db", finished=3, parts=parts)
    make_output(out, None, finished=1, parts=parts, offset=1.0)
    with caplog.at_level(logging.INFO):
        take_earlier_output(_cfg(project), src, output_dir=out, cwd=tmp_path)
    assert finished_values(out / "tiny" / "study.db") == {0: 0.0, 1: 0.1, 2: pytest.approx(0.2)}
    (aside,) = out.glob("tiny.stale-*")
    assert finished_values(aside / "study.db") == {0: 1.0}  # never deleted
    assert "set aside: " in caplog.text


def test_another_search_is_not_copied_over_the_study_here(project, tmp_path, caplog) -> None:
    parts = project_fingerprint(project)
    other = {**parts, "dataset": "0000000000000000"}
    src, out = tmp_path / "other", tmp_path / "out"
    make_output(src / "hpo", None, finished=5, parts=other)
    make_output(out, None, finished=1, parts=parts)
    here = tree(out)
    with caplog.at_level(logging.WARNING):
        take_earlier_output(_cfg(project), src, output_dir=out, cwd=tmp_path)
    assert tree(out) == here
    assert "made for another search space, objective or dataset" in caplog.text


def test_kaggle_uses_the_newest_attached_output_and_names_it(project, tmp_path,
                                                             caplog) -> None:
    parts = project_fingerprint(project)
    root, runtime = _kaggle(tmp_path)
    older = root / "kaggle" / "input" / "hpo-run-v1"
    newer = root / "kaggle" / "input" / "hpo-run-v2"
    make_output(older.joinpath(*KAGGLE_OUTPUT), None, finished=1, parts=parts)
    make_output(newer.joinpath(*KAGGLE_OUTPUT), None, finished=2, parts=parts)
    seed = root / "kaggle" / "input" / "original-tool"  # the seed's layout: found, older
    make_output(seed / "resume-ner-azureml" / "outputs" / "hpo", None, finished=0, parts=parts)
    (root / "kaggle" / "input" / "resume-dataset").mkdir()  # a data set: no study in it
    info = study_status(_cfg(project), runtime=runtime)  # what a run would continue, read-only
    assert info["earlier_output"] == str(newer.joinpath(*KAGGLE_OUTPUT, "tiny", "study.db"))
    assert info["exists"] and info["n_complete"] == 2 and info["n_running"] == 1
    with caplog.at_level(logging.INFO):
        used = take_earlier_output(_cfg(project), runtime=runtime, cwd=tmp_path)
    working = root / "kaggle" / "working" / "resume-ner" / "outputs" / "hpo" / "tiny"
    assert used == str(newer.joinpath(*KAGGLE_OUTPUT, "tiny", "study.db"))
    assert finished_values(working / "study.db") == {0: 0.0, 1: 0.1}
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Kaggle:"))
    assert f"continuing from the attached output {newer}" in line
    assert "hpo-run-v1" in line and "original-tool" in line  # the others, named
    caplog.clear()  # the study is in /kaggle/working now: continued as it is
    assert take_earlier_output(_cfg(project), runtime=runtime, cwd=tmp_path) is None


def test_on_colab_the_earlier_study_goes_to_drive_and_the_older_vm_copy_aside(
        project, tmp_path) -> None:
    """Colab with Drive: the durable folder is Drive's; an older live copy on this VM's disk
    is set aside, so the run restores the new study from Drive as on a fresh VM."""
    parts = project_fingerprint(project)
    root = tmp_path / "vm"
    root.joinpath("content", "drive", "MyDrive").mkdir(parents=True)
    runtime = detect({"COLAB_GPU": "1"}, root=root)
    drive = root / "content/drive/MyDrive/resume-ner-checkpoints"
    local = root / "content/resume-ner"
    make_output(local / "outputs" / "hpo", local / "mlruns" / "mlflow.db", finished=1,
                parts=parts, offset=1.0)
    src = tmp_path / "kaggle-output"
    make_output(src.joinpath(*KAGGLE_OUTPUT), src / "resume-ner" / "mlruns" / "mlflow.db",
                finished=2, parts=parts)
    take_earlier_output(_cfg(project), src, runtime=runtime, cwd=tmp_path)
    assert finished_values(drive / "hpo" / "tiny" / "study.db") == {0: 0.0, 1: 0.1}
    assert (drive / "hpo" / "tiny" / "trials" / STUDY / "trial_2" / "checkpoint-6").is_dir()
    assert (drive / "mlruns" / "mlflow.db").is_file()
    assert not (local / "outputs" / "hpo" / "tiny").exists()
    assert len(list((local / "outputs" / "hpo").glob("tiny.stale-*"))) == 1
    assert len(list((local / "mlruns").glob("mlflow.db.stale-*"))) == 1


def test_a_named_folder_without_the_study_is_one_error_line(project, tmp_path, capsys) -> None:
    empty = tmp_path / "nothing-here"
    empty.mkdir()
    rc = main(["run", "--config", str(project.hpo), "--output-dir", str(tmp_path / "out"),
               "--resume-from", str(empty)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: --resume-from '{empty}' holds no study hpo_tiny")
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError, match="is not a folder"):
        take_earlier_output(_cfg(project), tmp_path / "typo", output_dir=tmp_path / "out")


def test_a_damaged_checkpoint_in_the_source_is_left_out(project, tmp_path, caplog) -> None:
    parts = project_fingerprint(project)
    src, out = tmp_path / "src", tmp_path / "out"
    make_output(src / "hpo", None, finished=1, parts=parts)
    model = src / "hpo" / "tiny" / "trials" / STUDY / "trial_1" / "checkpoint-6" / "model.pt"
    model.write_bytes(b"x" + model.read_bytes()[1:])  # bit rot in the earlier output
    with caplog.at_level(logging.ERROR):
        take_earlier_output(_cfg(project), src, output_dir=out, cwd=tmp_path)
    assert finished_values(out / "tiny" / "study.db") == {0: 0.0}
    assert not (out / "tiny" / "trials" / STUDY / "trial_1" / "checkpoint-6").exists()
    assert "does not match its checksum" in caplog.text and "continues from epoch 0" in caplog.text


def test_resume_from_in_the_config_is_relative_to_the_project(project, tmp_path) -> None:
    parts = project_fingerprint(project)
    make_output(tmp_path / "earlier" / "hpo", None, finished=1, parts=parts)
    project.write_hpo(resume_from="earlier")  # the project folder is tmp_path
    assert take_earlier_output(_cfg(project), output_dir=tmp_path / "out", cwd=tmp_path / "x")
    assert finished_values(tmp_path / "out" / "tiny" / "study.db") == {0: 0.0}


@pytest.mark.parametrize(("extra", "match"), [
    ({"resume_from": " "}, r"key 'resume_from' = ' ' is empty"),
    ({"resume_from": "x", "storage_url": "postgresql+psycopg://u@h/db"},
     r"key 'resume_from' cannot be used with storage_url"),
])
def test_resume_from_in_the_config_is_checked(project, extra, match) -> None:
    project.write_hpo(**extra)
    with pytest.raises(ConfigError, match=match):
        _cfg(project)


# -- the Kaggle version chain (end to end) -------------------------------------------------


def _version(project, root: Path, *extra: str) -> subprocess.Popen:
    env = {**_env(), "KAGGLE_KERNEL_RUN_TYPE": "Batch", "HPO_RUNTIME_ROOT": str(root)}
    return subprocess.Popen(project.cli("run", "--config", str(project.hpo), *extra),
                            env=env, cwd=root / "kaggle" / "working", text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _save_version(root: Path, saved: Path) -> Path:
    """What Kaggle keeps of a version: its /kaggle/working, whole."""
    shutil.copytree(root / "kaggle" / "working", saved, symlinks=True)
    return saved


def _mlflow_runs(db: Path) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {r[0] for r in con.execute("SELECT run_uuid FROM runs")}
    finally:
        con.close()


@pytest.mark.slow
def test_kaggle_version_chain_loses_no_trial(project, tmp_path) -> None:
    """Version 1 ends at its time limit; version 2 starts with an empty /kaggle/working and
    version 1's output attached read-only, and is SIGKILLed inside trial 1; version 3, with
    both outputs attached, continues the newest (version 2's) and finishes the study: no
    completed trial lost, trial 1 continued from its newest checkpoint."""
    _slower_trials(project, n_docs=40, epochs=3)
    base = project.hpo.read_text().replace("max_trials: 3", "max_trials: 2")
    working = ("kaggle", "working", KAGGLE_OUTPUT[0])
    db = ("kaggle", "working", *KAGGLE_OUTPUT, "tiny", "study.db")

    v1 = tmp_path / "v1"
    (v1 / "kaggle" / "working").mkdir(parents=True)
    project.hpo.write_text(base + "timeout_minutes: 0.05\n")  # one trial, then the limit
    t0 = time.monotonic()
    out = _version(project, v1).communicate(timeout=300)[0]  # (no MLflow: it comes later)
    print(f"v1 {time.monotonic() - t0:.1f}s")
    assert "Time budget:" in out, out[-3000:]
    project.hpo.write_text(base)
    first = finished_values(v1.joinpath(*db))
    assert list(first) == [0]
    saved1 = _save_version(v1, tmp_path / "saved" / "v1")

    v2 = tmp_path / "v2"
    (v2 / "kaggle" / "working").mkdir(parents=True)
    unreadable = []
    with read_only(saved1, v2 / "kaggle" / "input" / "hpo-v1") as mounted:
        if not mounted:
            unreadable.append("v2")
        proc = _version(project, v2, "--mlflow-experiment", "kaggle")
        live = v2.joinpath(*db)
        trial1 = live.parent / "trials" / STUDY / "trial_1"
        _wait_for(lambda: _running_trial(live) == 1
                  and has_checkpoint(trial1), 240, proc)
        os.kill(proc.pid, signal.SIGKILL)  # from outside, by pid
        print(f"v2 {time.monotonic() - t0:.1f}s")
        proc.wait(30)
        assert tree(v2 / "kaggle" / "input" / "hpo-v1") == tree(saved1)
    newest = newest_step(trial1)
    saved2 = _save_version(v2, tmp_path / "saved" / "v2")

    v3 = tmp_path / "v3"
    (v3 / "kaggle" / "working").mkdir(parents=True)
    with read_only(saved1, v3 / "kaggle" / "input" / "hpo-v1") as m1, \
            read_only(saved2, v3 / "kaggle" / "input" / "hpo-v2") as m2:
        unreadable += [] if m1 and m2 else ["v3"]
        out, _ = _version(project, v3, "--mlflow-experiment", "kaggle").communicate(timeout=300)
        print(f"v3 {time.monotonic() - t0:.1f}s")
        assert tree(v3 / "kaggle" / "input" / "hpo-v2") == tree(saved2)
    assert "Sweep complete: 2/2" in out, out[-4000:]
    lines = [ln for ln in out.splitlines() if "Kaggle:" in ln or "Continuing from" in ln]
    print("\n".join(lines))  # the report quotes them
    assert f"continuing from the attached output {v3 / 'kaggle' / 'input' / 'hpo-v2'}" in out
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{v3.joinpath(*db)}")
    done = {t.number: t.value for t in study.trials if t.state == TrialState.COMPLETE}
    assert done[0] == first[0] and len(done) == 2  # no completed trial lost
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 1)
    assert retry.state == TrialState.COMPLETE
    assert retry.user_attrs["resumed_from_step"] == newest  # redone: under one interval
    # version 3's output is complete on its own: the study, models and every MLflow run
    assert any((v3.joinpath(*working, "outputs", "hpo", "tiny", "models")).rglob("*.json"))
    runs = _mlflow_runs(v3.joinpath(*working, "mlruns", "mlflow.db"))
    assert _mlflow_runs(saved2 / "resume-ner" / "mlruns" / "mlflow.db") <= runs
    if unreadable:
        warnings.warn(f"read-only bind mount not permitted here ({', '.join(unreadable)}): the "
                      "attached outputs were chmod-ed copies, which root can still write; "
                      "only their unchanged checksums were checked", stacklevel=1)
