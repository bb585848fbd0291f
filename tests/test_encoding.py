from __future__ import annotations

import pytest

from hpo_helpers.data.dataset import Document, label_list
from hpo_helpers.training.backbones import load_backbone
from hpo_helpers.training.encoding import IGNORE, encode_documents, merge_predictions

from .conftest import REPO

TYPES = ("NAME", "SKILL")


@pytest.fixture(scope="module")
def tokenizer():
    return load_backbone("minilm", REPO / "config").tokenizer


def _long_doc() -> Document:
    words, tags = [], []
    for i in range(150):
        words += ["Experienced", f"Kubernetesification{i}", "engineer", "Jane", "Doe"]
        tags += ["O", "B-SKILL", "O", "B-NAME", "I-NAME"]
    return Document("long", tuple(words), tuple(tags))


def test_long_resume_is_windowed_not_truncated_and_round_trips(tokenizer) -> None:
    doc = _long_doc()
    labels = label_list(TYPES)
    l2i = {lab: i for i, lab in enumerate(labels)}
    windows = encode_documents([doc], tokenizer, l2i, max_length=32, stride=8)
    assert len(windows) > 20
    assert all(len(w) <= 32 for w in windows)
    assert all(w.input_ids[0] == tokenizer.cls_token_id for w in windows)
    assert all(w.input_ids[-1] == tokenizer.sep_token_id for w in windows)
    covered = {w_id for w in windows for w_id in w.word_ids if w_id >= 0}
    assert covered == set(range(len(doc.words)))  # every word labelled somewhere
    for w in windows:  # only first sub-tokens carry labels
        for lab, wid in zip(w.labels, w.word_ids):
            assert (lab == IGNORE) == (wid < 0)
    # Using the gold labels as predictions must give the gold tags back, word for word.
    preds = [[max(lab, 0) for lab in w.labels] for w in windows]
    merged = merge_predictions([doc], windows, preds, dict(enumerate(labels)))
    assert merged == [list(doc.tags)]


def test_consecutive_windows_overlap(tokenizer) -> None:
    doc = _long_doc()
    l2i = {lab: i for i, lab in enumerate(label_list(TYPES))}
    windows = encode_documents([doc], tokenizer, l2i, max_length=32, stride=8)
    for a, b in zip(windows, windows[1:]):
        shared = {x for x in a.word_ids if x >= 0} & {x for x in b.word_ids if x >= 0}
        assert shared, "windows must overlap so that each word has context"
