"""Entity-level scores with seqeval in strict IOB2 mode (the objective of the search)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["entity_scores"]


def entity_scores(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]
                  ) -> dict[str, float | dict[str, float]]:
    """Micro precision/recall/F1 over entities, macro F1 (mean over types) and per-type scores.

    ``per_entity`` holds F1 per type (as before); ``per_type`` holds precision, recall, F1
    and support per type.

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
    return {
        "f1": float(f1_score(true, pred, average="micro", **kw)),
        "macro_f1": float(macro),
        "per_type": per_type,
        "precision": float(precision_score(true, pred, average="micro", **kw)),
        "recall": float(recall_score(true, pred, average="micro", **kw)),
        "per_entity": per_entity,
    }
