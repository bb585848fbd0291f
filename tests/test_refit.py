"""The final model: refit on train+validation, resumable after SIGKILL (issue 16 item 7)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from hpo_helpers import HpoHelpersError, load_configs, run_sweep
from hpo_helpers.results.refit import refit

from .conftest import PYTHON


def _refit_cli(project, out, **env) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "hpo_helpers", "refit", "--config", str(project.hpo),
                           "--output-dir", str(out)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **env})


@pytest.mark.slow
def test_refit_killed_mid_epoch_resumes_to_the_same_model(project) -> None:
    train = yaml.safe_load((project.config_dir / "train.yaml").read_text())
    train["checkpoint_every_steps"] = 2
    (project.config_dir / "train.yaml").write_text(yaml.safe_dump(train))
    project.write_hpo(max_trials=1, keep_top_k=1)
    cfg = load_configs(project.config_dir, project.hpo)
    run_sweep(cfg, output_dir=project.output_dir)
    copy = project.root / "out-copy"
    shutil.copytree(project.output_dir, copy)

    plain = _refit_cli(project, project.output_dir)
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert "test (refit): F1" in plain.stdout

    killed = _refit_cli(project, copy, HPO_FAULT_KILL_AT="train_step:5")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert any(copy.rglob("refit/*/checkpoints"))
    resumed = _refit_cli(project, copy)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Checkpoint restored" in resumed.stderr

    a = json.loads(next(project.output_dir.rglob("refit/*/model/metrics.json")).read_text())
    b = json.loads(next(copy.rglob("refit/*/model/metrics.json")).read_text())
    assert a["test"] == b["test"] and a["params"] == b["params"]
    model = next(project.output_dir.rglob("refit/*/model"))
    config = json.loads((model / "config.json").read_text())
    assert config["id2label"]["0"] == "O" and (model / "tokenizer.json").is_file()
    card = (model / "README.md").read_text()
    assert "Test scores" in card and "hpo_tiny" in card and "learning_rate" in card
    again = _refit_cli(project, project.output_dir)
    assert again.returncode == 0 and "refit of trial 0 exported" in again.stdout


def test_refit_without_a_study_says_run_first(project, tmp_path) -> None:
    cfg = load_configs(project.config_dir, project.hpo)
    with pytest.raises(HpoHelpersError, match=r"no study hpo_tiny at .*Fix: run the sweep"):
        refit(cfg, output_dir=tmp_path / "none")
