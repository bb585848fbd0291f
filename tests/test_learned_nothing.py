"""A search that learned nothing says so (issue 21 item 4, DECISIONS "Real data").

A trial whose best validation F1 (strict micro) stays below 0.05 completes with its value and
``learned_nothing=True``; the sweep ends with one ``Learned nothing:`` warning when the best
trial is such a trial; ``status``, the panel, notebook 03 and ``report`` show it; ``select``
refuses when every candidate learned nothing; ``predict`` counts documents and entities;
types of a fixed ``entity_types`` without a training example stay out of macro F1.

Real parts: real SQLite studies made by ``run_sweep`` with the ``tiny`` backbone (a learning
rate of 1e-9 learns nothing, deterministically), or with a stub ``fit`` where the test needs
exact scores and losses; the CLI in a subprocess where the exit code matters.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
import yaml

from hpo_helpers import load_configs, run_sweep
from hpo_helpers.core.errors import HpoHelpersError
from hpo_helpers.results.selection import Candidate, choose
from hpo_helpers.settings.config import SelectionConfig
from hpo_helpers.settings.schema import LEARNED_NOTHING, NOT_IN_MACRO, NOT_IN_MACRO_NOTE
from hpo_helpers.study.status import status
from hpo_helpers.training.train import FitResult

from .conftest import PYTHON, REPO, TINY_HPO, compact_split, make_project

DEMO_TYPES = ["NAME", "EMAIL", "LOCATION", "DESIGNATION", "COMPANY", "SKILL", "DEGREE",
              "COLLEGE", "GRADUATION_YEAR", "YEARS_OF_EXPERIENCE"]
HOBBY_DOC = {"text": "Ann Lee enjoys chess and hiking.",
             "annotations": [[0, 7, "NAME"], [15, 20, "HOBBY"], [25, 31, "HOBBY"]]}


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _logged(run: Any) -> tuple[Any, list[logging.LogRecord]]:
    """``run()``'s result and the hpo_helpers log records (INFO and up) it produced."""
    logger = logging.getLogger("hpo_helpers")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return run(), handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _warnings(records: list[logging.LogRecord]) -> list[str]:
    return [r.getMessage() for r in records if r.levelno == logging.WARNING]


@pytest.fixture(scope="module")
def nothing(tmp_path_factory):
    """A real 1-trial tiny sweep at learning rate 1e-9 over 3 epochs: it learns nothing. The
    data config lists a fixed HOBBY type that the training data lacks; the test split has
    HOBBY entities."""
    root = tmp_path_factory.mktemp("nothing")
    proj = make_project(root)
    data_cfg = proj.config_dir / "data" / "test.yaml"
    data = yaml.safe_load(data_cfg.read_text())
    data["entity_types"] = [*DEMO_TYPES, "HOBBY"]
    data_cfg.write_text(yaml.safe_dump(data))
    test_file = root / "test.json"
    demo_test = compact_split("test")
    test_file.write_text(json.dumps(demo_test[:4] + [HOBBY_DOC]))
    hpo = proj.write_hpo(max_trials=1, keep_top_k=1, search_space={
        **TINY_HPO["search_space"], "learning_rate": 1e-9, "epochs": 3})
    cfg = load_configs(proj.config_dir, hpo)
    outcome, records = _logged(lambda: run_sweep(cfg, output_dir=proj.output_dir,
                                                 split_files={"test": str(test_file)}))
    return SimpleNamespace(proj=proj, cfg=cfg, outcome=outcome, records=records)


def _study(proj) -> optuna.Study:
    return optuna.load_study(study_name="hpo_tiny",
                             storage=f"sqlite:///{proj.output_dir / 'tiny' / 'study.db'}")


