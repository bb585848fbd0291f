"""Resumes in, entities out: the same words, windows and per-word merge as training.

A resume is split into words exactly as the training data was (without entity cuts), tokenized
whole, cut into overlapping windows (never truncated), and every word takes the prediction of
the window that gives its first sub-token the most context. Consecutive words tagged ``B-X``
``I-X`` ... form one entity (an ``I-X`` after another type starts a new one, as
``transformers.pipeline(..., aggregation_strategy="first")`` does); its score is the mean of
its words' probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .data import Document, word_spans
from .errors import HpoHelpersError

__all__ = ["Entity", "Predictor", "predict", "read_inputs"]


@dataclass(frozen=True)
class Entity:
    type: str
    text: str
    start: int  # character offset in the resume
    end: int  # exclusive
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "text": self.text, "start": self.start, "end": self.end,
                "score": round(self.score, 6)}


class Predictor:
    """A loaded model folder ready to tag resumes (load once, call many times)."""

    def __init__(self, model_dir: Path | str, *, max_length: int = 128, stride: int = 32,
                 batch_size: int = 32) -> None:
        import torch

        from .evaluate import load_model

        self.model, self.tokenizer, self.labels = load_model(model_dir)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.max_length, self.stride, self.batch_size = max_length, stride, batch_size

    def __call__(self, texts: Sequence[str]) -> list[list[Entity]]:
        import torch

        from .encoding import encode_documents, word_positions

        spans = [word_spans(t) for t in texts]
        docs = [Document(str(i), tuple(t[s:e] for s, e in sp), ("O",) * len(sp))
                for i, (t, sp) in enumerate(zip(texts, spans))]
        label2id = {lab: i for i, lab in enumerate(self.labels)}
        windows = encode_documents(docs, self.tokenizer, label2id, max_length=self.max_length,
                                   stride=self.stride)
        pad = self.tokenizer.pad_token_id or 0
        probs: list[Any] = [None] * len(windows)
        with torch.inference_mode():
            for b in range(0, len(windows), self.batch_size):
                chunk = windows[b:b + self.batch_size]
                width = max(len(w) for w in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for r, w in enumerate(chunk):
                    ids[r, :len(w)] = torch.tensor(w.input_ids)
                    mask[r, :len(w)] = 1
                logits = self.model(input_ids=ids.to(self.device),
                                    attention_mask=mask.to(self.device)).logits.float()
                p = torch.softmax(logits, -1).cpu()
                for r in range(len(chunk)):
                    probs[b + r] = p[r]
        where = word_positions(len(docs), windows)
        out = []
        for d, (text, sp) in enumerate(zip(texts, spans)):
            tagged = []
            for w in range(len(sp)):
                if w not in where[d]:
                    tagged.append(("O", 0.0))
                    continue
                k, i = where[d][w]
                score, label = probs[k][i].max(-1)
                tagged.append((self.labels[int(label)], float(score)))
            out.append(_entities(text, sp, tagged))
        return out


def _entities(text: str, spans: list[tuple[int, int]], tagged: list[tuple[str, float]]
              ) -> list[Entity]:
    out: list[Entity] = []
    group: list[int] = []
    kind = ""

    def close() -> None:
        if group:
            s, e = spans[group[0]][0], spans[group[-1]][1]
            score = sum(tagged[w][1] for w in group) / len(group)
            out.append(Entity(kind, text[s:e], s, e, score))
            group.clear()

    for w, (tag, _) in enumerate(tagged):
        if tag == "O":
            close()
            continue
        prefix, name = tag[:2], tag[2:]
        if prefix == "B-" or name != kind or not group:
            close()
            kind = name
        group.append(w)
    close()
    return out


def predict(texts: Iterable[str] | str, model: Path | str | Predictor, **kwargs: Any
            ) -> list[list[Entity]]:
    """Entities of each resume in ``texts`` (a single string is one resume).

    ``model`` is a saved model folder (a kept trial model or an exported refit) or a loaded
    :class:`Predictor`; ``max_length``/``stride`` should match the training windows.
    """
    items = [texts] if isinstance(texts, str) else list(texts)
    runner = model if isinstance(model, Predictor) else Predictor(model, **kwargs)
    return runner(items)


def read_inputs(source: str, stdin: Any = None) -> Iterator[str]:
    """Resumes from a file (``-``: standard input): JSONL of ``{"text": ...}`` objects, or
    plain text that is one resume."""
    import sys

    if source == "-":
        data = (stdin or sys.stdin).read()
    else:
        try:
            data = Path(source).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise HpoHelpersError(f"{source}: cannot read the input ({exc.strerror}). Fix: "
                                  "pass a text file (one resume) or JSONL of {\"text\": ...}.") \
                from None
    if not data.lstrip().startswith("{"):
        yield data
        return
    for lineno, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise HpoHelpersError(f"{source}:{lineno}: invalid JSON line ({exc.msg}). Fix: one "
                                  "{\"text\": ...} object per line.") from None
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise HpoHelpersError(f"{source}:{lineno}: expected an object with a string "
                                  "'text'. Fix: one {\"text\": ...} object per line.")
        yield item["text"]
