"""Kill a real sweep again and again at awkward moments, resume it, and check that nothing is lost.

Runs ``python -m hpo_helpers run`` (tiny backbone, MLflow on) on a simulated Colab layout
(``HPO_RUNTIME_ROOT``: local working disk + a "Drive" folder) as a subprocess, and SIGKILLs it
N times: at fault points inside the process (``HPO_FAULT_KILL_AT``: a training step, a
checkpoint write before its marker, a checkpoint mirror half-copied, a study snapshot
half-copied, a trial told to the study but not yet snapshotted) or after a random delay.
Every ``--fresh-vm-every`` kills the working folder is deleted as if the VM were gone. Then the
sweep is resumed until the study is complete, and compared with an uninterrupted run of the
same seed. One JSON line goes to stdout; ``--check`` exits 1 when an invariant fails.

With ``--readers``, readers hammer the study during the kills: ``status`` (as the CLI and the
panel read it), ``optuna.load_study`` on the live file (as a user types it, with a writable
storage that creates missing tables) and optuna-dashboard (HTTP requests against its API). The
JSON line reports their calls and errors (goal: 0 errors, and no sweep crash).

    python benchmarks/fault_injection.py --kills 5
    python benchmarks/fault_injection.py --kills 30 --seed 3 --readers --check
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(REPO))
from _project import scratch_config  # noqa: E402 - a sibling module of this script

DRIVE = ("content", "drive", "MyDrive")
DURABLE = ("content", "drive", "MyDrive", "resume-ner-checkpoints", "hpo", "tiny")
WORKING = ("content", "resume-ner", "outputs", "hpo", "tiny")
MLFLOW_DURABLE = ("content", "drive", "MyDrive", "resume-ner-checkpoints", "mlruns", "mlflow.db")
POINTS = ["train_step", "checkpoint_write", "checkpoint_mirror", "snapshot_copy", "db_commit",
          "timer"]
STEP = re.compile(r"hpo_helpers\.training\.train: step (\d+)/(\d+)")
STARTED = re.compile(r"Trial (\d+) started( \(retry of trial (\d+)\))?")
RESTORED = re.compile(r"Checkpoint restored: .* \(epoch \d+, step (\d+) of \d+\)")


def _project(work: Path, args: argparse.Namespace) -> Path:
    config = scratch_config(work, "fi", docs=args.docs, eval_docs=6)
    train = yaml.safe_load((config / "train.yaml").read_text())
    train.update(max_length=64, stride=16, torch_threads=1,
                 checkpoint_every_steps=args.checkpoint_every_steps)
    (config / "train.yaml").write_text(yaml.safe_dump(train))
    hpo = {
        "backbone": "tiny", "max_trials": args.max_trials, "data_config": "data/fi.yaml",
        "sampler": {"type": "tpe", "seed": args.seed, "n_startup_trials": 2},
        "pruner": {"type": "none"}, "max_failed_trials": 3,
        "checkpoint": {"enabled": True, "storage_path": "{backbone}/study.db"},
        "search_space": {
            "learning_rate": {"type": "loguniform", "low": 1e-3, "high": 3e-3},
            "batch_size": 4, "dropout": {"type": "uniform", "low": 0.0, "high": 0.2},
            "weight_decay": {"type": "loguniform", "low": 1e-4, "high": 1e-2},
            "warmup_ratio": {"type": "uniform", "low": 0.0, "high": 0.1},
            "epochs": args.epochs,
        },
    }
    path = config / "hpo" / "fi.yaml"
    path.write_text(yaml.safe_dump(hpo))
    return path


def _env(root: Path, kill_at: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COLAB_", "KAGGLE_"))}
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               COLAB_RELEASE_TAG="fault-injection", HPO_RUNTIME_ROOT=str(root))
    env.pop("HPO_FAULT_KILL_AT", None)
    if kill_at:
        env["HPO_FAULT_KILL_AT"] = kill_at
    return env


def _run(root: Path, hpo: Path, kill_at: str | None, delay: float | None) -> tuple[int, str,
                                                                                    float]:
    cmd = [sys.executable, "-m", "hpo_helpers", "run", "--config", str(hpo), "--debug",
           "--mlflow-experiment", "fault-injection"]
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=_env(root, kill_at), stdout=log,
                                stderr=subprocess.STDOUT, cwd=root / "content")
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        log.seek(0)
        out = "\n".join(ln for ln in log.read().splitlines() if "hpo_helpers" in ln
                        or "error" in ln.lower())
    return proc.returncode, out, time.monotonic() - start


def _query(db: Path, sql: str) -> list[tuple]:
    from hpo_helpers.storage.snapshot import read_only_uri

    if not db.exists():
        return []
    con = sqlite3.connect(read_only_uri(db), uri=True)
    try:
        return con.execute(sql).fetchall()
    except sqlite3.Error:
        return []
    finally:
        con.close()


def _complete(db: Path) -> dict[int, float]:
    return dict(_query(db, "SELECT t.number, v.value FROM trials t JOIN trial_values v ON "
                           "v.trial_id = t.trial_id WHERE t.state = 'COMPLETE'"))


def _steps_by_trial(out: str) -> dict[int, int]:
    """The last training step each trial (attempt) reached in one run's log."""
    steps: dict[int, int] = {}
    trial = None
    for line in out.splitlines():
        m = STARTED.search(line)
        if m:
            trial = int(m.group(1))
        m = STEP.search(line)
        if m and trial is not None:
            steps[trial] = int(m.group(1))
    return steps