@pytest.mark.slow
def test_a_sweep_that_learns_nothing_marks_the_trial_and_ends_with_one_warning(nothing) -> None:
    (trial,) = _study(nothing.proj).trials
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value < 0.05
    assert trial.user_attrs[LEARNED_NOTHING] is True
    warnings = _warnings(nothing.records)
    # half the epochs done (2 of 3), F1 still ~0, loss flat: warned once, the trial went on
    (plateau,) = [w for w in warnings if "the train loss has flattened" in w]
    assert plateau.startswith("Trial 0: validation F1 is still 0.0") and \
        "after 2 of 3 epochs" in plateau and "The trial goes on" in plateau
    assert len(trial.intermediate_values) == 3  # every epoch ran
    (finished,) = [w for w in warnings if w.startswith("Trial 0 finished")]
    assert "it learned nothing (best validation F1 below 0.05)" in finished
    (final,) = [w for w in warnings if w.startswith("Learned nothing:")]
    assert warnings.index(final) > warnings.index(finished)
    assert "\n" not in final and final == nothing.outcome.learned_nothing
    for cause in ("learning rate too low or too high", "too few epochs",
                  "labels that do not match the data", "config/hpo/resumes.yaml",
                  "more epochs", "python -m hpo_helpers status"):
        assert cause in final


