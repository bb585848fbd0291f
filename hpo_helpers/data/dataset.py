"""Datasets: three file formats in, words with IOB2 tags out.

Formats, detected from the content (or forced with ``format:`` in the data config):

* ``json``: a JSON list of ``{"text": str, "annotations": [[start, end_exclusive, "LABEL"], ...]}``
  (the format of the committed demo data);
* ``dataturks``: one ``{"content": str, "annotation": [{"label": [...], "points":
  [{"start": int, "end": int_inclusive, "text": str}]}]}`` per line (JSONL), or a JSON list of
  them (an export saved as one JSON document);
* ``conll``: one token per line with its tag in one of the columns (``tag_column``, or the only
  column that holds tags), a blank line between documents; IOB1/IOB2/BIOES/BILOU tags are
  converted to IOB2.

Labels: with ``entity_types: auto`` every raw label becomes a type (``label_map`` renames and
merges, ``drop_labels`` removes); with a fixed list, labels outside it are dropped. Character
spans are cleaned the same way for both JSON formats: offsets that do not match the quoted text
are realigned to the nearest occurrence or dropped, surrounding whitespace is trimmed, overlaps
are resolved deterministically (longer span wins, then the earlier one), and a word glued to an
entity ("Solutions-Infosys") is split at the entity's boundary. Every repair and drop is counted
in entities, and the counts reconcile: raw entities = kept + each drop reason.

Hostile input is refused or contained: a document longer than ``max_document_chars``
(data config, default 200,000 characters) is dropped and counted before it is split into words,
a file with nothing left is an error, and JSON nested too deeply is a :class:`DataError`, not a
``RecursionError``.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import random
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, DataError
from ..settings.config import Configs, DataConfig, type_name

__all__ = [
    "DataReport",
    "Dataset",
    "Document",
    "detect_format",
    "document_texts",
    "kfold_split",
    "config_files",
    "data_summary",
    "label_list",
    "load_data",
    "load_dataset",
    "read_file",
    "split_files",
    "word_spans",
    "words_and_tags",
]

logger = logging.getLogger(__name__)

_WORD = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+|\w+(?:['.\-/+#]\w+)*\+*#?|[^\w\s]")
_TAG = re.compile(r"(O|[BIESLU]-\S+)\Z")
_SPLIT_NAMES = {
    "train": ("train",),
    "validation": ("validation", "val", "dev", "valid"),
    "test": ("test",),
}
_TOO_DEEP = ("JSON nested too deeply to be a dataset. Fix: documents are flat objects; check "
             "that this is the right file.")
_SUFFIXES = (".json", ".jsonl", ".conll", ".txt", ".tsv", ".iob", ".bio")
SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class Document:
    """One resume as words and IOB2 tags (canonical entity types)."""

    id: str
    words: tuple[str, ...]
    tags: tuple[str, ...]


#: Drop reasons of :class:`DataReport`, in the order reports list them.
DROP_REASONS = {
    "empty_labels": "empty label",
    "dropped_labels": "in drop_labels",
    "unmapped": "label not in entity_types / label_map",
    "dropped_offsets": "offsets match no text",
    "overlaps_resolved": "overlaps a longer span",
    "no_words": "covers no word",
}


@dataclass
class DataReport:
    """Counts of what one file held, what was kept, repaired and dropped (in entities).

    ``raw_entities == entities + sum(drop_counts().values())`` always holds (see
    :attr:`reconciles`).
    """

    file: str
    format: str = ""
    documents: int = 0
    words: int = 0
    raw_entities: int = 0
    entities: int = 0
    per_type: Counter = field(default_factory=Counter)
    raw_labels: Counter = field(default_factory=Counter)
    trimmed: int = 0
    realigned: int = 0
    split_words: int = 0
    repaired_tags: int = 0
    converted_tags: int = 0
    tag_column: int | None = None
    dropped_offsets: int = 0
    overlaps_resolved: int = 0
    empty_labels: int = 0
    oversized: int = 0  # documents, dropped before their entities are read
    no_words: int = 0
    unmapped: Counter = field(default_factory=Counter)
    dropped_labels: Counter = field(default_factory=Counter)

    def drop_counts(self) -> dict[str, int]:
        """Entities dropped, per reason (every reason listed, zeros included)."""
        out = {}
        for name in DROP_REASONS:
            value = getattr(self, name)
            out[name] = sum(value.values()) if isinstance(value, Counter) else int(value)
        return out

    @property
    def reconciles(self) -> bool:
        return self.raw_entities == self.entities + sum(self.drop_counts().values())

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "format": self.format, "documents": self.documents,
                "words": self.words, "raw_entities": self.raw_entities,
                "entities": self.entities, "per_type": dict(sorted(self.per_type.items())),
                "dropped": self.drop_counts(), "unmapped": dict(self.unmapped),
                "dropped_labels": dict(self.dropped_labels),
                "oversized_documents": self.oversized,
                "repairs": {"trimmed": self.trimmed, "realigned": self.realigned,
                            "split_words": self.split_words,
                            "repaired_tags": self.repaired_tags,
                            "converted_tags": self.converted_tags}}

    def summary(self) -> str:
        parts = [f"{self.file} ({self.format}"
                 + (f", tags in column {self.tag_column}" if self.tag_column else "")
                 + f"): {self.documents} documents, {self.words} words, {self.raw_entities} "
                 f"entities read, {self.entities} kept "
                 f"({', '.join(f'{k} {v}' for k, v in sorted(self.per_type.items())) or 'none'})"]
        for name, n in (("trimmed whitespace of", self.trimmed),
                        ("realigned", self.realigned),
                        ("split glued words at entity boundaries", self.split_words),
                        ("repaired IOB tags", self.repaired_tags),
                        ("converted BIOES/BILOU tags", self.converted_tags),
                        ("dropped (offsets match no text)", self.dropped_offsets),
                        ("resolved overlaps, dropping", self.overlaps_resolved),
                        ("dropped spans with an empty label", self.empty_labels),
                        ("dropped spans that cover no word", self.no_words),
                        ("dropped documents over max_document_chars", self.oversized)):
            if n:
                parts.append(f"{name} {n}")
        for what, counter in (("unmapped", self.unmapped), ("drop_labels", self.dropped_labels)):
            if counter:
                top = ", ".join(f"{k!r}: {v}" for k, v in sorted(counter.items()))
                label = "unmapped labels" if what == "unmapped" else "labels in drop_labels"
                parts.append(f"dropped {sum(counter.values())} {label} ({top})")
        return "; ".join(parts)

    @property
    def lossy(self) -> bool:
        return bool(self.oversized) or any(v for k, v in self.drop_counts().items()
                                           if k != "dropped_labels")


@dataclass(frozen=True)
class Dataset:
    train: tuple[Document, ...]
    validation: tuple[Document, ...]
    test: tuple[Document, ...]
    entity_types: tuple[str, ...]
    fingerprint: str
    reports: tuple[DataReport, ...] = ()
    splits: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: types of a fixed ``entity_types`` with no training example: left out of macro F1
    untrained_types: tuple[str, ...] = ()

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


def word_spans(text: str, cuts: list[int] | tuple[int, ...] = ()) -> list[tuple[int, int]]:
    """Character ``(start, end)`` of the words of ``text``; a word is also split at ``cuts``.

    Prediction uses this without cuts; training cuts at entity boundaries so that an entity
    glued to other text by punctuation ("Solutions-Infosys") keeps its own words.
    """
    bounds = sorted(set(cuts))
    out: list[tuple[int, int]] = []
    for m in _WORD.finditer(text):
        ws, we = m.span()
        i = bisect.bisect_right(bounds, ws)
        inner = [c for c in bounds[i:bisect.bisect_left(bounds, we)] if ws < c < we]
        if not inner:
            out.append((ws, we))
            continue
        edges = [ws, *inner, we]
        for a, b in zip(edges, edges[1:]):
            out.extend(p.span() for p in _WORD.finditer(text, a, b))
    return out


def words_and_tags(text: str, spans: list[tuple[int, int, str]]) -> tuple[list[str], list[str]]:
    """Split ``text`` into words and tag them IOB2 from non-overlapping ``spans``.

    A word belongs to a span when they share at least one character; the first word of a span
    gets ``B-``, the following ones ``I-``. Words are split at span boundaries first.
    """
    words: list[str] = []
    tags: list[str] = []
    ordered = sorted(spans)
    j = 0
    current: int | None = None
    for ws, we in word_spans(text, [c for s in ordered for c in s[:2]]):
        while j < len(ordered) and ordered[j][1] <= ws:
            j += 1
        tag = "O"
        if j < len(ordered) and ordered[j][0] < we:
            tag = ("I-" if current == j else "B-") + ordered[j][2]
            current = j
        else:
            current = None
        words.append(text[ws:we])
        tags.append(tag)
    return words, tags


def _map_label(label: str, cfg: DataConfig, report: DataReport) -> str | None:
    """The type of one raw entity, counting it (raw, and dropped when it has no type)."""
    report.raw_entities += 1
    if not label.strip():
        report.empty_labels += 1
        return None
    report.raw_labels[label] += 1
    canonical = cfg.canonical(label)
    if canonical is None:
        (report.dropped_labels if cfg.dropped(label) else report.unmapped)[label] += 1
    return canonical


def _clean_spans(text: str, raw: list[tuple[int, int, str | None, str | None]],
                 cfg: DataConfig, report: DataReport) -> list[tuple[int, int, str]]:
    """Map labels, realign, trim and de-overlap spans given as (start, end_excl, label, text)."""
    cleaned: list[tuple[int, int, str]] = []
    for start, end, label, quoted in raw:
        canonical = _map_label("" if label is None else str(label), cfg, report)
        if canonical is None:
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


def _count(doc: Document, report: DataReport) -> Document:
    report.documents += 1
    report.words += len(doc.words)
    for t in doc.tags:
        if t.startswith("B-"):
            report.per_type[t[2:]] += 1
            report.entities += 1
    return doc


def _document(doc_id: str, text: str, spans: list[tuple[int, int, str]],
              report: DataReport) -> Document:
    words, tags = words_and_tags(text, spans)
    plain = len(word_spans(text))
    report.split_words += max(0, len(words) - plain)
    doc = _count(Document(doc_id, tuple(words), tuple(tags)), report)
    report.no_words += len(spans) - sum(t.startswith("B-") for t in tags)
    return doc


# ----------------------------------------------------------------------------------------------
# Readers


def _is_dataturks_list(items: Any) -> bool:
    return (isinstance(items, list) and bool(items) and isinstance(items[0], dict)
            and "content" in items[0] and "text" not in items[0])


_NOT_PARSED = object()


def _json_list(text: str) -> Any:
    """``text`` parsed when it is a well-formed JSON list, else ``_NOT_PARSED`` (a reader that
    needs it parses again and names the line that is wrong)."""
    if not text.lstrip("\ufeff \t\r\n").startswith("["):
        return _NOT_PARSED
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return _NOT_PARSED


def detect_format(path: Path, text: str, items: Any = _NOT_PARSED) -> str:
    """Guess the format of ``text`` read from ``path``; a :class:`DataError` when none fits.

    ``items``: ``text`` already parsed as JSON (a large file is parsed once, not twice)."""
    stripped = text.lstrip("\ufeff \t\r\n")
    if not stripped:
        raise DataError(f"{path}: the file is empty. Fix: point the dataset at a file with "
                        "documents (JSON list, DataTurks JSONL or CoNLL).")
    if stripped[0] == "[":
        if items is _NOT_PARSED:
            items = _json_list(stripped)
        if items is _NOT_PARSED:
            return "json"  # the JSON reader names the line (or says it is nested too deeply)
        return "dataturks" if _is_dataturks_list(items) else "json"
    if stripped[0] == "{":
        return "dataturks"
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            continue
        # a bounded split: a 50 MB line must not become millions of strings
        cols = line.split(None, 8)
        if len(cols) < 2 or not any(_TAG.fullmatch(c) for c in cols[1:]):
            raise DataError(
                f"{path}:{lineno}: {line[:60]!r} fits none of the formats (JSON list of "
                "{text, annotations}, DataTurks JSONL or JSON list of {content, annotation}, "
                "CoNLL 'token TAG'). Fix: convert the file to one of them."
            )
        return "conll"
    raise DataError(f"{path}: holds no documents.")


def _oversized(text: str, cfg: DataConfig, report: DataReport) -> bool:
    if len(text) > cfg.max_document_chars:
        report.oversized += 1
        return True
    return False


def _parse_json(path: Path, text: str, fix: str) -> Any:
    """``json.loads(text)``; a damaged or too deeply nested file is one :class:`DataError`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg}, column {exc.colno}). "
                        f"{fix}") from None
    except RecursionError:
        raise DataError(f"{path}: {_TOO_DEEP}") from None


