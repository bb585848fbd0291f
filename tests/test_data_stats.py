"""Dataset statistics (issue 21): the helper and the script that prints them for any dataset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpo_helpers.data.dataset import Document
from hpo_helpers.data.stats import REAL_RESUMES, dataset_stats, stats_table

from .conftest import REPO

DEMO_CONFIG = REPO / "config" / "data" / "demo.yaml"
TYPES = {"NAME", "EMAIL", "LOCATION", "DESIGNATION", "COMPANY", "SKILL", "DEGREE", "COLLEGE",
         "GRADUATION_YEAR", "YEARS_OF_EXPERIENCE"}


def test_stats_of_known_documents() -> None:
    docs = [Document("a", ("John", "Smith", "knows", "Go"), ("B-NAME", "I-NAME", "O", "B-SKILL")),
            Document("b", ("x",) * 10, ("O",) * 10)]
    st = dataset_stats(docs)
    assert (st["documents"], st["words"], st["words_median"], st["words_max"]) == (2, 14, 7, 10)
    assert (st["entities"], st["entities_mean"], st["per_type"]) == (2, 1.0,
                                                                     {"NAME": 1, "SKILL": 1})
    assert st["o_share"] == pytest.approx(11 / 14)
    assert st["words_p10"] == pytest.approx(4.6) and st["words_p90"] == pytest.approx(9.4)
    table = stats_table({"demo": st, "real": REAL_RESUMES})
    assert "| words per resume, median | 7 | 406 |" in table
    assert "| NAME entities | 1 (50.0%) | - |" in table
    with pytest.raises(ValueError, match="no documents"):
        dataset_stats([])


def test_the_stats_script_reads_any_format(tmp_path: Path) -> None:
    from .resume_fixtures import conll_three_columns, dataturks_list

    dataturks = dataturks_list(tmp_path / "export.json", n=6)
    conll = conll_three_columns(tmp_path / "resumes.conll", n=5)
    cfg = tmp_path / "data.yaml"
    cfg.write_text(DEMO_CONFIG.read_text().replace("tag_column: null", "tag_column: 2"))
    script = str(REPO / "benchmarks" / "data_stats.py")
    res = subprocess.run([sys.executable, script, str(dataturks), str(conll), "--data-config",
                          str(cfg), "--json"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    first, second = (json.loads(line) for line in res.stdout.splitlines())
    assert first["documents"] == 6 and set(first["per_type"]) == TYPES
    assert second["documents"] == 5 and "SKI" in second["per_type"]  # CoNLL's own tags
    res = subprocess.run([sys.executable, script, "--markdown", "--reference"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "| | dataset | real resumes (issue 21) |" in res.stdout
    assert "| YEARS_OF_EXPERIENCE entities |" in res.stdout
