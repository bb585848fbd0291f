"""Several backbones in sequence, resumable across the list; then `select` (issue 12)."""

from __future__ import annotations

import json
import signal
import subprocess

import pytest
import yaml
from optuna.trial import TrialState

from hpo_helpers.settings.config import load_configs
from hpo_helpers.sweep.backbones import backbone_list

from .test_kill_resume import _env, _running_trial, _wait_for


def test_backbone_list_from_flag_config_or_single(project) -> None:
    cfg = load_configs(project.config_dir, project.write_hpo(backbones=["tiny", "minilm"]))
    assert backbone_list(cfg) == ["tiny", "minilm"]
    assert backbone_list(cfg, "minilm, tiny") == ["minilm", "tiny"]
    cfg = load_configs(project.config_dir, project.write_hpo())
    assert backbone_list(cfg) == ["tiny"]


@pytest.mark.slow
def test_two_backbones_killed_in_the_second_study_resume_into_it_then_select(project) -> None:
    import optuna

    raw = yaml.safe_load(project.hpo.read_text())
    raw["search_space"]["epochs"] = 1
    raw["search_space"]["batch_size"] = 8
    project.write_hpo(**{**raw, "max_trials": 1, "backbones": ["tiny", "minilm"]})
    second = project.output_dir / "minilm" / "study.db"
    proc = subprocess.Popen(project.run_args(), env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    _wait_for(lambda: _running_trial(second) is not None, 400, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    first = optuna.load_study(study_name="hpo_tiny",
                              storage=f"sqlite:///{project.output_dir}/tiny/study.db")
    assert len(first.get_trials(states=(TrialState.COMPLETE,))) == 1

    rerun = subprocess.run(project.run_args(), env=_env(), capture_output=True, text=True,
                           timeout=500)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "Backbone 1/2 tiny: study hpo_tiny already has 1/1 trials; skipped" in rerun.stderr
    assert "Backbone 2/2 minilm: resuming study hpo_minilm" in rerun.stderr
    assert "all studies done" in rerun.stdout
    study = optuna.load_study(study_name="hpo_minilm", storage=f"sqlite:///{second}")
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 1
    assert any(t.user_attrs.get("interrupted") for t in study.trials)
    assert len(first.get_trials()) == 1, "the finished study was not touched"

    sel = subprocess.run(project.cli("select", "--config", str(project.hpo), "--output-dir",
                                     str(project.output_dir), "--seconds", "0.2"),
                         env=_env(), capture_output=True, text=True, timeout=300)
    assert sel.returncode == 0, sel.stderr[-3000:]
    result = json.loads((project.output_dir / "selection.json").read_text())
    assert result["selected_backbone"] in ("tiny", "minilm")
    assert f"selected: {result['selected_backbone']}" in sel.stdout
    for c in result["candidates"]:
        assert c["infer_tokens_per_s"] > 0 and c["train_tokens_per_s"] > 0
        assert c["n_parameters"] > 0
    report = (project.output_dir / "selection.md").read_text()
    assert f"# Model selection: {result['selected_backbone']}" in report and "Why:" in report
