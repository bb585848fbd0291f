from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# Settings that make a tiny-backbone trial take about a second on two cores.
TINY_HPO = {
    "backbone": "tiny",
    "max_trials": 2,
    "train_config": "train.yaml",
    "data_config": "data/test.yaml",
    "sampler": {"type": "tpe", "seed": 7, "n_startup_trials": 2},
    "pruner": {"type": "none"},
    "checkpoint": {"enabled": True, "storage_path": "{backbone}/study.db", "auto_resume": True},
    "search_space": {
        "learning_rate": {"type": "loguniform", "low": 1e-3, "high": 3e-3},
        "batch_size": {"type": "choice", "choices": [4, 8]},
        "dropout": {"type": "uniform", "low": 0.0, "high": 0.2},
        "weight_decay": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
        "warmup_ratio": {"type": "uniform", "low": 0.0, "high": 0.1},
        "epochs": 2,
        # The sparse-NER recipe's head learning rate: without it a 2-epoch tiny trial on 16
        # resumes stays below the "learned nothing" line (F1 0.05) and selection refuses.
        "head_lr_ratio": 30.0,
    },
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every test starts local (no Colab/Kaggle/Azure variables), offline, in its own folder."""
    for key in list(os.environ):
        if key.startswith(("COLAB_", "KAGGLE_", "AZUREML_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.chdir(tmp_path)


@dataclass
class Project:
    root: Path
    config_dir: Path
    hpo: Path
    output_dir: Path
    dataset: Path

    def write_hpo(self, **overrides) -> Path:
        raw = {**TINY_HPO, **overrides}
        self.hpo.write_text(yaml.safe_dump(raw))
        return self.hpo

    def cli(self, *args: str) -> list[str]:
        return [PYTHON, "-m", "hpo_helpers", *args]

    def run_args(self, *extra: str) -> list[str]:
        return self.cli("run", "--config", str(self.hpo), "--output-dir", str(self.output_dir),
                        *extra)


@functools.lru_cache(maxsize=1)
def _compact_files() -> dict[str, str]:
    from hpo_helpers.data.demo import write_dataset

    with tempfile.TemporaryDirectory() as tmp:
        written = write_dataset(tmp, style="compact")
        return {split: path.read_text(encoding="utf-8") for split, path in written.items()}


def compact_split(split: str) -> list[dict]:
    """The documents of one split of the compact demo data (see :func:`compact_dataset`)."""
    return json.loads(_compact_files()[split])


def compact_dataset(folder: Path) -> Path:
    """The compact demo data (the short dense resumes the shipped dataset/ held before issue
    21, byte for byte) written to ``folder``: tests that only need some labelled data train on
    it, so the realistic shipped set (long documents) does not slow them down."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, text in _compact_files().items():
        (folder / f"{split}.json").write_text(text, encoding="utf-8")
    return folder


def make_project(tmp_path: Path) -> Project:
    """A copy of config/ with a tiny-backbone HPO config and a small slice of the demo data
    (the compact style)."""
    config_dir = tmp_path / "config"
    shutil.copytree(REPO / "config", config_dir)
    dataset = compact_dataset(tmp_path / "demo-data")
    data = yaml.safe_load((config_dir / "data" / "demo.yaml").read_text())
    data.update(path=str(dataset), max_train_documents=16, max_eval_documents=6)
    (config_dir / "data" / "test.yaml").write_text(yaml.safe_dump(data))
    train = yaml.safe_load((config_dir / "train.yaml").read_text())
    train.update(max_length=64, stride=16, torch_threads=1)
    (config_dir / "train.yaml").write_text(yaml.safe_dump(train))
    proj = Project(tmp_path, config_dir, config_dir / "hpo" / "test.yaml", tmp_path / "out",
                   dataset)
    proj.write_hpo()
    return proj


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A copy of config/ with a tiny-backbone HPO config and a small slice of the demo data."""
    return make_project(tmp_path)
