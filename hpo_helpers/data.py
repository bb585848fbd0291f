"""Datasets: three file formats in, words with IOB2 tags out.

Formats, detected from the content (or forced with ``format:`` in the data config):

* ``json``: a JSON list of ``{"text": str, "annotations": [[start, end_exclusive, "LABEL"], ...]}``
  (the format of the committed demo data);
* ``dataturks``: JSONL, one ``{"content": str, "annotation": [{"label": [...], "points":
  [{"start": int, "end": int_inclusive, "text": str}]}]}`` per line;
* ``conll``: ``token TAG`` per line, a blank line between documents.

Character spans are cleaned the same way for both JSON formats: offsets that do not match the
quoted text are realigned to the nearest occurrence or dropped, surrounding whitespace is trimmed,
overlaps are resolved deterministically (longer span wins, then the earlier one), and raw labels
are mapped onto the canonical entity types. Every repair is counted and reported, never silent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import DataConfig
from .errors import DataError

__all__ = [
    "DataReport",
    "Dataset",
    "Document",
    "detect_format",
    "kfold_split",
    "label_list",
    "load_dataset",
    "read_file",
    "words_and_tags",
]

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\w+(?:['.\-/+#]\w+)*\+*#?|[^\w\s]")
_TAG = re.compile(r"^(O|[BI]-\S+)$")
_SPLIT_NAMES = {
    "train": ("train",),
    "validation": ("validation", "val", "dev", "valid"),
    "test": ("test",),
}
_SUFFIXES = (".json", ".jsonl", ".conll", ".txt", ".tsv", ".iob", ".bio")


@dataclass(frozen=True)
class Document:
    """One resume as words and IOB2 tags (canonical entity types)."""

    id: str
    words: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass
class DataReport:
    """Counts of everything the reader repaired or dropped in one file."""

    file: str
    format: str = ""
    documents: int = 0
    entities: int = 0
    trimmed: int = 0
    realigned: int = 0
    dropped_offsets: int = 0
    overlaps_resolved: int = 0
    repaired_tags: int = 0
    empty_labels: int = 0
    unmapped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        parts = [f"{self.file} ({self.format}): {self.documents} documents, "
                 f"{self.entities} entities kept"]
        for name, n in (("trimmed whitespace of", self.trimmed),
                        ("realigned", self.realigned),
                        ("dropped (offsets match no text)", self.dropped_offsets),
                        ("resolved overlaps, dropping", self.overlaps_resolved),
                        ("repaired IOB tags", self.repaired_tags),
                        ("dropped spans with an empty label", self.empty_labels)):
            if n:
                parts.append(f"{name} {n}")
        if self.unmapped:
            top = ", ".join(f"{k!r}: {v}" for k, v in sorted(self.unmapped.items()))
            parts.append(f"dropped {sum(self.unmapped.values())} unmapped labels ({top})")
        return "; ".join(parts)

    @property
    def lossy(self) -> bool:
        return bool(self.dropped_offsets or self.overlaps_resolved or self.empty_labels
                    or self.unmapped)


@dataclass(frozen=True)
class Dataset:
    train: tuple[Document, ...]
    validation: tuple[Document, ...]
    test: tuple[Document, ...]
    entity_types: tuple[str, ...]
    fingerprint: str
    reports: tuple[DataReport, ...] = ()

    @property
    def labels(self) -> list[str]:
        return label_list(self.entity_types)


def label_list(entity_types: tuple[str, ...] | list[str]) -> list[str]:
    """``["O", "B-T1", "I-T1", ...]`` in the order of ``entity_types``."""
    out = ["O"]
    for t in entity_types:
        out += [f"B-{t}", f"I-{t}"]
    return out


# ----------------------------------------------------------------------------------------------
# Character spans -> words + tags


def words_and_tags(text: str, spans: list[tuple[int, int, str]]) -> tuple[list[str], list[str]]:
    """Split ``text`` into words and tag them IOB2 from non-overlapping ``spans``.

    A word belongs to a span when they share at least one character; the first word of a span
    gets ``B-``, the following ones ``I-``.
    """
    words: list[str] = []
    tags: list[str] = []
    ordered = sorted(spans)
    j = 0
    current: int | None = None
    for m in _WORD.finditer(text):
        ws, we = m.start(), m.end()
        while j < len(ordered) and ordered[j][1] <= ws:
            j += 1
        tag = "O"
        if j < len(ordered) and ordered[j][0] < we:
            s_start, _, label = ordered[j]
            tag = ("I-" if current == j else "B-") + label
            current = j
        else:
            current = None
        words.append(m.group())
        tags.append(tag)
    return words, tags


def _clean_spans(text: str, raw: list[tuple[int, int, str | None, str | None]],
                 cfg: DataConfig, report: DataReport) -> list[tuple[int, int, str]]:
    """Map labels, realign, trim and de-overlap spans given as (start, end_excl, label, text)."""
    cleaned: list[tuple[int, int, str]] = []
    for start, end, label, quoted in raw:
        if label is None or not str(label).strip():
            report.empty_labels += 1
            continue
        canonical = cfg.canonical(str(label))
        if canonical is None:
            report.unmapped[str(label)] += 1
            continue
        in_range = 0 <= start < end <= len(text)
        if quoted is not None and quoted.strip() and (not in_range or text[start:end] != quoted):
            hits = [m.start() for m in re.finditer(re.escape(quoted), text)]
            if not hits:
                report.dropped_offsets += 1
                continue
            start = min(hits, key=lambda h: (abs(h - start), h))
            end = start + len(quoted)
            report.realigned += 1
        elif not in_range:
            report.dropped_offsets += 1
            continue
        s, e = start, end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s == e:
            report.dropped_offsets += 1
            continue
        if (s, e) != (start, end):
            report.trimmed += 1
        cleaned.append((s, e, canonical))
    # Longer spans first, then earlier, then label: deterministic whatever the file order.
    kept: list[tuple[int, int, str]] = []
    for span in sorted(cleaned, key=lambda t: (-(t[1] - t[0]), t[0], t[2])):
        if any(span[0] < k[1] and k[0] < span[1] for k in kept):
            report.overlaps_resolved += 1
            continue
        kept.append(span)
    return sorted(kept)


def _document(doc_id: str, text: str, spans: list[tuple[int, int, str]],
              report: DataReport) -> Document:
    words, tags = words_and_tags(text, spans)
    report.documents += 1
    report.entities += sum(t.startswith("B-") for t in tags)
    return Document(doc_id, tuple(words), tuple(tags))


# ----------------------------------------------------------------------------------------------
# Readers


def detect_format(path: Path, text: str) -> str:
    """Guess the format of ``text`` read from ``path``; a :class:`DataError` when none fits."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise DataError(f"{path}: the file is empty. Fix: point the dataset at a file with "
                        "documents (JSON list, DataTurks JSONL or CoNLL).")
    if stripped[0] == "[":
        return "json"
    if stripped[0] == "{":
        return "dataturks"
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            continue
        cols = line.split()
        if len(cols) < 2 or not _TAG.match(cols[-1]):
            raise DataError(
                f"{path}:{lineno}: {line[:60]!r} fits none of the formats (JSON list of "
                "{text, annotations}, DataTurks JSONL, CoNLL 'token TAG'). Fix: convert the file "
                "to one of them."
            )
        return "conll"
    raise DataError(f"{path}: holds no documents.")


