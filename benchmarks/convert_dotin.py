#!/usr/bin/env python3
"""Convert dotin-inc/resume-dataset-NER-annotations (CC0-1.0) into the project's JSON format.

Source: https://github.com/dotin-inc/resume-dataset-NER-annotations
commit 052429f98489d0b9fc747d58e06db06cdeff2852 ("added anonymized dataset", 2022-07-30),
files 545_cvs_train_v2.zip (310 XML CVs) and set_aside_test_v2_50cvs.zip (50 XML CVs).

Each CV is ``<cv>"text with <label type="X">span</label> ..."</cv>``. The Kaggle-derived CVs
are one line in which the original line breaks became double spaces and non-ASCII characters
are Python byte escapes (``\\xe2\\x80\\xa2``): those are decoded back to UTF-8 here; XML
entities (``&amp;``) are unescaped. Output: the project's JSON list of
``{"id", "text", "annotations": [[start, end_exclusive, LABEL], ...]}`` with the source labels
unchanged (``--merge-skills`` maps Job Specific Skills / Soft Skills / Tech Tools to ``Skills``).

EXCLUDED: every CV derived from Indeed (train files 1..81, test files Indeed_*; all contain
"Indeed"). The dotin README names the DataTurks "Entity Recognition in Resumes" export as a
source, and those CVs are (anonymised, re-annotated) copies of it; that export is held out for
acceptance checks, so none of its documents may be tuned on. 267 Kaggle-derived CVs remain.

Exact duplicates (2) and near-duplicates (word 8-gram Jaccard > 0.3, 13 CVs) are dropped, the first
by id kept. Split (seeded, over the remaining 252 CVs): test 40,
validation 40, train the rest.

Usage: python convert_dotin.py [--mirror GITDIR] [--out DIR] [--seed 21] [--merge-skills]
"""
from __future__ import annotations

import argparse
import hashlib
import html
import io
import json
import random
import re
import subprocess
import zipfile
from pathlib import Path

COMMIT = "052429f98489d0b9fc747d58e06db06cdeff2852"
ZIPS = ("545_cvs_train_v2.zip", "set_aside_test_v2_50cvs.zip")
_LABEL = re.compile(r'<label type="([^"]*)">(.*?)</label>', re.S)
_BYTES = re.compile(r"(?:\\x[0-9a-fA-F]{2})+")
SKILLS = {"Job Specific Skills", "Soft Skills", "Tech Tools"}


def _decode_bytes(s: str) -> str:
    """``\\xe2\\x80\\xa2`` runs (a Python bytes repr) -> the UTF-8 characters they encode."""
    def fix(m: re.Match) -> str:
        raw = bytes(int(h, 16) for h in re.findall(r"\\x([0-9a-fA-F]{2})", m.group(0)))
        return raw.decode("utf-8", errors="replace")
    return _BYTES.sub(fix, s)


def _clean(s: str) -> str:
    return html.unescape(_decode_bytes(s.replace("\\t", " ")))


def parse(xml: str, merge_skills: bool) -> tuple[str, list[list]]:
    body = xml.split("<cv>", 1)[1].rsplit("</cv>", 1)[0].strip()
    if body.startswith('"') and body.endswith('"'):
        body = body[1:-1]
    text, spans, pos = [], [], 0
    length = 0
    for m in _LABEL.finditer(body):
        before = _clean(body[pos:m.start()])
        text.append(before)
        length += len(before)
        inner = _clean(m.group(2))
        label = m.group(1)
        if merge_skills and label in SKILLS:
            label = "Skills"
        # trim whitespace inside the span (the loader trims too; keep offsets exact)
        lead = len(inner) - len(inner.lstrip())
        core = inner.strip()
        if core:
            spans.append([length + lead, length + lead + len(core), label])
        text.append(inner)
        length += len(inner)
        pos = m.end()
    text.append(_clean(body[pos:]))
    return "".join(text), spans


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", required=True,
                    help="a git clone (or bare mirror) of dotin-inc/resume-dataset-NER-annotations")
    ap.add_argument("--out", default=str(Path(__file__).parent / "data" / "dotin"))
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--n-test", type=int, default=40)
    ap.add_argument("--n-validation", type=int, default=40)
    ap.add_argument("--merge-skills", action="store_true")
    ap.add_argument("--near-dup", type=float, default=0.3,
                    help="word 8-gram Jaccard above which a CV is a near-duplicate")
    a = ap.parse_args()
    docs, excluded, dupes, seen = [], [], [], {}
    for zname in ZIPS:
        blob = subprocess.run(["git", f"--git-dir={a.mirror}", "show", f"{COMMIT}:{zname}"],
                              check=True, capture_output=True).stdout
        z = zipfile.ZipFile(io.BytesIO(blob))
        for name in sorted(n for n in z.namelist()
                           if n.endswith(".xml") and "__MACOSX" not in n):
            xml = z.read(name).decode("utf-8")
            doc_id = f"{Path(zname).stem.split('_')[0]}-{Path(name).stem}"
            if "indeed" in xml.lower():
                excluded.append(doc_id)
                continue
            text, spans = parse(xml, a.merge_skills)
            key = hashlib.sha1(" ".join(text.split()).lower().encode()).hexdigest()
            if key in seen:
                dupes.append((doc_id, seen[key]))
                continue
            seen[key] = doc_id
            docs.append({"id": doc_id, "text": text, "annotations": spans})
    docs.sort(key=lambda d: d["id"])
    # near-duplicates (the Kaggle source holds several versions of some CVs): keep the first
    # of each group, so that no validation/test CV has a near-copy in train
    shingles = []
    kept_docs, near = [], []
    for d in docs:
        ws = re.findall(r"\w+", d["text"].lower())
        sh = {tuple(ws[i:i + 8]) for i in range(max(1, len(ws) - 7))}
        twin = next((k for k, s in zip(kept_docs, shingles)
                     if len(sh & s) / max(1, len(sh | s)) > a.near_dup), None)
        if twin is not None:
            near.append((d["id"], twin["id"]))
            continue
        kept_docs.append(d)
        shingles.append(sh)
    docs = kept_docs
    random.Random(a.seed).shuffle(docs)
    test = docs[:a.n_test]
    val = docs[a.n_test:a.n_test + a.n_validation]
    train = docs[a.n_test + a.n_validation:]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    for split, items in (("train", train), ("validation", val), ("test", test)):
        (out / f"{split}.json").write_text(json.dumps(items, ensure_ascii=False, indent=0))
    meta = {"source": "https://github.com/dotin-inc/resume-dataset-NER-annotations",
            "commit": COMMIT, "licence": "CC0-1.0", "files": ZIPS,
            "excluded_indeed_derived": excluded, "exact_duplicates_dropped": dupes,
            "near_duplicates_dropped": near,
            "seed": a.seed, "merge_skills": a.merge_skills,
            "counts": {"train": len(train), "validation": len(val), "test": len(test)}}
    (out / "SOURCE.json").write_text(json.dumps(meta, indent=1))
    print(json.dumps(meta["counts"]), f"excluded {len(excluded)} Indeed-derived,",
          f"{len(dupes)} exact duplicates, {len(near)} near-duplicates")


if __name__ == "__main__":
    main()
