"""A study remembers its data (issue 21, item 5): the split files, ``--dataset`` and
``--devices`` given to ``run`` are stored on the study (absolute paths) and reused by the printed
resume command, ``run``, ``evaluate``, ``refit`` and ``predict --model best`` unless given again.
The printed resume command, run as printed through a shell from another folder, resumes."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hpo_helpers.frontends.cli import _parser, resume_command, resume_note
from hpo_helpers.settings.schema import RUN_INPUTS
from hpo_helpers.study.inputs import RunInputs

from .conftest import PYTHON, TINY_HPO, compact_split
from .test_distributed import PASSWORD, pg_url  # noqa: F401 - the fixture
from .test_kill_resume import _env


def _write_splits(folder: Path, n_train: int = 40) -> dict[str, Path]:
    """Split files that differ from the data config's (so only they fit the study)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("validation", 5), ("test", 4)):
        docs = compact_split(split)[:n]
        out[split] = folder / f"{split}.json"
        out[split].write_text(json.dumps(docs))
    return out


# ---------------------------------------------------------------------------------------------
# What is stored and what wins


def test_given_paths_are_absolute_against_the_folder_the_command_ran_in(tmp_path) -> None:
    given = RunInputs.given(dataset="d", split_files={"train": "a/t.json", "test": None},
                            devices="cpu", cwd=tmp_path)
    assert given.as_attr() == {"dataset": str(tmp_path / "d"),
                               "train": str(tmp_path / "a" / "t.json"), "devices": "cpu"}
    assert RunInputs.from_attr(given.as_attr()).as_attr() == given.as_attr()


def test_an_explicit_value_wins_and_the_data_flags_are_one_group(caplog) -> None:
    stored = RunInputs(train="/s/train.json", test="/s/test.json", devices="0,1")
    with caplog.at_level(logging.INFO):
        same = RunInputs().over(stored, "hpo_x")
    assert (same.train, same.test, same.devices) == ("/s/train.json", "/s/test.json", "0,1")
    assert same.reused == ("train", "test", "devices")
    assert "reusing --train /s/train.json, --test /s/test.json, --devices 0,1" in caplog.text
    # one data flag given: no stored data file is mixed in; devices are reused on their own
    mine = RunInputs(dataset="/n/data").over(stored, "hpo_x")
    assert (mine.dataset, mine.train, mine.test, mine.devices) == ("/n/data", None, None, "0,1")
    assert RunInputs(devices="cpu").over(stored, "hpo_x").devices == "cpu"


def test_stored_devices_missing_here_fall_back_to_the_default_with_a_warning(caplog) -> None:
    from hpo_helpers.training.device import stored_devices

    with caplog.at_level(logging.WARNING):
        assert stored_devices("7", "hpo_x") is None
    assert "study hpo_x's stored --devices" in caplog.text and "default devices" in caplog.text
    assert [str(d) for d in stored_devices("cpu,cpu", "hpo_x")] == ["cpu", "cpu"]