def _read_json(path: Path, text: str, cfg: DataConfig, report: DataReport) -> list[Document]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno}). "
                        "Fix the file there.") from None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of documents, got {type(items).__name__}.")
    docs = []
    for i, item in enumerate(items):
        where = f"{path}: document {i}"
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise DataError(f"{where}: expected an object with a string 'text'. Fix: each item "
                            "is {\"text\": ..., \"annotations\": [[start, end, LABEL], ...]}.")
        anns = item.get("annotations", [])
        if not isinstance(anns, list):
            raise DataError(f"{where}: 'annotations' must be a list of [start, end, LABEL].")
        raw = []
        for j, ann in enumerate(anns):
            ok = (isinstance(ann, (list, tuple)) and len(ann) == 3
                  and all(isinstance(v, int) and not isinstance(v, bool) for v in ann[:2])
                  and isinstance(ann[2], str))
            if not ok:
                raise DataError(f"{where} annotation {j}: {ann!r} is not [start, end, LABEL] "
                                "with integer offsets. Fix that entry.")
            if ann[0] > ann[1]:
                raise DataError(f"{where} annotation {j}: {ann!r} ends before it starts. "
                                "Fix: end is exclusive and must be > start.")
            raw.append((ann[0], ann[1], ann[2], None))
        spans = _clean_spans(item["text"], raw, cfg, report)
        docs.append(_document(str(item.get("id", f"{path.stem}-{i}")), item["text"], spans,
                              report))
    return docs


