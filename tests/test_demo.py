"""The demo generator (issue 21): a realistic style that looks like real resumes (the shipped
dataset/) and the compact style of earlier versions."""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

import pytest

from hpo_helpers.data import demo_words
from hpo_helpers.data.dataset import load_dataset, read_file, word_spans, words_and_tags
from hpo_helpers.data.demo import SPLIT_SIZES, generate, write_dataset
from hpo_helpers.data.stats import dataset_stats
from hpo_helpers.settings.config import load_data_config

from .conftest import REPO

TYPES = {"NAME", "EMAIL", "LOCATION", "DESIGNATION", "COMPANY", "SKILL", "DEGREE", "COLLEGE",
         "GRADUATION_YEAR", "YEARS_OF_EXPERIENCE"}
DEMO_CONFIG = REPO / "config" / "data" / "demo.yaml"


@lru_cache(maxsize=1)
def _shipped() -> tuple[dict, ...]:
    """The committed dataset/: every split, pooled."""
    return tuple(d for split in ("train", "validation", "test")
                 for d in json.loads((REPO / "dataset" / f"{split}.json").read_text()))


@lru_cache(maxsize=1)
def _shipped_stats() -> dict:
    ds = load_dataset(REPO / "dataset", load_data_config(DEMO_CONFIG))
    return dataset_stats(ds.train + ds.validation + ds.test)


def _text() -> str:
    return "\n\n".join(d["text"] for d in _shipped())


def _mentions(label: str) -> list[str]:
    return [d["text"][s:e] for d in _shipped() for s, e, lab in d["annotations"] if lab == label]


# ---- determinism and sizes ---------------------------------------------------------------------

def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_ones(tmp_path: Path) -> None:
    a = write_dataset(tmp_path / "a", n_train=12, n_validation=3, n_test=3)
    b = write_dataset(tmp_path / "b", n_train=12, n_validation=3, n_test=3)
    c = write_dataset(tmp_path / "c", n_train=12, n_validation=3, n_test=3, seed=8)
    for split in ("train", "validation", "test"):
        assert a[split].read_bytes() == b[split].read_bytes(), split
        assert a[split].read_bytes() != c[split].read_bytes(), split
    assert generate(5, 3) == generate(5, 3) != generate(5, 4)


def test_the_compact_style_writes_the_demo_data_of_earlier_versions(tmp_path: Path) -> None:
    written = write_dataset(tmp_path, style="compact")
    digest = hashlib.sha256(b"".join(written[s].read_bytes()
                                     for s in ("train", "validation", "test"))).hexdigest()
    # sha256 of the three files dataset/ held before issue 21 (written by the code on main)
    assert digest == "c09bee5cea96bfa41d808903e986af6525c9b9a5c2dbcdd0405d938f2178ebd3"
    assert [len(json.loads(written[s].read_text())) for s in ("train", "validation", "test")] \
        == list(SPLIT_SIZES["compact"])


def test_make_demo_data_writes_either_style(tmp_path: Path, capsys) -> None:
    from hpo_helpers.frontends.cli import main

    assert main(["make-demo-data", "--out", str(tmp_path / "c"), "--style", "compact"]) == 0
    assert main(["make-demo-data", "--out", str(tmp_path / "r"), "--seed", "8"]) == 0
    assert "train: " in capsys.readouterr().out
    compact = write_dataset(tmp_path / "c2", style="compact")
    realistic = write_dataset(tmp_path / "r2", seed=8)
    for split in ("train", "validation", "test"):
        assert (tmp_path / "c" / f"{split}.json").read_bytes() == compact[split].read_bytes()
        assert (tmp_path / "r" / f"{split}.json").read_bytes() == realistic[split].read_bytes()


def test_an_unknown_style_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"style 'long' is not one of realistic, compact"):
        generate(1, style="long")
    with pytest.raises(ValueError, match=r"style 'long' is not one of realistic, compact"):
        write_dataset(tmp_path, style="long")


def test_the_shipped_dataset_has_its_sizes_and_stays_small() -> None:
    sizes = [len(json.loads((REPO / "dataset" / f"{s}.json").read_text()))
             for s in ("train", "validation", "test")]
    assert sizes == list(SPLIT_SIZES["realistic"]) == [200, 40, 40]
    total = sum((REPO / "dataset" / f"{s}.json").stat().st_size
                for s in ("train", "validation", "test"))
    assert total < 2_000_000, total


