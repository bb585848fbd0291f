"""Model selection across backbones: each threshold rule on hand-made study results."""

from __future__ import annotations

import pytest

from hpo_helpers.core.errors import HpoHelpersError
from hpo_helpers.results.selection import Candidate, choose
from hpo_helpers.settings.config import SelectionConfig

SLOW_BEST = Candidate("deberta", 0.900, infer_tokens_per_s=1000.0)
FAST = Candidate("distilbert", 0.890, infer_tokens_per_s=4000.0)
FASTEST = Candidate("minilm", 0.860, infer_tokens_per_s=9000.0)


@pytest.mark.parametrize(("rules", "candidates", "expected", "why"), [
    # relative gap: (0.900 - 0.890) / 0.900 = 0.0111 < 0.015 -> the faster one
    (SelectionConfig(0.015, True, 0.0), [SLOW_BEST, FAST], "distilbert", "below 0.0150"),
    # absolute gap 0.010 >= 0.005 -> the best stays
    (SelectionConfig(0.005, False, 0.0), [SLOW_BEST, FAST], "deberta", "at least 0.0050"),
    # absolute gap 0.010 < 0.015 -> the faster one
    (SelectionConfig(0.015, False, 0.0), [SLOW_BEST, FAST], "distilbert", "(absolute)"),
    # relative 0.0111 >= 0.01 but min gain 0.02 is the bar -> the faster one
    (SelectionConfig(0.01, True, 0.02), [SLOW_BEST, FAST], "distilbert", "below 0.0200"),
    # relative 0.0111 >= 0.01, no min gain -> the best stays
    (SelectionConfig(0.01, True, 0.0), [SLOW_BEST, FAST], "deberta", "at least 0.0100"),
    # chain: distilbert replaces deberta; minilm's gap to distilbert 0.0337 > 0.02 -> distilbert
    (SelectionConfig(0.015, True, 0.02), [FASTEST, SLOW_BEST, FAST], "distilbert",
     "kept distilbert"),
    # a slower model never replaces a better one, however close
    (SelectionConfig(0.5, True, 0.0), [Candidate("a", 0.9, infer_tokens_per_s=9000.0),
                                       Candidate("b", 0.89, infer_tokens_per_s=10.0)], "a",
     "is not faster"),
    # training speed stands in when inference was not measured
    (SelectionConfig(0.015, True, 0.0), [Candidate("a", 0.9, train_tokens_per_s=10.0),
                                         Candidate("b", 0.899, train_tokens_per_s=50.0)], "b",
     "b chosen"),
])
def test_threshold_rules(rules, candidates, expected, why) -> None:
    choice = choose(candidates, rules)
    assert choice.chosen.backbone == expected, choice.reasons
    assert any(why in r for r in choice.reasons), choice.reasons
    assert choice.candidates[0].score == max(c.score for c in candidates)


def test_no_finished_study_is_an_error() -> None:
    with pytest.raises(HpoHelpersError, match="no finished study to select from"):
        choose([], SelectionConfig())


def test_the_choice_is_logged_to_mlflow_and_a_tracking_failure_only_warns(
        tmp_path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from mlflow.tracking import MlflowClient

    from hpo_helpers.results.selection import _log
    from hpo_helpers.tracking.setup import TrackingSetup, setup_mlflow_cross_platform

    choice = choose([SLOW_BEST, FAST], SelectionConfig())
    result = {"selected_backbone": choice.chosen.backbone,
              "candidates": [dataclasses.asdict(c) for c in choice.candidates]}
    report = tmp_path / "selection.md"
    report.write_text("# Model selection: distilbert\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    setup = setup_mlflow_cross_platform("sel", tracking_uri=uri)
    _log(setup, result, report)
    (run,) = MlflowClient(uri).search_runs([setup.experiment_id])
    assert run.data.params["selected_backbone"] == "distilbert"
    assert run.data.metrics["deberta_score"] == pytest.approx(0.9)
    assert run.info.status == "FINISHED"

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # a closed loopback port
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    broken = TrackingSetup("http://127.0.0.1:9", "sel", "0", azure=False)
    _log(broken, result, report)  # returns: tracking never stops selection
    assert "Selection not logged to MLflow" in caplog.text


def test_select_without_finished_studies_says_so_and_exits_2(project, capsys) -> None:
    from hpo_helpers.frontends.cli import main

    code = main(["select", "--config", str(project.hpo), "--output-dir",
                 str(project.output_dir)])
    assert code == 2
    assert "error: no finished study to select from" in capsys.readouterr().err
