from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hpo_helpers.data.dataset import load_dataset
from hpo_helpers.settings.config import load_data_config, load_train_config
from hpo_helpers.storage.checkpoints import MARKER, latest_checkpoint, resume_checkpoint
from hpo_helpers.training.backbones import load_backbone
from hpo_helpers.training.encoding import encode_documents
from hpo_helpers.training.train import fit

from .conftest import REPO, compact_dataset

PARAMS = {"learning_rate": 2e-3, "batch_size": 4, "dropout": 0.1, "weight_decay": 0.01,
          "warmup_ratio": 0.1, "epochs": 3}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    data_cfg = load_data_config({**_demo_data(), "max_train_documents": 12,
                                 "max_eval_documents": 5})
    ds = load_dataset(compact_dataset(tmp / "data"), data_cfg)
    train_cfg = load_train_config({"max_length": 64, "stride": 16, "torch_threads": 1})
    bb = load_backbone("tiny", REPO / "config", texts=[" ".join(d.words) for d in ds.train],
                       cache_dir=tmp / "tok")
    l2i = {lab: i for i, lab in enumerate(ds.labels)}
    tw = encode_documents(ds.train, bb.tokenizer, l2i, max_length=64, stride=16)
    ew = encode_documents(ds.validation, bb.tokenizer, l2i, max_length=64, stride=16)
    return {"ds": ds, "cfg": train_cfg, "bb": bb, "tw": tw, "ew": ew}


def _demo_data() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "data" / "demo.yaml").read_text())


def _fit(setup, ckpt: Path, **kw):
    return fit(backbone=setup["bb"], labels=setup["ds"].labels, train_windows=setup["tw"],
               eval_docs=setup["ds"].validation, eval_windows=setup["ew"], params=PARAMS,
               cfg=setup["cfg"], seed=11, checkpoint_dir=ckpt, **kw)


@pytest.fixture(scope="module")
def uninterrupted(setup, tmp_path_factory):
    return _fit(setup, tmp_path_factory.mktemp("full"))


def _same_run(a, b) -> None:
    assert [h["f1"] for h in a.history] == [h["f1"] for h in b.history]
    assert [h["train_loss"] for h in a.history] == pytest.approx(
        [h["train_loss"] for h in b.history], rel=1e-6, abs=1e-7)
    assert a.best_f1 == b.best_f1
    assert a.global_step == b.global_step


def test_resume_from_epoch_checkpoint_gives_the_same_final_metric(setup, uninterrupted,
                                                                  tmp_path) -> None:
    epochs_seen: list[int] = []
    first = _fit(setup, tmp_path, on_epoch=lambda e, m: epochs_seen.append(e),
                 should_stop=lambda: len(epochs_seen) >= 1)
    assert first.interrupted and len(first.history) == 1
    assert latest_checkpoint(tmp_path).name == f"checkpoint-{first.global_step}"
    replayed: list[int] = []
    second = _fit(setup, tmp_path, on_epoch=lambda e, m: replayed.append(e))
    assert second.resumed_from_epoch == 1
    assert replayed == [0, 1, 2]  # restored epoch replayed (for pruning), then 1 and 2 trained
    assert second.steps_this_session == uninterrupted.global_step - first.global_step
    _same_run(uninterrupted, second)


def test_resume_from_mid_epoch_stop_gives_the_same_final_metric(setup, uninterrupted,
                                                                tmp_path) -> None:
    steps: list[int] = []
    first = _fit(setup, tmp_path, on_step=lambda d, t: steps.append(d),
                 should_stop=lambda: len(steps) >= 5)
    assert first.interrupted and first.global_step == 5
    second = _fit(setup, tmp_path)
    assert second.resumed_from_step == 5
    _same_run(uninterrupted, second)