def _read_dataturks(path: Path, text: str, cfg: DataConfig, report: DataReport) -> list[Document]:
    docs = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON line ({exc.msg}). Fix: DataTurks "
                            "JSONL has one JSON object per line.") from None
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise DataError(f"{path}:{lineno}: expected an object with a string 'content' "
                            "(DataTurks JSONL).")
        raw = []
        for ann in item.get("annotation") or []:
            if not isinstance(ann, dict):
                raise DataError(f"{path}:{lineno}: an 'annotation' entry is not an object.")
            labels = ann.get("label")
            labels = [labels] if isinstance(labels, str) else (labels or [])
            # Multi-label spans: the first label that maps wins (deterministic).
            label = next((lb for lb in labels if cfg.canonical(str(lb))), None)
            if label is None and labels:
                label = str(labels[0])
            for pt in ann.get("points") or []:
                try:
                    start, end = int(pt["start"]), int(pt["end"]) + 1  # end is inclusive
                except (KeyError, TypeError, ValueError):
                    raise DataError(f"{path}:{lineno}: a point lacks integer 'start'/'end'.") \
                        from None
                quoted = pt.get("text") if isinstance(pt.get("text"), str) else None
                raw.append((start, end, label, quoted))
        spans = _clean_spans(item["content"], raw, cfg, report)
        docs.append(_document(f"{path.stem}-{lineno}", item["content"], spans, report))
    return docs


def _read_conll(path: Path, text: str, cfg: DataConfig, report: DataReport) -> list[Document]:
    docs: list[Document] = []
    words: list[str] = []
    tags: list[str] = []

    def flush() -> None:
        if words:
            report.documents += 1
            report.entities += sum(t.startswith("B-") for t in tags)
            docs.append(Document(f"{path.stem}-{len(docs)}", tuple(words), tuple(tags)))
            words.clear()
            tags.clear()

    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("-DOCSTART-"):
            flush()
            continue
        if not line.strip():
            flush()
            continue
        cols = line.split()
        if len(cols) < 2 or not _TAG.match(cols[-1]):
            raise DataError(f"{path}:{lineno}: {line[:60]!r} is not a 'token TAG' line "
                            "(TAG is O, B-TYPE or I-TYPE). Fix that line.")
        tag = cols[-1]
        if tag != "O":
            prefix, raw_label = tag[:2], tag[2:]
            canonical = cfg.canonical(raw_label)
            if canonical is None:
                report.unmapped[raw_label] += 1
                tag = "O"
            else:
                prev = tags[-1] if tags else "O"
                if prefix == "I-" and prev[2:] != canonical:
                    report.repaired_tags += 1  # IOB1 / broken chunk: starts a new entity
                    prefix = "B-"
                tag = prefix + canonical
        words.append(cols[0])
        tags.append(tag)
    flush()
    return docs


_READERS = {"json": _read_json, "dataturks": _read_dataturks, "conll": _read_conll}


