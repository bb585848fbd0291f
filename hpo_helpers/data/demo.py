"""The deterministic demo data: synthetic resumes with character-span annotations.

Two styles (the same ``(n, seed, style)`` always gives the same bytes):

* ``realistic`` (the default; the committed ``dataset/``, written by ``python -m hpo_helpers
  make-demo-data``): long, sparse, noisy resumes with the statistics of real ones
  (:mod:`.demo_realistic` says which and how they are annotated);
* ``compact``: the short dense resumes of earlier versions (about 130 words and 25 entities
  each), byte for byte, for quick tests that only need some labelled data
  (:mod:`.demo_compact`).

Both write the ten entity types of ``config/data/demo.yaml`` as labels (``NAME``, ``EMAIL``,
``LOCATION``, ``DESIGNATION``, ``COMPANY``, ``SKILL``, ``DEGREE``, ``COLLEGE``,
``GRADUATION_YEAR``, ``YEARS_OF_EXPERIENCE``), as ``[start, end_exclusive, label]`` spans.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from . import demo_compact, demo_realistic

__all__ = ["SPLIT_SIZES", "STYLES", "generate", "write_dataset"]

STYLES = ("realistic", "compact")
#: Documents per split (train, validation, test) that each style writes by default: the
#: committed ``dataset/`` (realistic) and the demo data of earlier versions (compact).
SPLIT_SIZES = {"realistic": (200, 40, 40), "compact": (240, 60, 60)}


def generate(n: int, seed: int = 7, *, style: str = "realistic") -> list[dict]:
    """``n`` synthetic resumes ``{"text", "annotations"}``; the same arguments give the same
    list."""
    if style not in STYLES:
        raise ValueError(f"style {style!r} is not one of {', '.join(STYLES)}")
    make = demo_realistic.resume if style == "realistic" else demo_compact.resume
    rng = random.Random(seed)
    return [make(rng) for _ in range(n)]


def write_dataset(out_dir: Path | str, *, n_train: int | None = None,
                  n_validation: int | None = None, n_test: int | None = None, seed: int = 7,
                  style: str = "realistic") -> dict[str, Path]:
    """Write ``train.json``, ``validation.json`` and ``test.json`` under ``out_dir``.

    Sizes left out are the style's :data:`SPLIT_SIZES`: the defaults write the committed
    ``dataset/``, ``style="compact"`` the demo data of earlier versions (the same bytes)."""
    if style not in STYLES:
        raise ValueError(f"style {style!r} is not one of {', '.join(STYLES)}")
    sizes = SPLIT_SIZES[style]
    n_train = sizes[0] if n_train is None else n_train
    n_validation = sizes[1] if n_validation is None else n_validation
    n_test = sizes[2] if n_test is None else n_test
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = generate(n_train + n_validation + n_test, seed, style=style)
    chunks = {"train": docs[:n_train], "validation": docs[n_train:n_train + n_validation],
              "test": docs[n_train + n_validation:]}
    written = {}
    for split, items in chunks.items():
        path = out / f"{split}.json"
        path.write_text(json.dumps(items, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
        written[split] = path
    return written