def test_incomplete_checkpoint_is_set_aside_and_previous_used(setup, tmp_path) -> None:
    epochs_seen: list[int] = []
    first = _fit(setup, tmp_path, on_epoch=lambda e, m: epochs_seen.append(e),
                 should_stop=lambda: len(epochs_seen) >= 1)
    good = latest_checkpoint(tmp_path)
    # A later checkpoint whose write was cut off before its marker.
    broken = tmp_path / f"checkpoint-{first.global_step + 3}"
    shutil.copytree(good, broken)
    (broken / MARKER).unlink()
    assert latest_checkpoint(tmp_path) == good and broken.exists()  # a getter moves nothing
    assert resume_checkpoint(tmp_path) == good  # the explicit step sets it aside
    assert not broken.exists()
    assert any(p.name.startswith(f"{tmp_path.name}-{broken.name}.incomplete-")
               for p in tmp_path.parent.iterdir())


def test_checkpoint_of_other_params_is_refused_and_kept(setup, tmp_path) -> None:
    from hpo_helpers import CheckpointError

    epochs_seen: list[int] = []
    _fit(setup, tmp_path, on_epoch=lambda e, m: epochs_seen.append(e),
         should_stop=lambda: len(epochs_seen) >= 1)
    other = {**PARAMS, "learning_rate": 1e-4}
    with pytest.raises(CheckpointError, match="was written for params"):
        fit(backbone=setup["bb"], labels=setup["ds"].labels, train_windows=setup["tw"],
            eval_docs=setup["ds"].validation, eval_windows=setup["ew"], params=other,
            cfg=setup["cfg"], seed=11, checkpoint_dir=tmp_path)
    assert any(".mismatch-" in p.name for p in tmp_path.parent.iterdir())


@pytest.mark.parametrize("name", ["tiny", "minilm"])
def test_dropout_param_reaches_the_model(setup, name) -> None:
    import torch

    bb = setup["bb"] if name == "tiny" else load_backbone("minilm", REPO / "config")
    model = bb.build_model(setup["ds"].labels, dropout=0.27, seed=0)
    ps = [m.p for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert ps.count(0.27) >= 3, ps  # embeddings, every layer's hidden output, the classifier
    assert model.dropout.p == 0.27


# ----------------------------------------------------------------------------------------------
# Device policy, fp16 with a gradient scaler, compile fallback, out of memory (issue 13)


def _cfg(setup, **kw):
    import dataclasses

    return dataclasses.replace(setup["cfg"], **kw)


def _fit_cfg(setup, ckpt, cfg, params=PARAMS, **kw):
    return fit(backbone=setup["bb"], labels=setup["ds"].labels, train_windows=setup["tw"],
               eval_docs=setup["ds"].validation, eval_windows=setup["ew"], params=params,
               cfg=cfg, seed=11, checkpoint_dir=ckpt, **kw)


def _spy_models(monkeypatch, bb, *, oom_above: int | None = None, oom_in_eval: bool = False):
    """Wrap ``bb.build_model``: record each model's linear output dtypes and, optionally,
    raise torch's out-of-memory error for training batches of more than ``oom_above`` rows
    (or in evaluation), as a GPU would."""
    import weakref

    import torch

    built = {"dtypes": set(), "models": [], "rows": []}
    real_build = bb.build_model

    def build(labels, *, dropout, seed):
        model = real_build(labels, dropout=dropout, seed=seed)
        built["models"].append(weakref.ref(model))
        linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
        linear.register_forward_hook(lambda m, i, out: built["dtypes"].add(out.dtype))
        real_forward = model.forward

        def forward(*args, **kwargs):
            rows = kwargs["input_ids"].shape[0]
            if model.training:
                built["rows"].append(rows)
            if (oom_above is not None and model.training and rows > oom_above) or (
                    oom_in_eval and not model.training):
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB "
                                             "(injected)")
            return real_forward(*args, **kwargs)

        model.forward = forward
        return model

    monkeypatch.setattr(bb, "build_model", build)
    return built


@pytest.mark.parametrize("native,dtype", [(True, "bfloat16"), (False, "float32")])
def test_chosen_policy_is_the_one_fit_uses(setup, monkeypatch, native, dtype) -> None:
    import torch

    import hpo_helpers.training.device as device

    monkeypatch.setattr(device, "_cpu_has_bf16", lambda: native)
    built = _spy_models(monkeypatch, setup["bb"])
    cfg = _cfg(setup, precision="auto")
    res = _fit_cfg(setup, None, cfg, params={**PARAMS, "epochs": 1})
    assert res.policy == device.policy_for(cfg)
    assert res.policy.precision == ("bf16" if native else "fp32")
    assert built["dtypes"] == {getattr(torch, dtype)}


