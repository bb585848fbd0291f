from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from hpo_helpers import ConfigError
from hpo_helpers.settings.config import load_data_config, load_hpo_config, load_train_config

from .conftest import REPO, TINY_HPO


def _with(path: str, value) -> dict:
    """TINY_HPO with the dotted key ``path`` set to ``value`` (``...`` deletes it)."""
    raw = copy.deepcopy(TINY_HPO)
    *parents, last = path.split(".")
    node = raw
    for p in parents:
        node = node.setdefault(p, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return raw


BAD_HPO = [
    # (description, raw config, regex the one-line error must match)
    ("unknown top-level key", {**TINY_HPO, "max_trails": 3},
     r"unknown key\(s\) max_trails.*allowed keys"),
    ("unknown checkpoint key", _with("checkpoint.storage", "x.db"),
     r"unknown key\(s\) checkpoint\.storage\b.*allowed keys under checkpoint"),
    ("max_trials not an int", _with("max_trials", "ten"), r"'max_trials' = 'ten' must be an integer"),
    ("max_trials zero", _with("max_trials", 0), r"'max_trials' = 0 is out of range \(must be >= 1\)"),
    ("max_trials bool", _with("max_trials", True), r"'max_trials' = True must be an integer"),
    ("enabled not bool", _with("checkpoint.enabled", "yes please"),
     r"'checkpoint\.enabled' = 'yes please' must be true or false"),
    ("storage_path escapes with ..", _with("checkpoint.storage_path", "../{backbone}/study.db"),
     r"'checkpoint\.storage_path' = '\.\./\{backbone\}/study\.db' would escape"),
    ("storage_path absolute", _with("checkpoint.storage_path", "/etc/{backbone}.db"),
     r"'checkpoint\.storage_path' = '/etc/\{backbone\}\.db' would escape"),
    ("storage_path unknown placeholder", _with("checkpoint.storage_path", "{model}/study.db"),
     r"unknown placeholder"),
    ("storage_path not .db", _with("checkpoint.storage_path", "{backbone}/study"),
     r"must name a \.db file"),
    ("backbone escapes", _with("backbone", "../../etc"), r"backbone name '\.\./\.\./etc' cannot"),
    ("timeout negative", _with("timeout_minutes", -5), r"'timeout_minutes' = -5\.0 is out of range"),
    ("sampler type", _with("sampler.type", "grid"), r"'sampler\.type' = 'grid' is not one of"),
    ("direction minimize", _with("objective.direction", "minimize"),
     r"'objective\.direction' = 'minimize' is not one of \['maximize'\]"),
    ("loguniform low <= 0", _with("search_space.learning_rate", {"type": "loguniform", "low": 0,
                                                                  "high": 1e-3}),
     r"'search_space\.learning_rate\.low' = 0\.0 must be > 0"),
    ("low >= high", _with("search_space.dropout", {"type": "uniform", "low": 0.3, "high": 0.1}),
     r"'search_space\.dropout\.high' = 0\.1 must be greater than low"),
    ("dropout out of range", _with("search_space.dropout", {"type": "uniform", "low": 0.1,
                                                            "high": 1.5}),
     r"1\.5 is out of range for dropout"),
    ("unknown search param", _with("search_space.momentum", 0.9),
     r"unknown key\(s\) search_space\.momentum"),
    ("missing search param", _with("search_space.epochs", ...),
     r"search_space is missing epochs"),
    ("bad param type", _with("search_space.batch_size", {"type": "normal", "low": 1, "high": 2}),
     r"'search_space\.batch_size\.type' = 'normal' is not one of"),
    ("empty choices", _with("search_space.batch_size", {"type": "choice", "choices": []}),
     r"'search_space\.batch_size\.choices' = \[\] must be a non-empty list"),
    ("fractional batch size", _with("search_space.batch_size", {"type": "choice",
                                                                "choices": [8.5]}),
     r"'search_space\.batch_size\.choices' = 8\.5 must be an integer"),
    ("k_folds one", _with("k_folds", 1), r"'k_folds' = 1 is out of range \(must be >= 2\)"),
    ("checkpoint not a mapping", _with("checkpoint", "on"), r"'checkpoint' = 'on' must be a mapping"),
]


@pytest.mark.parametrize("desc,raw,pattern", BAD_HPO, ids=[b[0] for b in BAD_HPO])
def test_bad_hpo_config_names_file_key_value_and_fix(tmp_path: Path, desc, raw, pattern) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=pattern) as info:
        load_hpo_config(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert "\n" not in message
    assert "Fix" in message or "allowed" in message or "escape" in message


def test_invalid_yaml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("max_trials: 3\nsearch_space: [unclosed\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: line \d+ is not valid YAML"):
        load_hpo_config(path)


def test_yaml_tags_are_refused_by_safe_load(tmp_path: Path) -> None:
    path = tmp_path / "evil.yaml"
    path.write_text("max_trials: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_hpo_config(path)


def test_shipped_configs_load_with_defaults() -> None:
    smoke = load_hpo_config(REPO / "config" / "hpo" / "smoke.yaml")
    prod = load_hpo_config(REPO / "config" / "hpo" / "prod.yaml")
    assert smoke.backbone == "minilm" and smoke.checkpoint.enabled
    assert prod.param("epochs").type == "int"
    assert smoke.param("learning_rate").type == "loguniform"
    assert smoke.objective.metric == "f1" and smoke.objective.direction == "maximize"
    load_train_config(REPO / "config" / "train.yaml")
    data = load_data_config(REPO / "config" / "data" / "demo.yaml")
    assert data.canonical("Companies worked at") == "COMPANY"
    assert data.canonical("college name") == "COLLEGE"
    assert data.canonical("UNKNOWN") is None


def test_checkpoint_section_defaults_are_the_seed_defaults(tmp_path: Path) -> None:
    raw = copy.deepcopy(TINY_HPO)
    del raw["checkpoint"]
    path = tmp_path / "h.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_hpo_config(path)
    assert (cfg.checkpoint.enabled, cfg.checkpoint.storage_path, cfg.checkpoint.auto_resume) == (
        False, "{backbone}/study.db", True)


def test_configs_are_frozen() -> None:
    cfg = load_hpo_config(REPO / "config" / "hpo" / "smoke.yaml")
    with pytest.raises(AttributeError):
        cfg.max_trials = 5  # type: ignore[misc]


@pytest.mark.parametrize("raw,pattern", [
    ({"stride": 64, "max_length": 64}, r"'stride' = 64 must be below half of max_length"),
    ({"precision": "fp8"}, r"'precision' = 'fp8' is not one of"),
    ({"max_length": 8}, r"'max_length' = 8 is out of range"),
    ({"eval_batch": 8}, r"unknown key\(s\) eval_batch"),
])
def test_bad_train_config(tmp_path: Path, raw, pattern) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=pattern):
        load_train_config(path)


@pytest.mark.parametrize("raw,pattern", [
    ({"entity_types": []}, r"'entity_types' = \[\] is empty"),
    ({"entity_types": ["SKILL"], "label_map": {"Skills": "SKILLZ"}},
     r"'label_map' = \['SKILLZ'\] maps onto types missing"),
    ({"entity_types": ["SKILL"], "format": "csv"}, r"'format' = 'csv' is not one of"),
])
def test_bad_data_config(tmp_path: Path, raw, pattern) -> None:
    path = tmp_path / "data.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=pattern):
        load_data_config(path)


FIVE_MISTAKES = """
backbone: tiny
max_trails: 3
sampler: {type: grid}
checkpoint: {enabled: yes-please}
objective: {direction: upward}
search_space:
  learning_rate: {type: loguniform, low: 0.0, high: 1e-3}
  batch_size: {type: choice, choices: [4, 8]}
  dropout: 0.1
  weight_decay: 0.01
  warmup_ratio: 0.0
  epochs: 2
"""


def test_a_config_with_five_mistakes_reports_all_five_in_one_error(tmp_path: Path) -> None:
    path = tmp_path / "five.yaml"
    path.write_text(FIVE_MISTAKES)
    with pytest.raises(ConfigError, match=r"five.yaml: 5 problems\n") as info:
        load_hpo_config(path)
    lines = str(info.value).splitlines()
    assert len(lines) == 6 and all(ln.startswith("  ") for ln in lines[1:])
    text = str(info.value)
    for expected in ("unknown key(s) max_trails", "'sampler.type' = 'grid'",
                     "'checkpoint.enabled' = 'yes-please' must be true or false",
                     "'objective.direction' = 'upward'",
                     "'search_space.learning_rate.low' = 0.0 must be > 0"):
        assert expected in text
    assert all("Fix:" in ln for ln in lines[1:])


def test_cli_prints_the_problems_under_one_error_line(project) -> None:
    import subprocess
    import sys

    project.hpo.write_text(FIVE_MISTAKES.replace("backbone: tiny", "backbone: tiny\n"
                                                 "train_config: train.yaml"))
    res = subprocess.run([sys.executable, "-m", "hpo_helpers", "run", "--config",
                          str(project.hpo)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.startswith("error:"))
    assert lines[start].endswith("5 problems")
    assert len([ln for ln in lines[start + 1:] if ln.startswith("  key")]) >= 4


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
    for i in range(8)) + "backbone: *i\n"


def test_a_yaml_alias_bomb_gives_a_short_error_quickly(tmp_path: Path) -> None:
    import resource
    import time

    path = tmp_path / "bomb.yaml"
    path.write_text(ALIAS_BOMB)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_hpo_config(path)
    assert time.monotonic() - start < 5
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) < 200_000  # KiB
    message = str(info.value)
    assert len(message) < 2000, len(message)
    assert "key 'backbone' = [[[" in message and "..." in message


