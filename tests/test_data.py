from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hpo_helpers import DataError
from hpo_helpers.data.dataset import load_dataset, read_file, words_and_tags
from hpo_helpers.data.demo import generate, write_dataset
from hpo_helpers.settings.config import load_data_config

from .conftest import REPO

TEN_TYPES = ("NAME", "EMAIL", "LOCATION", "DESIGNATION", "COMPANY", "SKILL", "DEGREE",
             "COLLEGE", "GRADUATION_YEAR", "YEARS_OF_EXPERIENCE")


@pytest.fixture
def cfg():
    """The shipped demo label map with a fixed list of types (labels outside it are dropped)."""
    raw = yaml.safe_load((REPO / "config" / "data" / "demo.yaml").read_text())
    return load_data_config({**raw, "entity_types": list(TEN_TYPES), "drop_labels": []})


BAD_FILES = [
    # (name, content, regex naming the file and line or document)
    ("empty.json", "", r"empty\.json: the file is empty"),
    ("whitespace.txt", "  \n\n ", r"whitespace\.txt: the file is empty"),
    ("truncated.json", '[{"text": "a", "annotations": []', r"truncated\.json:1: invalid JSON"),
    ("object.json", '[{"text": 5, "annotations": []}]',
     r"object\.json: document 0: expected an object with a string 'text'"),
    ("annlist.json", '[{"text": "ab", "annotations": {"a": 1}}]',
     r"annlist\.json: document 0: 'annotations' must be a list"),
    ("badspan.json", '[{"text": "ab", "annotations": [[0, "x", "SKILL"]]}]',
     r"badspan\.json: document 0 annotation 0: \[0, 'x', 'SKILL'\] is not \[start, end, LABEL\]"),
    ("reversed.json", '[{"text": "abcdef", "annotations": [[4, 2, "SKILL"]]}]',
     r"reversed\.json: document 0 annotation 0: \[4, 2, 'SKILL'\] ends before it starts"),
    ("lines.jsonl", '{"content": "a b", "annotation": []}\n{"content": "c", "annot\n',
     r"lines\.jsonl:2: invalid JSON line"),
    ("nocontent.jsonl", '{"text": "a b"}\n', r"nocontent\.jsonl:1: expected an object with a "
                                              r"string 'content'"),
    ("points.jsonl", '{"content": "a b", "annotation": [{"label": ["Skills"], "points": '
                     '[{"start": "x"}]}]}\n', r"points\.jsonl:1: a point lacks integer"),
    ("prose.txt", "John Smith is a data scientist\n", r"prose\.txt:1: .* fits none of the formats"),
    ("conll_badtag.conll", "John B-NAME\nSmith X-NAME\n",
     r"conll_badtag\.conll:2: 'Smith X-NAME' is not a 'token TAG' line"),
    ("scalar.json", "[1, 2]", r"scalar\.json: document 0: expected an object"),
    ("latin1.json", None, r"latin1\.json: not UTF-8 text"),
]


