"""Quality you can reproduce: a preset run as a user runs it, scored on held-out resumes.

Runs ``python -m hpo_helpers run --config PRESET`` (default ``config/hpo/resumes.yaml``) on the
given split files in a subprocess, exactly as the README shows, times it, and prints one JSON
line: strict micro/macro test F1 of the best trial's kept model, the per-type table (with each
type's training entities, and the types with >= 20 training entities still at F1 0), the best
trial's epoch curve, the anytime curve (best validation F1 against minutes), and the wall time.
``--trainer`` also trains a plain ``transformers.Trainer`` (the Trainer's defaults, the same
backbone, data and windows) for the same CPU time in the same run and prints its scores. CPU
time, not wall time, is the budget both get: on a shared machine wall time measures the
neighbours; ``cpu_minutes / cores`` is what an idle machine with those cores would take.

    python benchmarks/quality.py                                  # resumes.yaml, bundled demo
    python benchmarks/quality.py --train T --validation V --test X --label "real: dotin" \\
        --trainer --results
    python benchmarks/quality.py --config config/hpo/smoke.yaml --backbone tiny --docs 12 \\
        --max-trials 1 --epochs 1                                 # a quick check (tests)

Where the real set comes from, and its licence: benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).parent))

from _project import REPO  # noqa: E402


def _args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(REPO / "config" / "hpo" / "resumes.yaml"))
    ap.add_argument("--backbone", default=None, help="default: the preset's")
    ap.add_argument("--train", default=str(REPO / "dataset" / "train.json"))
    ap.add_argument("--validation", default=str(REPO / "dataset" / "validation.json"))
    ap.add_argument("--test", default=str(REPO / "dataset" / "test.json"))
    ap.add_argument("--label", default=None, help="the data's name in RESULTS.md")
    ap.add_argument("--docs", type=int, default=None, help="cap on training documents")
    ap.add_argument("--max-trials", type=int, default=None, help="override (quick checks)")
    ap.add_argument("--epochs", type=int, default=None, help="fix epochs (quick checks)")
    baseline = ap.add_mutually_exclusive_group()
    baseline.add_argument("--trainer", action="store_true",
                          help="also a plain transformers.Trainer for the same CPU time")
    baseline.add_argument("--trainer-only", type=float, default=None, metavar="CPU_MINUTES",
                          help="only the Trainer, for this CPU time (the cpu_minutes an "
                               "earlier run of ours printed on the same data)")
    ap.add_argument("--results", action="store_true", help="record in RESULTS.md")
    return ap.parse_args()


def _preset(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """The preset as the user has it, or a scratch copy with the quick-check overrides."""
    config = Path(args.config).absolute()
    if args.docs is None and args.max_trials is None and args.epochs is None:
        return config, config.parent.parent
    import shutil

    copy = work / "config"
    shutil.copytree(config.parent.parent, copy)
    raw = yaml.safe_load(config.read_text())
    if args.epochs is not None:
        raw["search_space"]["epochs"] = args.epochs
        raw.pop("enqueue_trials", None)
    if args.docs is not None:
        data = yaml.safe_load((copy / raw.get("data_config", "data/demo.yaml")).read_text())
        data.update(max_train_documents=args.docs, max_eval_documents=args.docs)
        (copy / "data" / "quality.yaml").write_text(yaml.safe_dump(data))
        raw["data_config"] = "data/quality.yaml"
    target = copy / "hpo" / config.name
    target.write_text(yaml.safe_dump(raw))
    return target, copy


def _run_ours(args: argparse.Namespace, preset: Path, out: Path) -> tuple[float, float]:
    """Run the preset; returns (wall seconds, CPU seconds of the run and its children)."""
    cmd = [sys.executable, "-m", "hpo_helpers", "run", "--config", str(preset),
           "--output-dir", str(out), "--train", args.train, "--validation", args.validation,
           "--test", args.test]
    cmd += ["--backbone", args.backbone] if args.backbone else []
    cmd += ["--max-trials", str(args.max_trials)] if args.max_trials else []
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    res = subprocess.run(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"}, cwd=REPO,
                         capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        sys.stderr.write(res.stderr[-4000:])
        raise SystemExit(f"the run failed ({res.returncode})")
    (out / "run.log").write_text(res.stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _study(cfg: Any, backbone: str, out: Path) -> Any:
    import optuna

    from hpo_helpers import study_status

    info = study_status(cfg, backbone=backbone, output_dir=out)
    return optuna.load_study(study_name=info["study_name"],
                             storage=f"sqlite:///{info['checkpoint_path']}")


def _curves(study: Any) -> tuple[list[float], list[list[float]]]:
    """The best trial's validation F1 per epoch, and (minutes, best so far) after each trial."""
    best = study.best_trial
    epoch_curve = [round(v, 4) for _, v in sorted(best.intermediate_values.items())]
    done = sorted((t for t in study.trials if t.datetime_complete and t.value is not None),
                  key=lambda t: t.datetime_complete)
    start = min(t.datetime_start for t in study.trials if t.datetime_start)
    anytime, top = [], 0.0
    for t in done:
        top = max(top, t.value)
        anytime.append([round((t.datetime_complete - start).total_seconds() / 60, 1),
                        round(top, 4)])
    return epoch_curve, anytime


