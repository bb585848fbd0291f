"""Statistics of a dataset as the project reads it: length, density and types of entities.

Words are the words the project trains on (punctuation marks are words of their own), so the
numbers are comparable across the formats it reads (JSON, DataTurks, CoNLL). Used by
``benchmarks/data_stats.py`` and the demo generator's tests (issue 21: a demo set that looks
like real resumes).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

from .dataset import Document

__all__ = ["REAL_RESUMES", "dataset_stats", "stats_table"]

#: A real resume set, as measured in issue 21 (a DataTurks export of about 200 resumes; words
#: split on whitespace there, so about 10-20% fewer than the project's words).
REAL_RESUMES: dict[str, Any] = {
    "documents": 200, "words_median": 406, "words_p10": 67, "words_p90": 1136,
    "words_max": 2953, "entities_mean": 16.0, "entities_median": 13, "o_share": 0.945,
    "per_type": {"YEARS_OF_EXPERIENCE": 42}, "entities": 3200,
}


def _quantile(values: list[int], q: float) -> float:
    """The ``q`` quantile by linear interpolation between the closest ranks."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def dataset_stats(docs: Sequence[Document]) -> dict[str, Any]:
    """Words per document (median, 10th and 90th percentile, max), entities per document
    (mean, median), the share of words outside entities and the entities per type."""
    if not docs:
        raise ValueError("no documents")
    words = [len(d.words) for d in docs]
    per_doc = [sum(t.startswith("B-") for t in d.tags) for d in docs]
    per_type = Counter(t[2:] for d in docs for t in d.tags if t.startswith("B-"))
    total = sum(words)
    outside = sum(t == "O" for d in docs for t in d.tags)
    return {
        "documents": len(docs), "words": total,
        "words_median": statistics.median(words), "words_p10": _quantile(words, 0.1),
        "words_p90": _quantile(words, 0.9), "words_max": max(words),
        "entities": sum(per_doc), "entities_mean": sum(per_doc) / len(docs),
        "entities_median": statistics.median(per_doc),
        "o_share": outside / total if total else 1.0,
        "per_type": dict(per_type.most_common()),
    }


def stats_table(columns: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of :func:`dataset_stats` results, one column per named dataset (a
    statistic a column lacks shows as ``-``)."""
    names = list(columns)
    types = sorted({t for c in columns.values() for t in c.get("per_type", {})},
                   key=lambda t: -max(c.get("per_type", {}).get(t, 0) for c in columns.values()))
    rows: list[tuple[str, list[str]]] = [("documents", [_fmt(c.get("documents")) for c in
                                                         columns.values()])]
    for key, label in (("words_median", "words per resume, median"),
                       ("words_p10", "words, 10th percentile"),
                       ("words_p90", "words, 90th percentile"), ("words_max", "words, max"),
                       ("entities_mean", "entities per resume, mean"),
                       ("entities_median", "entities per resume, median")):
        rows.append((label, [_fmt(c.get(key)) for c in columns.values()]))
    rows.append(("words outside entities (O)",
                 [f"{c['o_share']:.1%}" if "o_share" in c else "-" for c in columns.values()]))
    for t in types:
        rows.append((f"{t} entities", [_share(c, t) for c in columns.values()]))
    out = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    out += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(out)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    return f"{int(value):,}"


def _share(column: dict[str, Any], entity_type: str) -> str:
    n = column.get("per_type", {}).get(entity_type)
    if n is None:
        return "-"
    total = column.get("entities")
    return f"{n:,} ({n / total:.1%})" if total else f"{n:,}"