@pytest.mark.parametrize("name,content,pattern", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_data_file_error_names_file_and_place(tmp_path: Path, cfg, name, content,
                                                  pattern) -> None:
    path = tmp_path / name
    if content is None:
        path.write_bytes('[{"text": "caf\u00e9"}]'.encode("latin-1"))
    else:
        path.write_text(content)
    with pytest.raises(DataError, match=pattern):
        read_file(path, cfg)


def test_missing_dataset_and_missing_train_split(tmp_path: Path, cfg) -> None:
    with pytest.raises(DataError, match=r"nope: dataset not found"):
        load_dataset(tmp_path / "nope", cfg)
    (tmp_path / "only_test").mkdir()
    (tmp_path / "only_test" / "test.json").write_text("[]")
    with pytest.raises(DataError, match=r"only_test: no train file"):
        load_dataset(tmp_path / "only_test", cfg)


def test_words_and_tags_iob2() -> None:
    text = "Jane Doe worked at Acme Corp as Data Scientist."
    spans = [(0, 8, "NAME"), (19, 28, "COMPANY"), (32, 46, "DESIGNATION")]
    words, tags = words_and_tags(text, spans)
    assert list(zip(words, tags)) == [
        ("Jane", "B-NAME"), ("Doe", "I-NAME"), ("worked", "O"), ("at", "O"),
        ("Acme", "B-COMPANY"), ("Corp", "I-COMPANY"), ("as", "O"), ("Data", "B-DESIGNATION"),
        ("Scientist", "I-DESIGNATION"), (".", "O")]


def test_adjacent_spans_of_same_type_are_two_entities() -> None:
    words, tags = words_and_tags("Python Java", [(0, 6, "SKILL"), (7, 11, "SKILL")])
    assert tags == ["B-SKILL", "B-SKILL"]


def test_dataturks_messy_spans_are_repaired_and_counted(tmp_path: Path, cfg) -> None:
    content = "Abhishek Jha\nSoftware Engineer at Oracle\nSkills: Java, SQL\nB.E. from VTU"
    doc = {
        "content": content,
        "annotation": [
            # end is inclusive; span has a trailing newline -> trimmed
            {"label": ["Name"], "points": [{"start": 0, "end": 12, "text": "Abhishek Jha\n"}]},
            # offsets point at the wrong place -> realigned by the quoted text
            {"label": ["Companies worked at"], "points": [{"start": 2, "end": 7,
                                                          "text": "Oracle"}]},
            # overlaps the longer DESIGNATION span -> dropped
            {"label": ["Designation"], "points": [{"start": 13, "end": 29,
                                                   "text": "Software Engineer"}]},
            {"label": ["Skills"], "points": [{"start": 13, "end": 20, "text": "Software"}]},
            {"label": ["UNKNOWN"], "points": [{"start": 42, "end": 47, "text": "Skills"}]},
            {"label": [], "points": [{"start": 50, "end": 53, "text": "Java"}]},
            {"label": ["Skills"], "points": [{"start": 55, "end": 57, "text": "SQL"}]},
            # quoted text does not occur at all -> dropped
            {"label": ["Degree"], "points": [{"start": 60, "end": 63, "text": "M.Tech"}]},
        ],
        "extras": None,
    }
    path = tmp_path / "resumes.jsonl"
    path.write_text(json.dumps(doc) + "\n")
    docs, report = read_file(path, cfg)
    assert report.format == "dataturks"
    tagged = {w: t for w, t in zip(docs[0].words, docs[0].tags) if t != "O"}
    assert tagged == {"Abhishek": "B-NAME", "Jha": "I-NAME", "Software": "B-DESIGNATION",
                      "Engineer": "I-DESIGNATION", "Oracle": "B-COMPANY", "SQL": "B-SKILL"}
    assert report.trimmed == 1
    assert report.realigned == 1
    assert report.overlaps_resolved == 1
    assert report.unmapped == {"UNKNOWN": 1}
    assert report.empty_labels == 1
    assert report.dropped_offsets == 1
    assert "dropped 1 unmapped labels ('UNKNOWN': 1)" in report.summary()


def test_overlap_resolution_is_independent_of_file_order(tmp_path: Path, cfg) -> None:
    text = "Senior Data Scientist"
    anns = [[0, 21, "DESIGNATION"], [7, 11, "SKILL"], [7, 21, "DESIGNATION"]]
    results = []
    for order in (anns, anns[::-1]):
        path = tmp_path / "o.json"
        path.write_text(json.dumps([{"text": text, "annotations": order}]))
        docs, _ = read_file(path, cfg)
        results.append(docs[0].tags)
    assert results[0] == results[1] == ("B-DESIGNATION", "I-DESIGNATION", "I-DESIGNATION")


def test_conll_maps_labels_and_repairs_iob1(tmp_path: Path, cfg) -> None:
    path = tmp_path / "data.conll"
    path.write_text("-DOCSTART- O\n\nJohn I-Name\nSmith I-Name\nknows O\nGo B-Skills\n"
                    "x B-Hobby\n\nMary B-NAME\n")
    docs, report = read_file(path, cfg)
    assert report.format == "conll"
    assert [d.tags for d in docs] == [("B-NAME", "I-NAME", "O", "B-SKILL", "O"), ("B-NAME",)]
    assert report.repaired_tags == 1 and report.unmapped == {"Hobby": 1}


def test_single_file_is_split_with_seed(tmp_path: Path, cfg) -> None:
    path = tmp_path / "all.json"
    path.write_text(json.dumps(generate(40, seed=3)))
    a = load_dataset(path, cfg)
    b = load_dataset(path, cfg)
    assert (len(a.train), len(a.validation), len(a.test)) == (28, 6, 6)
    assert [d.words for d in a.validation] == [d.words for d in b.validation]
    assert a.fingerprint == b.fingerprint


def test_demo_data_is_deterministic_and_has_all_types(tmp_path: Path, cfg) -> None:
    write_dataset(tmp_path / "d", n_train=30, n_validation=5, n_test=5)
    assert (tmp_path / "d" / "train.json").read_bytes() == \
        write_dataset(tmp_path / "e", n_train=30, n_validation=5, n_test=5)["train"].read_bytes()
    ds = load_dataset(tmp_path / "d", cfg)
    seen = {t[2:] for d in ds.train for t in d.tags if t != "O"}
    assert seen == set(cfg.entity_types)


def test_committed_dataset_is_the_generators_output(tmp_path: Path) -> None:
    written = write_dataset(tmp_path)
    for split, path in written.items():
        assert path.read_bytes() == (REPO / "dataset" / f"{split}.json").read_bytes(), split


def test_fingerprint_changes_with_data(tmp_path: Path, cfg) -> None:
    path = tmp_path / "all.json"
    path.write_text(json.dumps(generate(20, seed=3)))
    before = load_dataset(path, cfg).fingerprint
    path.write_text(json.dumps(generate(20, seed=4)))
    assert load_dataset(path, cfg).fingerprint != before


@pytest.mark.parametrize("items", [
    [{"text": "Mary knows Go", "annotations": [[11, 13, "SKILL"]]}],
    [{"content": "Mary knows Go", "annotation": [
        {"label": ["Skills"], "points": [{"start": 11, "end": 12, "text": "Go"}]}]}],
], ids=["json", "dataturks-list"])
def test_a_json_list_is_parsed_once(tmp_path: Path, cfg, items, monkeypatch) -> None:
    """A large JSON file costs one parse, for detecting its format and reading it."""
    from hpo_helpers.data import dataset as data

    path = tmp_path / "resumes.json"
    path.write_text(json.dumps(items))
    calls = []
    real = json.loads
    monkeypatch.setattr(data.json, "loads", lambda s, *a, **k: calls.append(1) or real(s))
    docs, report = read_file(path, cfg)
    assert report.format == ("json" if "text" in items[0] else "dataturks")
    assert docs[0].tags[-1] == "B-SKILL" and len(calls) == 1