@pytest.fixture(scope="module")
def fp16_uninterrupted(setup, tmp_path_factory):
    import dataclasses

    cfg = dataclasses.replace(setup["cfg"], precision="fp16")
    return _fit_cfg(setup, tmp_path_factory.mktemp("fp16"), cfg)


def test_fp16_trains_with_a_scaler_and_resumes_exactly(setup, fp16_uninterrupted, tmp_path,
                                                       monkeypatch) -> None:
    import torch

    from hpo_helpers.storage.checkpoints import TRAINING_FILE

    built = _spy_models(monkeypatch, setup["bb"])
    cfg = _cfg(setup, precision="fp16")
    steps: list[int] = []
    first = _fit_cfg(setup, tmp_path, cfg, on_step=lambda d, t: steps.append(d),
                     should_stop=lambda: len(steps) >= 7)
    assert first.interrupted and first.policy.grad_scaler
    assert built["dtypes"] == {torch.float16}
    training = torch.load(latest_checkpoint(tmp_path) / TRAINING_FILE, weights_only=True)
    assert training["scaler"]["scale"] > 0 and "_growth_tracker" in training["scaler"]
    second = _fit_cfg(setup, tmp_path, cfg)
    assert second.resumed_from_step == 7
    _same_run(fp16_uninterrupted, second)
    assert fp16_uninterrupted.best_f1 >= 0


def test_checkpoint_from_main_without_scaler_state_resumes(setup, uninterrupted, tmp_path,
                                                          caplog) -> None:
    """Checkpoints of the previous version (no scaler, precision or micro-batch keys) load."""
    import json
    import logging

    import torch

    from hpo_helpers.storage.checkpoints import STATE_FILE, TRAINING_FILE

    steps: list[int] = []
    _fit(setup, tmp_path, on_step=lambda d, t: steps.append(d),
         should_stop=lambda: len(steps) >= 5)
    ckpt = latest_checkpoint(tmp_path)
    state = json.loads((ckpt / STATE_FILE).read_text())
    for key in ("precision", "micro_batch_size"):
        del state[key]
    (ckpt / STATE_FILE).write_text(json.dumps(state))
    training = torch.load(ckpt / TRAINING_FILE, weights_only=True)
    assert set(training) == {"optimizer", "scheduler", "rng"}  # as main writes it
    _same_run(uninterrupted, _fit(setup, tmp_path))
    # The fp16 path resumes from such a checkpoint too, with a fresh scale (said once).
    steps.clear()
    other = tmp_path / "fp16"
    _fit(setup, other, on_step=lambda d, t: steps.append(d), should_stop=lambda: len(steps) >= 5)
    with caplog.at_level(logging.WARNING):
        res = _fit_cfg(setup, other, _cfg(setup, precision="fp16"))
    assert res.resumed_from_step == 5 and not res.interrupted and len(res.history) == 3
    assert "has no gradient-scaler state" in caplog.text


def test_compile_failure_falls_back_to_eager_once_and_the_trial_completes(
        setup, uninterrupted, tmp_path, monkeypatch, caplog) -> None:
    import logging

    import torch

    import hpo_helpers.training.train as train

    real_compile = torch.compile

    def broken_backend(gm, example_inputs):
        raise RuntimeError("forced compiler failure")

    monkeypatch.setattr(train, "_compile_broken", False)
    monkeypatch.setattr(torch, "compile",
                        lambda model, **kw: real_compile(model, backend=broken_backend, **kw))
    with caplog.at_level(logging.WARNING):
        res = _fit_cfg(setup, tmp_path / "a", _cfg(setup, compile=True))
        again = _fit_cfg(setup, tmp_path / "b", _cfg(setup, compile=True))
    assert res.policy.compile and not res.interrupted
    _same_run(uninterrupted, res)  # the failed step was redone eagerly, RNG as it was
    _same_run(uninterrupted, again)
    assert caplog.text.count("torch.compile failed") == 1
    assert "forced compiler failure" in caplog.text


