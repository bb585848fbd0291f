"""Bookkeeping at any study size: resume latency, ``status`` latency, per-trial cost.

For each size N a study with N trials is seeded in one transaction (``_seed``), then:

* baseline: plain Optuna's load + count + best (``load_study``, ``get_trials``, ``best_trial``),
  measured in this run, on this machine; every other figure is also given as a ratio to it;
* ``status``: the in-process call (median of 3) and the CLI's wall time (``status --json`` in a
  new process, imports included); notebook 03's trials table (``notebook03_table_s``, read
  column by column; compare with the baseline's full read);
* resume: the real sweep on a simulated Colab layout (snapshots to a simulated Drive, MLflow),
  training replaced by a stub, from the sweep call to the first training step. The sampler's
  own time (``ask`` and its per-parameter sampling; TPE reads every finished trial on its
  first ask) is measured apart and taken out: ``resume_s`` is our work (opening, counts, stale
  scan, best, retry choice, tracking, data loading); ``resume_open_and_reconcile_s`` is the
  part that reads the study (open, recover RUNNING trials, counts, reconcile) and
  ``resume_snapshots_s`` the whole-file copies of the databases to the durable folder
  (Colab), which grow with the file, not with how it is read;
* per-trial bookkeeping: the time between trial ends with training stubbed, without the
  sampler, and the sampler's time per trial apart.

A warm-up run at 10 trials comes first (imports and MLflow's first use are no size's cost).
The load average is printed: on a shared machine every figure moves with it. Also printed: one
checkpoint write of minilm, and each figure's share of a smoke trial (measured
here unless --smoke-trial-s is given).

    python benchmarks/bookkeeping.py --sizes 1000,10000,50000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _project import scratch_config  # noqa: E402 - a sibling module of this script
from _seed import seed_study, stub_fit  # noqa: E402


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


class _Clock:
    """SweepEvents recording when things happen."""

    def __init__(self) -> None:
        from hpo_helpers import SweepEvents

        clock = self

        class Events(SweepEvents):
            def step(self, done, total):
                clock.first_step = clock.first_step or time.perf_counter()

            def trial_finished(self, *a, **k):
                clock.finished.append(time.perf_counter())

        self.events = Events()
        self.first_step: float | None = None
        self.finished: list[float] = []


class _SamplerClock:
    """Seconds spent in the wrapped calls (outermost only), e.g. the sampler's."""

    def __init__(self) -> None:
        self.spans: list[float] = []
        self._depth = 0

    def wrap(self, fn):  # noqa: ANN001, ANN202 - any callable
        def timed(*args, **kwargs):  # noqa: ANN202
            self._depth += 1
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.spans.append((start, time.perf_counter()))
        return timed

    def within(self, a: float, b: float) -> float:
        return sum(min(e, b) - max(s, a) for s, e in self.spans if e > a and s < b)


def _baseline_s(url: str) -> tuple[float, int]:
    """Plain Optuna: load the study, count trials by state, take the best trial."""
    import collections

    import optuna

    start = time.perf_counter()
    study = optuna.load_study(study_name="hpo_tiny", storage=url)
    counts = collections.Counter(t.state.name for t in study.get_trials(deepcopy=False))
    study.best_trial  # noqa: B018 - the read is what is measured
    return time.perf_counter() - start, counts["COMPLETE"]


def _status_cli_s(work: Path, db: Path, hpo_path: Path) -> float:
    out = work / f"cli-{db.stat().st_ino}"
    (out / "tiny").mkdir(parents=True)
    shutil.copy(db, out / "tiny" / "study.db")
    import hpo_helpers

    package_root = str(Path(hpo_helpers.__file__).resolve().parents[1])  # the one measured
    env = {**os.environ, "PYTHONPATH": package_root, "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hpo_helpers", "status", "--json", "--config",
                    str(hpo_path), "--output-dir", str(out)], check=True, env=env,
                   capture_output=True, cwd=work)
    return time.perf_counter() - start


def _table_s(url: str) -> float:
    """Notebook 03's trials table of the study (a fresh storage: no warm cache)."""
    import optuna

    from hpo_helpers.results.inspection import trials_table

    study = optuna.load_study(study_name="hpo_tiny", storage=url)
    start = time.perf_counter()
    trials_table(study)
    return time.perf_counter() - start