def test_backbones_mlflow_and_infrastructure_files_report_every_problem(tmp_path: Path) -> None:
    from hpo_helpers.settings.config import (
        load_backbones_config,
        load_infrastructure_config,
        load_mlflow_config,
    )

    bb = tmp_path / "backbones.yaml"
    bb.write_text("a: {kind: rocket}\nb: {kind: hub}\nc: {kind: tiny, colour: red}\n")
    with pytest.raises(ConfigError, match=r"backbones.yaml: 3 problems\n") as info:
        load_backbones_config(bb)
    text = str(info.value)
    assert "'a.kind' = 'rocket' is not one of" in text and "'b.name' is missing" in text
    assert "unknown key(s) c.colour" in text
    ml = tmp_path / "mlflow.yaml"
    ml.write_text("azure_ml: {enabled: maybe}\nlocal: {tracking_uri: 3}\nremote: 1\n")
    with pytest.raises(ConfigError, match=r"mlflow.yaml: 3 problems\n"):
        load_mlflow_config(ml)
    infra = tmp_path / "infrastructure.yaml"
    infra.write_text("workspace: {name: ws, region: eu}\n")
    with pytest.raises(ConfigError, match=r"infrastructure.yaml: unknown key\(s\) "
                                          r"workspace.region\. Fix"):
        load_infrastructure_config(infra)
    assert load_infrastructure_config(tmp_path / "none.yaml").workspace.subscription_id == (
        "${AZURE_SUBSCRIPTION_ID}")
