"""A study at the seed's old location is copied into the new layout and adopted (#14 item 8)."""

from __future__ import annotations

import dataclasses
import logging
import sqlite3

import pytest
from optuna.trial import TrialState

from hpo_helpers import load_configs, run_sweep
from hpo_helpers.durable import sha256
from hpo_helpers.runtime import detect
from hpo_helpers.schema import FINGERPRINT


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