def read_file(path: Path | str, cfg: DataConfig) -> tuple[list[Document], DataReport]:
    """Read one dataset file in any supported format; returns documents and the repair report."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{p}: dataset file not found. Fix: check --dataset or 'path' in "
                        f"{cfg.source}.") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text (byte {exc.start}). Fix: save it as UTF-8.") \
            from None
    fmt = detect_format(p, text) if cfg.format == "auto" else cfg.format
    report = DataReport(file=str(p), format=fmt)
    docs = _READERS[fmt](p, text, cfg, report)
    if not docs:
        raise DataError(f"{p}: holds no documents.")
    (logger.warning if report.lossy else logger.info)("%s", report.summary())
    return docs, report


def _split_files(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for split, names in _SPLIT_NAMES.items():
        for name in names:
            hits = [root / (name + s) for s in _SUFFIXES if (root / (name + s)).is_file()]
            if hits:
                found[split] = hits[0]
                break
    return found


def load_dataset(path: Path | str, cfg: DataConfig) -> Dataset:
    """Load train/validation/test documents from a folder of split files or one file.

    A folder with ``train.*`` (and ``validation.*``/``test.*``) uses those files; a missing
    validation or test split, or a single file, is split off with ``split_seed``.
    """
    p = Path(path)
    if p.is_dir():
        files = _split_files(p)
        if "train" not in files:
            raise DataError(f"{p}: no train file (expected train.json, train.jsonl or "
                            "train.conll). Fix: name the training file train.<ext> or pass a file.")
    elif p.is_file():
        files = {"train": p}
    else:
        raise DataError(f"{p}: dataset not found. Fix: pass --dataset pointing at a file or "
                        "a folder with train/validation/test files.")
    splits: dict[str, list[Document]] = {}
    reports = []
    digest = hashlib.sha256()
    for split, f in sorted(files.items()):
        docs, report = read_file(f, cfg)
        splits[split] = docs
        reports.append(report)
        digest.update(split.encode() + b"\0" + f.read_bytes())
    rng = random.Random(cfg.split_seed)
    pool = list(splits["train"])
    need_val, need_test = "validation" not in splits, "test" not in splits
    if need_val or need_test:
        rng.shuffle(pool)
        n = len(pool)
        n_val = max(1, round(n * cfg.validation_fraction)) if need_val else 0
        n_test = round(n * cfg.test_fraction) if need_test else 0
        if n - n_val - n_test < 1:
            raise DataError(f"{p}: {n} documents are too few to split off validation/test. "
                            "Fix: add documents or give validation/test files.")
        if need_val:
            splits["validation"] = pool[:n_val]
        if need_test:
            splits["test"] = pool[n_val:n_val + n_test]
        splits["train"] = pool[n_val + n_test:]
    train = splits["train"][: cfg.max_train_documents]
    val = splits["validation"][: cfg.max_eval_documents]
    test = splits.get("test", [])[: cfg.max_eval_documents]
    config_part: dict[str, Any] = {
        "entity_types": cfg.entity_types, "label_map": sorted(cfg.label_map.items()),
        "fractions": [cfg.validation_fraction, cfg.test_fraction], "seed": cfg.split_seed,
        "limits": [cfg.max_train_documents, cfg.max_eval_documents], "format": cfg.format,
    }
    digest.update(json.dumps(config_part, sort_keys=True, default=list).encode())
    return Dataset(tuple(train), tuple(val), tuple(test), cfg.entity_types,
                   digest.hexdigest()[:16], tuple(reports))


def kfold_split(docs: list[Document], k: int, seed: int) -> list[tuple[list[Document],
                                                                      list[Document]]]:
    """``k`` (train, held-out) pairs over ``docs``: a seeded shuffle, every k-th one held out."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    folds = []
    for f in range(k):
        held = set(order[f::k])
        folds.append(([d for i, d in enumerate(docs) if i not in held],
                      [d for i, d in enumerate(docs) if i in held]))
    return folds
