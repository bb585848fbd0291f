"""Label sets from the data, honest reports, formats and split files (issue 16, items 1-4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hpo_helpers import DataError
from hpo_helpers.data.dataset import load_dataset, read_file
from hpo_helpers.settings.config import load_data_config

from .conftest import REPO, compact_dataset
from .resume_fixtures import conll_three_columns, dataturks_list, original_style


def _shipped(**overrides) -> dict:
    raw = yaml.safe_load((REPO / "config" / "data" / "demo.yaml").read_text())
    return {**raw, **overrides}


@pytest.fixture
def auto():
    return load_data_config(REPO / "config" / "data" / "demo.yaml")


def _reconciled(ds) -> None:
    for r in ds.reports:
        assert r.raw_entities == r.entities + sum(r.drop_counts().values()), r.summary()
        assert r.entities == sum(r.per_type.values())
    # The splits hold every kept entity of the files (no caps here).
    assert sum(s["entities"] for s in ds.splits.values()) == sum(r.entities for r in ds.reports)


def test_conll_three_columns_abbreviated_tags_with_tag_column(tmp_path: Path) -> None:
    path = conll_three_columns(tmp_path / "resumes.conll")
    ds = load_dataset(path, load_data_config(_shipped(tag_column=2)))
    assert ds.entity_types == ("COL", "COM", "DES", "EMA", "GRA", "GRY", "LOC", "NAM", "SKI",
                               "YOE")
    _reconciled(ds)
    report = ds.reports[0]
    assert report.tag_column == 2 and report.raw_entities == report.entities
    # Column 3 (a model's predictions, sometimes O) gives other tags: the choice matters.
    pred = load_dataset(path, load_data_config(_shipped(tag_column=3)))
    assert pred.reports[0].entities < report.entities


def test_conll_with_several_tag_columns_and_no_choice_is_refused(tmp_path: Path, auto) -> None:
    path = conll_three_columns(tmp_path / "resumes.conll")
    with pytest.raises(DataError, match=r"resumes\.conll: several columns hold tags: column 2 "
                                        r"\(e\.g\. B-NAM\), column 3 .* set tag_column"):
        load_dataset(path, auto)


def test_conll_tag_column_outside_the_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "two.conll"
    path.write_text("John B-NAM\nSmith I-NAM\n")
    with pytest.raises(DataError, match=r"two\.conll: tag_column 3 .* every line has 2 columns"):
        read_file(path, load_data_config(_shipped(tag_column=3)))


def test_dataturks_json_list_keeps_glued_entities(tmp_path: Path, auto) -> None:
    ds = load_dataset(dataturks_list(tmp_path / "export.json"), auto)
    report = ds.reports[0]
    assert report.format == "dataturks"
    _reconciled(ds)
    assert report.dropped_labels == {"UNKNOWN": 1}
    assert report.raw_entities == report.entities + 1
    assert report.split_words >= 1
    docs, _ = read_file(tmp_path / "export.json", auto)
    tagged = list(zip(docs[0].words, docs[0].tags))
    assert ("Infosys", "B-COMPANY") in tagged and ("Solutions", "O") in tagged


def test_dataturks_list_with_bad_items_names_dataturks(tmp_path: Path, auto) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"content": "a b", "annotation": []}, {"x": 1}]))
    with pytest.raises(DataError, match=r"bad\.json: document 1: expected an object with a "
                                        r"string 'content' \(DataTurks"):
        read_file(path, auto)
    path.write_text(json.dumps([{"words": ["a"]}]))
    with pytest.raises(DataError, match=r"document 0: expected an object .*DataTurks export"):
        read_file(path, auto)


def test_original_project_labels_become_types(tmp_path: Path) -> None:
    cfg = load_data_config(_shipped(label_map={}))
    ds = load_dataset(original_style(tmp_path / "train.json"), cfg)
    assert set(ds.entity_types) == {"PERSON", "EDUCATION", "EXPERIENCE", "PHONE", "OTHER",
                                    "EXPERTISE"}
    _reconciled(ds)


def test_bioes_and_bilou_become_iob2(tmp_path: Path, auto) -> None:
    path = tmp_path / "s.conll"
    path.write_text("Ann S-PER\nLee U-PER\nworks O\nat O\nBig B-ORG\nCo E-ORG\nand O\n"
                    "Acme B-ORG\nLabs I-ORG\nInc L-ORG\nx I-ORG\n")
    docs, report = read_file(path, auto)
    assert docs[0].tags == ("B-PER", "B-PER", "O", "O", "B-ORG", "I-ORG", "O", "B-ORG",
                            "I-ORG", "I-ORG", "B-ORG")
    assert report.converted_tags == 4 and report.repaired_tags == 1
    assert report.raw_entities == report.entities == 5


def test_conll_unmapped_labels_are_counted_in_entities(tmp_path: Path) -> None:
    cfg = load_data_config(_shipped(entity_types=["NAME"], label_map={}))
    path = tmp_path / "c.conll"
    path.write_text("John B-NAME\nSmith I-NAME\nAcme B-COM\nCorp I-COM\nInc I-COM\nIBM B-COM\n")
    docs, report = read_file(path, cfg)
    assert report.unmapped == {"COM": 2}  # two entities, not four tokens
    assert report.raw_entities == 3 and report.entities == 1 and report.reconciles


def test_file_whose_labels_all_fail_to_map_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "abbrev.conll"
    path.write_text("John B-NAM\nSmith I-NAM\nj@x.io B-EMA\n\nMary B-NAM\n\nAl B-NAM\n\n"
                    "Bo B-NAM\n")
    fixed = load_data_config(_shipped(entity_types=["NAME", "EMAIL"], label_map={}))
    with pytest.raises(DataError, match=r"abbrev\.conll: no entities are left in the training "
                                        r"data .*Raw labels found: 'NAM' \(4\), 'EMA' \(1\)\. "
                                        r"Fix: write entity_types: auto .*\n  EMA: <one of"):
        load_dataset(path, fixed)
    dropping = load_data_config(_shipped(drop_labels=["NAM", "EMA"]))
    with pytest.raises(DataError, match=r"no entities .*remove them from drop_labels.*\n"
                                        r"  EMA: EMA\n  NAM: NAM"):
        load_dataset(path, dropping)
    path.write_text("John O\nSmith O\n\nMary O\n\nAl O\n\nBo O\n")
    with pytest.raises(DataError, match=r"the files hold no labelled entities at all"):
        load_dataset(path, fixed)


def test_split_files_from_cli_keys_and_config(tmp_path: Path, auto) -> None:
    train = original_style(tmp_path / "a.json", n=10, seed=1)
    test = original_style(tmp_path / "b.json", n=4, seed=2)
    ds = load_dataset(None, auto, files={"train": train, "test": test})
    assert len(ds.test) == 4 and len(ds.train) + len(ds.validation) == 10
    assert ds.splits["test"]["source"] == str(test)
    assert "validation_fraction" in ds.splits["validation"]["source"]
    with pytest.raises(DataError, match=r"no training data: give --train FILE"):
        load_dataset(None, auto, files={"test": test})


def test_folder_without_train_file_lists_every_accepted_name(tmp_path: Path, auto) -> None:
    (tmp_path / "data").mkdir()
    with pytest.raises(DataError, match=r"no train file\. Accepted names: train: train\.json, "
                                        r"train\.jsonl, .*train\.bio; validation: "
                                        r"validation\.json.*dev\.conll.*valid\.tsv"):
        load_dataset(tmp_path / "data", auto)


def test_caps_and_split_sizes_are_reported(tmp_path: Path) -> None:
    cfg = load_data_config(_shipped(max_train_documents=5, max_eval_documents=2))
    ds = load_dataset(original_style(tmp_path / "all.json", n=20), cfg)
    assert ds.splits["train"]["documents"] == 5
    assert ds.splits["train"]["capped"].startswith("5 of 14 (max_train_documents: 5")
    assert ds.splits["test"]["capped"].startswith("2 of 3 (max_eval_documents: 2")


def test_types_absent_from_training_are_dropped_from_eval_splits(tmp_path: Path, auto) -> None:
    train = tmp_path / "train.conll"
    train.write_text("Ann B-PER\n\nBob B-PER\n")
    val = tmp_path / "validation.conll"
    val.write_text("Cy B-PER\nat O\nAcme B-ORG\n")
    ds = load_dataset(tmp_path, auto)
    assert ds.entity_types == ("PER",) and ds.validation[0].tags == ("B-PER", "O", "O")
    assert ds.splits["validation"]["dropped_types_not_in_train"] == {"ORG": 1}


def test_shipped_auto_config_keeps_the_fingerprint_of_earlier_studies(tmp_path: Path) -> None:
    # Studies made when demo.yaml listed the ten types must resume: same types, same order,
    # same fingerprint (value computed by the code before entity_types: auto).
    # (Those studies' data is the compact demo style and their smoke caps 60/20: since issue 21
    # the shipped dataset/ is the realistic style, a new dataset with a fingerprint of its own,
    # and smoke.yaml caps it to fewer of its longer documents.)
    data = compact_dataset(tmp_path / "earlier-demo-data")
    ds = load_dataset(data, load_data_config(REPO / "config/data/demo.yaml"))
    assert ds.fingerprint == "47ac4fb1e4fe10a8"
    earlier_smoke = {**yaml.safe_load((REPO / "config/data/smoke.yaml").read_text()),
                     "max_train_documents": 60, "max_eval_documents": 20}
    smoke = load_dataset(data, load_data_config(earlier_smoke))
    assert smoke.fingerprint == "fed21f9968c74772"


@pytest.mark.parametrize("raw,pattern", [
    ({"tag_column": 0}, r"'tag_column' = 0 is out of range \(must be >= 1\)"),
    ({"label_map": {"Skills": "!!"}}, r"'label_map' = \['!!'\] maps onto empty type names"),
    ({"drop_labels": "UNKNOWN"}, r"'drop_labels' = 'UNKNOWN' must be a list"),
])
def test_bad_new_data_keys(tmp_path: Path, raw, pattern) -> None:
    from hpo_helpers import ConfigError

    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=pattern):
        load_data_config(path)


def test_auto_config_maps_renames_and_drops() -> None:
    cfg = load_data_config(REPO / "config" / "data" / "demo.yaml")
    assert cfg.auto_types
    assert cfg.canonical("Companies worked at") == "COMPANY"
    assert cfg.canonical("Job title ") == "DESIGNATION"
    assert cfg.canonical("Hobby / Interest") == "HOBBY_INTEREST"
    assert cfg.canonical("unknown") is None and cfg.dropped("Unknown")


def test_run_refuses_unmappable_data_before_any_training(project) -> None:
    import subprocess

    bad = project.root / "abbrev.conll"
    bad.write_text("".join(f"Name{i} B-NAM\nx O\n\n" for i in range(12)))
    data = yaml.safe_load((project.config_dir / "data" / "test.yaml").read_text())
    data.update(entity_types=["NAME"], label_map={"Name": "NAME"})
    (project.config_dir / "data" / "test.yaml").write_text(yaml.safe_dump(data))
    res = subprocess.run(project.run_args("--train", str(bad)), capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2
    assert "no entities are left in the training data" in res.stderr
    assert "'NAM' (12)" in res.stderr and "NAM: <one of NAME>" in res.stderr
    assert not project.output_dir.exists()  # no study, no trial


def test_labels_match_whatever_their_inner_whitespace(tmp_path: Path) -> None:
    """Issue 21 item 6: exports differ in whitespace inside labels too ("Companies  worked
    at"); label_map, drop_labels and a fixed entity_types list match them like the case."""
    text = "Jane Doe worked at Infosys and Acme in Pune. Lead role."
    spans = {"Infosys": "Companies  worked at", "Acme": " companies\tworked at ",
             "Pune": "Location", "Lead": "UN  KNOWN"}
    anns = [{"label": [label], "points": [{"start": text.index(w),
                                           "end": text.index(w) + len(w) - 1, "text": w}]}
            for w, label in spans.items()]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps({"content": text, "annotation": anns})
                              for _ in range(6)) + "\n")
    auto = load_data_config(_shipped(drop_labels=["Un Known"]))
    docs, report = read_file(path, auto)
    assert report.per_type == {"COMPANY": 12, "LOCATION": 6}, report.summary()
    assert report.dropped_labels == {"UN  KNOWN": 6} and not report.unmapped
    fixed = load_data_config(_shipped(entity_types=["COMPANIES WORKED AT", "LOCATION"],
                                      label_map={}, drop_labels=[]))
    assert fixed.canonical("Companies  worked\nat") == "COMPANIES WORKED AT"