@pytest.mark.slow
def test_status_counts_it_and_flags_the_best_trial(nothing, capsys) -> None:
    from hpo_helpers.frontends.cli import main

    proj = nothing.proj
    info = status(nothing.cfg, output_dir=proj.output_dir)
    assert (info["n_learned_nothing"], info["best_learned_nothing"]) == (1, True)
    where = ["--config", str(proj.hpo), "--output-dir", str(proj.output_dir)]
    assert main(["status", *where]) == 0
    text = capsys.readouterr().out
    assert "(trial 0, learned nothing):" in text
    assert "  learned nothing: 1 of 1 COMPLETE trials (best validation F1 below 0.05)" in text
    assert "  WARNING Learned nothing: the best trial (0, validation F1 0.0" in text
    assert "entity types without a training example (not in macro F1): HOBBY" in text
    assert main(["status", *where, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["n_learned_nothing"], shown["best_learned_nothing"]) == (1, True)


@pytest.mark.slow
def test_select_refuses_when_every_candidate_learned_nothing(nothing) -> None:
    proj = nothing.proj
    res = subprocess.run(proj.cli("select", "--config", str(proj.hpo), "--output-dir",
                                  str(proj.output_dir), "--seconds", "0.1"),
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr
    assert errors[0].startswith("error: every candidate learned nothing (best validation F1 "
                                "below 0.05): tiny (study hpo_tiny, trial 0, F1 0.0")
    assert not list(proj.output_dir.rglob("selection.json"))


@pytest.mark.slow
def test_the_panel_notebook_03_and_the_report_show_it(nothing, monkeypatch) -> None:
    import hpo_helpers.results.inspection as inspection
    from hpo_helpers.frontends.widgets import ResumePanel
    from hpo_helpers.results.report import figures, load_study

    proj = nothing.proj
    panel = ResumePanel(config_dir=proj.config_dir, hpo_config=proj.hpo,
                        output_dir=proj.output_dir)
    assert "&#9888; <b>Learned nothing: the best trial (0," in panel.warning.value
    assert panel.warning in panel.widget.children
    study = load_study(nothing.cfg, output_dir=proj.output_dir)  # read as the readers do
    assert inspection.trials_table(study)[LEARNED_NOTHING].tolist() == [True]
    assert inspection.compare_studies([study])["best_learned_nothing"].tolist() == [True]
    monkeypatch.setattr(inspection, "mlflow_checkpoints", lambda uri=None: None)
    shown: list = []
    inspection.inspect_all([proj.output_dir], display=shown.append)
    notes = [x.data for x in shown if type(x).__name__ == "Markdown"]
    assert len(notes) == 1 and notes[0].startswith("**WARNING** hpo_tiny: Learned nothing:")
    hist = figures({"hpo_tiny": study})["hpo_tiny_history"].axes[0]
    assert hist.get_title().endswith("by trial (the best trial learned nothing)")
    assert "learned nothing (best F1 < 0.05)" in {t.get_text()
                                                  for t in hist.get_legend().get_texts()}


@pytest.mark.slow
def test_a_type_without_training_examples_is_warned_and_left_out_of_macro(nothing) -> None:
    from hpo_helpers.results.evaluate import format_scores
    from hpo_helpers.results.inspection import test_scores_table

    (load,) = [w for w in _warnings(nothing.records) if "no training example" in w]
    assert load.startswith("Entity types with no training example: HOBBY.")
    assert "left out of macro F1" in load
    study = _study(nothing.proj)
    assert study.user_attrs["data"]["untrained_types"] == ["HOBBY"]
    scores = nothing.outcome.test_scores["0"]
    assert scores["per_type"]["HOBBY"]["support"] == 2
    assert scores[NOT_IN_MACRO] == ["HOBBY"]
    others = [v["f1"] for k, v in scores["per_type"].items() if k != "HOBBY"]
    assert scores["macro_f1"] == pytest.approx(sum(others) / len(others))
    rows = {line.split()[0]: line for line in format_scores(scores).splitlines()[2:]}
    assert rows["HOBBY"].endswith(NOT_IN_MACRO_NOTE)
    assert not any(NOT_IN_MACRO_NOTE in line for k, line in rows.items() if k != "HOBBY")
    table = test_scores_table(study)
    assert table.loc["HOBBY", "note"] == NOT_IN_MACRO_NOTE
    assert table["note"].drop("HOBBY").isna().all()


@pytest.mark.slow
def test_predict_prints_documents_and_entities_and_warns_on_none(nothing, tmp_path) -> None:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    (kept,) = (nothing.proj.output_dir / "tiny" / "models").glob("hpo_tiny-*/trial_0")
    conll = tmp_path / "two.conll"
    conll.write_text("Priya B-NAME\nSharma I-NAME\nPython B-SKILL\n\nAnn B-NAME\nLee I-NAME\n"
                     "Infosys B-COMPANY\nBangalore B-LOCATION\n")
    res = subprocess.run([PYTHON, "-m", "hpo_helpers", "predict", "--model", str(kept),
                          "--input", str(conll)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows and {r["doc"] for r in rows} <= {0, 1}
    assert f"INFO hpo_helpers: 2 documents, {len(rows)} entities" in res.stderr
    # the same model made to say O everywhere: a model that learned nothing
    model = AutoModelForTokenClassification.from_pretrained(kept)
    o = model.config.label2id["O"]
    with __import__("torch").no_grad():
        model.classifier.bias.fill_(-100.0)
        model.classifier.bias[o] = 100.0
    all_o = tmp_path / "all_o"
    model.save_pretrained(all_o)
    AutoTokenizer.from_pretrained(kept).save_pretrained(all_o)
    res = subprocess.run([PYTHON, "-m", "hpo_helpers", "predict", "--model", str(all_o),
                          "--input", str(conll)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout == ""
    (line,) = [x for x in res.stderr.splitlines() if "documents, 0 entities" in x]
    assert "WARNING hpo_helpers: 2 documents, 0 entities: the model found no entity. It may " \
           "have learned nothing: check `python -m hpo_helpers status" in line


# -- the rule on exact scores (stub fits, real studies) -------------------------------------


def _stub(plans: list[tuple[list[float], list[float]]]) -> Any:
    """A fit that reports, trial after trial, the given (validation F1, train loss) per epoch."""
    todo = iter(plans)

    def fit(**kw: Any) -> FitResult:
        f1s, losses = next(todo)
        history = []
        for epoch, (f1, loss) in enumerate(zip(f1s, losses)):
            metrics = {"f1": f1, "macro_f1": f1, "precision": f1, "recall": f1,
                       "per_entity": {}, "train_loss": loss, "epoch": epoch}
            history.append(metrics)
            kw["on_epoch"](epoch, metrics)
        return FitResult(best_f1=max(f1s), history=history)
    return fit


FLAT, FALLING = [1.0, 0.99, 0.985, 0.98], [2.0, 1.5, 1.0, 0.6]


def test_the_rule_is_best_f1_below_005_and_the_plateau_warns_once(project) -> None:
    from hpo_helpers.frontends.widgets import ResumePanel

    project.write_hpo(max_trials=2, keep_top_k=0,
                      search_space={**TINY_HPO["search_space"], "epochs": 4})
    cfg = load_configs(project.config_dir, project.hpo)
    fit = _stub([([0.0, 0.0, 0.01, 0.049], FLAT),  # 0: flat loss, F1 ~0: plateau warning
                 ([0.0, 0.0, 0.0, 0.0], FALLING),  # 1: the loss still falls: no warning
                 ([0.0, 0.0, 0.0, 0.05], FLAT)])   # 2 (resumed run): 0.05 is learning
    outcome, records = _logged(lambda: run_sweep(cfg, output_dir=project.output_dir, fit=fit))
    study = outcome.study
    assert [t.user_attrs.get(LEARNED_NOTHING) for t in study.trials] == [True, True]
    assert [t.value for t in study.trials] == [0.049, 0.0]
    warnings = _warnings(records)
    (plateau,) = [w for w in warnings if "flattened" in w]
    assert plateau.startswith("Trial 0: validation F1 is still 0.0000 after 2 of 4 epochs")
    assert "(1.0000 -> 0.9900)" in plateau
    assert [w for w in warnings if w.startswith("Learned nothing:")] == \
        [outcome.learned_nothing]
    assert "the best trial (0, validation F1 0.0490)" in outcome.learned_nothing
    info = status(cfg, output_dir=project.output_dir)
    assert (info["n_learned_nothing"], info["best_learned_nothing"]) == (2, True)

    more = load_configs(project.config_dir, project.write_hpo(
        max_trials=3, keep_top_k=0, search_space={**TINY_HPO["search_space"], "epochs": 4}))
    outcome, records = _logged(lambda: run_sweep(more, output_dir=project.output_dir, fit=fit))
    trial = outcome.study.trials[2]
    assert trial.value == 0.05 and LEARNED_NOTHING not in trial.user_attrs
    assert outcome.learned_nothing is None
    warnings = _warnings(records)
    # the plateau warns about trial 2 too, but only the end of a trial decides
    assert [w.split(":")[0] for w in warnings if "flattened" in w] == ["Trial 2"]
    assert not [w for w in warnings if w.startswith(("Learned nothing:", "Trial 2 finished"))]
    info = status(more, output_dir=project.output_dir)
    assert (info["n_learned_nothing"], info["best_learned_nothing"]) == (2, False)
    panel = ResumePanel(config_dir=project.config_dir, hpo_config=project.hpo,
                        output_dir=project.output_dir)
    assert panel.warning.value == ""


def test_select_refuses_only_when_every_candidate_learned_nothing() -> None:
    a = Candidate("minilm", 0.01, study_name="hpo_minilm", best_trial=3, learned_nothing=True)
    b = Candidate("deberta", 0.0, study_name="hpo_deberta", best_trial=0, learned_nothing=True)
    with pytest.raises(HpoHelpersError, match=r"^every candidate learned nothing \(best "
                       r"validation F1 below 0\.05\): deberta \(study hpo_deberta, trial 0, F1 "
                       r"0\.0000\); minilm \(study hpo_minilm, trial 3, F1 0\.0100\)\. Fix:"):
        choose([a, b], SelectionConfig())
    learned = Candidate("tiny", 0.4, study_name="hpo_tiny", best_trial=1)
    assert choose([a, b, learned], SelectionConfig()).chosen.backbone == "tiny"


def test_the_history_figure_marks_trials_that_learned_nothing() -> None:
    from hpo_helpers.results.report import figures

    def study(best_learned_nothing: bool) -> optuna.Study:
        s = optuna.create_study(study_name="s", direction="maximize")
        for value, attrs in ((0.01, {LEARNED_NOTHING: True}),
                             (0.3 if not best_learned_nothing else 0.0,
                              {} if not best_learned_nothing else {LEARNED_NOTHING: True})):
            s.add_trial(optuna.trial.create_trial(value=value, user_attrs=attrs,
                                                  intermediate_values={0: value}))
        return s

    for best_nothing, suffix in ((False, ""), (True, " (the best trial learned nothing)")):
        ax = figures({"s": study(best_nothing)})["s_history"].axes[0]
        assert ax.get_title() == f"s: validation F1 (strict) by trial{suffix}"
        labels = {t.get_text() for t in ax.get_legend().get_texts()}
        assert "learned nothing (best F1 < 0.05)" in labels
        assert ("complete" in labels) is not best_nothing


# -- predict's inputs: the formats we train on ----------------------------------------------


def test_predict_reads_the_formats_we_train_on(tmp_path, caplog) -> None:
    from hpo_helpers.results.prediction import read_inputs

    cv = "Priya Sharma\npriya@x.com\nPython"
    cases = {
        "dataturks.jsonl": "\n".join(json.dumps({"content": t, "annotation": [
            {"label": ["Name"], "points": [{"start": 0, "end": 4, "text": "Priya"}]}]})
            for t in (cv, "Ann Lee")),
        "dataturks_list.json": json.dumps([{"content": cv, "annotation": None}]),
        "ours.json": json.dumps([{"text": cv, "annotations": [[0, 12, "NAME"]]},
                                 {"text": "Ann Lee"}]),
        "texts.jsonl": json.dumps({"text": cv}) + "\n\n" + json.dumps({"text": "Ann"}) + "\n",
        "tagged.conll": "-DOCSTART- O\n\nPriya B-NAME\nSharma I-NAME\n\nAnn B-NAME\nLee I-NAME\n",
        "cv.txt": cv,
    }
    expected = {"dataturks.jsonl": [cv, "Ann Lee"], "dataturks_list.json": [cv],
                "ours.json": [cv, "Ann Lee"], "texts.jsonl": [cv, "Ann"],
                "tagged.conll": ["Priya Sharma", "Ann Lee"], "cv.txt": [cv]}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        assert list(read_inputs(str(tmp_path / name))) == expected[name], name
    stdin = SimpleNamespace(read=lambda: cases["tagged.conll"])
    assert list(read_inputs("-", stdin)) == ["Priya Sharma", "Ann Lee"]
    # starts like CoNLL or a JSON list but is not one: one plain-text resume, with a warning
    for name, text in (("looks.txt", "Hepatitis B-positive\nnurse for ten years\n"),
                       ("bracket.txt", "[Resume]\nAnn Lee\n")):
        (tmp_path / name).write_text(text)
        with caplog.at_level(logging.WARNING):
            assert list(read_inputs(str(tmp_path / name))) == [text]
        assert f"{name}: starts like" in caplog.text and "read as one plain-text" in caplog.text
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"text": "a"}, {"body": "b"}]))
    with pytest.raises(HpoHelpersError, match=r"bad\.json: document 1: expected an object with "
                                              r"a string 'text' \(or a DataTurks 'content'\)"):
        list(read_inputs(str(bad)))


def test_predict_in_process_counts_documents_of_each_format(tmp_path, caplog) -> None:
    """The count line comes from the documents read, whatever the format (the model here is
    a saved random tiny model: its entity count is whatever it predicts)."""
    from hpo_helpers.frontends.cli import main
    from hpo_helpers.training.backbones import load_backbone

    bb = load_backbone("tiny", REPO / "config", texts=["Priya Sharma Python"],
                       cache_dir=tmp_path / "bb")
    model_dir = tmp_path / "model"
    bb.build_model(["O", "B-NAME", "I-NAME"], dropout=0.0, seed=0).save_pretrained(model_dir)
    bb.tokenizer.save_pretrained(model_dir)
    inputs = {"a.conll": ("A B-X\n\nB O\n\nC O\n", 3),
              "b.jsonl": ('{"content": "Priya Sharma"}\n{"content": "Ann"}\n', 2),
              "c.txt": ("Priya Sharma, Python", 1)}
    for name, (text, n) in inputs.items():
        (tmp_path / name).write_text(text)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="hpo_helpers"):
            assert main(["predict", "--model", str(model_dir), "--input",
                         str(tmp_path / name)]) == 0
        counts = [r.getMessage() for r in caplog.records if " documents, " in r.getMessage()]
        assert len(counts) == 1 and counts[0].startswith(f"{n} documents, "), caplog.text


# -- fixed entity types without training examples (data load, scores) ---------------------


def test_fixed_types_without_training_examples_are_warned_and_kept_out_of_macro(
        tmp_path, caplog) -> None:
    from hpo_helpers.data.dataset import data_summary, load_dataset
    from hpo_helpers.settings.config import DataConfig
    from hpo_helpers.training.metrics import entity_scores

    docs = [{"text": f"Ann Lee {i} knows Python", "annotations": [[0, 7, "NAME"],
                                                                  [16, 22, "SKILL"]]}
            for i in range(6)]
    assert docs[0]["text"][16:22] == "Python"
    (tmp_path / "train.json").write_text(json.dumps(docs))
    (tmp_path / "validation.json").write_text(json.dumps([HOBBY_DOC]))
    (tmp_path / "test.json").write_text(json.dumps(docs[:1]))
    cfg = DataConfig(source=tmp_path / "data.yaml", entity_types=("NAME", "SKILL", "HOBBY"))
    with caplog.at_level(logging.WARNING):
        dataset = load_dataset(tmp_path, cfg)
    assert dataset.untrained_types == ("HOBBY",)
    assert "Entity types with no training example: HOBBY." in caplog.text
    assert data_summary(dataset)["untrained_types"] == ["HOBBY"]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        auto = load_dataset(tmp_path, DataConfig(source=tmp_path / "data.yaml"))
    assert auto.untrained_types == () and "no training example" not in caplog.text
    assert "untrained_types" not in data_summary(auto)

    true = [["B-NAME", "I-NAME", "O", "B-HOBBY", "O", "B-SKILL"]]
    pred = [["B-NAME", "I-NAME", "O", "O", "O", "O"]]
    plain = entity_scores(true, pred)
    assert plain["macro_f1"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert NOT_IN_MACRO not in plain
    left_out = entity_scores(true, pred, untrained=("HOBBY", "DEGREE"))
    assert left_out["macro_f1"] == pytest.approx((1.0 + 0.0) / 2)
    assert left_out[NOT_IN_MACRO] == ["HOBBY"]  # DEGREE is in no row of the table
    assert left_out["f1"] == plain["f1"] and left_out["per_type"] == plain["per_type"]
    assert math.isclose(entity_scores(true, true, untrained=("HOBBY",))["macro_f1"], 1.0)


def test_notebook_03_table_shows_the_learned_nothing_column(project) -> None:
    from hpo_helpers.results.inspection import trials_table

    project.write_hpo(max_trials=2, keep_top_k=0,
                      search_space={**TINY_HPO["search_space"], "epochs": 2})
    fit = _stub([([0.0, 0.3], [1.0, 0.5]), ([0.0, 0.0], [1.0, 1.0])])
    study = run_sweep(load_configs(project.config_dir, project.hpo),
                      output_dir=project.output_dir, fit=fit).study
    assert trials_table(study)[LEARNED_NOTHING].tolist() == [False, True]
