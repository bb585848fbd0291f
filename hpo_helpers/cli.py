"""Command line: ``python -m hpo_helpers run|status|make-demo-data``.

Errors a user can cause print one line (``error: ...``) and exit 2; ``--debug`` shows the
traceback instead. That includes file-system refusals (an output folder that is a file or
read-only) and unreachable databases. An interrupted sweep exits 130 after saving its state and
printing the command that resumes it, with every flag that matters (a storage URL only as
``"$HPO_STORAGE_URL"``: no secret is ever printed). Every log line and printed line goes through
:func:`~hpo_helpers.redaction.mask`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys
import tempfile
from pathlib import Path

from .errors import HpoHelpersError
from .redaction import mask, mask_log_handlers, register_url_secret

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
    return cfg


def _check_output_dir(value: str | None) -> None:
    """Refuse, in one line, an output folder that cannot hold a study (issue 11, finding 11)."""
    if value is None:
        return
    shown = ascii(value)[1:-1]
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HpoHelpersError(f"--output-dir {shown!r} is not valid UTF-8 (SQLite and MLflow "
                              "need UTF-8 paths). Fix: rename the folder or pick another.") \
            from None
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise HpoHelpersError(f"--output-dir {shown!r} is a file, not a folder. Fix: pass a "
                              "folder (it is created when missing).")
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise HpoHelpersError(f"--output-dir {shown!r} is not writable ({exc.strerror}). Fix: "
                              "pass a folder you can write to.") from None


def resume_command(args: argparse.Namespace) -> str:
    """The shell command that resumes this run: every flag that selects the study, its data,
    its budget and its tracking. A storage URL appears only as ``"$HPO_STORAGE_URL"``."""
    parts = ["python", "-m", "hpo_helpers", "run", "--config", args.config]
    for flag, value in (("--config-dir", args.config_dir), ("--backbone", args.backbone),
                        ("--output-dir", args.output_dir), ("--dataset", args.dataset),
                        ("--max-trials", args.max_trials),
                        ("--mlflow-experiment", args.mlflow_experiment)):
        if value is not None:
            parts += [flag, str(value)]
    cmd = shlex.join(parts)
    if args.tracking_uri:
        cmd += " --tracking-uri " + (shlex.quote(args.tracking_uri)
                                     if mask(args.tracking_uri) == args.tracking_uri
                                     else '"$MLFLOW_TRACKING_URI"')
    if args.storage_url or os.environ.get("HPO_STORAGE_URL"):
        cmd += ' --storage-url "$HPO_STORAGE_URL"'
    return mask(cmd)


def _run(args: argparse.Namespace) -> int:
    from .sweep import run_sweep

    cfg = _load(args)
    _check_output_dir(args.output_dir)
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
    print(mask(f"checkpoint: {outcome.checkpoint_path or 'disabled (in-memory study)'}"))
    if outcome.interrupted:
        print(mask(f"{outcome.stop_reason}: {resume_command(args)}"))
        if "$HPO_STORAGE_URL" in resume_command(args):
            print("(with HPO_STORAGE_URL set to the study's database URL, as for this run)")
        return 130
    return 0


def _status(args: argparse.Namespace) -> int:
    from .sweep import status

    info = status(_load(args), backbone=args.backbone, output_dir=args.output_dir,
                  storage_url=args.storage_url)
    if args.json:
        print(mask(json.dumps(info, sort_keys=True, default=str)))
        return 0
    if not info["exists"]:
        print(mask(f"No study {info['study_name']} at {info['checkpoint_path']}: a run starts "
                   "it."))
        return 0
    print(mask(f"study {info['study_name']} at {info['checkpoint_path']}"))
    print(f"  COMPLETE {info['n_complete']}/{info['max_trials']}  RUNNING {info['n_running']}  "
          f"PRUNED {info['n_pruned']}  FAIL {info['n_failed']} (interrupted "
          f"{info['n_interrupted']})  WAITING {info['n_waiting']}")
    if info["best_value"] is not None:
        print(f"  best F1 {info['best_value']:.4f} (trial {info['best_trial']}): "
              f"{json.dumps(info['best_params'], sort_keys=True)}")
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


def _secrets_known(args: argparse.Namespace) -> None:
    """Register the URL passwords in play, so they are masked wherever they turn up."""
    if getattr(args, "storage_url", None) == "":
        raise HpoHelpersError("--storage-url is empty (is HPO_STORAGE_URL set in this shell?). "
                              "Fix: export HPO_STORAGE_URL='postgresql+psycopg://...' or drop "
                              "the flag for a local study.")
    for url in (getattr(args, "storage_url", None), getattr(args, "tracking_uri", None),
                os.environ.get("HPO_STORAGE_URL"), os.environ.get("MLFLOW_TRACKING_URI")):
        register_url_secret(url)


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 path must not crash a print
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stderr)
    mask_log_handlers()
    if not args.debug:
        logging.getLogger("hpo_helpers").setLevel(logging.INFO)
        for noisy in ("httpx", "urllib3", "filelock"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    handler = {"run": _run, "status": _status, "dashboard": _dashboard,
               "make-demo-data": _demo}[args.command]
    try:
        _secrets_known(args)
        return handler(args)
    except (HpoHelpersError, OSError) as exc:
        if args.debug:
            raise
        print(f"error: {mask(_one_line(exc))}", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, HpoHelpersError):
        return str(exc)
    # OSError: what the file system refused (a read-only or full disk, a file in the way)
    where = f" {ascii(exc.filename)[1:-1]!r}" if getattr(exc, "filename", None) else ""
    return (f"cannot write or read{where}: {exc.strerror or exc}. Fix: check that the folder "
            "exists, is a folder and is writable (and that the disk has room).")
