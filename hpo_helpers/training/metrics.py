"""Entity-level scores with seqeval in strict IOB2 mode (the objective of the search)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from ..settings.schema import NOT_IN_MACRO

__all__ = ["entity_scores"]


def entity_scores(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]], *,
                  untrained: Collection[str] = ()) -> dict[str, Any]:
    """Micro precision/recall/F1 over entities, macro F1 (mean over types) and per-type scores.

    ``per_entity`` holds F1 per type (as before); ``per_type`` holds precision, recall, F1
    and support per type. Types in ``untrained`` (a fixed ``entity_types`` entry without a
    training example) stay in the micro scores and the per-type table but are left out of
    macro F1; ``not_in_macro`` lists those of them the table holds (issue 21).

    Strict mode: an entity counts only when its type and exact boundaries match and it is a
    well-formed IOB2 chunk (a prediction starting with ``I-`` is not an entity).
    """
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    true = [list(s) for s in y_true]
    pred = [list(s) for s in y_pred]
    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    report = classification_report(true, pred, output_dict=True, **kw)
    per_entity = {k: float(v["f1-score"]) for k, v in report.items()
                  if not k.endswith(" avg") and isinstance(v, dict)}
    per_type = {k: {"precision": float(v["precision"]), "recall": float(v["recall"]),
                    "f1": float(v["f1-score"]), "support": int(v["support"])}
                for k, v in report.items() if not k.endswith(" avg") and isinstance(v, dict)}
    macro = report.get("macro avg", {}).get("f1-score", 0.0) if per_entity else 0.0
    left_out = sorted(set(untrained) & set(per_entity))
    if left_out:
        counted = [f for k, f in per_entity.items() if k not in left_out]
        macro = sum(counted) / len(counted) if counted else 0.0
    scores = {
        "f1": float(f1_score(true, pred, average="micro", **kw)),
        "macro_f1": float(macro),
        "per_type": per_type,
        "precision": float(precision_score(true, pred, average="micro", **kw)),
        "recall": float(recall_score(true, pred, average="micro", **kw)),
        "per_entity": per_entity,
    }
    if left_out:
        scores[NOT_IN_MACRO] = left_out
    return scores
