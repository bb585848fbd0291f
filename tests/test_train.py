from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hpo_helpers.backbones import load_backbone
from hpo_helpers.checkpoints import MARKER, latest_checkpoint, resume_checkpoint
from hpo_helpers.config import load_data_config, load_train_config
from hpo_helpers.data import load_dataset
from hpo_helpers.encoding import encode_documents
from hpo_helpers.train import fit

from .conftest import REPO

PARAMS = {"learning_rate": 2e-3, "batch_size": 4, "dropout": 0.1, "weight_decay": 0.01,
          "warmup_ratio": 0.1, "epochs": 3}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    data_cfg = load_data_config({**_demo_data(), "max_train_documents": 12,
                                 "max_eval_documents": 5})
    ds = load_dataset(REPO / "dataset", data_cfg)
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
