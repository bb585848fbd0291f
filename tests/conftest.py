from __future__ import annotations

import os
import shutil
import sys
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


def make_project(tmp_path: Path) -> Project:
    """A copy of config/ with a tiny-backbone HPO config and a small slice of the demo data."""
    config_dir = tmp_path / "config"
    shutil.copytree(REPO / "config", config_dir)
    data = yaml.safe_load((config_dir / "data" / "demo.yaml").read_text())
    data.update(path=str(REPO / "dataset"), max_train_documents=16, max_eval_documents=6)
    (config_dir / "data" / "test.yaml").write_text(yaml.safe_dump(data))
    train = yaml.safe_load((config_dir / "train.yaml").read_text())
    train.update(max_length=64, stride=16, torch_threads=1)
    (config_dir / "train.yaml").write_text(yaml.safe_dump(train))
    proj = Project(tmp_path, config_dir, config_dir / "hpo" / "test.yaml", tmp_path / "out",
                   REPO / "dataset")
    proj.write_hpo()
    return proj


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """A copy of config/ with a tiny-backbone HPO config and a small slice of the demo data."""
    return make_project(tmp_path)
