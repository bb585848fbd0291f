"""Predictions from a kept model: CLI, API, long resumes, transformers.pipeline (issue 16)."""

from __future__ import annotations

import json
import subprocess

import pytest

import hpo_helpers
from hpo_helpers import HpoHelpersError, load_configs, run_sweep
from hpo_helpers.results.prediction import Predictor, read_inputs

from .conftest import PYTHON


@pytest.fixture(scope="module")
def kept_model(tmp_path_factory):
    """A 1-trial tiny sweep's kept model: two epochs of the recipe, so it finds entities."""
    from .conftest import make_project

    root = tmp_path_factory.mktemp("pred")
    proj = make_project(root)
    config_dir, hpo = proj.config_dir, proj.write_hpo(max_trials=1, keep_top_k=1)
    cfg = load_configs(config_dir, hpo)
    run_sweep(cfg, output_dir=root / "out")
    model = next((root / "out").rglob("trial_0"))
    return {"dir": model, "hpo": hpo, "out": root / "out", "cfg": cfg}


def _resume(n_lines: int) -> str:
    lines = [f"Worked at Infosys in Bangalore using Python and SQL, line {i}."
             for i in range(n_lines)]
    return "Priya Sharma\npriya.sharma@gmail.com\n" + "\n".join(lines)


@pytest.mark.slow
def test_long_resume_is_not_truncated(kept_model) -> None:
    text = _resume(60)
    predictor = Predictor(kept_model["dir"], max_length=64, stride=16)
    from hpo_helpers.data.dataset import Document, word_spans
    from hpo_helpers.training.encoding import encode_documents

    words = tuple(text[s:e] for s, e in word_spans(text))
    n_windows = len(encode_documents([Document("x", words, ("O",) * len(words))],
                                     predictor.tokenizer, {"O": 0}, max_length=64, stride=16))
    assert n_windows > 5
    entities = hpo_helpers.predict([text], predictor)[0]
    last_window_start = text.index("line 55")
    assert any(e.start > last_window_start for e in entities), entities[-3:]
    for e in entities:
        assert text[e.start:e.end] == e.text and 0.0 < e.score <= 1.0


@pytest.mark.slow
def test_exported_folder_matches_transformers_pipeline(kept_model) -> None:
    from transformers import pipeline

    text = "Priya Sharma Python Java SQL Bangalore Infosys Data Scientist"
    ours = [(e.type, e.start, e.end) for e in hpo_helpers.predict(text, kept_model["dir"])[0]]
    pipe = pipeline("token-classification", model=str(kept_model["dir"]),
                    aggregation_strategy="first")
    theirs = [(g["entity_group"], g["start"], g["end"]) for g in pipe(text)]
    assert ours and ours == theirs


@pytest.mark.slow
def test_predict_cli_prints_json_lines(kept_model, tmp_path) -> None:
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"text": _resume(2)}) + "\n" + json.dumps({"text": "Ann"}) + "\n")
    res = subprocess.run([PYTHON, "-m", "hpo_helpers", "predict", "--model", "best", "--config",
                          str(kept_model["hpo"]), "--output-dir", str(kept_model["out"]),
                          "--input", str(inp)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert rows and set(rows[0]) == {"doc", "type", "text", "start", "end", "score"}
    res = subprocess.run([PYTHON, "-m", "hpo_helpers", "predict", "--model",
                          str(kept_model["dir"]), "--input", "-"], input="Priya Sharma\n",
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_inputs_text_or_jsonl_and_errors(tmp_path) -> None:
    plain = tmp_path / "cv.txt"
    plain.write_text("Ann Lee\n{not json at start}\n")
    assert list(read_inputs(str(plain))) == ["Ann Lee\n{not json at start}\n"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a"}\n{"txt": "b"}\n')
    with pytest.raises(HpoHelpersError, match=r"bad\.jsonl:2: expected an object with a string"):
        list(read_inputs(str(bad)))
    with pytest.raises(HpoHelpersError, match=r"nope\.txt: cannot read the input"):
        list(read_inputs(str(tmp_path / "nope.txt")))
    with pytest.raises(HpoHelpersError, match=r"not a saved model"):
        Predictor(tmp_path)


def test_predict_best_without_config_is_one_error_line(capsys) -> None:
    from hpo_helpers.frontends.cli import main

    assert main(["predict", "--model", "best", "--input", "-"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --model best needs --config")