def _retries(out: str) -> dict[int, tuple[int, int]]:
    """``{retry: (interrupted attempt, step it continued from)}`` for the retries that trained
    in one run's log (0: from scratch). Logs, not the study: a fresh VM loses the attributes
    that the dead VM recorded after its last snapshot."""
    found: dict[int, tuple[int, int]] = {}
    current: tuple[int, int] | None = None
    resumed = 0
    for line in out.splitlines():
        m = STARTED.search(line)
        if m:
            current = (int(m.group(1)), int(m.group(3))) if m.group(3) is not None else None
            resumed = 0
            continue
        r = RESTORED.search(line)
        if r and current is not None:
            resumed = int(r.group(1))
        if current is not None and (STEP.search(line) or r and "epoch" in line):
            found[current[0]] = (current[1], resumed)
    return found


def _mlflow_consistency(db: Path, n_complete: int) -> dict:
    runs = _query(db, "SELECT r.run_uuid, r.status, (SELECT value FROM tags t WHERE t.run_uuid ="
                      " r.run_uuid AND t.key = 'hpo.kind'), (SELECT value FROM tags t WHERE "
                      "t.run_uuid = r.run_uuid AND t.key = 'trial_state') FROM runs r")
    parents = [r for r in runs if r[2] == "sweep"]
    finished_complete = [r for r in runs if r[3] == "COMPLETE" and r[1] == "FINISHED"]
    return {"parents": len(parents), "finished_children_of_complete": len(finished_complete),
            "ok": len(parents) == 1 and len(finished_complete) == n_complete}