def _read_json(path: Path, text: str, cfg: DataConfig, report: DataReport,
               items: Any = _NOT_PARSED) -> list[Document]:
    if items is _NOT_PARSED:
        items = _parse_json(path, text, "Fix the file there.")
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of documents, got {type(items).__name__}.")
    docs = []
    for i, item in enumerate(items):
        where = f"{path}: document {i}"
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise DataError(f"{where}: expected an object with a string 'text'. Fix: each item "
                            "is {\"text\": ..., \"annotations\": [[start, end, LABEL], ...]}, "
                            "or, for a DataTurks export, {\"content\": ..., \"annotation\": "
                            "[...]} in every item.")
        if _oversized(item["text"], cfg, report):
            continue
        anns = item.get("annotations", [])
        if not isinstance(anns, list):
            raise DataError(f"{where}: 'annotations' must be a list of [start, end, LABEL].")
        raw: list[tuple[int, int, str | None, str | None]] = []
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


def _dataturks_items(path: Path, text: str, items: Any) -> list[tuple[str, Any]]:
    """``(where, item)`` of a DataTurks export, JSONL or a JSON list."""
    if text.lstrip("\ufeff \t\r\n").startswith("["):
        if items is _NOT_PARSED:
            items = _parse_json(path, text, "Fix: a DataTurks export is JSONL (one object per "
                                "line) or a JSON list.")
        return [(f"{path}: document {i}", item) for i, item in enumerate(items)]
    out = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((f"{path}:{lineno}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{lineno}: invalid JSON line ({exc.msg}). Fix: DataTurks "
                            "JSONL has one JSON object per line.") from None
        except RecursionError:
            raise DataError(f"{path}:{lineno}: {_TOO_DEEP}") from None
    return out


def _read_dataturks(path: Path, text: str, cfg: DataConfig, report: DataReport,
                    items: Any = _NOT_PARSED) -> list[Document]:
    docs = []
    for n, (where, item) in enumerate(_dataturks_items(path, text, items)):
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise DataError(f"{where}: expected an object with a string 'content' "
                            "(DataTurks JSONL or JSON list).")
        if _oversized(item["content"], cfg, report):
            continue
        raw = []
        for ann in item.get("annotation") or []:
            if not isinstance(ann, dict):
                raise DataError(f"{where}: an 'annotation' entry is not an object.")
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
                    raise DataError(f"{where}: a point lacks integer 'start'/'end'.") from None
                quoted = pt.get("text") if isinstance(pt.get("text"), str) else None
                raw.append((start, end, label, quoted))
        spans = _clean_spans(item["content"], raw, cfg, report)
        docs.append(_document(f"{path.stem}-{n}", item["content"], spans, report))
    return docs


def _conll_rows(text: str, max_chars: int) -> list[tuple[int, list[str] | None]]:
    """``(line number, columns)`` of every line; ``[]`` columns end a document. A document
    longer than ``max_chars`` is one ``None`` row: its lines are never split (a 50 MB
    document must not become millions of strings)."""
    rows: list[tuple[int, list[str] | None]] = []
    doc: list[tuple[int, str]] = []
    chars = 0

    def end() -> None:
        if chars > max_chars:
            rows.append((doc[0][0], None))
        else:
            rows.extend((n, line.split()) for n, line in doc)
        doc.clear()

    for lineno, line in enumerate(text.splitlines(), 1):
        if line.startswith("-DOCSTART-") or not line.strip():
            end()
            chars = 0
            rows.append((lineno, []))
            continue
        doc.append((lineno, line))
        chars += len(line)
    end()
    return rows


def _tag_column(path: Path, rows: list[tuple[int, list[str] | None]],
                cfg: DataConfig) -> int:
    """0-based index of the tag column: ``tag_column`` or the only column holding tags."""
    lines = [cols for _, cols in rows if cols]
    if not lines:  # nothing but oversized documents: read_file says so
        return 1
    width = min(len(cols) for cols in lines)
    if cfg.tag_column is not None:
        if not 2 <= cfg.tag_column <= width:
            raise DataError(f"{path}: tag_column {cfg.tag_column} (in {cfg.source}) is not a "
                            f"tag column of this file: every line has {width} columns and "
                            "column 1 holds the tokens. Fix: set tag_column between 2 and "
                            f"{width}.")
        return cfg.tag_column - 1
    candidates = [c for c in range(1, width) if all(_TAG.fullmatch(cols[c]) for cols in lines)]
    if len(candidates) > 1:
        names = ", ".join(f"column {c + 1} (e.g. "
                          f"{next((x[c] for x in lines if x[c] != 'O'), 'O')})"
                          for c in candidates)
        raise DataError(f"{path}: several columns hold tags: {names}. Reading one silently could "
                        "train on predictions instead of gold labels. Fix: set tag_column: "
                        f"<number> in {cfg.source} (column 1 is the token).")
    return candidates[0] if candidates else max(1, width - 1)


def _read_conll(path: Path, text: str, cfg: DataConfig, report: DataReport,
                items: Any = _NOT_PARSED) -> list[Document]:
    docs: list[Document] = []
    words: list[str] = []
    tags: list[str] = []
    rows = _conll_rows(text, cfg.max_document_chars)
    col = _tag_column(path, rows, cfg)
    report.tag_column = col + 1
    prev_raw, prev_prefix, kept_type = "", "O", None

    def flush() -> None:
        if words:
            docs.append(_count(Document(f"{path.stem}-{len(docs)}", tuple(words), tuple(tags)),
                               report))
            words.clear()
            tags.clear()

    for lineno, cols in rows:
        if cols is None:  # a document over max_document_chars: dropped and counted
            report.oversized += 1
            continue
        if not cols:
            flush()
            prev_raw, prev_prefix = "", "O"
            continue
        if len(cols) <= col or not _TAG.fullmatch(cols[col]):
            line = " ".join(cols)
            raise DataError(f"{path}:{lineno}: {line[:60]!r} is not a 'token TAG' line "
                            "(TAG is O, B-TYPE or I-TYPE). Fix that line.")
        tag = cols[col]
        if tag == "O":
            prefix, raw_label = "O", ""
        else:
            prefix, raw_label = tag[0], tag[2:]
        if prefix == "O":
            out = "O"
        else:
            starts = prefix in "BSU" or raw_label != prev_raw or prev_prefix in "OESLU"
            if prefix in "ESLU":
                report.converted_tags += 1
            if starts:
                if prefix in "IEL":
                    report.repaired_tags += 1  # IOB1 / broken chunk: starts a new entity
                kept_type = _map_label(raw_label, cfg, report)
            out = "O" if kept_type is None else ("B-" if starts else "I-") + kept_type
        prev_raw, prev_prefix = raw_label, prefix
        words.append(cols[0])
        tags.append(out)
    flush()
    return docs


_READERS = {"json": _read_json, "dataturks": _read_dataturks, "conll": _read_conll}


def document_texts(path: Path | str, text: str) -> tuple[str, list[str]]:
    """The documents of ``text`` (read from ``path``) as plain texts, for prediction:
    ``(format, texts)``; annotations and tags are ignored.

    The formats we train on, detected as for training (:func:`detect_format`): a JSON list of
    ``{"text": ...}`` objects (``json``) or of DataTurks ``{"content": ...}`` objects
    (``dataturks``); one such object per line (``jsonl``, or ``dataturks``); CoNLL (``conll``:
    the tokens of each document joined by spaces). Anything else is one plain-text document
    (``text``); so is a file that starts like CoNLL or a JSON list but is not one (said in a
    warning). A JSON object per line that is broken or has no text is a :class:`DataError`.
    """
    p = Path(path)
    stripped = text.lstrip("\ufeff \t\r\n")
    try:
        fmt = detect_format(p, text)
    except DataError:
        return "text", [text]
    if fmt == "conll":
        tokens = _conll_tokens(text)
        if tokens is None:
            logger.warning("%s: starts like CoNLL but is not 'token TAG' lines throughout: "
                           "read as one plain-text document", p)
            return "text", [text]
        return "conll", [" ".join(doc) for doc in tokens]
    if stripped.startswith("["):
        items = _json_list(stripped)
        if not isinstance(items, list):
            logger.warning("%s: starts like a JSON list but is not valid JSON: read as one "
                           "plain-text document", p)
            return "text", [text]
        pairs = [(f"{p}: document {i}", item) for i, item in enumerate(items)]
    else:
        pairs = _dataturks_items(p, text, _NOT_PARSED)
    texts = [_item_text(where, item) for where, item in pairs]
    dataturks = all(isinstance(item, dict) and "text" not in item for _, item in pairs)
    return ("dataturks" if dataturks and pairs else "json" if stripped.startswith("[")
            else "jsonl"), texts


def _item_text(where: str, item: Any) -> str:
    """The text of one JSON document: ``text`` (our format) or ``content`` (DataTurks)."""
    if isinstance(item, dict):
        for key in ("text", "content"):
            if isinstance(item.get(key), str):
                return str(item[key])
    raise DataError(f"{where}: expected an object with a string 'text' (or a DataTurks "
                    "'content'). Fix: one {\"text\": ...} object per line, or a JSON list of "
                    "them.")


def _conll_tokens(text: str) -> list[list[str]] | None:
    """The tokens of each CoNLL document (column 1), or None when a line is not 'token TAG'."""
    docs: list[list[str]] = [[]]
    for _, cols in _conll_rows(text, len(text) + 1):
        if not cols:
            if docs[-1]:
                docs.append([])
            continue
        if len(cols) < 2 or not any(_TAG.match(c) for c in cols[1:]):
            return None
        docs[-1].append(cols[0])
    return [d for d in docs if d]


def read_file(path: Path | str, cfg: DataConfig) -> tuple[list[Document], DataReport]:
    """Read one dataset file in any supported format; returns documents and the repair report."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{p}: dataset file not found. Fix: check --dataset/--train/"
                        f"--validation/--test or the paths in {cfg.source}.") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text (byte {exc.start}). Fix: save it as UTF-8.") \
            from None
    # a JSON list is parsed once, for detection and reading
    items = _json_list(text) if cfg.format != "conll" else _NOT_PARSED
    fmt = detect_format(p, text, items) if cfg.format == "auto" else cfg.format
    report = DataReport(file=str(p), format=fmt)
    docs = _READERS[fmt](p, text, cfg, report, items)
    if not docs and report.oversized:
        raise DataError(f"{p}: all {report.oversized} documents are longer than "
                        f"max_document_chars = {cfg.max_document_chars} characters, so none "
                        f"is left. Fix: raise max_document_chars in {cfg.source} or split the "
                        "documents.")
    if not docs:
        raise DataError(f"{p}: holds no documents.")
    (logger.warning if report.lossy else logger.info)("%s", report.summary())
    return docs, report


def _accepted_names() -> str:
    return "; ".join(f"{split}: " + ", ".join(n + s for n in names for s in _SUFFIXES)
                     for split, names in _SPLIT_NAMES.items())


def _folder_files(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for split, names in _SPLIT_NAMES.items():
        for name in names:
            hits = [root / (name + s) for s in _SUFFIXES if (root / (name + s)).is_file()]
            if hits:
                found[split] = hits[0]
                break
    return found


def split_files(path: Path | str | None, explicit: Mapping[str, Path | str | None] | None = None,
                ) -> dict[str, Path]:
    """The file of each split: ``explicit`` files (``--train`` ...), else from ``path``.

    ``path`` is a folder of ``train.*``/``validation.*``/``test.*`` files or one file (the
    training file). An explicit train file replaces ``path`` altogether; an explicit validation
    or test file replaces that split of the folder. Splits without a file are split off train.
    """
    given = {k: Path(v) for k, v in (explicit or {}).items() if v is not None}
    if "train" in given:
        return given
    if path is None:
        raise DataError("no training data: give --train FILE (or --dataset FILE|FOLDER), or set "
                        "train or path in the data config.")
    p = Path(path)
    if p.is_dir():
        files = _folder_files(p)
        if "train" not in files:
            raise DataError(f"{p}: no train file. Accepted names: {_accepted_names()}. Fix: "
                            "name the training file like one of them, or pass --train FILE.")
    elif p.is_file():
        files = {"train": p}
    else:
        raise DataError(f"{p}: dataset not found. Fix: pass --dataset pointing at a file or "
                        "a folder with train/validation/test files (or --train FILE).")
    return {**files, **given}


def config_files(cfg: DataConfig, project_dir: Path, *, dataset_given: bool = False,
                 overrides: Mapping[str, Path | str | None] | None = None,
                 ) -> dict[str, Path]:
    """Split files named by ``train``/``validation``/``test`` in the data config (relative to
    ``project_dir``), replaced by ``overrides`` (``--train`` ...). ``--dataset``
    (``dataset_given``) replaces the config's keys."""
    out: dict[str, Path] = {}
    for split in SPLITS:
        value = None if dataset_given else getattr(cfg, split)
        if value is not None:
            p = Path(value)
            out[split] = p if p.is_absolute() else project_dir / p
    out.update({k: Path(v) for k, v in (overrides or {}).items() if v is not None})
    return out


def data_summary(dataset: Dataset, windows: Mapping[str, int] | None = None) -> dict[str, Any]:
    """What a run trains and scores on (stored on the study, shown by ``status``)."""
    splits = {s: {**info, **({"windows": windows[s]} if windows and s in windows else {})}
              for s, info in dataset.splits.items()}
    out = {"entity_types": list(dataset.entity_types), "splits": splits,
           "files": [r.as_dict() for r in dataset.reports]}
    if dataset.untrained_types:
        out["untrained_types"] = list(dataset.untrained_types)
    return out


def _describe(docs: list[Document] | tuple[Document, ...]) -> dict[str, Any]:
    per_type = Counter(t[2:] for d in docs for t in d.tags if t.startswith("B-"))
    return {"documents": len(docs), "words": sum(len(d.words) for d in docs),
            "entities": sum(per_type.values()), "per_type": dict(sorted(per_type.items()))}


def _auto_types(cfg: DataConfig, train: list[Document]) -> tuple[str, ...]:
    """Types of the training data: ``label_map`` targets in map order, then the rest sorted.

    (Map order first keeps the label ids, and the fingerprint, of studies made when the
    shipped configs listed those types.)
    """
    present = {t[2:] for d in train for t in d.tags if t != "O"}
    ordered = list(dict.fromkeys(type_name(v) for v in cfg.label_map.values()))
    return tuple([t for t in ordered if t in present]
                 + sorted(present - set(ordered)))


def _no_entities(files: Mapping[str, Path], cfg: DataConfig,
                 reports: list[DataReport]) -> DataError:
    raw: Counter[str] = Counter()
    for r in reports:
        raw.update(r.raw_labels)
    where = f"{files['train']}: no entities are left in the training data"
    if not raw:
        return DataError(f"{where}; the files hold no labelled entities at all. Fix: check "
                         "that the file is the labelled one (and, for CoNLL, the tag_column).")
    found = ", ".join(f"{k!r} ({v})" for k, v in raw.most_common())
    if cfg.auto_types:
        lines = "\n".join(f"  {k}: {type_name(k) or 'TYPE'}" for k in sorted(raw))
        fix = (f"remove them from drop_labels in {cfg.source}, or map them with label_map "
               f"lines such as:\n{lines}")
    else:
        lines = "\n".join(f"  {k}: <one of {', '.join(cfg.entity_types)}>" for k in sorted(raw))
        fix = (f"write entity_types: auto in {cfg.source} (every label becomes a type), or "
               f"add label_map lines that keep them:\n{lines}")
    return DataError(f"{where} after the label settings of {cfg.source}. Raw labels found: "
                     f"{found}. Fix: {fix}")


def _fingerprint_part(cfg: DataConfig, types: tuple[str, ...] | list[str],
                      reports: list[DataReport]) -> dict[str, Any]:
    """The data settings that enter the dataset fingerprint (beside the files' bytes)."""
    part: dict[str, Any] = {
        "entity_types": types, "label_map": sorted(cfg.label_map.items()),
        "fractions": [cfg.validation_fraction, cfg.test_fraction], "seed": cfg.split_seed,
        "limits": [cfg.max_train_documents, cfg.max_eval_documents], "format": cfg.format,
    }
    # New settings enter the fingerprint only when set: studies made before them still resume.
    dropped = sorted({k for r in reports for k in r.dropped_labels})
    if dropped:  # the labels drop_labels removed from these files, not the list itself
        part["drop_labels"] = dropped
    if cfg.tag_column:
        part["tag_column"] = cfg.tag_column
    if cfg.max_document_chars != DataConfig.max_document_chars:  # the default keeps old
        part["max_document_chars"] = cfg.max_document_chars  # studies resumable
    return part


def load_dataset(path: Path | str | None, cfg: DataConfig, *,
                 files: Mapping[str, Path | str | None] | None = None) -> Dataset:
    """Load train/validation/test documents (see :func:`split_files` for where from).

    A missing validation or test split is split off the training file with ``split_seed``;
    the caps (``max_train_documents``, ``max_eval_documents``) apply after that. Split sizes
    and caps are logged. A training set without entities is refused (before any training).
    """
    chosen = split_files(path, files)
    splits: dict[str, list[Document]] = {}
    reports = []
    digest = hashlib.sha256()
    for split, f in sorted(chosen.items()):
        docs, report = read_file(f, cfg)
        splits[split] = docs
        reports.append(report)
        digest.update(split.encode() + b"\0" + f.read_bytes())
    rng = random.Random(cfg.split_seed)
    pool = list(splits["train"])
    need_val, need_test = "validation" not in splits, "test" not in splits
    source = {s: str(f) for s, f in chosen.items()}
    if need_val or need_test:
        rng.shuffle(pool)
        n = len(pool)
        n_val = max(1, round(n * cfg.validation_fraction)) if need_val else 0
        n_test = round(n * cfg.test_fraction) if need_test else 0
        if n - n_val - n_test < 1:
            raise DataError(f"{chosen['train']}: {n} documents are too few to split off "
                            "validation/test. Fix: add documents or give validation/test files.")
        if need_val:
            splits["validation"] = pool[:n_val]
            source["validation"] = (f"{n_val} of {n} documents of {chosen['train']} "
                                    f"(validation_fraction {cfg.validation_fraction}, "
                                    f"split_seed {cfg.split_seed})")
        if need_test:
            splits["test"] = pool[n_val:n_val + n_test]
            source["test"] = (f"{n_test} of {n} documents of {chosen['train']} "
                              f"(test_fraction {cfg.test_fraction}, split_seed {cfg.split_seed})")
        splits["train"] = pool[n_val + n_test:]
    caps = {"train": cfg.max_train_documents, "validation": cfg.max_eval_documents,
            "test": cfg.max_eval_documents}
    kept = {s: list(splits.get(s, []))[: caps[s]] for s in SPLITS}
    types = _auto_types(cfg, kept["train"]) if cfg.auto_types else cfg.entity_types
    if not any(t != "O" for d in kept["train"] for t in d.tags):
        raise _no_entities(chosen, cfg, reports)
    summary: dict[str, dict[str, Any]] = {}
    for s in SPLITS:
        absent: Counter = Counter()
        if cfg.auto_types and s != "train":
            kept[s] = [_without_types(d, set(types), absent) for d in kept[s]]
        info = _describe(kept[s])
        info["source"] = source.get(s, "")
        cap = caps[s]
        if cap is not None and len(splits.get(s, [])) > cap:
            key = "max_train_documents" if s == "train" else "max_eval_documents"
            info["capped"] = f"{caps[s]} of {len(splits[s])} ({key}: {caps[s]} in {cfg.source})"
        if absent:
            info["dropped_types_not_in_train"] = dict(sorted(absent.items()))
            logger.warning("%s: dropped %d entities of types absent from the training data "
                           "(%s)", s, sum(absent.values()),
                           ", ".join(f"{k} {v}" for k, v in sorted(absent.items())))
        summary[s] = info
        logger.info("Split %s: %d documents%s, %d words, %d entities; from %s", s,
                    info["documents"], f" (capped: {info['capped']})" if "capped" in info else "",
                    info["words"], info["entities"], info["source"] or "-")
    logger.info("Entity types (%s): %s", "auto" if cfg.auto_types else "fixed", ", ".join(types))
    untrained = _untrained_types(cfg, types, summary["train"]["per_type"])
    digest.update(json.dumps(_fingerprint_part(cfg, types, reports), sort_keys=True,
                             default=list).encode())
    return Dataset(tuple(kept["train"]), tuple(kept["validation"]), tuple(kept["test"]), types,
                   digest.hexdigest()[:16], tuple(reports), summary, untrained)


def _untrained_types(cfg: DataConfig, types: tuple[str, ...],
                     train_counts: Mapping[str, int]) -> tuple[str, ...]:
    """Types of a fixed ``entity_types`` without a training example, with a warning: the model
    cannot learn them, so macro F1 leaves them out (issue 21). ``auto`` types all have one."""
    missing = tuple(t for t in types if not train_counts.get(t))
    if missing:
        logger.warning("Entity types with no training example: %s. The model cannot learn "
                       "them, so they are left out of macro F1 (their rows in the per-type "
                       "tables say so). Fix: add training examples of them, or remove them "
                       "from entity_types in %s.", ", ".join(missing), cfg.source)
    return missing


def _without_types(doc: Document, types: set[str], absent: Counter) -> Document:
    if all(t == "O" or t[2:] in types for t in doc.tags):
        return doc
    tags = []
    for t in doc.tags:
        if t != "O" and t[2:] not in types:
            if t.startswith("B-"):
                absent[t[2:]] += 1
            t = "O"
        tags.append(t)
    return Document(doc.id, doc.words, tuple(tags))


def kfold_split(docs: list[Document], k: int, seed: int, *, stratified: bool = False,
                ) -> list[tuple[list[Document], list[Document]]]:
    """``k`` (train, held-out) pairs over ``docs``: a seeded shuffle, every k-th one held out.

    ``stratified``: documents are grouped by the rarest entity type each contains (counted
    over all ``docs``; documents without entities form their own group) and dealt round-robin
    group by group, so every fold gets its share of each rare type."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    if stratified:
        counts = _type_counts(docs)
        strata = [_rarest_type(d, counts) for d in docs]
        rank = {s: i for i, s in enumerate(sorted(set(strata), key=lambda s: (s is None, s or "")))}
        order.sort(key=lambda i: rank[strata[i]])  # stable: shuffled within each stratum
    folds = []
    for f in range(k):
        held = set(order[f::k])
        folds.append(([d for i, d in enumerate(docs) if i not in held],
                      [d for i, d in enumerate(docs) if i in held]))
    return folds


def _dataset_path(cfg: Configs, dataset_path: Path | str | None) -> Path:
    if dataset_path is not None:
        return Path(dataset_path)
    if cfg.data.path is None:
        raise ConfigError(f"{cfg.data.source}: key 'path' is not set and no dataset was "
                          "given. Fix: set path or pass --dataset.")
    path = Path(cfg.data.path)
    return path if path.is_absolute() else cfg.config_dir.absolute().parent / path


def load_data(cfg: Configs, dataset_path: Path | str | None = None,
              split_files: dict[str, Any] | None = None) -> Dataset:
    """The dataset of a run: ``--dataset``/``--train``... or the data config's paths."""
    files = config_files(cfg.data, cfg.config_dir.absolute().parent,
                         dataset_given=dataset_path is not None, overrides=split_files)
    return load_dataset(None if "train" in files else _dataset_path(cfg, dataset_path),
                        cfg.data, files=files)


def _doc_types(doc: Document) -> set[str]:
    return {t[2:] for t in doc.tags if t.startswith("B-")}


def _type_counts(docs: list[Document]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in docs:
        for t in _doc_types(d):
            counts[t] = counts.get(t, 0) + 1
    return counts


def _rarest_type(doc: Document, counts: dict[str, int]) -> str | None:
    """The entity type of ``doc`` that the fewest documents contain (ties: by name)."""
    types = _doc_types(doc)
    return min(types, key=lambda t: (counts[t], t)) if types else None