# ---- statistics: long, sparse, rare types ------------------------------------------------------

def test_lengths_are_long_tailed_like_real_resumes() -> None:
    st = _shipped_stats()
    assert 300 <= st["words_median"] <= 500, st
    assert st["words_p10"] < 150, st  # stubs: a header and a few lines
    assert st["words_p90"] > 900, st
    assert 2000 <= st["words_max"] <= 3500, st


def test_entities_are_sparse() -> None:
    st = _shipped_stats()
    assert 10 <= st["entities_mean"] <= 20, st
    assert 10 <= st["entities_median"] <= 20, st
    assert st["entities_median"] <= st["entities_mean"], st  # skewed like real sets
    assert st["o_share"] >= 0.9, st


def test_every_type_is_in_every_split_and_the_rare_types_are_rare() -> None:
    ds = load_dataset(REPO / "dataset", load_data_config(DEMO_CONFIG))
    assert set(ds.entity_types) == TYPES
    for split in ("train", "validation", "test"):
        assert set(ds.splits[split]["per_type"]) == TYPES, split
    per_type = _shipped_stats()["per_type"]
    total = sum(per_type.values())
    common = min(n for t, n in per_type.items() if t not in
                 ("YEARS_OF_EXPERIENCE", "GRADUATION_YEAR"))
    assert per_type["YEARS_OF_EXPERIENCE"] / total < 0.025, per_type
    assert per_type["GRADUATION_YEAR"] / total < 0.06, per_type
    assert per_type["YEARS_OF_EXPERIENCE"] < per_type["GRADUATION_YEAR"] < common, per_type
    assert ds.splits["train"]["per_type"]["YEARS_OF_EXPERIENCE"] >= 20  # still learnable


# ---- spans -------------------------------------------------------------------------------------

def test_spans_are_valid_and_at_word_boundaries() -> None:
    for i, doc in enumerate(_shipped()):
        text, spans = doc["text"], sorted(doc["annotations"])
        starts = {s for s, _ in word_spans(text)}
        ends = {e for _, e in word_spans(text)}
        for (_, e1, _), (s2, _, _) in zip(spans, spans[1:]):
            assert e1 <= s2, (i, spans)  # no overlaps
        for s, e, label in spans:
            assert 0 <= s < e <= len(text) and label in TYPES, (i, s, e, label)
            assert text[s:e] == text[s:e].strip(), (i, text[s:e])
            assert s in starts and e in ends, (i, text[max(0, s - 10):e + 10])


def test_the_readers_keep_every_entity_without_a_repair() -> None:
    cfg = load_data_config(DEMO_CONFIG)
    for split in ("train", "validation", "test"):
        _, report = read_file(REPO / "dataset" / f"{split}.json", cfg)
        assert report.reconciles and report.entities == report.raw_entities, report.summary()
        assert not report.lossy, report.summary()
        assert (report.trimmed, report.realigned, report.split_words) == (0, 0, 0), split


def test_every_mention_is_annotated() -> None:
    """Consistent annotation: no copy of an entity string is left unannotated, neither of
    the document's own entities nor of any string of the generator's entity lists (years and
    experience are numbers that other dates share, by design)."""
    def pattern(strings: set[str]) -> re.Pattern:
        if not strings:
            return re.compile(r"(?!)")  # matches nothing
        alternatives = "|".join(re.escape(x) for x in sorted(strings, key=len, reverse=True))
        return re.compile(rf"(?<!\w)({alternatives})(?!\w)")

    vocab = pattern(set(demo_words.MORE_SKILLS + demo_words.MORE_TITLES
                        + demo_words.MORE_COMPANIES + demo_words.MORE_CITIES
                        + demo_words.MORE_COLLEGES + demo_words.MORE_DEGREES))
    for doc in _shipped():
        text = doc["text"]
        own = pattern({text[s:e] for s, e, lab in doc["annotations"]
                       if lab not in ("GRADUATION_YEAR", "YEARS_OF_EXPERIENCE")})
        covered = [(s, e) for s, e, _ in doc["annotations"]]
        for m in [*vocab.finditer(text), *own.finditer(text)]:
            assert any(s <= m.start() and m.end() <= e for s, e in covered), \
                text[max(0, m.start() - 40):m.end() + 40]


