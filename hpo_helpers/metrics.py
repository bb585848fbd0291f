"""Entity-level scores with seqeval in strict IOB2 mode (the objective of the search)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["entity_scores"]


def entity_scores(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]]
                  ) -> dict[str, float | dict[str, float]]:
    """Micro precision/recall/F1 over entities and F1 per entity type.

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
    return {
        "f1": float(f1_score(true, pred, average="micro", **kw)),
        "precision": float(precision_score(true, pred, average="micro", **kw)),
        "recall": float(recall_score(true, pred, average="micro", **kw)),
        "per_entity": per_entity,
    }