def test_compile_that_raises_at_once_falls_back(setup, tmp_path, monkeypatch) -> None:
    import torch

    import hpo_helpers.training.train as train

    def no_compiler(model, **kw):
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(train, "_compile_broken", False)
    monkeypatch.setattr(torch, "compile", no_compiler)
    res = _fit_cfg(setup, None, _cfg(setup, compile=True), params={**PARAMS, "epochs": 1})
    assert len(res.history) == 1 and train._compile_broken


def test_out_of_memory_ends_the_fit_with_the_batch_size_and_frees_the_model(
        setup, tmp_path, monkeypatch) -> None:
    import gc

    from hpo_helpers.core.errors import TrialOutOfMemoryError

    built = _spy_models(monkeypatch, setup["bb"], oom_above=2)
    with pytest.raises(TrialOutOfMemoryError, match=r"out of memory in train at batch size 4 "
                                                    r"on CPU.*Fix: lower the batch_size.*"
                                                    r"oom_retry: true") as info:
        _fit(setup, tmp_path)
    assert info.value.batch_size == 4
    gc.collect()
    assert [ref() for ref in built["models"]] == [None]


def test_out_of_memory_in_evaluation_names_eval_batch_size(setup, monkeypatch) -> None:
    from hpo_helpers.core.errors import TrialOutOfMemoryError

    _spy_models(monkeypatch, setup["bb"], oom_in_eval=True)
    with pytest.raises(TrialOutOfMemoryError, match=r"in evaluation at eval_batch_size 32"):
        _fit_cfg(setup, None, _cfg(setup, oom_retry=True))


def test_oom_retry_halves_the_batch_with_accumulation(setup, tmp_path, monkeypatch) -> None:
    built = _spy_models(monkeypatch, setup["bb"], oom_above=2)
    epochs: list[int] = []
    res = _fit_cfg(setup, tmp_path, _cfg(setup, oom_retry=True),
                   on_epoch=lambda e, m: epochs.append(e))
    assert res.micro_batch_size == 2 and len(res.history) == 3 and not res.interrupted
    assert max(built["rows"][1:]) <= 2 and epochs == [0, 1, 2]
    # A resumed trial keeps the split batch instead of running out of memory again.
    steps: list[int] = []
    other = tmp_path / "resume"
    _fit_cfg(setup, other, _cfg(setup, oom_retry=True), on_step=lambda d, t: steps.append(d),
             should_stop=lambda: len(steps) >= 3)
    built["rows"].clear()
    again = _fit_cfg(setup, other, _cfg(setup, oom_retry=True))
    assert again.resumed_from_step == 3 and max(built["rows"]) <= 2


# ----------------------------------------------------------------------------------------------
# Out of memory inside a sweep: FAIL with oom=True, not a failure toward max_failed_trials


def _oom_backbones(monkeypatch, oom_builds: set[int]):
    """Make the models of the given (0-based) fit calls of a sweep run out of memory."""
    import torch

    import hpo_helpers.sweep.plan as sweep_mod

    real_load = sweep_mod.load_backbone
    count = [0]

    def load(*args, **kwargs):
        bb = real_load(*args, **kwargs)
        real_build = bb.build_model

        def build(labels, *, dropout, seed):
            model = real_build(labels, dropout=dropout, seed=seed)
            n, count[0] = count[0], count[0] + 1
            if n in oom_builds:
                def forward(*a, **kw):
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 "
                                                 "GiB (injected)")
                model.forward = forward
            return model

        bb.build_model = build
        return bb

    monkeypatch.setattr(sweep_mod, "load_backbone", load)


def test_oom_trial_fails_with_oom_and_the_sweep_goes_on(project, monkeypatch, capsys) -> None:
    import optuna
    from optuna.trial import TrialState

    from hpo_helpers import load_configs, run_local_hpo_sweep, study_status
    from hpo_helpers.frontends.cli import main

    _oom_backbones(monkeypatch, {0})
    project.write_hpo(max_trials=2, max_failed_trials=1)  # an OOM is not one of those
    study = run_local_hpo_sweep(None, project.config_dir, None, project.hpo, None,
                                project.output_dir)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE,
                                         TrialState.COMPLETE]
    bad = trials[0]
    assert bad.user_attrs["oom"] is True
    assert f"batch size {bad.params['batch_size']}" in bad.user_attrs["error"]
    assert not any("oom" in t.user_attrs for t in trials[1:])
    info = study_status(load_configs(project.config_dir, project.hpo),
                        output_dir=project.output_dir)
    assert info["n_oom"] == 1 and info["n_failed"] == 1 and info["n_complete"] == 2
    assert main(["status", "--config", str(project.hpo), "--output-dir",
                 str(project.output_dir)]) == 0
    assert "out of memory 1" in capsys.readouterr().out
    assert optuna.load_study(study_name="hpo_tiny", storage=study._storage).best_trial