def measure(n: int, work: Path, extra: int) -> dict:
    import hpo_helpers.sweep.session as sweep_module
    from hpo_helpers import load_configs, run_sweep
    from hpo_helpers.core.runtime import detect
    from hpo_helpers.data.dataset import load_dataset
    from hpo_helpers.study.status import status
    from hpo_helpers.study.store import fingerprint
    from hpo_helpers.tracking.setup import setup_mlflow_cross_platform

    root = work / f"vm{n}"
    (root / "content" / "drive" / "MyDrive").mkdir(parents=True)
    rt = detect({"COLAB_GPU": "1"}, root=root)
    hpo_path = _project(work, n + extra)
    cfg = load_configs(work / "config", hpo_path)
    ds = load_dataset(REPO / "dataset", cfg.data)
    db = root / "content/resume-ner/outputs/hpo/tiny/study.db"
    db.parent.mkdir(parents=True)
    url = f"sqlite:///{db}"
    seed_study(url, "hpo_tiny", n, user_attrs={"fingerprint": fingerprint(cfg.hpo,
                                                                         ds.fingerprint)})
    baseline, n_complete = _baseline_s(url)
    cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo,
                                                           max_trials=n_complete + extra))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        status(cfg, runtime=rt)
        times.append(time.perf_counter() - start)
    status_s = statistics.median(times)
    cli_s = _status_cli_s(work, db, hpo_path)
    table_s = _table_s(url)
    tracking = setup_mlflow_cross_platform("bookkeeping", runtime=rt)
    clock, sampler_clock = _Clock(), _SamplerClock()
    from hpo_helpers.study import opening

    real = opening.sampler_and_pruner

    def timed_sampler(hpo):  # noqa: ANN001, ANN202
        sampler, pruner = real(hpo)
        for name in ("infer_relative_search_space", "sample_relative", "sample_independent",
                     "before_trial", "after_trial"):
            setattr(sampler, name, sampler_clock.wrap(getattr(sampler, name)))
        return sampler, pruner

    import optuna

    study_clock = _SamplerClock()  # opening the study (recovery, counts) and reconcile
    snap_clock = _SamplerClock()  # whole-file copies of the study and MLflow databases
    with mock.patch("hpo_helpers.study.opening.sampler_and_pruner", timed_sampler), \
            mock.patch("hpo_helpers.sweep.session.open_run",
                       study_clock.wrap(sweep_module.open_run)), \
            mock.patch("hpo_helpers.sweep.session.reconcile",
                       study_clock.wrap(sweep_module.reconcile)), \
            mock.patch("hpo_helpers.sweep.session.snapshot_all",  # also after each trial
                       snap_clock.wrap(sweep_module.snapshot_all)), \
            mock.patch.object(optuna.Study, "ask", sampler_clock.wrap(optuna.Study.ask)):
        start = time.perf_counter()
        run_sweep(cfg, runtime=rt, tracking=tracking, events=clock.events, fit=stub_fit)
    first_ask = sampler_clock.within(start, clock.first_step)
    resume = clock.first_step - start - first_ask
    ends = clock.finished
    gaps = [(b - a, sampler_clock.within(a, b)) for a, b in zip(ends, ends[1:])]
    per_trial = statistics.mean(g - s for g, s in gaps) if gaps else float("nan")
    sampler_per_trial = statistics.mean(s for _, s in gaps) if gaps else float("nan")
    return {"trials_in_study": n, "baseline_load_count_best_s": round(baseline, 3),
            "resume_s": round(resume, 3), "resume_vs_baseline": round(resume / baseline, 3),
            "sampler_first_ask_s": round(first_ask, 3),
            "resume_open_and_reconcile_s": round(study_clock.within(start, clock.first_step), 3),
            "resume_snapshots_s": round(snap_clock.within(start, clock.first_step), 3),
            "snapshots_s_per_trial": round(statistics.mean(
                snap_clock.within(a, b) for a, b in zip(ends, ends[1:])), 4) if gaps else None,
            "resume_to_first_step_s": round(clock.first_step - start, 3),
            "status_s": round(status_s, 4), "status_vs_baseline": round(status_s / baseline, 4),
            "status_cli_wall_s": round(cli_s, 3),
            "notebook03_table_s": round(table_s, 3),
            "bookkeeping_s_per_trial": round(per_trial, 4),
            "sampler_s_per_trial": round(sampler_per_trial, 4)}


def _checkpoint_write_s(backbone: str) -> float:
    import torch

    from hpo_helpers.data.dataset import label_list
    from hpo_helpers.storage.checkpoints import write_checkpoint
    from hpo_helpers.training.backbones import load_backbone

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


def _growth(small: dict, large: dict) -> dict:
    """How much each figure grew from one size to the next (a ratio)."""
    return {k: round(large[k] / small[k], 2) if small[k] else None
            for k in ("resume_s", "status_s", "status_cli_wall_s", "notebook03_table_s",
                      "bookkeeping_s_per_trial", "baseline_load_count_best_s",
                      "sampler_first_ask_s")}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--extra", type=int, default=4, help="trials run per size")
    p.add_argument("--smoke-trial-s", type=float, default=None,
                   help="wall time of one smoke trial (default: measure a minilm smoke trial)")
    p.add_argument("--results", action="store_true")
    p.add_argument("--notes", default="", help="added to the RESULTS.md notes (e.g. load)")
    args = p.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="hpo-bookkeeping-"))
    try:
        load_before = os.getloadavg()[0]
        measure(10, work / "warm-up", 1)  # first-use costs (imports, MLflow) are not a size's
        rows = [measure(int(n), work, args.extra) for n in args.sizes.split(",")]
        load_after = os.getloadavg()[0]
        smoke = args.smoke_trial_s
        if smoke is None:
            smoke = _smoke_trial_s(work)
        ckpt = _checkpoint_write_s("minilm")
        for r in rows:
            r["share_of_smoke_trial"] = round(r["bookkeeping_s_per_trial"] / smoke, 4)
        last = rows[-1]
        report = {
            "per_size": rows, "smoke_trial_s": round(smoke, 2),
            "checkpoint_write_s_minilm": round(ckpt, 3),
            "growth": {f"{a['trials_in_study']}->{b['trials_in_study']}": _growth(a, b)
                       for a, b in zip(rows, rows[1:])},
            "resume_latency_s_at_largest": last["resume_s"],
            "largest": last["trials_in_study"],
            "load_average_1m_before_after": [round(load_before, 2), round(load_after, 2)],
            "cpus": os.cpu_count(),
        }
        print(json.dumps(report, sort_keys=True))
        if args.results:
            from _results import record

            record("bookkeeping", report, notes="resume_s = sweep call to the first (stubbed) "
                   "training step minus the sampler's time (sampler_first_ask_s, Optuna's TPE, "
                   "reported apart); status_s = in-process call, status_cli_wall_s = a new "
                   "process; notebook03_table_s = notebook 03's table of every trial; "
                   "*_vs_baseline = ratio to plain Optuna's load + count + best in "
                   "the same run; per trial = a sweep cycle with training stubbed (tell, stale "
                   "scan, budget count, top-k, snapshots to a simulated Drive, MLflow) without "
                   "the sampler. " + args.notes)
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