class Readers:
    """Threads that read the study while the sweep is killed and resumed (``--readers``).

    Each kind records its calls and errors. :meth:`paused` stops them (and the dashboard)
    while the harness deletes the working folder, as a VM that is gone takes its readers along.
    """

    KINDS = ("status", "load_study", "dashboard")

    def __init__(self, root: Path, hpo: Path, working_db: Path, interval: float = 0.3) -> None:
        from hpo_helpers import load_configs
        from hpo_helpers.core.runtime import detect

        self.cfg = load_configs(hpo.parent.parent, hpo)
        self.runtime = detect(_env(root, None), root=root)
        self.working_db = working_db
        self.interval = interval
        self.calls = dict.fromkeys(self.KINDS, 0)
        self.errors: dict[str, list[str]] = {k: [] for k in self.KINDS}
        self.locks = {k: threading.Lock() for k in self.KINDS}
        self.stop = threading.Event()
        self.dashboard = None
        self.threads = [threading.Thread(target=self._loop, args=(k,), daemon=True)
                        for k in self.KINDS]
        for t in self.threads:
            t.start()

    def _loop(self, kind: str) -> None:
        while not self.stop.wait(self.interval):
            with self.locks[kind]:
                if self.stop.is_set():
                    return
                try:
                    if getattr(self, f"_{kind}")():
                        self.calls[kind] += 1
                except Exception as exc:  # noqa: BLE001 - every reader failure is counted
                    self.calls[kind] += 1
                    from hpo_helpers.core.redaction import mask

                    self.errors[kind].append(mask(f"{type(exc).__name__}: {exc}")[:300])

    def _status(self) -> bool:
        from hpo_helpers import study_status as status

        status(self.cfg, runtime=self.runtime)
        return True

    def _load_study(self) -> bool:
        import optuna

        if not self.working_db.exists():
            return False
        try:
            study = optuna.load_study(study_name="hpo_tiny",
                                      storage=f"sqlite:///{self.working_db}")
        except KeyError:
            return True  # not created yet: what a user sees in the first seconds
        study.get_trials(deepcopy=False)
        return True

    def _dashboard(self) -> bool:
        from hpo_helpers.frontends.dashboard import start_dashboard

        if self.dashboard is None:
            if not _query(self.working_db, "SELECT 1 FROM studies"):
                return False  # no study yet: the dashboard would have nothing to show
            self.dashboard = start_dashboard(self.working_db, wait_s=120)
        with urllib.request.urlopen(f"{self.dashboard.url}/api/studies", timeout=30) as r:
            studies = json.loads(r.read())["study_summaries"]
        for st in studies:
            with urllib.request.urlopen(f"{self.dashboard.url}/api/studies/"
                                        f"{st['study_id']}?after=0", timeout=30) as r:
                json.loads(r.read())
        return True

    def _stop_dashboard(self) -> None:
        if self.dashboard is not None:
            self.dashboard.stop()
            self.dashboard = None

    def pause(self) -> None:
        for lock in self.locks.values():
            lock.acquire()
        self._stop_dashboard()

    def resume(self) -> None:
        for lock in self.locks.values():
            lock.release()

    def close(self) -> dict:
        self.stop.set()
        for t in self.threads:
            t.join(120)
        self._stop_dashboard()
        return {"calls": self.calls, "errors": sum(len(e) for e in self.errors.values()),
                "errors_by_kind": {k: len(v) for k, v in self.errors.items()},
                "error_samples": [e for v in self.errors.values() for e in v][:5]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--fresh-vm-every", type=int, default=2,
                   help="delete the working folder after every k-th kill (0: never)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-trials", type=int, default=4)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--docs", type=int, default=24)
    p.add_argument("--checkpoint-every-steps", type=int, default=4)
    p.add_argument("--check", action="store_true", help="exit 1 when an invariant fails")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    p.add_argument("--readers", action="store_true",
                   help="status, load_study and optuna-dashboard read the study during the "
                   "kills; their errors are reported (goal 0)")
    p.add_argument("--results", action="store_true",
                   help="also write the figures into benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="hpo-fault-"))
    report: dict = {"kills": 0, "fresh_vm_kills": 0, "kill_points": {}}
    try:
        # Uninterrupted reference run, same seed, its own VM.
        ref_root = work / "reference"
        ref_root.joinpath(*DRIVE).mkdir(parents=True)
        hpo = _project(work, args)
        rc, out, ref_wall = _run(ref_root, hpo, None, None)
        if rc != 0:
            raise SystemExit(f"reference run failed ({rc}):\n{out[-3000:]}")
        ref_best = max(_complete(ref_root.joinpath(*DURABLE, "study.db")).values())

        root = work / "vm"
        root.joinpath(*DRIVE).mkdir(parents=True)
        durable_db = root.joinpath(*DURABLE, "study.db")
        working_db = root.joinpath(*WORKING, "study.db")
        seen_complete: dict[int, float] = {}
        local_complete: dict[int, float] = {}
        reached: dict[int, int] = {}  # trial (attempt) -> last step it trained, across runs
        retries: dict[int, tuple[int, int]] = {}  # retry -> (attempt it continues, from step)
        trained_in: dict[int, int] = {}  # trial -> run that trained it
        fresh_after: set[int] = set()  # runs after which the VM was replaced
        interval = args.checkpoint_every_steps
        total_wall = 0.0
        runs = 0
        readers = Readers(root, hpo, working_db) if args.readers else None
        sweep_crashes: list[str] = []
        while True:
            done = len(_complete(working_db if working_db.exists() else durable_db)) >= \
                args.max_trials
            kill_at, delay = None, None
            if report["kills"] < args.kills and not done:
                point = rng.choice(POINTS)
                if point == "timer":
                    delay = rng.uniform(5.0, 12.0)
                else:
                    n = rng.randint(1, 12) if point == "train_step" else rng.randint(1, 2)
                    kill_at = f"{point}:{n}"
                report["kill_points"][point] = report["kill_points"].get(point, 0) + 1
            rc, out, wall = _run(root, hpo, kill_at, delay)
            runs += 1
            total_wall += wall
            if args.keep:
                with open(work / "runs.log", "a") as fh:
                    fh.write(f"=== run {runs}: kill_at={kill_at} delay={delay} rc={rc}\n{out}\n")
            for trial, step in _steps_by_trial(out).items():
                reached[trial] = step
                trained_in[trial] = runs
            for retry, (parent, step) in _retries(out).items():
                retries[retry] = (parent, step)
                trained_in.setdefault(retry, runs)
            if rc != -signal.SIGKILL:
                if rc != 0 and readers is not None:
                    sweep_crashes.append(out[-2000:])  # counted; the next run resumes
                    if len(sweep_crashes) > 3:
                        raise SystemExit(f"sweep exited {rc} again:\n{out[-3000:]}")
                    continue
                if rc != 0:
                    raise SystemExit(f"sweep exited {rc}:\n{out[-3000:]}")
                if kill_at is None and delay is None:
                    break  # the resume-until-complete run
                continue  # the chosen point was never reached: try another
            report["kills"] += 1
            fresh = bool(args.fresh_vm_every) and report["kills"] % args.fresh_vm_every == 0
            if fresh:
                report["fresh_vm_kills"] += 1
                fresh_after.add(runs)
                if readers is not None:
                    readers.pause()
                shutil.rmtree(root / "content" / "resume-ner", ignore_errors=True)
                if readers is not None:
                    readers.resume()
            # What the next session resumes from: Drive after a fresh VM, else local disk.
            truth = durable_db if fresh or not working_db.exists() else working_db
            # Durably complete: in the Drive copy. A trial told to the study but not yet
            # copied when the VM died is counted apart (it is retried from its last checkpoint).
            seen_complete.update(_complete(durable_db))
            local_complete.update(_complete(truth))
            print(f"kill {report['kills']}: {kill_at or f'timer {delay:.1f}s'}"
                  f"{' + fresh VM' if fresh else ''}; {len(seen_complete)} COMPLETE so far",
                  file=sys.stderr)
        if readers is not None:
            report["readers"] = readers.close()
            report["sweep_crashes"] = len(sweep_crashes)
            report["sweep_crash_samples"] = [c[-500:] for c in sweep_crashes[:2]]
        redone = []
        for retry, (parent, resumed) in sorted(retries.items()):
            if parent not in reached or retry not in trained_in:
                continue  # the interrupted attempt never trained, or its retry never did
            steps = max(0, reached[parent] - resumed)
            fresh = any(trained_in[parent] <= r < trained_in[retry] for r in fresh_after)
            redone.append({"trial": parent, "steps": steps, "fresh_vm": fresh,
                           "fraction_of_interval": round(steps / interval, 3)})
            print(f"  trial {parent}: reached step {reached[parent]}; retry {retry} continued "
                  f"from step {resumed}{' (fresh VM)' if fresh else ''}", file=sys.stderr)
        final = _complete(working_db)
        lost = [n for n, v in seen_complete.items() if final.get(n) != v]
        lost_with_vm = [n for n, v in local_complete.items()
                        if final.get(n) != v and n not in seen_complete]
        running = _query(working_db, "SELECT count(*) FROM trials WHERE state = 'RUNNING'")
        integrity = _query(working_db, "PRAGMA integrity_check")
        durable_integrity = _query(durable_db, "PRAGMA integrity_check")
        mlflow = _mlflow_consistency(root.joinpath(*MLFLOW_DURABLE), len(final))
        local_redone = [r for r in redone if not r["fresh_vm"]]
        report.update(
            runs=runs,
            completed_trials=len(final),
            completed_trials_lost=len(lost),
            completed_locally_lost_with_vm=len(lost_with_vm),
            trials_left_running=running[0][0] if running else None,
            redone_steps_per_kill=[r["steps"] for r in redone],
            redone_fraction_of_interval=[r["fraction_of_interval"] for r in redone],
            max_redone_fraction_local=max((r["fraction_of_interval"] for r in local_redone),
                                          default=0.0),
            max_redone_fraction_fresh_vm=max((r["fraction_of_interval"] for r in redone
                                              if r["fresh_vm"]), default=0.0),
            checkpoint_interval_steps=args.checkpoint_every_steps,
            database_integrity=(integrity[0][0] if integrity else "missing"),
            durable_snapshot_integrity=(durable_integrity[0][0] if durable_integrity
                                        else "missing"),
            mlflow=mlflow,
            wall_s=round(total_wall, 1), reference_wall_s=round(ref_wall, 1),
            wall_overhead=round(total_wall / ref_wall, 2),
            best_value=max(final.values()) if final else None, reference_best_value=ref_best,
        )
        ok = (report["completed_trials_lost"] == 0 and report["trials_left_running"] == 0
              and report["completed_trials"] == args.max_trials
              and report["max_redone_fraction_local"] <= 1.0
              and report["database_integrity"] == "ok"
              and report["durable_snapshot_integrity"] == "ok" and mlflow["ok"]
              and (readers is None or (report["readers"]["errors"] == 0
                                       and report["sweep_crashes"] == 0)))
        report["ok"] = ok
        print(json.dumps(report, sort_keys=True))
        if args.results:
            sys.path.insert(0, str(Path(__file__).parent))
            from _results import record

            record(f"fault_injection ({args.kills} kills"
                   f"{', readers' if args.readers else ''})", report,
                   notes="tiny backbone on a simulated Colab layout; redone work is measured "
                   "per interrupted attempt that had trained; local = same VM, fresh VM = "
                   "working folder deleted after the kill")
        return 0 if ok or not args.check else 1
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