def test_five_oom_trials_in_a_row_stop_the_sweep_with_advice(project, monkeypatch) -> None:
    from optuna.trial import TrialState

    from hpo_helpers import SweepFailedError, run_local_hpo_sweep

    _oom_backbones(monkeypatch, set(range(100)))
    project.write_hpo(max_trials=3, max_failed_trials=1)
    with pytest.raises(SweepFailedError, match=r"5 trials in a row ran out of memory .*batch "
                                               r"size .*Fix: lower the batch_size choices.*"
                                               r"oom_retry: true"):
        run_local_hpo_sweep(None, project.config_dir, None, project.hpo, None,
                            project.output_dir)
    import optuna

    study = optuna.load_study(study_name="hpo_tiny",
                              storage=f"sqlite:///{project.output_dir / 'tiny' / 'study.db'}")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert len(failed) == 5 and all(t.user_attrs["oom"] for t in failed)


def _stopping_after(n: int) -> dict:
    done: list[int] = []
    return {"on_epoch": lambda e, m: done.append(e), "should_stop": lambda: len(done) >= n}


def test_an_exploit_copy_continues_another_trials_state_with_its_own_rates(
        setup, uninterrupted, tmp_path) -> None:
    """scheduler pbt: a trial started from a copy of another trial's checkpoint (epoch 1)
    continues its weights, optimizer moments, position, history and random state (with the
    same params: exactly the uninterrupted run), while with explored params its optimizer takes
    their learning rate and weight decay, exactly as a trial built with them."""
    import torch

    from hpo_helpers.storage.checkpoints import TRAINING_FILE, seed_checkpoint

    src = _fit(setup, tmp_path / "src", **_stopping_after(1))
    assert src.interrupted and len(src.history) == 1
    seed_checkpoint(tmp_path / "src", tmp_path / "same", dict(PARAMS), {"trial": 0, "epoch": 1})
    assert latest_checkpoint(tmp_path / "src") is not None, "the source is only read"
    _same_run(_fit(setup, tmp_path / "same"), uninterrupted)

    explored = dict(PARAMS, learning_rate=1e-3, weight_decay=0.05, dropout=0.2)
    seed_checkpoint(tmp_path / "src", tmp_path / "dst", explored, {"trial": 0, "epoch": 1})
    kw = dict(backbone=setup["bb"], labels=setup["ds"].labels, train_windows=setup["tw"],
              eval_docs=setup["ds"].validation, eval_windows=setup["ew"], params=explored,
              cfg=setup["cfg"], seed=11)
    seeded = fit(checkpoint_dir=tmp_path / "dst", **kw, **_stopping_after(2))
    assert seeded.resumed_from_epoch == 1 and seeded.history[0] == src.history[0]
    control = fit(checkpoint_dir=tmp_path / "ctl", **kw, **_stopping_after(2))
    assert control.global_step == seeded.global_step  # both stopped after epoch 2 of 3

    def rates(folder: Path) -> tuple[list, list]:
        state = torch.load(latest_checkpoint(folder) / TRAINING_FILE, weights_only=True)
        return ([(g["initial_lr"], g["lr"], g["weight_decay"])
                 for g in state["optimizer"]["param_groups"]],
                state["scheduler"]["base_lrs"])

    assert rates(tmp_path / "dst") == rates(tmp_path / "ctl")
    groups, base = rates(tmp_path / "dst")
    assert all(lr > 0 for _, lr, _ in groups), "mid-schedule: a rate to compare"
    assert {round(wd, 6) for _, _, wd in groups} == {0.0, 0.05}
    assert min(base) == pytest.approx(1e-3)
