"""Figures of a study: files written, axes named, integer ticks (issue 16 item 10)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import optuna
import pytest

from hpo_helpers.results.report import figures, write_report


def _study(name: str, offset: float = 0.0, storage: str | None = None) -> optuna.Study:
    """A real Optuna study shaped like a resumed sweep: complete, pruned, interrupted, retry."""
    study = optuna.create_study(study_name=name, direction="maximize", storage=storage)
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True),
            "dropout": optuna.distributions.FloatDistribution(0.0, 0.3)}

    def add(number_value, state, curve, **attrs):
        trial = optuna.trial.create_trial(
            params={"learning_rate": 1e-4 * (1 + len(study.trials)), "dropout": 0.1},
            distributions=dist, value=number_value, state=state,
            intermediate_values=dict(enumerate(curve)), user_attrs=attrs)
        study.add_trial(trial)

    S = optuna.trial.TrialState
    add(0.5 + offset, S.COMPLETE, [0.3, 0.5 + offset])
    add(None, S.PRUNED, [0.1])
    add(None, S.FAIL, [0.4], interrupted=True)
    add(0.7 + offset, S.COMPLETE, [0.4, 0.6, 0.7 + offset], retry_of=2, retry_root=2,
        resumed_from_epoch=1)
    study.set_user_attr("test_scores", {"3": {
        "f1": 0.65, "macro_f1": 0.6, "precision": 0.7, "recall": 0.6,
        "per_type": {"SKILL": {"f1": 0.8, "precision": 0.8, "recall": 0.8, "support": 9},
                     "NAME": {"f1": 0.4, "precision": 0.4, "recall": 0.4, "support": 3}}}})
    return study


def test_figures_have_named_axes_and_integer_trial_ticks() -> None:
    figs = figures({"hpo_tiny": _study("hpo_tiny"), "hpo_minilm": _study("hpo_minilm", 0.1)},
                   {"learning_rate"})
    assert {"hpo_tiny_history", "hpo_tiny_learning_curves", "hpo_tiny_params",
            "hpo_tiny_test_per_type", "backbones"} <= set(figs)
    hist = figs["hpo_tiny_history"].axes[0]
    assert (hist.get_xlabel(), hist.get_ylabel()) == ("trial number", "validation F1 (strict)")
    assert hist.get_title() == "hpo_tiny: validation F1 (strict) by trial"
    assert all(float(t).is_integer() for t in hist.get_xticks())
    labels = {t.get_text() for t in hist.get_legend().get_texts()}
    assert {"interrupted (continued by a retry)", "retry of an interrupted trial",
            "pruned (last epoch reported)"} <= labels
    curves = figs["hpo_tiny_learning_curves"].axes[0]
    assert (curves.get_xlabel(), curves.get_ylabel()) == ("epoch", "validation F1 (strict)")
    assert all(float(t).is_integer() for t in curves.get_xticks())
    params = figs["hpo_tiny_params"].axes
    assert params[0].get_ylabel() == "validation F1 (strict)"
    assert "learning_rate (log scale)" in {a.get_xlabel() for a in params}
    bars = figs["hpo_tiny_test_per_type"].axes[0]
    assert (bars.get_xlabel(), bars.get_ylabel()) == ("test F1 (strict)", "entity type")
    assert figs["backbones"].axes[0].get_ylabel() == "F1 (strict)"


@pytest.mark.parametrize("sqlite", [False, True], ids=["in-memory", "sqlite"])
def test_anytime_counts_each_epoch_trained_once(tmp_path: Path, sqlite: bool) -> None:
    """Epochs consumed: 2 (trial 0), 1 (pruned), 1 (interrupted), then the retry trains only
    its 2 epochs after the checkpoint it resumed from: best so far 0.5 up to 4, 0.7 at 6
    (on SQLite the summaries come from column queries, in memory from the trials)."""
    storage = f"sqlite:///{tmp_path / 's.db'}" if sqlite else None
    ax = figures({"hpo_tiny": _study("hpo_tiny", storage=storage)})["hpo_tiny_anytime"].axes[0]
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [2, 3, 4, 6]
    assert [round(y, 4) for y in line.get_ydata()] == [0.5, 0.5, 0.5, 0.7]
    assert ax.get_xlabel() == "training epochs consumed (all trials)"
    assert ax.get_ylabel() == "best validation F1 (strict) so far"


def test_write_report_writes_png_files(tmp_path: Path) -> None:
    paths = write_report({"hpo_tiny": _study("hpo_tiny")}, tmp_path / "rep")
    assert {p.name for p in paths} == {"hpo_tiny_history.png", "hpo_tiny_learning_curves.png",
                                       "hpo_tiny_params.png", "hpo_tiny_test_per_type.png",
                                       "hpo_tiny_anytime.png"}
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in paths)


@pytest.mark.slow
def test_report_cli_on_a_finished_study(project) -> None:
    project.write_hpo(max_trials=1, keep_top_k=1)
    run = subprocess.run(project.run_args(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    res = subprocess.run(project.cli("report", "--config", str(project.hpo), "--output-dir",
                                     str(project.output_dir)), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    names = {Path(line).name for line in res.stdout.split()}
    assert "hpo_tiny_history.png" in names and "hpo_tiny_test_per_type.png" in names
    missing = subprocess.run(project.cli("report", "--config", str(project.hpo), "--output-dir",
                                         str(project.output_dir), "--compare", "minilm"),
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "no study for backbone 'minilm'" in missing.stderr


def test_a_macro_f1_study_names_its_axes_so_and_its_log_params_come_from_the_study() -> None:
    study = _study("hpo_macro")
    study.set_user_attr("fingerprint", {
        "objective": {"metric": "macro_f1"},
        "search_space": {"learning_rate": {"type": "loguniform"}, "dropout": {"type": "uniform"}}})
    figs = figures({"hpo_macro": study})
    assert figs["hpo_macro_history"].axes[0].get_ylabel() == "validation macro F1 (strict)"
    assert figs["hpo_macro_learning_curves"].axes[0].get_ylabel() == \
        "validation macro F1 (strict)"
    assert {a.get_xlabel() for a in figs["hpo_macro_params"].axes} == {
        "learning_rate (log scale)", "dropout"}


def test_notebook_03_shows_the_chosen_models_test_table_and_the_report_figures(
        monkeypatch) -> None:
    from hpo_helpers.results.inspection import compare_studies, inspect_all, test_scores_table

    study = _study("hpo_tiny")
    table = test_scores_table(study)
    assert table.attrs["model"] == "best trial 3"
    assert table.loc["SKILL", "f1"] == 0.8 and table.loc["NAME", "support"] == 3
    assert table.loc["micro average", "f1"] == 0.65
    assert table.loc["macro average", "f1"] == 0.6
    study.set_user_attr("refit", {"trial": 3, "test": {
        "f1": 0.9, "macro_f1": 0.85, "precision": 0.9, "recall": 0.9,
        "per_type": {"SKILL": {"f1": 0.9, "precision": 0.9, "recall": 0.9, "support": 9}}}})
    refit = test_scores_table(study)
    assert refit.attrs["model"] == "refit of trial 3" and refit.loc["SKILL", "f1"] == 0.9
    assert compare_studies([study])["test_f1"].tolist() == [0.9]
    assert test_scores_table(optuna.create_study()) is None

    import hpo_helpers.results.inspection as inspection

    shown: list = []
    monkeypatch.setattr(inspection, "load_studies", lambda files: [study])  # in memory here
    monkeypatch.setattr(inspection, "mlflow_checkpoints", lambda uri: None)
    inspect_all([], display=shown.append)
    from matplotlib.figure import Figure

    titles = [ax.get_title() for x in shown if isinstance(x, Figure) for ax in x.axes]
    assert "hpo_tiny: validation F1 (strict) by trial" in titles  # report's, not Optuna's
    assert not any("Optimization History Plot" in t for t in titles)
    assert any(getattr(x, "attrs", {}).get("model") == "refit of trial 3" for x in shown)
