"""Search efficiency: what each search method buys with the same budget of training epochs.

Runs, in this process and one after the other, the same sweep (same data, backbone, search
space and top ``--epochs``) with each method and each seed, and stops every run once it has
trained ``--budget`` epochs in all (an epoch is counted when it is evaluated; a continuation
from a checkpoint does not count the epochs it skips):

- ``random``: random search, no pruning, every trial trains ``--epochs``;
- ``tpe_median``: TPE and the median pruner (today's default, ``scheduler.type: tpe_median``);
- ``tpe_hyperband_pruner``: TPE and Optuna's ``HyperbandPruner`` (a stopped trial is lost);
- ``hyperband_continue``: TPE and our scheduler (``scheduler.type: hyperband``: a stopped
  trial waits with its checkpoint and a promotion continues it);
- ``pbt``: our population-based training (``scheduler.type: pbt``): ``--budget / --epochs``
  members drawn by TPE train ``--epochs`` each; every ``--pbt-interval`` epochs the worst
  quarter takes a best member's checkpoint and perturbs its learning rate, dropout and weight
  decay.

It prints, per method, the best validation F1 reached at 25%, 50% and 100% of the budget
(median over seeds, and the spread: max - min at 100%), the budget fraction at which it first
reached ``tpe_median``'s final best of the same seed (median over the seeds that did; null when
fewer than half did), the test F1 of the best trial's kept model, and wall time; ``--figure``
draws the anytime curves (median best validation F1 against epochs). The verdict compares the
better of our two methods (``hyperband_continue``, ``pbt``) with ``tpe_median``.

    python benchmarks/search_efficiency.py          # tiny, 3 seeds, 162 epochs (6 full trials)
    python benchmarks/search_efficiency.py --seeds 1 --budget 6 --epochs 3 --docs 8   # quick
    python benchmarks/search_efficiency.py --results --figure benchmarks/search_efficiency.png

The realistic bundled demo data, capped (``--docs`` training, ``--eval-docs`` validation and
test resumes), on CPU with the ``tiny`` backbone by default; ``--backbone minilm`` and a GPU
take the same script.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _project import scratch_config  # noqa: E402

METHODS = ("random", "tpe_median", "tpe_hyperband_pruner", "hyperband_continue", "pbt")
OURS = ("hyperband_continue", "pbt")
FRACTIONS = ("0.25", "0.5", "1.0")


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--budget", type=int, default=162, help="training epochs per run")
    ap.add_argument("--epochs", type=int, default=27, help="a full trial's epochs (top rung)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--docs", type=int, default=48, help="training resumes")
    ap.add_argument("--eval-docs", type=int, default=16, help="validation and test resumes")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--pbt-interval", type=int, default=3, help="pbt: epochs per generation")
    ap.add_argument("--figure", default=None, help="write the anytime figure (PNG) here")
    ap.add_argument("--results", action="store_true", help="record in RESULTS.md")
    return ap.parse_args(argv)


def _hpo(method: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    space = {
        "learning_rate": {"type": "loguniform", "low": 3e-4, "high": 1e-2},
        "batch_size": {"type": "choice", "choices": [4, 8, 16]},
        "dropout": {"type": "uniform", "low": 0.0, "high": 0.3},
        "weight_decay": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
        "warmup_ratio": {"type": "uniform", "low": 0.0, "high": 0.2},
        "head_lr_ratio": {"type": "loguniform", "low": 1.0, "high": 30.0},
        "epochs": args.epochs,
    }
    raw: dict[str, Any] = {
        "backbone": args.backbone, "max_trials": 10_000, "train_config": "train.yaml",
        "data_config": "data/search.yaml", "keep_top_k": 1,
        "sampler": {"type": "random" if method == "random" else "tpe", "seed": seed,
                    "n_startup_trials": 3},
        "pruner": {"type": {"random": "none", "tpe_median": "median",
                            "tpe_hyperband_pruner": "hyperband"}.get(method, "none"),
                   "n_startup_trials": 2, "n_warmup_steps": 1},
        "checkpoint": {"enabled": True, "storage_path": "{backbone}/study.db"},
        "search_space": space,
    }
    if method == "hyperband_continue":
        raw["scheduler"] = {"type": "hyperband", "min_epochs": 1, "reduction_factor": 3}
    if method == "pbt":  # the population spends the budget exactly
        raw["max_trials"] = max(2, args.budget // args.epochs)
        raw["scheduler"] = {"type": "pbt", "quantile": 0.25,
                            "interval": max(1, min(args.pbt_interval, args.epochs - 1))}
    return raw


class _Budget:
    """Counts evaluated epochs across a run, stops it at the budget and keeps the curve."""

    def __init__(self, budget: int, stop: Any) -> None:
        self.budget, self.stop = budget, stop
        self.curve: list[tuple[int, float]] = []  # (epochs consumed, validation F1)

    def __call__(self, real: Any) -> Any:
        def evaluate(*a: Any, **kw: Any) -> dict[str, Any]:
            metrics = real(*a, **kw)
            if len(self.curve) < self.budget:
                self.curve.append((len(self.curve) + 1, float(metrics["f1"])))
                if len(self.curve) >= self.budget:
                    self.stop.request("the epoch budget")
            return metrics
        return evaluate

    def best_at(self, epochs: float) -> float:
        seen = [f for e, f in self.curve if e <= epochs]
        return max(seen) if seen else 0.0

    def first_reaching(self, target: float) -> float | None:
        return next((e / self.budget for e, f in self.curve if f >= target), None)


def run_one(method: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """One sweep of ``method`` with ``seed`` until the epoch budget is spent."""
    from hpo_helpers import load_configs, run_sweep
    from hpo_helpers.core.stopping import StopRequest
    from hpo_helpers.results.evaluate import evaluate_study
    from hpo_helpers.study.queries import trial_summaries
    from hpo_helpers.training import train

    config = scratch_config(work, "search", docs=args.docs, eval_docs=args.eval_docs)
    tr = yaml.safe_load((config / "train.yaml").read_text())
    tr.update(max_length=128, stride=32, torch_threads=None, seed=seed)
    (config / "train.yaml").write_text(yaml.safe_dump(tr))
    hpo = config / "hpo" / f"{method}-{seed}.yaml"
    hpo.write_text(yaml.safe_dump(_hpo(method, seed, args)))
    cfg = load_configs(config, hpo)
    out = work / f"{method}-{seed}"
    stop = StopRequest()
    budget = _Budget(args.budget, stop)
    real = train.evaluate
    train.evaluate = budget(real)  # type: ignore[assignment]
    t0 = time.monotonic()
    try:
        outcome = run_sweep(cfg, output_dir=out, stop=stop)
    finally:
        train.evaluate = real  # type: ignore[assignment]
    wall = time.monotonic() - t0
    scores, best = evaluate_study(cfg, output_dir=out)
    test = scores.get(best, {}).get("f1") if best is not None else None
    trials = outcome.study.get_trials()
    # training epochs from the study (each trial's epochs beyond where it continued): the
    # test scoring of the kept models after a sweep that completes is not training
    trained = sum(s.epochs_trained for s in trial_summaries(outcome.study))
    return {"curve": budget.curve, "wall_s": round(wall, 1), "test_f1_of_best": test,
            "epochs_trained": trained,
            "trials": len(trials), "best_trial": best,
            "best_val_f1": budget.best_at(args.budget), "budget": budget}


def _median(xs: list[float]) -> float | None:
    return round(statistics.median(xs), 4) if xs else None


def summarise(runs: dict[str, list[dict[str, Any]]], budget: int) -> dict[str, Any]:
    """The DECISIONS format: medians over seeds per method."""
    base = {i: r["best_val_f1"] for i, r in enumerate(runs.get("tpe_median", []))}
    methods: dict[str, Any] = {}
    for method, rs in runs.items():
        at = {f: _median([r["budget"].best_at(float(f) * budget) for r in rs]) for f in FRACTIONS}
        finals = [r["budget"].best_at(budget) for r in rs]
        reach = [r["budget"].first_reaching(base[i]) for i, r in enumerate(rs) if i in base]
        reached = [x for x in reach if x is not None]
        methods[method] = {
            "best_val_f1_at": at,
            "spread_at_1.0": round(max(finals) - min(finals), 4) if finals else None,
            "fraction_to_reach_tpe_median_best": _median(reached)
            if reach and 2 * len(reached) >= len(reach) else None,
            "test_f1_of_best": _median([r["test_f1_of_best"] for r in rs
                                        if r["test_f1_of_best"] is not None]),
            "wall_s": _median([r["wall_s"] for r in rs]),
            "trials": _median([r["trials"] for r in rs]),
            "epochs_trained": max(r["epochs_trained"] for r in rs),
        }
    return methods


def verdict(methods: dict[str, Any], seeds: int) -> str:
    """Whether our better method beats today's default by more than the seed spread and
    reaches its final best with half the epochs (the issue's bar)."""
    base = methods.get("tpe_median")
    ran = {m: methods[m] for m in OURS if m in methods}
    if not ran or not base:
        return "not compared (tpe_median and one of hyperband_continue, pbt needed)"
    if seeds < 3:
        return f"not judged: {seeds} seed(s) give no spread (3 or more needed)"
    name = max(ran, key=lambda m: ran[m]["best_val_f1_at"]["1.0"] or 0)
    ours = ran[name]
    gain = (ours["best_val_f1_at"]["1.0"] or 0) - (base["best_val_f1_at"]["1.0"] or 0)
    spread = max(ours["spread_at_1.0"] or 0, base["spread_at_1.0"] or 0)
    frac = ours["fraction_to_reach_tpe_median_best"]
    if gain > spread and frac is not None and frac <= 0.5:
        return (f"{name} wins: +{gain:.4f} median best validation F1 (seed spread "
                f"{spread:.4f}) and reaches tpe_median's final best at {frac:.0%} of the "
                "budget; it can become the default")
    return (f"the default stays tpe_median: our better method, {name}, differs by {gain:+.4f} "
            f"in median best validation F1 (seed spread {spread:.4f}), reaching tpe_median's "
            f"final best at {'never (most seeds)' if frac is None else f'{frac:.0%}'} of the "
            "budget")


def figure(runs: dict[str, list[dict[str, Any]]], budget: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    xs = list(range(1, budget + 1))
    for method, rs in runs.items():
        ys = [statistics.median(r["budget"].best_at(x) for r in rs) for x in xs]
        ax.plot(xs, ys, label=method)
    ax.set_xlabel("training epochs consumed")
    ax.set_ylabel("best validation F1 (median over seeds)")
    ax.set_title("Anytime performance at an equal epoch budget")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = _args(argv)
    logging.basicConfig(level=logging.WARNING)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise SystemExit(f"error: unknown method(s) {unknown}; choose from {METHODS}")
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for method in methods:
                r = run_one(method, seed, args, Path(tmp))
                runs[method].append(r)
                print(f"seed {seed} {method}: best validation F1 {r['best_val_f1']:.4f}, test "
                      f"F1 {r['test_f1_of_best']}, {r['trials']} trials, {r['wall_s']} s",
                      flush=True)
    summary = summarise(runs, args.budget)
    payload = {"budget_epochs": args.budget, "seeds": args.seeds, "epochs_per_trial":
               args.epochs, "backbone": args.backbone, "docs": args.docs,
               "eval_docs": args.eval_docs, "methods": summary,
               "pbt_interval": args.pbt_interval,
               "verdict": verdict(summary, args.seeds), "wall_s": round(time.monotonic() - t0, 1)}
    if args.figure:
        figure(runs, args.budget, Path(args.figure))
        payload["figure"] = args.figure
    print(json.dumps(payload, sort_keys=True))
    if args.results:
        from _results import record

        record(f"search_efficiency ({args.backbone}, {args.budget} epochs, {args.seeds} seeds)",
               payload, notes="medians over seeds; every method stopped at the same number "
               "of trained epochs; demo data capped")
    return payload


if __name__ == "__main__":
    main()
