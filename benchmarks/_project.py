"""A scratch copy of ``config/`` for a benchmark, with a data config limited to a few resumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def scratch_config(work: Path, name: str, *, docs: int, eval_docs: int) -> Path:
    """Copy ``config/`` under ``work`` (once) and write ``data/<name>.yaml`` pointing at the
    demo dataset with ``docs`` training and ``eval_docs`` evaluation resumes; returns the copy."""
    config = work / "config"
    if not config.exists():
        shutil.copytree(REPO / "config", config)
    data = yaml.safe_load((REPO / "config" / "data" / "demo.yaml").read_text())
    data.update(path=str(REPO / "dataset"), max_train_documents=docs,
                max_eval_documents=eval_docs)
    (config / "data" / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return config
