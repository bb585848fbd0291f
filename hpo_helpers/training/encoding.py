"""Documents to model inputs: sub-token alignment, overlapping windows, merging predictions.

A document is tokenized whole (never truncated), then cut into windows of at most
``max_length`` tokens (special tokens included) that overlap by ``stride`` tokens and start on a
word boundary where possible. Only the first sub-token of a word carries its label; the others
and the special tokens are ignored (-100). For evaluation every word takes the prediction of the
window in which its first sub-token has the most context on both sides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..data.dataset import Document

__all__ = ["IGNORE", "Window", "encode_documents", "merge_predictions", "word_positions"]

IGNORE = -100


@dataclass(frozen=True)
class Window:
    """One model input. ``word_ids[i]`` is the word whose first sub-token is at ``i``, else -1."""

    doc: int
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    word_ids: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.input_ids)


def _specials(tokenizer: Any) -> tuple[list[int], list[int]]:
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    return ([cls] if cls is not None else []), ([sep] if sep is not None else [])


def encode_documents(docs: Sequence[Document], tokenizer: Any, label2id: dict[str, int], *,
                     max_length: int, stride: int) -> list[Window]:
    """Windows for ``docs`` in document order."""
    head, tail = _specials(tokenizer)
    body = max_length - len(head) - len(tail)
    windows: list[Window] = []
    if not docs:
        return windows
    enc = tokenizer([list(d.words) for d in docs], is_split_into_words=True,
                    add_special_tokens=False, truncation=False)
    for d, doc in enumerate(docs):
        ids = enc["input_ids"][d]
        word_of = enc.word_ids(d)
        first = [False] * len(ids)
        seen = set()
        for i, w in enumerate(word_of):
            if w is not None and w not in seen:
                first[i] = True
                seen.add(w)
        start = 0
        n = len(ids)
        while True:
            end = min(start + body, n)
            chunk = range(start, end)
            labels = [label2id[doc.tags[word_of[i]]] if first[i] else IGNORE for i in chunk]
            words = [word_of[i] if first[i] else -1 for i in chunk]
            windows.append(Window(
                d,
                tuple(head + list(ids[start:end]) + tail),
                tuple([IGNORE] * len(head) + labels + [IGNORE] * len(tail)),
                tuple([-1] * len(head) + words + [-1] * len(tail)),
            ))
            if end >= n:
                break
            nxt = end - stride
            # Step back to the start of a word so that it is labelled in this window too.
            while nxt > start + 1 and not first[nxt]:
                nxt -= 1
            start = nxt if nxt > start else end
    return windows


def word_positions(n_docs: int, windows: Sequence[Window]) -> list[dict[int, tuple[int, int]]]:
    """Per document: word -> ``(window index, position)`` of the sub-token that speaks for it.

    The window in which the word's first sub-token has the most context on both sides wins
    (the earlier window on a tie).
    """
    best: list[dict[int, tuple[int, int, int]]] = [{} for _ in range(n_docs)]
    for k, window in enumerate(windows):
        n = len(window.word_ids)
        for i, w in enumerate(window.word_ids):
            if w < 0:
                continue
            context = min(i, n - 1 - i)
            held = best[window.doc].get(w)
            if held is None or context > held[0]:
                best[window.doc][w] = (context, k, i)
    return [{w: (k, i) for w, (_, k, i) in doc.items()} for doc in best]


def merge_predictions(docs: Sequence[Document], windows: Sequence[Window],
                      predictions: Sequence[Sequence[int]], id2label: dict[int, str]
                      ) -> list[list[str]]:
    """Per-word tags for every document; words no window labelled are predicted ``O``."""
    where = word_positions(len(docs), windows)
    return [[id2label[int(predictions[where[d][w][0]][where[d][w][1]])] if w in where[d]
             else "O" for w in range(len(doc.words))] for d, doc in enumerate(docs)]
