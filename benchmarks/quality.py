"""Quality you can reproduce: a sweep + refit on given files, test scores as one JSON line.

Runs a sweep (``--trials`` trials of ``--backbone``, the smoke search space) on ``--train``
(and ``--validation`` when given, else split off train), refits the best params on
train+validation, and scores the kept best model and the refit on ``--test``. Printed: test
micro/macro F1 (strict, entity level) of both and the per-type F1 of the refit.

    python benchmarks/quality.py                                     # demo data, tiny, 2 trials
    python benchmarks/quality.py --train T.json --test X.json --backbone minilm --trials 10
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _project import REPO, scratch_config  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default=str(REPO / "dataset" / "train.json"))
    ap.add_argument("--validation", default=None)
    ap.add_argument("--test", default=str(REPO / "dataset" / "test.json"))
    ap.add_argument("--backbone", default="tiny")
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--docs", type=int, default=None, help="cap on training documents")
    ap.add_argument("--results", action="store_true", help="record in RESULTS.md")
    args = ap.parse_args()
    if args.validation is None and args.train == str(REPO / "dataset" / "train.json"):
        args.validation = str(REPO / "dataset" / "validation.json")

    from hpo_helpers.sweep import load_configs, run_sweep

    work = Path(tempfile.mkdtemp(prefix="quality-"))
    config = scratch_config(work, "quality", docs=args.docs or 10**9, eval_docs=10**9)
    hpo = yaml.safe_load((REPO / "config" / "hpo" / "smoke.yaml").read_text())
    hpo.update(backbone=args.backbone, max_trials=args.trials, keep_top_k=1, refit=True,
               data_config="data/quality.yaml", study_name=f"quality_{args.backbone}")
    hpo["search_space"]["epochs"] = args.epochs
    hpo["pruner"] = {"type": "none"}
    (config / "hpo" / "quality.yaml").write_text(yaml.safe_dump(hpo))
    cfg = load_configs(config, config / "hpo" / "quality.yaml")
    start = time.perf_counter()
    outcome = run_sweep(cfg, output_dir=work / "out",
                        split_files={"train": args.train, "validation": args.validation,
                                     "test": args.test})
    study = outcome.study
    best = study.best_trial
    kept = outcome.test_scores.get(str(best.number), {})
    refit = outcome.refit or {}
    test = refit.get("test", {})
    def shown(path: str) -> str:
        p = Path(path).absolute()
        return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)

    payload = {
        "backbone": args.backbone, "trials": args.trials, "epochs_searched": args.epochs,
        "train": shown(args.train), "test": shown(args.test), "best_trial": best.number,
        "validation_f1": round(best.value, 4),
        "best_trial_test_micro_f1": round(kept.get("f1", float("nan")), 4),
        "best_trial_test_macro_f1": round(kept.get("macro_f1", float("nan")), 4),
        "refit_epochs": refit.get("params", {}).get("epochs"),
        "refit_test_micro_f1": round(test.get("f1", float("nan")), 4),
        "refit_test_macro_f1": round(test.get("macro_f1", float("nan")), 4),
        "refit_test_per_type_f1": {k: round(v["f1"], 4)
                                   for k, v in sorted(test.get("per_type", {}).items())},
        "seconds": round(time.perf_counter() - start, 1),
    }
    if args.results:
        from _results import record

        record(f"quality ({args.backbone}, demo data)" if payload["train"] == "dataset/train.json"
               else f"quality ({args.backbone})", payload,
               notes="sweep on train (validation for selection), refit on train+validation, "
                     "scores on the held-out test file; seqeval strict")
    print(json.dumps(payload, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
