"""Command line: ``python -m hpo_helpers COMMAND`` (run, status, evaluate, refit, predict,
report, dashboard, select, bundle export|import, migrate-config, make-demo-data).

Errors a user can cause print one line (``error: ...``) and exit 2; ``--debug`` shows the
traceback instead. That includes file-system refusals (an output folder that is a file or
read-only) and unreachable databases. An interrupted sweep exits 130 after saving its state and
printing the command that resumes it, with every flag that matters (a storage URL only as
``"$HPO_STORAGE_URL"``: no secret is ever printed). Every log line and printed line goes through
:func:`~hpo_helpers.core.redaction.mask`.
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
from typing import TYPE_CHECKING

from ..core.errors import HpoHelpersError
from ..core.redaction import mask, mask_log_handlers, register_url_secret

if TYPE_CHECKING:
    from ..study.inputs import RunInputs

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


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", help="dataset file or folder (default: data config path)")
    for split in ("train", "validation", "test"):
        p.add_argument(f"--{split}", help=f"{split} file (default: data config, else split "
                       "off the training data)")


def _split_args(args: argparse.Namespace) -> dict[str, str | None]:
    return {k: getattr(args, k) for k in ("train", "validation", "test")}


def _tracking(args: argparse.Namespace, cfg):  # noqa: ANN202 - TrackingSetup | None
    if not args.mlflow_experiment:
        return None
    from ..study.status import durable_url_for
    from ..tracking.setup import setup_mlflow_from_config

    durable = durable_url_for(cfg.hpo, getattr(args, "durable_url", None)) \
        if cfg.hpo.checkpoint.enabled else None
    return setup_mlflow_from_config(args.mlflow_experiment, cfg.config_dir,
                                    tracking_uri=args.tracking_uri, durable_url=durable)


def _durable_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--durable-url", help="a bucket as the durable folder: az://container/path, "
                   "s3://bucket/path or gs://bucket/path (credentials from the environment); "
                   "default: $HPO_DURABLE_URL, then the config's durable_url")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hpo_helpers",
                                     description="Resumable HPO for resume NER")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run or resume a sweep")
    _common(run)
    _data_args(run)
    run.add_argument("--max-trials", type=int, help="COMPLETE trials to reach (overrides config)")
    run.add_argument("--devices", help="trials at once, one per device: auto, 0,1 (GPUs) or "
                     "cpu,cpu (overrides train.yaml's devices)")
    run.add_argument("--mlflow-experiment", help="track the sweep in this MLflow experiment")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: config/mlflow.yaml, "
                     "else a local SQLite store per runtime)")
    _durable_arg(run)
    run.add_argument("--resume-from", metavar="DIR", help="continue from an earlier run's "
                     "output in DIR (read-only: a Kaggle version attached as input, a Drive "
                     "folder, an unpacked bundle); default: the config's resume_from, on "
                     "Kaggle the newest attached output when /kaggle/working has no study")
    st = sub.add_parser("status", help="where a study stands (safe while a sweep runs)")
    _common(st)
    _durable_arg(st)
    st.add_argument("--resume-from", metavar="DIR", help="with no study here: the earlier "
                    "output a run would continue (default: as for run)")
    st.add_argument("--json", action="store_true", help="print one JSON object")
    dash = sub.add_parser("dashboard", help="serve optuna-dashboard for the study")
    _common(dash)
    dash.add_argument("--port", type=int, default=8080)
    ev = sub.add_parser("evaluate", help="score the kept models of a study on the test split")
    _common(ev)
    _data_args(ev)
    ev.add_argument("--trial", type=int, help="score only this trial's kept model (again)")
    ev.add_argument("--mlflow-experiment", help="also log the scores to this MLflow experiment")
    ev.add_argument("--tracking-uri", help="MLflow tracking URI")
    rf = sub.add_parser("refit", help="train the best params on train+validation and export "
                        "the final model (resumable)")
    _common(rf)
    _data_args(rf)
    rp = sub.add_parser("report", help="write the study's figures as PNG files")
    _common(rp)
    rp.add_argument("--compare", action="append", default=[], metavar="BACKBONE",
                    help="another backbone's study to compare with (repeatable)")
    rp.add_argument("--out", help="folder for the PNG files (default: report/ beside the "
                    "study database)")
    pr = sub.add_parser("predict", help="print the entities of resumes as JSON lines")
    pr.add_argument("--model", required=True, help="model folder, or 'best' (needs --config)")
    pr.add_argument("--input", required=True, help="resumes: a text file (one resume), JSONL "
                    "of {\"text\": ...}, DataTurks JSONL, a JSON list of {\"text\", "
                    "\"annotations\"}, CoNLL (annotations ignored), or - for standard input")
    pr.add_argument("--config", help="HPO config (for --model best and the window settings)")
    pr.add_argument("--config-dir", help="config folder (default: the one holding train.yaml)")
    pr.add_argument("--backbone", help="backbone of the study (--model best)")
    pr.add_argument("--output-dir", help="durable output folder of the study (--model best)")
    pr.add_argument("--storage-url", help=argparse.SUPPRESS)
    pr.add_argument("--debug", action="store_true")
    sel = sub.add_parser("select", help="choose one model across the backbones' studies")
    _common(sel)
    sel.add_argument("--mlflow-experiment", help="log the choice in this MLflow experiment")
    sel.add_argument("--seconds", type=float, default=2.0,
                     help="time each speed measurement runs (training and inference)")
    _bundle_parsers(sub)
    mig = sub.add_parser("migrate-config", help="convert the original tool's config folder")
    mig.add_argument("old_dir", help="the original project's config folder")
    mig.add_argument("new_dir", help="where to write our configs (and MIGRATION.md)")
    mig.add_argument("--force", action="store_true", help="overwrite files in new_dir")
    mig.add_argument("--debug", action="store_true")
    demo = sub.add_parser("make-demo-data", help="write the synthetic demo dataset")
    demo.add_argument("--out", default="dataset")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--style", choices=["realistic", "compact"], default="realistic",
                      help="realistic: long sparse resumes like real ones (the bundled "
                      "dataset/); compact: the short dense resumes of earlier versions")
    demo.add_argument("--debug", action="store_true")
    return parser


def _bundle_parsers(sub: argparse._SubParsersAction) -> None:
    bundle = sub.add_parser("bundle", help="carry a study to another machine as one archive")
    verbs = bundle.add_subparsers(dest="bundle_command", required=True)
    for verb, text in (("export", "write the study, the newest checkpoints of unfinished "
                        "trials, kept models and MLflow's store to one archive"),
                       ("import", "check a bundle whole, then make it this machine's study")):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("--config", required=True, help="HPO config, e.g. config/hpo/smoke.yaml")
        p.add_argument("--config-dir", help="config folder (default: the one holding "
                       "train.yaml)")
        p.add_argument("--backbone", help="backbone of the study (default: the config's)")
        p.add_argument("--output-dir", help="durable output folder (default: per runtime)")
        p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
        p.add_argument("path", help="the archive (a plain tar), e.g. hpo_tiny.tar")
        if verb == "import":
            p.add_argument("--new-study", action="store_true", help="accept a bundle of "
                           "another search space or data: it is kept aside (archived) and "
                           "the next run starts a new study")
            _data_args(p)


def _load(args: argparse.Namespace):  # noqa: ANN202 - returns sweep.Configs
    from ..settings.config import HpoConfig, check_override, load_configs

    config = Path(args.config)
    cfg = load_configs(_config_dir(config, args.config_dir), config)
    if getattr(args, "max_trials", None) is not None:  # the config's limits (1 to 100,000)
        limit = check_override(HpoConfig, "max_trials", args.max_trials, "--max-trials")
        cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=limit))
    return cfg


def _check_output_dir(value: str | None) -> None:
    """Refuse, in one line, an output folder that cannot hold a study."""
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
    existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
    if not existing.is_dir():
        raise HpoHelpersError(f"--output-dir {shown!r} is not writable (Not a directory): "
                              f"{ascii(str(existing))[1:-1]} is a file. Fix: pass a folder.")
    try:  # probe the nearest existing folder: nothing is created before the run starts
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise HpoHelpersError(f"--output-dir {shown!r} is not writable ({exc.strerror}). Fix: "
                              "pass a folder you can write to.") from None


def resume_command(args: argparse.Namespace, *, inputs: RunInputs | None = None,
                   output_root: Path | None = None, tracking_db: Path | None = None) -> str:
    """The shell command that resumes this run, from any folder: every flag that selects the
    study, its data, its devices, its budget and its tracking, with absolute paths (a relative
    one is taken against the current folder).

    ``inputs``: the data files and devices the run used (given, or stored on the study; default:
    the flags). ``output_root`` and ``tracking_db``: the default output folder and local MLflow
    store when none was given and they depend on the current folder. A storage or tracking URL
    that holds a password appears only as ``"$HPO_STORAGE_URL"`` / ``"$MLFLOW_TRACKING_URI"``
    (:func:`resume_note` says so)."""
    from ..study.inputs import RunInputs

    if inputs is None:
        inputs = RunInputs.given(dataset=args.dataset, split_files=_split_args(args),
                                 devices=args.devices)
    out = args.output_dir if args.output_dir is not None else output_root
    parts = [sys.executable, "-m", "hpo_helpers", "run", "--config", os.path.abspath(args.config)]
    for flag, value in (("--config-dir", _absolute(args.config_dir)),
                        ("--backbone", args.backbone), ("--output-dir", _absolute(out)),
                        *inputs.flags(), ("--max-trials", args.max_trials),
                        ("--mlflow-experiment", args.mlflow_experiment),
                        ("--durable-url", args.durable_url)):
        if value is not None:
            parts += [flag, str(value)]
    cmd = shlex.join(parts)
    tracking_uri = args.tracking_uri or (f"sqlite:///{tracking_db}" if tracking_db else None)
    if tracking_uri:
        cmd += " --tracking-uri " + (shlex.quote(_absolute_url(tracking_uri))
                                     if mask(tracking_uri) == tracking_uri
                                     else '"$MLFLOW_TRACKING_URI"')
    if args.storage_url and mask(args.storage_url) == args.storage_url:
        cmd += " --storage-url " + shlex.quote(_absolute_url(args.storage_url))
    elif args.storage_url or os.environ.get("HPO_STORAGE_URL"):
        cmd += ' --storage-url "$HPO_STORAGE_URL"'
    return mask(cmd)


def resume_note(args: argparse.Namespace, command: str) -> str | None:
    """What the shell needs before it runs ``command``: the variables that stand in for URLs
    that hold a password (which is never printed)."""
    notes = []
    for var, given in (("HPO_STORAGE_URL", args.storage_url),
                       ("MLFLOW_TRACKING_URI", getattr(args, "tracking_uri", None))):
        if f'"${var}"' not in command:
            continue
        if given and os.environ.get(var) != given:
            notes.append(f"export {var}={shlex.quote(mask(given))} with the real password in "
                         "place of *** (the URL holds a password, so it is not printed)")
        else:
            notes.append(f"{var} set to the URL of this run, as now (it holds a password, so "
                         "it is not printed)")
    return f"(first: {'; '.join(notes)})" if notes else None


def _absolute(value: str | Path | None) -> str | None:
    return None if value is None else os.path.abspath(value)


def _absolute_url(url: str) -> str:
    """A relative SQLite URL (``sqlite:///x.db``) made absolute: it names a file in the
    current folder, which the resume command may not share."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix:
        return prefix + os.path.abspath(url[len(prefix):])
    return url


def _run(args: argparse.Namespace) -> int:
    from ..sweep.run import run_sweep

    cfg = _load(args)
    _check_output_dir(args.output_dir)
    from ..sweep.backbones import backbone_list, run_backbones
    from ..sweep.transfer import take_earlier_output

    names = backbone_list(cfg, args.backbone)
    for name in names:  # before tracking opens MLflow's store: it may come with the study
        take_earlier_output(cfg, args.resume_from, backbone=name, output_dir=args.output_dir,
                            durable_url=args.durable_url)
    tracking = _tracking(args, cfg)
    common = dict(dataset_path=args.dataset, output_dir=args.output_dir, tracking=tracking,
                  storage_url=args.storage_url, split_files=_split_args(args),
                  devices=args.devices, durable_url=args.durable_url,
                  resume_from=args.resume_from)
    if len(names) > 1:  # one study per backbone, in sequence
        outcomes = run_backbones(cfg, names, **common)
        codes = [_finish_run(args, cfg, o, tracking) for o in outcomes]
        print(f"backbones {', '.join(names)}: "
              + ("interrupted" if 130 in codes else "all studies done"))
        return 130 if 130 in codes else 0
    outcome = run_sweep(cfg, backbone=args.backbone, **common)
    return _finish_run(args, cfg, outcome, tracking)


def _resume_line(args: argparse.Namespace, cfg, outcome, tracking) -> str:  # noqa: ANN001
    """The command that resumes ``outcome``'s study from any folder (see resume_command)."""
    from ..core.runtime import AZUREML, LOCAL, detect
    from ..storage.paths import resolve

    runtime = detect()
    cwd_bound = runtime.kind in (LOCAL, AZUREML)  # default folders under the current one
    root = resolve(runtime, backbone=args.backbone or cfg.hpo.backbone,
                   storage_path=cfg.hpo.checkpoint.storage_path).durable_dir \
        if cwd_bound and args.output_dir is None else None
    local_db = getattr(tracking, "local_db", None) if runtime.kind == LOCAL else None
    return resume_command(args, inputs=outcome.inputs, output_root=root, tracking_db=local_db)


def _finish_run(args: argparse.Namespace, cfg, outcome, tracking) -> int:  # noqa: ANN001
    study = outcome.study
    from ..study.store import count_states

    counts = count_states(study)
    print(f"study: {outcome.study_name}  COMPLETE {counts['COMPLETE']}/{cfg.hpo.max_trials}  "
          f"PRUNED {counts['PRUNED']}  FAIL {counts['FAIL']}")
    if counts["COMPLETE"]:
        best = study.best_trial
        print(f"best F1: {best.value:.4f} (trial {best.number}"
              + (", learned nothing" if outcome.learned_nothing else "")
              + f") params: {json.dumps(best.params, sort_keys=True)}")
    print(mask(f"checkpoint: {outcome.checkpoint_path or 'disabled (in-memory study)'}"))
    if counts["COMPLETE"] and str(study.best_trial.number) in outcome.test_scores:
        from ..results.evaluate import format_scores

        print(format_scores(outcome.test_scores[str(study.best_trial.number)],
                            f"test (trial {study.best_trial.number})"))
    if outcome.refit:
        print(f"refit of trial {outcome.refit['trial']} exported: {outcome.refit['path']} "
              f"(test F1 {outcome.refit['test']['f1']:.4f})")
    # Interrupted (exit 130), or ended early on purpose (the time budget: exit 0): either way
    # the study is not finished, and the line says how to continue it.
    early = counts["COMPLETE"] < cfg.hpo.max_trials and bool(outcome.stop_reason)
    if outcome.interrupted or (early and outcome.checkpoint_path):
        command = _resume_line(args, cfg, outcome, tracking)
        print(mask(f"{outcome.stop_reason.rstrip('. ')}: {command}"))
        if note := resume_note(args, command):
            print(note)
    return 130 if outcome.interrupted else 0


def _status(args: argparse.Namespace) -> int:
    from ..settings.schema import LEARNED_NOTHING_BELOW
    from ..study.status import learned_nothing_warning, status

    info = status(_load(args), backbone=args.backbone, output_dir=args.output_dir,
                  storage_url=args.storage_url, durable_url=args.durable_url,
                  resume_from=args.resume_from)
    if args.json:
        print(mask(json.dumps(info, sort_keys=True, default=str)))
        return 0
    if not info["exists"]:
        print(mask(f"No study {info['study_name']} at {info['checkpoint_path']}: a run starts "
                   "it."))
        return 0
    if info.get("earlier_output"):
        print(mask(f"No study {info['study_name']} at {info['checkpoint_path']} yet: a run "
                   f"continues the earlier one at {info['earlier_output']}, which stands:"))
    where = info.get("earlier_output") or info["checkpoint_path"]
    print(mask(f"study {info['study_name']} at {where}"))
    print(f"  COMPLETE {info['n_complete']}/{info['max_trials']}  RUNNING {info['n_running']}  "
          f"PRUNED {info['n_pruned']}  FAIL {info['n_failed']} (interrupted "
          f"{info['n_interrupted']}, out of memory {info.get('n_oom', 0)})  "
          f"WAITING {info['n_waiting']}")
    if info.get("scheduler") == "hyperband":
        print(f"  hyperband: {info['configurations_started']}/{info['max_trials']} "
              "configurations started (COMPLETE counts trials paused at a rung too)")
        for r in info["rungs"]:
            print(f"  rung {r['rung']} epochs" + (f" (bracket {r['bracket']})"
                                                  if any(x['bracket'] for x in info["rungs"])
                                                  else "")
                  + f": reached by {r['reached']}, waiting there {r['paused']}, promoted "
                    f"{r['promoted']}, stopped {r['stopped']}")
    if info.get("scheduler") == "pbt":
        print(f"  pbt: {info['configurations_started']}/{info['max_trials']} members started, "
              f"{info['pbt_done']} done, {info['pbt_exploits']} exploits (COMPLETE counts "
              "each member's segments)")
        for r in info["population"]:
            score = "-" if r["score"] is None else f"{r['score']:.4f}"
            lr = r["params"].get("learning_rate")
            rate = f", learning_rate {lr:.3g}" if isinstance(lr, float) else ""
            print(f"  member {r['member']}: epoch {r['epoch']}, F1 {score}, {r['state']}, "
                  f"exploited {r['exploits']}x{rate}")
    if info["max_trials"] != info["config_max_trials"]:  # a notebook or --max-trials raised it
        print(f"  budget {info['max_trials']} trials: set by the study's last run (the config "
              f"says {info['config_max_trials']}; --max-trials or the notebook's max_trials "
              "changes it)")
    if info["best_value"] is not None:
        print(f"  best F1 {info['best_value']:.4f} (trial {info['best_trial']}"
              + (", learned nothing" if info["best_learned_nothing"] else "")
              + f"): {json.dumps(info['best_params'], sort_keys=True)}")
    if info["n_learned_nothing"]:
        print(f"  learned nothing: {info['n_learned_nothing']} of {info['n_complete']} "
              f"COMPLETE trials (best validation F1 below {LEARNED_NOTHING_BELOW})")
    if info["best_learned_nothing"]:
        print(f"  WARNING {learned_nothing_warning(info['best_trial'], info['best_value'])}")
    if info.get("best_fold_f1"):
        folds = ", ".join(f"{v:.4f}" for v in info["best_fold_f1"])
        print(f"  folds F1 [{folds}]  mean {info['best_value']:.4f} "
              f"+/- {info['best_fold_f1_std'] or 0:.4f}")
    if info.get("test_f1") is not None:
        print(f"  test F1 {info['test_f1']:.4f}, macro F1 {info['test_macro_f1']:.4f} (trial "
              f"{info['best_trial']}): " + ", ".join(
                  f"{k} {v:.3f}" for k, v in sorted(info["test_per_entity"].items())))
    data = info.get("data") or {}
    for split, d in data.get("splits", {}).items():
        print(f"  {split}: {d['documents']} documents, {d['entities']} entities"
              + (f", {d['windows']} windows" if "windows" in d else "")
              + (f" (capped: {d['capped']})" if d.get("capped") else ""))
    if data.get("untrained_types"):
        print(f"  entity types without a training example (not in macro F1): "
              f"{', '.join(data['untrained_types'])}")
    for r in info.get("running", []):
        print(f"  running trial {r['trial']}" + (f" on {r['device']}" if r["device"] else "")
              + (f" (retry of trial {r['retry_of']})" if r["retry_of"] is not None else ""))
    for w in info.get("workers", []):
        print(f"  worker {w['worker']}: trial {w['trial']}, last heartbeat "
              f"{w['heartbeat_age_s']} s ago")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from ..results.evaluate import evaluate_study, format_scores

    cfg = _load(args)
    scores, best = evaluate_study(cfg, backbone=args.backbone, output_dir=args.output_dir,
                                  trial=args.trial, dataset_path=args.dataset,
                                  split_files=_split_args(args), tracking=_tracking(args, cfg),
                                  storage_url=args.storage_url)
    if not scores:
        print("no kept model to score (keep_top_k: 0, or no COMPLETE trial)")
    for number, s in sorted(scores.items()):
        if args.trial is None or number == args.trial:
            print(format_scores(s, f"test (trial {number}{', best' if number == best else ''})"))
    return 0


def _refit(args: argparse.Namespace) -> int:
    from ..results.evaluate import format_scores
    from ..results.refit import refit

    cfg = _load(args)
    done = refit(cfg, backbone=args.backbone, output_dir=args.output_dir,
                 dataset_path=args.dataset, split_files=_split_args(args))
    if done is None:
        print("refit interrupted: state saved. To resume, run the same command again.")
        return 130
    print(f"refit of trial {done['trial']} exported: {done['path']}")
    print(format_scores(done["test"], "test (refit)"))
    return 0


def _report(args: argparse.Namespace) -> int:
    from ..results.report import load_study, write_report

    cfg = _load(args)
    studies = {}
    for name in [args.backbone or cfg.hpo.backbone, *args.compare]:
        study = load_study(cfg, backbone=name, output_dir=args.output_dir)
        if study is None:
            raise HpoHelpersError(f"no study for backbone {name!r}. Fix: run its sweep first, "
                                  "or pass its --output-dir.")
        studies[study.study_name] = study
    if args.out:
        out = Path(args.out)
    else:
        from ..core.runtime import detect
        from ..storage.layout import report_dir
        from ..storage.paths import resolve

        out = report_dir(resolve(detect(), backbone=args.backbone or cfg.hpo.backbone,
                                 storage_path=cfg.hpo.checkpoint.storage_path,
                                 output_dir=args.output_dir).durable_db)
    for path in write_report(studies, out):
        print(path)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from ..results.prediction import Predictor, read_numbered

    cfg = _load(args) if args.config else None
    if args.model == "best":
        if cfg is None:
            raise HpoHelpersError("--model best needs --config (the study to take it from). "
                                  "Fix: add --config, or pass --model DIR.")
        from ..results.evaluate import best_model_dir
        from ..settings.schema import study_name
        from ..study.inputs import RunInputs, stored_inputs
        from ..training.device import stored_devices

        model = best_model_dir(cfg, backbone=args.backbone, output_dir=args.output_dir)
        name = study_name(args.backbone or cfg.hpo.backbone, cfg.hpo.study_name)
        stored = stored_inputs(cfg, backbone=args.backbone, output_dir=args.output_dir)
        # only the devices: predict reads --input, not the study's data
        devices = stored_devices(RunInputs().over(RunInputs(devices=stored.devices),
                                                  name).devices, name)
    else:
        model, devices = Path(args.model), None
    windows = {"max_length": cfg.train.max_length, "stride": cfg.train.stride} if cfg else {}
    from ..training.device import using

    with using(devices[0] if devices else None):
        predictor = Predictor(model, **windows)
    limit = {"max_chars": cfg.data.max_document_chars} if cfg else {}  # the training limit
    n_docs = n_entities = 0
    for i, text in read_numbered(args.input, **limit):  # i: its place in the input
        n_docs += 1
        for ent in predictor([text])[0]:
            n_entities += 1
            print(json.dumps({"doc": i, **ent.as_dict()}, ensure_ascii=False), flush=True)
    if n_entities:
        logger.info("%d documents, %d entities", n_docs, n_entities)
    else:  # issue 21: a model that learned nothing predicts nothing, silently
        logger.warning("%d documents, 0 entities: the model found no entity. It may have "
                       "learned nothing: check `python -m hpo_helpers status --config C` (its "
                       "best F1; \"learned nothing\") and the README, Troubleshooting, "
                       "\"Learned nothing\".", n_docs)
    return 0


def _select(args: argparse.Namespace) -> int:
    from ..results.selection import select

    cfg = _load(args)
    tracking = None
    if args.mlflow_experiment:
        from ..tracking.setup import setup_mlflow_from_config

        tracking = setup_mlflow_from_config(args.mlflow_experiment, cfg.config_dir)
    names = [b.strip() for b in args.backbone.split(",")] if args.backbone else None
    result = select(cfg, backbones=names, output_dir=args.output_dir, tracking=tracking,
                    seconds=args.seconds, storage_url=args.storage_url)
    print(f"selected: {result['selected_backbone']} (study {result['study_name']}, trial "
          f"{result['trial']})")
    for reason in result["reasons"]:
        print(f"  {reason}")
    print(f"written: {result['selection_json']} and {result['report']}")
    return 0


def _bundle(args: argparse.Namespace) -> int:
    from ..sweep.transfer import export_bundle, import_bundle

    cfg = _load(args)
    _check_output_dir(args.output_dir)
    path = Path(args.path)
    if args.bundle_command == "export":
        manifest = export_bundle(cfg, path, backbone=args.backbone, output_dir=args.output_dir)
        size = path.stat().st_size
        print(f"bundle: {path} ({len(manifest['files'])} files, {size / 1e6:.1f} MB): study "
              f"{manifest['study_name']}, {manifest['finished']} finished trials")
        return 0
    done = import_bundle(cfg, path, backbone=args.backbone, output_dir=args.output_dir,
                         new_study=args.new_study, dataset_path=args.dataset,
                         split_files=_split_args(args))
    print(f"imported: study {done['study_name']} ({done['finished']} finished trials) into "
          f"{done['target']}" + (" (kept aside: the next run starts a new study)"
                                 if args.new_study else ""))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from .migrate import migrate_config

    report = migrate_config(args.old_dir, args.new_dir, force=args.force)
    print(report.summary())
    return 0


def _dashboard(args: argparse.Namespace) -> int:
    from ..study.status import status, storage_url_for
    from .dashboard import start_dashboard

    cfg = _load(args)
    info = status(cfg, backbone=args.backbone, output_dir=args.output_dir,
                  storage_url=args.storage_url)
    if not info["exists"]:
        raise HpoHelpersError(f"no study {info['study_name']} at {info['checkpoint_path']}. "
                              "Fix: run the sweep first or pass its --output-dir/--backbone.")
    target = storage_url_for(cfg.hpo, args.storage_url) or info["checkpoint_path"]
    dash = start_dashboard(target, port=args.port)
    print(f"optuna-dashboard: {dash.url} (Ctrl-C to stop)", flush=True)
    _stop_on_signals()
    try:
        dash.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        dash.stop()
    return 0


def _stop_on_signals() -> None:
    """SIGTERM and SIGHUP end the command like Ctrl-C, so its server is stopped with it
    (issue 23: ``kill -TERM`` left the server listening)."""
    import signal

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), stop)


def _demo(args: argparse.Namespace) -> int:
    from ..data.demo import write_dataset

    for split, path in write_dataset(args.out, seed=args.seed, style=args.style).items():
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
    from ..storage.bucket import register_credentials

    register_credentials()  # a bucket's keys in the environment: masked wherever printed


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
        for noisy in ("httpx", "urllib3", "filelock", "azure", "botocore", "aiobotocore",
                      "s3fs", "adlfs", "fsspec"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    handler = {"run": _run, "status": _status, "dashboard": _dashboard,
               "make-demo-data": _demo, "evaluate": _evaluate,
               "predict": _predict, "refit": _refit, "report": _report,
               "select": _select, "bundle": _bundle, "migrate-config": _migrate}[args.command]
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
    filename, strerror = getattr(exc, "filename", None), getattr(exc, "strerror", None)
    where = f" {ascii(filename)[1:-1]!r}" if filename else ""
    return (f"cannot write or read{where}: {strerror or exc}. Fix: check that the folder "
            "exists, is a folder and is writable (and that the disk has room).")
