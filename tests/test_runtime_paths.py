from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hpo_helpers import ConfigError
from hpo_helpers.core.runtime import detect
from hpo_helpers.storage.paths import resolve


def test_local_default_is_outputs_hpo_backbone(tmp_path: Path) -> None:
    rt = detect({})
    assert rt.kind == "local"
    p = resolve(rt, backbone="minilm", storage_path="{backbone}/study.db", cwd=tmp_path)
    assert p.durable_db == tmp_path / "outputs" / "hpo" / "minilm" / "study.db"
    assert p.working_db == p.durable_db and not p.snapshots_needed


def test_colab_with_drive_keeps_sqlite_local_and_copy_on_drive(tmp_path: Path) -> None:
    (tmp_path / "content" / "drive" / "MyDrive").mkdir(parents=True)
    rt = detect({"COLAB_RELEASE_TAG": "release-colab"}, root=tmp_path)
    assert rt.kind == "colab" and rt.drive_mounted
    p = resolve(rt, backbone="minilm", storage_path="{backbone}/study.db")
    assert p.durable_db == tmp_path / "content/drive/MyDrive/resume-ner-checkpoints/hpo/minilm/study.db"
    assert p.working_db == tmp_path / "content/resume-ner/outputs/hpo/minilm/study.db"
    assert p.snapshots_needed and not p.session_only


def test_colab_without_drive_warns_session_only(tmp_path: Path, caplog) -> None:
    rt = detect({"COLAB_GPU": "0"}, root=tmp_path)
    assert rt.kind == "colab" and not rt.drive_mounted
    with caplog.at_level(logging.WARNING):
        p = resolve(rt, backbone="tiny", storage_path="{backbone}/study.db")
    assert p.session_only and not p.snapshots_needed
    assert "dies with this Colab session" in caplog.text


def test_kaggle_uses_kaggle_working(tmp_path: Path) -> None:
    rt = detect({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, root=tmp_path)
    p = resolve(rt, backbone="minilm", storage_path="{backbone}/study.db")
    assert p.durable_db == tmp_path / "kaggle/working/resume-ner/outputs/hpo/minilm/study.db"
    assert not p.snapshots_needed


def test_azureml_uses_job_outputs(tmp_path: Path) -> None:
    rt = detect({"AZUREML_RUN_ID": "run-1"}, root=tmp_path)
    p = resolve(rt, backbone="minilm", storage_path="{backbone}/study.db", cwd=tmp_path)
    assert rt.kind == "azureml"
    assert p.durable_db == tmp_path / "outputs/hpo/minilm/study.db"


def test_explicit_output_dir_wins(tmp_path: Path) -> None:
    p = resolve(detect({}), backbone="tiny", storage_path="{backbone}/study.db",
                output_dir=tmp_path / "o")
    assert p.durable_db == tmp_path / "o/tiny/study.db"


@pytest.mark.parametrize("backbone", ["../x", "a/b", "..", "/abs", ""])
def test_backbone_cannot_escape_output_dir(tmp_path: Path, backbone: str) -> None:
    with pytest.raises(ConfigError, match="cannot be used in a path"):
        resolve(detect({}), backbone=backbone, storage_path="{backbone}/study.db", cwd=tmp_path)
