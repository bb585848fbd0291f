from __future__ import annotations

import pytest

from hpo_helpers.training.metrics import entity_scores


def test_strict_iob2_micro_f1_hand_checked() -> None:
    # Gold: NAME(0-1), SKILL(3), COMPANY(5-6): 3 entities.
    gold = [["B-NAME", "I-NAME", "O", "B-SKILL", "O", "B-COMPANY", "I-COMPANY"]]
    # Predicted: NAME(0-1) right; "I-SKILL" after O is no entity in strict IOB2 (the lenient
    # conlleval mode would count it); COMPANY(5) has the wrong end.
    pred = [["B-NAME", "I-NAME", "O", "I-SKILL", "O", "B-COMPANY", "O"]]
    s = entity_scores(gold, pred)
    # precision 1/2, recall 1/3 -> F1 = 2 * (1/2 * 1/3) / (1/2 + 1/3) = 0.4
    assert s["precision"] == pytest.approx(0.5)
    assert s["recall"] == pytest.approx(1 / 3)
    assert s["f1"] == pytest.approx(0.4)
    assert s["per_entity"] == {"COMPANY": 0.0, "NAME": 1.0, "SKILL": 0.0}


def test_perfect_and_empty_predictions() -> None:
    gold = [["B-EMAIL", "O"], ["B-SKILL", "I-SKILL"]]
    assert entity_scores(gold, gold)["f1"] == 1.0
    assert entity_scores(gold, [["O", "O"], ["O", "O"]])["f1"] == 0.0
