"""Resumes in, entities out: the same words, windows and per-word merge as training.

A resume is split into words exactly as the training data was (without entity cuts), tokenized
whole, cut into overlapping windows (never truncated), and every word takes the prediction of
the window that gives its first sub-token the most context. Consecutive words tagged ``B-X``
``I-X`` ... form one entity (an ``I-X`` after another type starts a new one, as
``transformers.pipeline(..., aggregation_strategy="first")`` does); its score is the mean of
its words' probabilities.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import HpoHelpersError
from ..data.dataset import Document, document_texts, word_spans
from ..settings.config import DataConfig

__all__ = ["Entity", "Predictor", "predict", "read_inputs", "read_numbered"]

logger = logging.getLogger(__name__)


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
        from ..training.device import default_device
        from .evaluate import load_model

        self.model, self.tokenizer, self.labels = load_model(model_dir)
        self.device = default_device()  # a CLI's --devices (or the study's) through using()
        self.model.to(self.device).eval()
        self.max_length, self.stride, self.batch_size = max_length, stride, batch_size

    def __call__(self, texts: Sequence[str]) -> list[list[Entity]]:
        import torch

        from ..training.encoding import encode_documents, word_positions

        texts = [_valid("resume", t) if not t.isascii() else t for t in texts]
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
            for word in range(len(sp)):
                if word not in where[d]:
                    tagged.append(("O", 0.0))
                    continue
                k, i = where[d][word]
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


#: The most ``predict`` reads from one input (one clear error beyond it). Each resume is
#: capped at ``max_document_chars`` as in training, and resumes are predicted one at a time,
#: so what a large input costs is this much text held at once, never its model activations
#: (issue 23: 5 MB of input took 1.2 GB). Split a bigger input into several files.
MAX_INPUT_BYTES = 50_000_000


def read_inputs(source: str, stdin: Any = None, *,
                max_chars: int = DataConfig.max_document_chars) -> Iterator[str]:
    """Resumes from a file (``-``: standard input), in the formats we train on (annotations
    ignored): DataTurks JSONL, our JSON list of ``{"text", "annotations"}``, CoNLL (each
    document's tokens joined by spaces), JSONL of ``{"text": ...}``, or plain text that is one
    resume (see :func:`~hpo_helpers.data.dataset.document_texts` and :func:`read_numbered`)."""
    for _, text in read_numbered(source, stdin, max_chars=max_chars):
        yield text


def read_numbered(source: str, stdin: Any = None, *,
                  max_chars: int = DataConfig.max_document_chars) -> Iterator[tuple[int, str]]:
    """``(place in the input, resume)`` of each resume of ``source`` that is kept.

    The input is bytes decoded as strict UTF-8 (standard input too: never its locale's
    decoding), at most :data:`MAX_INPUT_BYTES`. A resume longer than ``max_chars`` (the
    training limit, the data config's ``max_document_chars``) is dropped and counted in one
    warning, as training drops it; when nothing is left that is an error. Invalid UTF-8, JSON
    nested too deeply, text that is not valid Unicode and an input over the cap are one
    :class:`HpoHelpersError` line (issue 23)."""
    name = "<stdin>" if source == "-" else source
    fmt, texts = document_texts(name, _read_input(source, stdin))
    logger.info("Input %s: %d documents (%s)", source, len(texts), fmt)
    dropped = 0
    for number, text in enumerate(texts):
        if len(text) > max_chars:
            dropped += 1
            continue
        yield number, _valid(f"{name}: document {number}", text)
    if dropped:
        logger.warning("%s: dropped %d documents over max_document_chars (%d characters, the "
                       "training limit)", source, dropped, max_chars)
        if dropped == len(texts):
            raise HpoHelpersError(f"{source}: all {dropped} documents are longer than "
                                  f"max_document_chars = {max_chars} characters, so none is "
                                  "left. Fix: split them, or raise max_document_chars in the "
                                  "data config and pass --config.")


_FIX = ("Fix: pass UTF-8 text: a text file (one resume), JSONL of {\"text\": ...}, DataTurks "
        "JSONL, a JSON list or CoNLL.")


def _read_input(source: str, stdin: Any) -> str:
    """The whole input as text: strict UTF-8 (a BOM dropped), at most MAX_INPUT_BYTES."""
    import io
    import sys

    try:
        if source == "-":  # standard input's bytes, never its locale's decoding
            raw = stdin if stdin is not None else sys.stdin
            raw = getattr(raw, "buffer", raw)
            data = raw.read(MAX_INPUT_BYTES + 1) if isinstance(raw, io.IOBase) else raw.read()
            if isinstance(data, str):  # a caller's text stream (tests, notebooks)
                data = data.encode("utf-8", "surrogatepass")
        else:
            with open(source, "rb") as fh:
                data = fh.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise HpoHelpersError(f"{source}: cannot read the input ({exc.strerror}). {_FIX}") \
            from None
    if len(data) > MAX_INPUT_BYTES:
        raise HpoHelpersError(f"{source}: more than {MAX_INPUT_BYTES / 1e6:g} MB of input, "
                              "the most predict reads at once. Fix: split it into several "
                              "files.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise HpoHelpersError(f"{source}: not UTF-8 text (byte {exc.start}). {_FIX}") from None


def _valid(where: str, text: str) -> str:
    """``text``, unless it holds lone surrogates (a JSON ``\\ud800`` escape): the tokenizer
    cannot take those."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise HpoHelpersError(f"{where}: the text is not valid Unicode (a lone surrogate "
                              f"escape). {_FIX}") from None
    return text