def _scores(study: Any) -> dict[str, Any]:
    best = study.best_trial
    test = (study.user_attrs.get("test_scores") or {}).get(str(best.number), {})
    train_types = (study.user_attrs.get("data") or {}).get("splits", {}) \
        .get("train", {}).get("per_type", {})
    per_type = {k: {"f1": round(v["f1"], 4), "train_entities": train_types.get(k, 0)}
                for k, v in sorted(test.get("per_type", {}).items())}
    refit = (study.user_attrs.get("refit") or {}).get("test", {})
    return {"best_trial": best.number, "validation_f1": round(best.value, 4),
            "test_micro_f1": _rounded(test.get("f1")),
            "test_macro_f1": _rounded(test.get("macro_f1")),
            "test_per_type": per_type,
            "types_at_zero_with_20_train_entities": sorted(
                k for k, v in per_type.items() if v["f1"] == 0 and v["train_entities"] >= 20),
            "trials": len(study.trials), "refit_test_micro_f1": _rounded(refit.get("f1"))}


def _files(args: argparse.Namespace) -> dict[str, str]:
    return {"train": args.train, "validation": args.validation, "test": args.test}


def _data_label(args: argparse.Namespace) -> str:
    return args.label or ("bundled demo" if args.train.startswith(str(REPO)) else
                          Path(args.train).parent.name)


def _trainer_only(args: argparse.Namespace, cfg: Any, backbone: str, work: Path) -> int:
    """The baseline alone, given the CPU time an earlier run of ours used on the same data."""
    from _trainer import trainer_baseline

    payload = {"backbone": backbone, "data": _data_label(args), "cores": os.cpu_count(),
               "budget_cpu_minutes": args.trainer_only,
               "trainer": trainer_baseline(cfg, backbone=backbone, split_files=_files(args),
                                           work=work, budget_cpu_s=args.trainer_only * 60)}
    if args.results:
        from _results import record

        record(f"quality baseline (transformers.Trainer, {backbone}, {payload['data']})",
               payload, notes="transformers.Trainer defaults on the same windows, given the "
                              "CPU minutes that the preset's run on the same data used")
    print(json.dumps(payload, sort_keys=True))
    return 0


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def main() -> int:
    args = _args()
    from hpo_helpers import load_configs

    work = Path(tempfile.mkdtemp(prefix="quality-"))
    preset, config_dir = _preset(args, work)
    cfg = load_configs(config_dir, preset)
    backbone = args.backbone or cfg.hpo.backbone
    if args.trainer_only is not None:
        return _trainer_only(args, cfg, backbone, work)
    wall, cpu = _run_ours(args, preset, work / "out")
    study = _study(cfg, backbone, work / "out")
    epoch_curve, anytime = _curves(study)
    payload: dict[str, Any] = {
        "preset": preset.name, "backbone": backbone,
        "data": _data_label(args),
        # CPU minutes / cores: what the run would take on an idle machine with that many
        # cores (the machines here are shared; wall time alone is noise).
        "wall_minutes": round(wall / 60, 1), "cpu_minutes": round(cpu / 60, 1),
        "cores": os.cpu_count(), **_scores(study),
        "best_trial_epoch_curve": epoch_curve, "anytime_minutes_best_f1": anytime,
        "load_average_at_end": round(os.getloadavg()[0], 1)}
    if args.trainer:
        from _trainer import trainer_baseline

        payload["trainer"] = trainer_baseline(cfg, backbone=backbone, split_files=_files(args),
                                              work=work, budget_cpu_s=cpu)
        payload["ours_minus_trainer_test_micro_f1"] = round(
            (payload["test_micro_f1"] or 0.0) - payload["trainer"]["test_micro_f1"], 4)
    if args.results:
        from _results import record

        record(f"quality ({payload['preset']}, {backbone}, {payload['data']})", payload,
               notes="the preset run as the README shows (a subprocess), scored on the "
                     "held-out test file with seqeval strict" + (
                         "; trainer: transformers.Trainer defaults on the same windows for "
                         "the same CPU time" if args.trainer else ""))
    print(json.dumps(payload, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
