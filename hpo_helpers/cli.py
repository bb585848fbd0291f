"""Command line: ``python -m hpo_helpers run|status|make-demo-data``.

Errors a user can cause print one line (``error: ...``) and exit 2; ``--debug`` shows the
traceback instead. An interrupted sweep exits 130 after saving its state.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

from .errors import HpoHelpersError

__all__ = ["main"]

logger = logging.getLogger("hpo_helpers")


def _config_dir(config: Path, explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    # config/hpo/smoke.yaml -> config/
    for parent in config.absolute().parents:
        if (parent / "train.yaml").is_file():
            return parent
    return config.absolute().parent.parent


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="HPO config, e.g. config/hpo/smoke.yaml")
    p.add_argument("--config-dir", help="config folder (default: the one holding train.yaml)")
    p.add_argument("--backbone", help="backbone name or local model folder (default: config)")
    p.add_argument("--output-dir", help="durable output folder (default: per runtime)")
    p.add_argument("--storage-url", help="shared study database (PostgreSQL) for several "
                   "workers; default: $HPO_STORAGE_URL, then the config's storage_url")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hpo_helpers",
                                     description="Resumable HPO for resume NER")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run or resume a sweep")
    _common(run)
    run.add_argument("--dataset", help="dataset file or folder (default: data config path)")
    run.add_argument("--max-trials", type=int, help="COMPLETE trials to reach (overrides config)")
    run.add_argument("--devices", help="trials at once, one per device: auto, 0,1 (GPUs) or "
                     "cpu,cpu (overrides train.yaml's devices)")
    run.add_argument("--mlflow-experiment", help="track the sweep in this MLflow experiment")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: config/mlflow.yaml, "
                     "else a local SQLite store per runtime)")
    st = sub.add_parser("status", help="where a study stands (safe while a sweep runs)")
    _common(st)
    st.add_argument("--json", action="store_true", help="print one JSON object")
    dash = sub.add_parser("dashboard", help="serve optuna-dashboard for the study")
    _common(dash)
    dash.add_argument("--port", type=int, default=8080)
    demo = sub.add_parser("make-demo-data", help="write the synthetic demo dataset")
    demo.add_argument("--out", default="dataset")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--debug", action="store_true")
    return parser


def _load(args: argparse.Namespace):  # noqa: ANN202 - returns sweep.Configs
    from .sweep import load_configs

    config = Path(args.config)
    cfg = load_configs(_config_dir(config, args.config_dir), config)
    if getattr(args, "max_trials", None) is not None:
        if args.max_trials < 1:
            raise HpoHelpersError(f"--max-trials {args.max_trials} must be >= 1.")
        cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo,
                                                               max_trials=args.max_trials))
    if getattr(args, "devices", None):
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, devices=args.devices))
    return cfg


def _run(args: argparse.Namespace) -> int:
    from .sweep import run_sweep

    cfg = _load(args)
    tracking = None
    if args.mlflow_experiment:
        from .mlflow_setup import setup_mlflow_from_config

        tracking = setup_mlflow_from_config(args.mlflow_experiment, cfg.config_dir,
                                            tracking_uri=args.tracking_uri)
    outcome = run_sweep(cfg, backbone=args.backbone, dataset_path=args.dataset,
                        output_dir=args.output_dir, tracking=tracking,
                        storage_url=args.storage_url)
    study = outcome.study
    from .study import count_states

    counts = count_states(study)
    print(f"study: {outcome.study_name}  COMPLETE {counts['COMPLETE']}/{cfg.hpo.max_trials}  "
          f"PRUNED {counts['PRUNED']}  FAIL {counts['FAIL']}")
    if counts["COMPLETE"]:
        print(f"best F1: {study.best_value:.4f} (trial {study.best_trial.number}) "
              f"params: {json.dumps(study.best_params, sort_keys=True)}")
    print(f"checkpoint: {outcome.checkpoint_path or 'disabled (in-memory study)'}")
    if outcome.interrupted:
        print(f"{outcome.stop_reason}: python -m hpo_helpers run --config {args.config}"
              + (f" --backbone {args.backbone}" if args.backbone else "")
              + (f" --output-dir {args.output_dir}" if args.output_dir else ""))
        return 130
    return 0


def _status(args: argparse.Namespace) -> int:
    from .sweep import status

    info = status(_load(args), backbone=args.backbone, output_dir=args.output_dir,
                  storage_url=args.storage_url)
    if args.json:
        print(json.dumps(info, sort_keys=True, default=str))
        return 0
    if not info["exists"]:
        print(f"No study {info['study_name']} at {info['checkpoint_path']}: a run starts it.")
        return 0
    print(f"study {info['study_name']} at {info['checkpoint_path']}")
    print(f"  COMPLETE {info['n_complete']}/{info['max_trials']}  RUNNING {info['n_running']}  "
          f"PRUNED {info['n_pruned']}  FAIL {info['n_failed']} (interrupted "
          f"{info['n_interrupted']}, out of memory {info.get('n_oom', 0)})  "
          f"WAITING {info['n_waiting']}")
    if info["best_value"] is not None:
        print(f"  best F1 {info['best_value']:.4f} (trial {info['best_trial']}): "
              f"{json.dumps(info['best_params'], sort_keys=True)}")
    for r in info.get("running", []):
        print(f"  running trial {r['trial']}" + (f" on {r['device']}" if r["device"] else "")
              + (f" (retry of trial {r['retry_of']})" if r["retry_of"] is not None else ""))
    for w in info.get("workers", []):
        print(f"  worker {w['worker']}: trial {w['trial']}, last heartbeat "
              f"{w['heartbeat_age_s']} s ago")
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from .dashboard import start_dashboard
    from .sweep import status, storage_url_for

    cfg = _load(args)
    info = status(cfg, backbone=args.backbone, output_dir=args.output_dir,
                  storage_url=args.storage_url)
    if not info["exists"]:
        raise HpoHelpersError(f"no study {info['study_name']} at {info['checkpoint_path']}. "
                              "Fix: run the sweep first or pass its --output-dir/--backbone.")
    target = storage_url_for(cfg.hpo, args.storage_url) or info["checkpoint_path"]
    dash = start_dashboard(target, port=args.port)
    print(f"optuna-dashboard: {dash.url} (Ctrl-C to stop)", flush=True)
    try:
        dash.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        dash.stop()
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo_data import write_dataset

    for split, path in write_dataset(args.out, seed=args.seed).items():
        print(f"{split}: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    if not args.debug:
        logging.getLogger("hpo_helpers").setLevel(logging.INFO)
        for noisy in ("httpx", "urllib3", "filelock"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    handler = {"run": _run, "status": _status, "dashboard": _dashboard,
               "make-demo-data": _demo}[args.command]
    try:
        return handler(args)
    except HpoHelpersError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
