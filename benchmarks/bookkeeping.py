"""What a trial costs besides training, at 10, 100 and 1000 finished trials; resume latency.

A study with N finished trials is made (Optuna's own API), then the real sweep runs a few more
trials with training replaced by a stub that returns at once: everything else is the product
(asking and telling, the stale-trial scan, the budget count, top-k bookkeeping, study snapshots
to the durable folder on a simulated Colab layout, MLflow tracking). Printed per N: the
bookkeeping seconds per trial and as a share of a smoke trial's wall time (measured here with
the smoke config's backbone unless --smoke-trial-s is given), plus the cost of one checkpoint
write of the smoke backbone, and the resume latency (sweep call to the first training step of
the first new trial, tiny backbone, no model download) at the largest N.

    python benchmarks/bookkeeping.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _project import scratch_config  # noqa: E402 - a sibling module of this script


def _seed_study(db: Path, n: int, fingerprint: dict) -> None:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    from hpo_helpers.snapshot import enable_wal

    enable_wal(db)
    study = optuna.create_study(study_name="hpo_tiny", storage=f"sqlite:///{db}",
                                direction="maximize")
    study.set_user_attr("fingerprint", fingerprint)
    dists = {"learning_rate": FloatDistribution(1e-3, 3e-3, log=True),
             "batch_size": CategoricalDistribution([4, 8]),
             "dropout": FloatDistribution(0.0, 0.2),
             "weight_decay": FloatDistribution(1e-4, 1e-2, log=True),
             "warmup_ratio": FloatDistribution(0.0, 0.1)}
    trials = []
    for i in range(n):
        params = {"learning_rate": 1e-3 + i * 1e-6, "batch_size": 4, "dropout": 0.1,
                  "weight_decay": 1e-3, "warmup_ratio": 0.05}
        trials.append(optuna.trial.create_trial(
            params=params, distributions=dists, value=0.5 + (i % 97) / 1000,
            intermediate_values={0: 0.4, 1: 0.5}, user_attrs={"best_epoch": 2}))
    study.add_trials(trials)


def _project(work: Path, max_trials: int) -> Path:
    import yaml

    config = scratch_config(work, "bk", docs=8, eval_docs=4)
    hpo = {"backbone": "tiny", "max_trials": max_trials, "data_config": "data/bk.yaml",
           "pruner": {"type": "none"},
           "checkpoint": {"enabled": True, "storage_path": "{backbone}/study.db"},
           "search_space": {
               "learning_rate": {"type": "loguniform", "low": 1e-3, "high": 3e-3},
               "batch_size": {"type": "choice", "choices": [4, 8]},
               "dropout": {"type": "uniform", "low": 0.0, "high": 0.2},
               "weight_decay": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
               "warmup_ratio": {"type": "uniform", "low": 0.0, "high": 0.1}, "epochs": 2}}
    path = config / "hpo" / "bk.yaml"
    path.write_text(yaml.safe_dump(hpo))
    return path


def _stub_fit(**kwargs):
    from hpo_helpers.train import FitResult

    for epoch in range(int(kwargs["params"]["epochs"])):
        if kwargs.get("on_step"):
            kwargs["on_step"](epoch + 1, 2)
        m = {"f1": 0.5, "precision": 0.5, "recall": 0.5, "per_entity": {"SKILL": 0.5},
             "train_loss": 1.0, "epoch": epoch}
        kwargs["on_epoch"](epoch, m)
    return FitResult(best_f1=0.5, history=[m], global_step=2)


class _Clock:
    """SweepEvents recording when things happen."""

    def __init__(self) -> None:
        from hpo_helpers.sweep import SweepEvents

        clock = self

        class Events(SweepEvents):
            def step(self, done, total):
                clock.first_step = clock.first_step or time.perf_counter()

            def trial_finished(self, *a, **k):
                clock.finished.append(time.perf_counter())

        self.events = Events()
        self.first_step: float | None = None
        self.finished: list[float] = []


def measure(n: int, work: Path, extra: int) -> dict:
    from hpo_helpers import load_configs, run_sweep
    from hpo_helpers.data import load_dataset
    from hpo_helpers.mlflow_setup import setup_mlflow_cross_platform
    from hpo_helpers.runtime import detect
    from hpo_helpers.study import fingerprint

    root = work / f"vm{n}"
    (root / "content" / "drive" / "MyDrive").mkdir(parents=True)
    rt = detect({"COLAB_GPU": "1"}, root=root)
    hpo_path = _project(work, n + extra)
    cfg = load_configs(work / "config", hpo_path)
    ds = load_dataset(REPO / "dataset", cfg.data)
    db = root / "content/resume-ner/outputs/hpo/tiny/study.db"
    db.parent.mkdir(parents=True)
    _seed_study(db, n, fingerprint(cfg.hpo, ds.fingerprint))
    tracking = setup_mlflow_cross_platform("bookkeeping", runtime=rt)
    clock = _Clock()
    with mock.patch("hpo_helpers.sweep.fit", _stub_fit):
        start = time.perf_counter()
        run_sweep(cfg, runtime=rt, tracking=tracking, events=clock.events)
    gaps = [b - a for a, b in zip(clock.finished, clock.finished[1:])]
    return {"trials_in_study": n, "bookkeeping_s_per_trial": round(sum(gaps) / len(gaps), 4),
            "resume_to_first_step_s": round(clock.first_step - start, 3)}


def _resume_latency_real(work: Path, n: int) -> float:
    """Sweep call to the first real training step (tiny backbone) with n finished trials."""
    from hpo_helpers import load_configs, run_sweep
    from hpo_helpers.data import load_dataset
    from hpo_helpers.study import fingerprint

    hpo_path = _project(work, n + 1)
    cfg = load_configs(work / "config", hpo_path)
    ds = load_dataset(REPO / "dataset", cfg.data)
    out = work / "latency"
    (out / "tiny").mkdir(parents=True)
    _seed_study(out / "tiny" / "study.db", n, fingerprint(cfg.hpo, ds.fingerprint))
    clock = _Clock()
    start = time.perf_counter()
    run_sweep(cfg, output_dir=out, events=clock.events)
    return clock.first_step - start


def _checkpoint_write_s(backbone: str) -> float:
    import torch

    from hpo_helpers.backbones import load_backbone
    from hpo_helpers.checkpoints import write_checkpoint
    from hpo_helpers.data import label_list

    bb = load_backbone(backbone, REPO / "config", texts=["a b c"],
                       cache_dir=Path(tempfile.mkdtemp()))
    model = bb.build_model(label_list(["A", "B"]), dropout=0.1, seed=0)
    opt = torch.optim.AdamW(model.parameters())
    model(input_ids=torch.ones((1, 8), dtype=torch.long),
          labels=torch.zeros((1, 8), dtype=torch.long)).loss.backward()
    opt.step()
    d = Path(tempfile.mkdtemp())
    start = time.perf_counter()
    write_checkpoint(d, 1, model_state=model.state_dict(),
                     training_state={"optimizer": opt.state_dict()}, state={"epoch": 1})
    took = time.perf_counter() - start
    shutil.rmtree(d)
    return took


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,100,1000")
    p.add_argument("--extra", type=int, default=4, help="trials run per size")
    p.add_argument("--smoke-trial-s", type=float, default=None,
                   help="wall time of one smoke trial (default: measure a minilm smoke trial)")
    p.add_argument("--results", action="store_true")
    args = p.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="hpo-bookkeeping-"))
    try:
        rows = [measure(int(n), work, args.extra) for n in args.sizes.split(",")]
        largest = max(int(n) for n in args.sizes.split(","))
        smoke = args.smoke_trial_s
        if smoke is None:
            smoke = _smoke_trial_s(work)
        ckpt = _checkpoint_write_s("minilm")
        for r in rows:
            r["share_of_smoke_trial"] = round(r["bookkeeping_s_per_trial"] / smoke, 4)
        growth = rows[-1]["bookkeeping_s_per_trial"] / rows[0]["bookkeeping_s_per_trial"]
        report = {
            "per_size": rows, "smoke_trial_s": round(smoke, 2),
            "checkpoint_write_s_minilm": round(ckpt, 3),
            "growth_first_to_last_size": round(growth, 2),
            "resume_latency_s_at_largest": round(_resume_latency_real(work, largest), 3),
            "largest": largest,
        }
        print(json.dumps(report, sort_keys=True))
        if args.results:
            from _results import record

            record("bookkeeping", report, notes="bookkeeping = a full sweep cycle with "
                   "training stubbed (ask/tell, stale scan, budget count, top-k, snapshots to "
                   "a simulated Drive, MLflow); the checkpoint write is per checkpoint")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _smoke_trial_s(work: Path) -> float:
    """Wall time of one trial of the README smoke sweep (minilm, demo data)."""
    from hpo_helpers import load_configs, run_sweep

    cfg = load_configs(REPO / "config", REPO / "config" / "hpo" / "smoke.yaml")
    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=1))
    clock = _Clock()
    start = time.perf_counter()
    run_sweep(cfg, output_dir=work / "smoke", events=clock.events)
    return clock.finished[0] - start


if __name__ == "__main__":
    sys.exit(main())