def test_resume_command_names_every_flag_with_absolute_paths(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPO_STORAGE_URL", raising=False)
    args = _parser().parse_args([
        "run", "--config", "c/h p.yaml", "--config-dir", "c", "--backbone", "tiny",
        "--output-dir", "o ut", "--dataset", "d", "--train", "t/train.json", "--validation",
        "v.json", "--test", "../x/test.json", "--devices", "cpu,cpu", "--max-trials", "7",
        "--mlflow-experiment", "exp", "--tracking-uri", "sqlite:///ml.db", "--storage-url",
        "postgresql+psycopg://u@h:5432/d"])
    cmd = resume_command(args)
    again = _parser().parse_args(__import__("shlex").split(cmd)[3:])
    assert __import__("shlex").split(cmd)[:4] == [sys.executable, "-m", "hpo_helpers", "run"]
    for key, value in (("config", tmp_path / "c" / "h p.yaml"), ("config_dir", tmp_path / "c"),
                       ("output_dir", tmp_path / "o ut"), ("dataset", tmp_path / "d"),
                       ("train", tmp_path / "t" / "train.json"),
                       ("validation", tmp_path / "v.json"),
                       ("test", tmp_path.parent / "x" / "test.json")):
        assert getattr(again, key) == str(value), key
    assert (again.backbone, again.devices, again.max_trials, again.mlflow_experiment) == \
        ("tiny", "cpu,cpu", 7, "exp")
    assert again.tracking_uri == f"sqlite:///{tmp_path / 'ml.db'}"
    # a URL without a password is printed as it is; no note needed
    assert again.storage_url == "postgresql+psycopg://u@h:5432/d"
    assert resume_note(args, cmd) is None


def test_a_storage_url_with_a_password_is_never_printed_and_the_note_says_how(
        tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HPO_STORAGE_URL", raising=False)
    url = "postgresql+psycopg://u:pa-Secret/9@h:5432/d"
    from hpo_helpers.core.redaction import register_url_secret

    register_url_secret(url)
    args = _parser().parse_args(["run", "--config", "c.yaml", "--storage-url", url])
    cmd = resume_command(args)
    note = resume_note(args, cmd)
    assert cmd.endswith('--storage-url "$HPO_STORAGE_URL"') and "pa-Secret" not in cmd
    assert note is not None and "pa-Secret" not in note
    assert "export HPO_STORAGE_URL='postgresql+psycopg://u:***@h:5432/d'" in note
    assert "not printed" in note


# ---------------------------------------------------------------------------------------------
# The printed command, run as printed, from another folder


def _sweep_until_sigint(cmd: list[str], cwd: Path, env: dict[str, str]) -> list[str]:
    """Start the sweep, SIGINT it once trial 0 trains, return every line it printed."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, cwd=cwd)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if re.search(r"Trial 0 started", line):
            proc.send_signal(signal.SIGINT)
            break
    lines += proc.stdout.readlines()
    assert proc.wait(120) == 130, "".join(lines)
    return lines


def _slow_trials(project) -> None:
    """Trials long enough (a few seconds) for the SIGINT to land inside the first one."""
    data = project.config_dir / "data" / "test.yaml"
    data.write_text(yaml.safe_dump({**yaml.safe_load(data.read_text()),
                                    "max_train_documents": 60}))
    project.write_hpo(max_trials=2, search_space=dict(TINY_HPO["search_space"], epochs=3))


@pytest.mark.slow
def test_printed_command_with_every_flag_resumes_from_another_folder(project, tmp_path,
                                                                    pg_url) -> None:  # noqa: F811
    _slow_trials(project)
    files = _write_splits(tmp_path / "data", n_train=60)
    env = _env()
    env.pop("HPO_STORAGE_URL", None)
    argv = ["run", "--config", "config/hpo/test.yaml", "--config-dir", "config",
            "--backbone", "tiny", "--output-dir", "out", "--storage-url", pg_url,
            "--max-trials", "2", "--dataset", "data", "--train", "data/train.json",
            "--validation", "data/validation.json", "--test", "data/test.json",
            "--devices", "cpu", "--mlflow-experiment", "resume-line",
            "--tracking-uri", "sqlite:///mlruns.db"]
    lines = _sweep_until_sigint(project.cli(*argv), tmp_path, env)
    output = "".join(lines)
    assert PASSWORD not in output
    printed = next(ln for ln in lines if "To resume" in ln and " -m hpo_helpers run" in ln)
    command = printed[printed.index(PYTHON):].strip()
    note = next(ln for ln in lines if ln.startswith("(first: export HPO_STORAGE_URL="))
    assert "postgres:***@127.0.0.1" in note
    for flag, value in (("--config", tmp_path / "config" / "hpo" / "test.yaml"),
                        ("--config-dir", tmp_path / "config"), ("--output-dir", tmp_path / "out"),
                        ("--dataset", tmp_path / "data"), ("--train", files["train"]),
                        ("--validation", files["validation"]), ("--test", files["test"])):
        assert f" {flag} {value} " in command + " ", (flag, command)
    for text in ("--backbone tiny", "--devices cpu", "--max-trials 2",
                 "--mlflow-experiment resume-line", f"--tracking-uri sqlite:///{tmp_path}/mlruns.db",
                 '--storage-url "$HPO_STORAGE_URL"'):
        assert text in command, (text, command)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=elsewhere,
                         env={**env, "HPO_STORAGE_URL": pg_url}, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    assert PASSWORD not in res.stdout + res.stderr
    assert "COMPLETE 2/2" in res.stdout
    assert list(elsewhere.iterdir()) == [], "nothing is written in the other folder"
    study = optuna.load_study(study_name="hpo_tiny", storage=pg_url)
    trials = study.get_trials()
    first = trials[0]
    assert first.state == TrialState.FAIL and first.user_attrs["interrupted"] is True
    retry = next(t for t in trials if t.user_attrs.get("retry_of") == 0)
    assert retry.state == TrialState.COMPLETE and retry.params == first.params
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert study.user_attrs[RUN_INPUTS] == {
        "dataset": str(tmp_path / "data"), "train": str(files["train"]),
        "validation": str(files["validation"]), "test": str(files["test"]), "devices": "cpu"}
    assert study.user_attrs["data"]["splits"]["test"]["documents"] == 4
    assert (tmp_path / "mlruns.db").is_file() and (tmp_path / "out" / "tiny").is_dir()


@pytest.mark.slow
def test_printed_command_finds_the_default_output_folder_from_another_folder(project,
                                                                             tmp_path) -> None:
    """No --output-dir: the default output folder (./outputs/hpo) and MLflow store
    (./mlruns/mlflow.db) belong to the folder the run started in; the command names both."""
    _slow_trials(project)
    _write_splits(tmp_path / "data", n_train=60)
    env = _env()
    env.pop("HPO_STORAGE_URL", None)
    lines = _sweep_until_sigint(project.cli(
        "run", "--config", "config/hpo/test.yaml", "--dataset", "data",
        "--mlflow-experiment", "default-folders"), tmp_path, env)
    printed = next(ln for ln in lines if "To resume" in ln and " -m hpo_helpers run" in ln)
    command = printed[printed.index(PYTHON):].strip()
    assert f"--output-dir {tmp_path / 'outputs' / 'hpo'}" in command
    assert f"--tracking-uri sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}" in command
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    res = subprocess.run(["bash", "-c", command], capture_output=True, text=True, cwd=elsewhere,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr[-4000:]
    assert "COMPLETE 2/2" in res.stdout and "resumed" in res.stderr
    assert list(elsewhere.iterdir()) == []
    study = optuna.load_study(study_name="hpo_tiny",
                              storage=f"sqlite:///{tmp_path}/outputs/hpo/tiny/study.db")
    assert any(t.user_attrs.get("retry_of") == 0 and t.state == TrialState.COMPLETE
               for t in study.get_trials())


# ---------------------------------------------------------------------------------------------
# Later commands reuse what the study stored


@pytest.mark.slow
def test_later_commands_reuse_the_stored_data_and_devices(project, tmp_path) -> None:
    project.write_hpo(max_trials=1)
    files = _write_splits(tmp_path / "data")
    env = _env()
    run = subprocess.run(project.cli(
        "run", "--config", str(project.hpo), "--output-dir", "out", "--train",
        "data/train.json", "--validation", "data/validation.json", "--test",
        "data/test.json", "--devices", "cpu"), capture_output=True, text=True, env=env,
        cwd=tmp_path, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    study = ["--config", str(project.hpo), "--output-dir", str(tmp_path / "out")]

    def cli(*args: str) -> subprocess.CompletedProcess:
        res = subprocess.run(project.cli(*args), capture_output=True, text=True, env=env,
                             cwd=elsewhere, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr[-3000:]
        return res

    reused = (f"reusing --train {files['train']}, --validation {files['validation']}, "
              f"--test {files['test']}, --devices cpu")
    status = json.loads(cli("status", *study, "--json").stdout)
    assert status["run_inputs"]["train"] == str(files["train"])

    ev = cli("evaluate", *study, "--trial", "0")
    assert reused in ev.stderr
    assert re.search(r"Test scores of trial 0: .*\(4 documents\)", ev.stderr), ev.stderr

    rf = cli("refit", *study)
    assert reused in rf.stderr
    assert "on 21 documents (train+validation)" in rf.stderr  # 16 (capped) + 5

    text = elsewhere / "resume.txt"
    text.write_text("Jane Doe, Python developer at Acme in Berlin.")
    pr = cli("predict", *study, "--model", "best", "--input", str(text))
    assert "reusing --devices cpu" in pr.stderr and "--train" not in pr.stderr

    rp = cli("report", *study, "--out", str(tmp_path / "report"))
    assert any(p.suffix == ".png" for p in (tmp_path / "report").iterdir()), rp.stdout

    # run again with only --max-trials: the stored data is reused, so the study resumes
    again = cli("run", *study, "--max-trials", "2")
    assert reused in again.stderr and "COMPLETE 2/2" in again.stdout
    assert list(elsewhere.iterdir()) == [text]
    stored = json.loads(cli("status", *study, "--json").stdout)["run_inputs"]
    assert stored == {"train": str(files["train"]), "validation": str(files["validation"]),
                      "test": str(files["test"]), "devices": "cpu"}


@pytest.mark.slow
def test_the_time_budget_prints_the_command_that_continues(project, tmp_path) -> None:
    """A run that ends on its time budget exits 0 and prints the same resume line."""
    project.write_hpo(max_trials=3, timeout_minutes=0.005)  # 0.3 s: stops before the end
    _write_splits(tmp_path / "data")
    res = subprocess.run(project.cli("run", "--config", "config/hpo/test.yaml", "--output-dir",
                                     "out", "--dataset", "data"), capture_output=True,
                         text=True, env=_env(), cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("Time budget:"))
    assert "Re-run to continue: " in line and f"--output-dir {tmp_path / 'out'}" in line
    assert f"--dataset {tmp_path / 'data'}" in line and "COMPLETE 3/3" not in res.stdout