# ---- noise -------------------------------------------------------------------------------------

def test_bullets_tables_and_headings_vary() -> None:
    text = _text()
    lines = text.splitlines()
    bullets = {line[0] for line in lines if line and line[0] in "-*\u2022\u25aa\u27a2\u2713"
               "\u25cf\uf0b7\u2192\u00bb\u25e6>"}
    assert len(bullets) >= 8, bullets
    assert sum(line.count(" | ") >= 2 for line in lines) >= 20  # tables flattened with pipes
    assert sum(line.count("\t") >= 2 for line in lines) >= 20  # ... with tabs
    assert sum(bool(re.search(r"\S {4,}\S", line)) for line in lines) >= 20  # ... with spaces
    assert re.search(r"^WORK EXPERIENCE$", text, re.M) and re.search(r"^Work Experience:?$",
                                                                       text, re.M)
    assert re.search(r"^([A-Z] ){4,}[A-Z]", text, re.M)  # letter-spaced headings


def test_line_breaks_inside_names_and_companies() -> None:
    assert sum("\n" in name for name in _mentions("NAME")) >= 10
    assert sum("\n" in company for company in _mentions("COMPANY")) >= 5


def test_contact_details_come_in_many_forms() -> None:
    text = _text()
    emails = _mentions("EMAIL")
    assert any(e.isupper() for e in emails) and any("+" in e for e in emails)
    assert len({e.rsplit("@", 1)[1].lower() for e in emails}) >= 10
    assert re.search(r"linkedin\.com/in/", text) and re.search(r"github\.(com|io)", text)
    phones = [r"\+91 \d{5} \d{5}", r"\+91-\d{10}", r"\(\d{3}\) \d{3}-\d{4}", r"\+44 \d\d \d{4}"]
    assert all(re.search(p, text) for p in phones)


def test_dates_come_in_many_formats() -> None:
    text = _text()
    forms = [r"\b[A-Z][a-z]{2} 20\d\d\b", r"\b(January|February|March|April|June|July|August|"
             r"September|October|November|December) (19|20)\d\d\b", r"\b\d\d/20\d\d\b",
             r"\b20\d\d-\d\d\b", r"\b[A-Z][a-z]{2}'\d\d\b", r"\b[A-Z][a-z]{2}-\d\d\b",
             r"\b\d\d\.\d\d\.(19|20)\d\d\b", r"\b\d{1,2}(st|nd|rd|th) [A-Z][a-z]+ (19|20)\d\d\b",
             r"Till Date|till date", r"Present"]
    missing = [f for f in forms if not re.search(f, text)]
    assert not missing, missing


def test_typos_and_long_sections_without_entities() -> None:
    # A typo is a word the generator's word lists never spell.
    source = "".join((REPO / "hpo_helpers" / "data" / name).read_text()
                     for name in ("demo_words.py", "demo_realistic.py"))
    known = {w.lower() for w in re.findall(r"[A-Za-z]+", source)}
    text = _text()
    typos = {w for w in re.findall(r"(?<![\w@./-])[A-Za-z]{5,}(?![\w@./-])", text)
             if w.lower() not in known}
    assert len(typos) >= 30, sorted(typos)[:50]
    # stretches of 150 words or more without an entity (summaries, duties, projects)
    longest = []
    for doc in _shipped():
        words, tags = words_and_tags(doc["text"], [tuple(a) for a in doc["annotations"]])
        run = best = 0
        for tag in tags:
            run = run + 1 if tag == "O" else 0
            best = max(best, run)
        longest.append(best)
    assert sum(n >= 150 for n in longest) >= 0.3 * len(longest), sorted(longest)
    for heading in ("HOBBIES", "REFERENCES", "DECLARATION", "PROJECTS"):
        assert re.search(rf"^{heading}", text, re.M | re.I), heading


# ---- the smoke variant -------------------------------------------------------------------------

def test_the_capped_smoke_variant_loads_with_every_type() -> None:
    cfg = load_data_config(REPO / "config" / "data" / "smoke.yaml")
    ds = load_dataset(REPO / "dataset", cfg)
    assert len(ds.train) == cfg.max_train_documents
    assert len(ds.validation) == len(ds.test) == cfg.max_eval_documents
    assert set(ds.entity_types) == TYPES
    assert ds.splits["train"]["capped"].startswith(f"{cfg.max_train_documents} of 200")
