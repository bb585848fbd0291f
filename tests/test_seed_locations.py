"""A study at the seed's old location is copied into the new layout and adopted (#14 item 8)."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3

import pytest
from optuna.trial import TrialState

from hpo_helpers import load_configs, run_sweep
from hpo_helpers.core.runtime import detect
from hpo_helpers.settings.schema import FINGERPRINT
from hpo_helpers.storage.durable import sha256


def _cfg(project, max_trials: int):
    cfg = load_configs(project.config_dir, project.hpo)
    return dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=max_trials))


@pytest.mark.parametrize("kind,env,seed_dir", [
    ("kaggle", {"KAGGLE_KERNEL_RUN_TYPE": "Interactive"},
     ("kaggle", "working", "resume-ner-azureml", "outputs", "hpo")),
    ("colab", {"COLAB_GPU": "1"}, ("content",)),  # Colab without Drive: /content/{backbone}
])
def test_seed_study_is_copied_and_adopted_original_untouched(project, tmp_path, caplog, kind,
                                                             env, seed_dir) -> None:
    root = tmp_path / "vm"
    seed_out = root.joinpath(*seed_dir)
    run_sweep(_cfg(project, 1), output_dir=seed_out)  # what the seed left there
    seed = seed_out / "tiny" / "study.db"
    con = sqlite3.connect(seed)  # the seed recorded no fingerprint
    con.execute("DELETE FROM study_user_attributes WHERE key = ?", (FINGERPRINT,))
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    before = (sha256(seed), seed.stat().st_mtime_ns)
    rt = detect(env, root=root)
    assert rt.kind == kind
    with caplog.at_level(logging.WARNING):
        out = run_sweep(_cfg(project, 2), runtime=rt)
    assert "Adopted the study found at the seed's old location" in caplog.text
    assert str(seed) in caplog.text
    assert out.resumed and len(out.study.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert out.study.user_attrs.get(FINGERPRINT), "fingerprint recorded at adoption"
    assert out.paths.working_db != seed and out.paths.working_db.is_file()
    assert (sha256(seed), seed.stat().st_mtime_ns) == before, "the original is never modified"


def test_a_study_in_the_new_layout_wins_over_the_seed(project, tmp_path, caplog) -> None:
    root = tmp_path / "vm"
    seed_out = root.joinpath("kaggle", "working", "resume-ner-azureml", "outputs", "hpo")
    run_sweep(_cfg(project, 1), output_dir=seed_out)
    rt = detect({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, root=root)
    run_sweep(_cfg(project, 1), runtime=rt)  # adopts
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        run_sweep(_cfg(project, 2), runtime=rt)
    assert "seed's old location" not in caplog.text


def _seed_study(seed_db, project, study_name: str) -> None:
    """What the original left at ``seed_db``: ``study_name`` with one trial, no fingerprint."""
    cfg = _cfg(project, 1)
    made = run_sweep(dataclasses.replace(cfg, hpo=dataclasses.replace(
        cfg.hpo, study_name=study_name)), output_dir=project.root / "made").paths.working_db
    con = sqlite3.connect(made)
    con.execute("DELETE FROM study_user_attributes WHERE key = ?", (FINGERPRINT,))
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    seed_db.parent.mkdir(parents=True, exist_ok=True)
    made.replace(seed_db)


def test_seed_study_in_a_study_name_folder_is_adopted(project, tmp_path, caplog) -> None:
    """The original's ``storage_path: "{study_name}/study.db"`` (issue 21 item 6)."""
    root = tmp_path / "vm"
    seed = root.joinpath("kaggle", "working", "resume-ner-azureml", "outputs", "hpo",
                         "hpo_tiny_v2", "study.db")
    _seed_study(seed, project, "hpo_tiny_v2")
    before = sha256(seed)
    cfg = _cfg(project, 2)
    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, study_name="hpo_tiny_v2"))
    rt = detect({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, root=root)
    with caplog.at_level(logging.WARNING):
        out = run_sweep(cfg, runtime=rt)
    assert f"Adopted the study found at the seed's old location {seed}" in caplog.text
    assert out.resumed and len(out.study.get_trials(states=(TrialState.COMPLETE,))) == 2
    assert sha256(seed) == before


def test_seed_file_holding_another_study_is_named_not_silently_abandoned(project, tmp_path,
                                                                          caplog) -> None:
    root = tmp_path / "vm"
    seed = root.joinpath("kaggle", "working", "resume-ner-azureml", "outputs", "hpo", "tiny",
                         "study.db")
    _seed_study(seed, project, "hpo_tiny_smoke")  # a custom study_name; ours is hpo_tiny
    rt = detect({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, root=root)
    with caplog.at_level(logging.WARNING):
        out = run_sweep(_cfg(project, 1), runtime=rt)
    assert (f"Study file of the original tool at {seed} holds hpo_tiny_smoke (1 trials), not "
            "hpo_tiny: not adopted. Fix: to continue it, set study_name: hpo_tiny_smoke in "
            f"{project.hpo}") in caplog.text
    assert not out.resumed
