"""The sparse-NER recipe: a faster-learning head, fewer empty windows per epoch, a lighter
``O``, the window length as a search parameter, and a known-good first trial."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpo_helpers import ConfigError, load_configs, run_sweep
from hpo_helpers.settings.config import load_hpo_config
from hpo_helpers.training.encoding import IGNORE, Window
from hpo_helpers.training.train import (
    HEAD_PREFIX,
    FitResult,
    _batch_plan,
    _optimizer,
    fit,
    steps_per_epoch,
)

from .conftest import REPO, TINY_HPO
from .test_train import PARAMS, _same_run, setup  # noqa: F401 - fixture

RECIPE = {**PARAMS, "head_lr_ratio": 10.0, "empty_window_keep": 0.3, "o_weight": 0.5}


def _o_id(setup) -> int:
    return setup["ds"].labels.index("O")


def _empty(window, o_id: int) -> bool:
    return all(label in (IGNORE, o_id) for label in window.labels)


def _sparse(setup) -> list[Window]:
    """The slice's windows with every other one emptied of entities (real resumes are mostly
    windows without any)."""
    o_id = _o_id(setup)
    return [w if i % 2 else Window(w.doc, w.input_ids, tuple(
        IGNORE if label == IGNORE else o_id for label in w.labels), w.word_ids)
        for i, w in enumerate(setup["tw"])]


def _fit(setup, ckpt: Path, params: dict, **kw):
    return fit(backbone=setup["bb"], labels=setup["ds"].labels, train_windows=_sparse(setup),
               eval_docs=setup["ds"].validation, eval_windows=setup["ew"], params=params,
               cfg=setup["cfg"], seed=11, checkpoint_dir=ckpt, **kw)


def test_every_entity_window_trains_and_a_seeded_share_of_empty_ones(setup) -> None:
    windows, o_id = _sparse(setup), _o_id(setup)
    n_empty = sum(_empty(w, o_id) for w in windows)
    assert 0 < n_empty < len(windows)  # the slice has both kinds
    plans = [_batch_plan(windows, 4, 11, e, True, 0.3, o_id) for e in range(3)]
    for plan in plans:
        rows = [i for batch in plan for i in batch]
        assert len(rows) == len(set(rows))
        assert {i for i in range(len(windows)) if not _empty(windows[i], o_id)} <= set(rows)
        assert sum(_empty(windows[i], o_id) for i in rows) == max(1, round(n_empty * 0.3))
        assert len(plan) == steps_per_epoch(windows, 4, 0.3, o_id)
    assert plans[0] != plans[1]  # another sample of empty windows each epoch...
    assert plans[1] == _batch_plan(windows, 4, 11, 1, True, 0.3, o_id)  # ...but seeded
    assert _batch_plan(windows, 4, 11, 0, True) == _batch_plan(windows, 4, 11, 0, True, 1.0,
                                                               o_id)


def test_the_head_learns_at_its_own_rate_and_one_keeps_the_old_groups(setup) -> None:
    import torch

    model = setup["bb"].build_model(setup["ds"].labels, dropout=0.1, seed=0)
    cpu = torch.device("cpu")
    old = _optimizer(model, 1e-4, 0.01, cpu)
    assert len(old.param_groups) == 2  # checkpoints written before the recipe still load
    opt = _optimizer(model, 1e-4, 0.01, cpu, head_lr_ratio=30.0)
    head = {id(p) for n, p in model.named_parameters() if n.startswith(HEAD_PREFIX)}
    assert head
    for group in opt.param_groups:
        is_head = {id(p) in head for p in group["params"]}
        assert len(is_head) == 1
        assert group["lr"] == pytest.approx(3e-3 if is_head.pop() else 1e-4)


def test_a_lighter_o_changes_the_loss_and_the_neutral_recipe_changes_nothing(
        setup, tmp_path) -> None:
    neutral = {**PARAMS, "head_lr_ratio": 1.0, "empty_window_keep": 1.0, "o_weight": 1.0}
    plain = _fit(setup, tmp_path / "plain", PARAMS)
    same = _fit(setup, tmp_path / "neutral", neutral)
    _same_run(plain, same)
    light = _fit(setup, tmp_path / "light", {**PARAMS, "o_weight": 0.3})
    assert [h["train_loss"] for h in light.history] != [h["train_loss"] for h in plain.history]


def test_resume_with_the_recipe_is_exact(setup, tmp_path) -> None:
    full = _fit(setup, tmp_path / "full", RECIPE)
    steps: list[int] = []
    first = _fit(setup, tmp_path / "cut", RECIPE, on_step=lambda d, t: steps.append(d),
                 should_stop=lambda: len(steps) >= 5)
    assert first.interrupted and first.global_step == 5
    second = _fit(setup, tmp_path / "cut", RECIPE)
    assert second.resumed_from_step == 5
    _same_run(full, second)


def _recipe_hpo(project, **extra) -> Path:
    raw = yaml.safe_load(project.hpo.read_text())
    raw["search_space"].update(extra.pop("space", {}))
    raw.update(extra)
    project.hpo.write_text(yaml.safe_dump(raw))
    return project.hpo


def test_max_length_is_searched_and_each_trial_trains_on_its_windows(project) -> None:
    _recipe_hpo(project, max_trials=2,
                space={"max_length": {"type": "choice", "choices": [48, 64]}},
                enqueue_trials=[{"max_length": 48}, {"max_length": 64}])
    seen: dict[int, int] = {}

    def fit(**kw):
        seen[int(kw["params"]["max_length"])] = max(len(w) for w in kw["train_windows"])
        return FitResult(best_f1=0.5)

    cfg = load_configs(project.config_dir, project.hpo)
    out = run_sweep(cfg, output_dir=project.output_dir, fit=fit)
    assert [t.params["max_length"] for t in out.study.trials] == [48, 64]
    assert seen[48] <= 48 < seen[64] <= 64


def test_enqueued_trials_come_first_once(project, caplog) -> None:
    import logging

    _recipe_hpo(project, max_trials=2, enqueue_trials=[{"learning_rate": 1.5e-3}])
    cfg = load_configs(project.config_dir, project.hpo)
    seen: list[float] = []

    def fit(**kw):
        seen.append(kw["params"]["learning_rate"])
        return FitResult(best_f1=0.5)

    with caplog.at_level(logging.INFO):
        run_sweep(cfg, output_dir=project.output_dir, fit=fit)
    assert seen[0] == pytest.approx(1.5e-3) and seen[1] != pytest.approx(1.5e-3)
    assert "Queued 1 first trial(s) from enqueue_trials" in caplog.text
    import dataclasses

    more = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=3))
    run_sweep(more, output_dir=project.output_dir, fit=fit)
    assert len(seen) == 3 and seen[2] != pytest.approx(1.5e-3)  # not queued again


@pytest.mark.parametrize("space,queued,match", [
    ({"head_lr_ratio": 0}, None, r"search_space.head_lr_ratio.* out of range"),
    ({"empty_window_keep": {"type": "uniform", "low": 0.1, "high": 1.5}}, None,
     r"empty_window_keep.*out of range"),
    ({"o_weight": {"type": "uniform", "low": 0.1, "high": 0.5}}, [{"o_weight": 0.9}],
     r"enqueue_trials\[0\].o_weight.* outside the range"),
    ({}, [{"epochs": 4}], r"enqueue_trials\[0\].epochs.* not a searched parameter"),
    ({"max_length": {"type": "choice", "choices": [128, 256.5]}}, None,
     r"max_length.*whole number"),
    ({}, "lr", r"enqueue_trials.*must be a list of mappings"),
])
def test_recipe_keys_are_checked_with_the_others(space, queued, match) -> None:
    raw = {**TINY_HPO, "search_space": {**TINY_HPO["search_space"], **space}}
    if queued is not None:
        raw["enqueue_trials"] = queued
    with pytest.raises(ConfigError, match=match):
        load_hpo_config(raw)


def test_a_searched_window_too_short_for_the_stride_is_refused_at_load(project) -> None:
    _recipe_hpo(project, space={"max_length": {"type": "choice", "choices": [24, 64]}})
    with pytest.raises(ConfigError, match=r"search_space.max_length.*24.*stride 16"):
        load_configs(project.config_dir, project.hpo)


def test_shipped_presets_load() -> None:
    for name in ("smoke", "prod", "resumes"):
        path = REPO / "config" / "hpo" / f"{name}.yaml"
        if path.exists():
            load_configs(REPO / "config", path)
