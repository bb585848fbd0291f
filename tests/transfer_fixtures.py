"""Earlier outputs as a sweep leaves them, built in a second: a real Optuna study in SQLite (with
the fingerprint of the test project's config and data), a checkpoint with its checksums, a kept
model, the tokenizer cache and an MLflow store. Used by test_resume_from and test_bundle."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
from contextlib import contextmanager
from pathlib import Path

import optuna

from hpo_helpers import load_configs
from hpo_helpers.data.dataset import load_data
from hpo_helpers.study.store import fingerprint

STUDY = "hpo_tiny"
CREATED = "2024-01-02T03:04:05"
MODELS = f"models/{STUDY}-20240102-030405"


def project_fingerprint(project) -> dict:
    cfg = load_configs(project.config_dir, project.hpo)
    return fingerprint(cfg.hpo, load_data(cfg).fingerprint)


def make_study(db: Path, finished: int, *, parts: dict, running: bool = True,
               offset: float = 0.0) -> None:
    """``finished`` COMPLETE trials (values ``offset + 0.1 * i``), then one RUNNING trial."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db.parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(study_name=STUDY, storage=f"sqlite:///{db}",
                                direction="maximize", load_if_exists=True)
    study.set_user_attr("fingerprint", parts)
    study.set_user_attr("created_at", CREATED)
    for i in range(finished):
        study.add_trial(optuna.trial.create_trial(value=offset + 0.1 * i))
    if running:
        study.ask()


def make_checkpoint(trial_dir: Path, step: int, payload: bytes = b"w" * 4096) -> Path:
    ckpt = trial_dir / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    (ckpt / "model.pt").write_bytes(payload)
    (ckpt / "training_state.pt").write_bytes(payload[::-1] + b"t")
    (ckpt / "trainer_state.json").write_text(json.dumps({"epoch": 1, "step": step}))
    sums = {n: hashlib.sha256((ckpt / n).read_bytes()).hexdigest()
            for n in ("model.pt", "training_state.pt")}
    (ckpt / "checksums.json").write_text(json.dumps({"sha256": sums}))
    (ckpt / "COMPLETE").write_text(f"{step}\n")
    return ckpt


def make_mlflow(db: Path, runs: int = 2) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE runs (run_uuid TEXT)")
    con.executemany("INSERT INTO runs VALUES (?)", [(f"run{i}",) for i in range(runs)])
    con.commit()
    con.close()


def make_output(hpo_root: Path, mlflow: Path | None, *, finished: int, parts: dict,
                step: int = 6, offset: float = 0.0) -> Path:
    """An output folder (``<hpo_root>/tiny/study.db`` ...) of a study killed inside trial
    ``finished``: its newest checkpoint, an older one cut off (no marker), one kept model."""
    folder = hpo_root / "tiny"
    make_study(folder / "study.db", finished, parts=parts, offset=offset)
    trial = folder / "trials" / STUDY / f"trial_{finished}"
    make_checkpoint(trial, step)
    (trial / f"checkpoint-{step + 6}").mkdir()  # a write cut off by the kill: never used
    (trial / f"checkpoint-{step + 6}" / "model.pt").write_bytes(b"half")
    model = folder / MODELS / "trial_0"
    model.mkdir(parents=True)
    (model / "model.safetensors").write_bytes(os.urandom(2048))
    (model / "metrics.json").write_text("{}")
    cache = hpo_root / ".backbones" / "tiny-0123456789abcdef"
    cache.mkdir(parents=True)
    (cache / "tokenizer.json").write_text("{}")
    if mlflow is not None:
        make_mlflow(mlflow)
    return folder / "study.db"


def finished_values(db: Path) -> dict[int, float]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT t.number, v.value FROM trials t JOIN trial_values v "
                           "ON v.trial_id = t.trial_id WHERE t.state = 'COMPLETE'").fetchall()
    finally:
        con.close()
    return {n: v for n, v in rows}


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its SHA-256 (what "nothing written" compares)."""
    if not folder.exists():
        return {}
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextmanager
def read_only(source: Path, where: Path):
    """``source`` seen read-only at ``where`` (a read-only bind mount, as Kaggle attaches a
    version's output). Yields True when the mount took; else ``where`` is a chmod-ed copy
    (root ignores chmod: the caller says so) and False."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = _mount("--bind", str(source), str(where))
    if mounted and not _mount("-o", "remount,ro,bind", str(where)):
        subprocess.run(["umount", str(where)], capture_output=True)
        mounted = False
    if not mounted:
        import shutil

        where.rmdir()
        shutil.copytree(source, where)
        for p in [where, *where.rglob("*")]:
            p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", str(where)], capture_output=True)
        else:
            for p in [where, *where.rglob("*")]:
                p.chmod(0o755 if p.is_dir() else 0o644)
