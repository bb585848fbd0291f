"""Small labelled files in the shapes real resume datasets come in (written per test).

* ``conll_three_columns``: CoNLL with abbreviated tags (NAM, EMA, LOC, COM, SKI, COL, GRA, YOE,
  DES, GRY) and three columns: token, gold tag, a model's predicted tag;
* ``dataturks_list``: a DataTurks export saved as one JSON list, with DataTurks label names, an
  UNKNOWN label, and an entity glued to the previous word ("Solutions-Infosys");
* ``original_style``: the original project's label set (PERSON, EDUCATION, EXPERIENCE, PHONE,
  OTHER, EXPERTISE) in the JSON list format.

All are derived from the deterministic demo generator (its compact style: short resumes), so
they are reproducible.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from hpo_helpers.data.dataset import words_and_tags
from hpo_helpers.data.demo import generate

ABBREV = {"NAME": "NAM", "EMAIL": "EMA", "LOCATION": "LOC", "COMPANY": "COM", "SKILL": "SKI",
          "COLLEGE": "COL", "DEGREE": "GRA", "YEARS_OF_EXPERIENCE": "YOE", "DESIGNATION": "DES",
          "GRADUATION_YEAR": "GRY"}
DATATURKS = {"NAME": "Name", "EMAIL": "Email Address", "LOCATION": "Location",
             "COMPANY": "Companies worked at", "SKILL": "Skills", "COLLEGE": "College Name",
             "DEGREE": "Degree", "YEARS_OF_EXPERIENCE": "Years of Experience",
             "DESIGNATION": "Designation", "GRADUATION_YEAR": "Graduation Year"}
ORIGINAL = {"NAME": "PERSON", "DEGREE": "EDUCATION", "COLLEGE": "EDUCATION",
            "YEARS_OF_EXPERIENCE": "EXPERIENCE", "SKILL": "EXPERTISE", "LOCATION": "OTHER",
            "COMPANY": "OTHER", "DESIGNATION": "OTHER", "GRADUATION_YEAR": "OTHER",
            "EMAIL": "OTHER"}


def conll_three_columns(path: Path, n: int = 24, seed: int = 21) -> Path:
    lines = []
    for k, doc in enumerate(generate(n, seed=seed, style="compact")):
        words, tags = words_and_tags(doc["text"], [tuple(a) for a in doc["annotations"]])
        for i, (w, t) in enumerate(zip(words, tags)):
            gold = t if t == "O" else f"{t[:2]}{ABBREV[t[2:]]}"
            pred = "O" if (i + k) % 7 == 0 else gold  # a model's output: sometimes wrong
            lines.append(f"{w} {gold} {pred}")
        lines.append("")
    path.write_text("\n".join(lines))
    return path


def dataturks_list(path: Path, n: int = 24, seed: int = 22) -> Path:
    items = []
    for k, doc in enumerate(generate(n, seed=seed, style="compact")):
        text = doc["text"]
        anns = [{"label": [DATATURKS[lab]], "points": [{"start": s, "end": e - 1,
                                                        "text": text[s:e]}]}
                for s, e, lab in doc["annotations"]]
        if k == 0:  # "Solutions-Infosys": a company glued to the previous word
            start = len(text) + len("Lead Solutions-")
            text += "Lead Solutions-Infosys\n"
            anns.append({"label": ["Companies worked at"],
                         "points": [{"start": start, "end": start + 6, "text": "Infosys"}]})
            anns.append({"label": ["UNKNOWN"],
                         "points": [{"start": start - 15, "end": start - 6,
                                     "text": "Lead Solu"}]})
        items.append({"content": text, "annotation": anns, "extras": None})
    path.write_text(json.dumps(items, indent=1))
    return path


def original_style(path: Path, n: int = 24, seed: int = 23) -> Path:
    items = []
    for doc in generate(n, seed=seed, style="compact"):
        text = doc["text"]
        anns = [[s, e, ORIGINAL[lab]] for s, e, lab in doc["annotations"]]
        for m in re.finditer(r"\+?\d[\d ]{8,}\d", text):
            if not any(s < m.end() and m.start() < e for s, e, _ in anns):
                anns.append([m.start(), m.end(), "PHONE"])
        items.append({"text": text, "annotations": anns})
    path.write_text(json.dumps(items, indent=1))
    return path
