"""Several workers sharing one study on the real PostgreSQL server at 127.0.0.1:5432."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hpo_helpers import load_configs, run_sweep
from hpo_helpers.training.train import FitResult

from .conftest import TINY_HPO
from .test_kill_resume import _env, has_checkpoint

PASSWORD = "pw-Secret-42"


@pytest.fixture
def pg_url():
    """A fresh database per test on the local server, dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres",
                                autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers on 127.0.0.1:5432 ({exc})")
    name = f"hpo_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        # trust auth ignores the password: it is there to prove that it never leaks
        yield f"postgresql+psycopg://postgres:{PASSWORD}@127.0.0.1:5432/{name}"
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def _shared_config(project, *, max_trials: int, epochs: int = 2, n_docs: int = 16,
                   shared_dir: Path | None = None, grace: int = 4) -> None:
    data = project.config_dir / "data" / "test.yaml"
    raw = yaml.safe_load(data.read_text())
    raw["max_train_documents"] = n_docs
    data.write_text(yaml.safe_dump(raw))
    project.write_hpo(max_trials=max_trials, heartbeat_interval=1, grace_period=grace,
                      shared_checkpoint_dir=str(shared_dir) if shared_dir else None,
                      search_space=dict(TINY_HPO["search_space"], epochs=epochs))


def _workers(project, url: str, n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(project.run_args("--storage-url", url), env=_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for _ in range(n)]


def _finish(procs: list[subprocess.Popen], timeout: float = 400) -> list[str]:
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        outs.append(out)
    return outs


def _study(url: str):
    return optuna.load_study(study_name="hpo_tiny", storage=url)


def _check_budget(study, max_trials: int) -> None:
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == max_trials
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    roots = [t.user_attrs.get("retry_root", t.number) for t in complete]
    assert len(roots) == len(set(roots)), "two COMPLETE trials of one retry chain"
    assert not study.get_trials(states=(TrialState.RUNNING,))


@pytest.mark.slow
def test_three_workers_share_the_budget_exactly(project, pg_url) -> None:
    _shared_config(project, max_trials=6)
    procs = _workers(project, pg_url, 3)
    outs = _finish(procs)
    assert [p.returncode for p in procs] == [0, 0, 0], outs[0][-3000:]
    study = _study(pg_url)
    _check_budget(study, 6)
    workers = {t.user_attrs["worker"] for t in study.trials}
    assert len(workers) >= 2, "the work was shared"
    for out in outs:
        assert PASSWORD not in out
        assert "postgres:***@127.0.0.1" in out


def test_a_dead_workers_retry_is_queued_before_another_worker_counts_the_budget(
        pg_url) -> None:
    """Failing a dead worker's trial and queueing its retry is one step under the budget
    lock: a worker that claims meanwhile waits, then finds the retry's place taken, instead
    of starting a new trial in it (the retry would then never run)."""
    from hpo_helpers.study.distributed import SharedStudy, open_storage
    from hpo_helpers.study.store import requeue

    in_callback = threading.Event()

    def on_stale(study, frozen) -> None:
        in_callback.set()
        time.sleep(1.0)  # a slow callback (MLflow): the other worker claims meanwhile
        requeue(study, frozen)

    def worker():
        storage = open_storage(pg_url, heartbeat_interval=1, grace_period=1, on_stale=on_stale)
        return optuna.load_study(study_name="s", storage=storage), SharedStudy(storage, "s")

    optuna.create_study(study_name="s", storage=pg_url, direction="maximize")
    (a_study, a), (b_study, b) = worker(), worker()
    done = a_study.ask()
    done.suggest_float("x", 0, 1)
    a_study.tell(done, 0.5)
    dead = a_study.ask()  # its worker dies after one heartbeat
    dead.suggest_float("x", 0, 1)
    a.storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)  # past the grace period
    got: dict[str, optuna.Trial | None] = {}
    first = threading.Thread(target=lambda: got.setdefault("a", a.reserve(a_study, 2)))
    first.start()
    assert in_callback.wait(30)
    got["b"] = b.reserve(b_study, 2)
    first.join(30)
    claimed = [t for t in got.values() if t is not None]
    assert len(claimed) == 1, got  # budget 2: the COMPLETE trial and the retry
    assert claimed[0].user_attrs["retry_of"] == dead.number
    assert claimed[0].suggest_float("x", 0, 1) == dead.params["x"]  # the same params


@pytest.mark.slow
def test_killed_worker_trial_is_retried_from_its_checkpoint(project, pg_url, tmp_path) -> None:
    shared = tmp_path / "shared-ckpt"
    # four epochs: a trial is RUNNING with a checkpoint for three, wide enough to catch on a
    # loaded machine
    _shared_config(project, max_trials=4, epochs=4, n_docs=60, shared_dir=shared, grace=8)
    procs = _workers(project, pg_url, 3)
    by_pid = {p.pid: p for p in procs}
    victim = None
    deadline = time.monotonic() + 300
    try:
        while victim is None and time.monotonic() < deadline:
            if all(p.poll() is not None for p in procs):
                pytest.fail("every worker ended before a kill:\n" + "\n----\n".join(
                    o[-2000:] for o in _finish(procs)))
            time.sleep(0.05)
            # cheap first (a file system glob); the study is read once a checkpoint exists
            if not any(has_checkpoint(d) for d in shared.glob("hpo_tiny/trials/trial_*")):
                continue
            try:
                running = _study(pg_url).get_trials(states=(TrialState.RUNNING,))
            except Exception:  # noqa: BLE001 - the study may not exist yet
                continue
            for t in running:
                pid = int(str(t.user_attrs.get("worker", ":0")).rsplit(":", 1)[1])
                if pid in by_pid and has_checkpoint(
                        shared / "hpo_tiny" / "trials" / f"trial_{t.number}"):
                    victim = (t.number, by_pid[pid])
                    break
        assert victim is not None, "no trial reached its first checkpoint"
        number, proc = victim
        proc.send_signal(signal.SIGKILL)
        others = [p for p in procs if p is not proc]
        outs = _finish(others)
        assert [p.returncode for p in others] == [0, 0], "\n----\n".join(
            o[-3000:] for o in outs)  # both workers' logs
    finally:
        for p in procs:
            p.kill()
    study = _study(pg_url)
    _check_budget(study, 4)
    dead = study.trials[number]
    assert dead.state == TrialState.FAIL
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == number)
    assert retry.state == TrialState.COMPLETE and retry.params == dead.params
    assert retry.user_attrs["resumed_from_epoch"] >= 1
    assert any("lost its worker" in out for out in outs)
    info = subprocess.run(project.cli("status", "--config", str(project.hpo), "--storage-url",
                                      pg_url, "--json"), env=_env(), capture_output=True,
                          text=True, timeout=120)
    status = json.loads(info.stdout)
    assert status["n_complete"] == 4 and status["n_interrupted"] == 1
    assert PASSWORD not in info.stdout and status["workers"] == []


def test_slow_but_alive_trial_is_not_marked_stale(project, pg_url, monkeypatch) -> None:
    grace = 3

    def slow_fit(**kwargs):  # one training step that lasts longer than the grace period
        time.sleep(grace * 2.5)
        metrics = {"f1": 0.5, "precision": 0.5, "recall": 0.5, "per_entity": {}, "epoch": 0,
                   "train_loss": 1.0}
        kwargs["on_epoch"](0, metrics)
        return FitResult(best_f1=0.5, history=[metrics], global_step=1)

    _shared_config(project, max_trials=1, grace=grace)
    watcher_storage = optuna.storages.RDBStorage(pg_url, heartbeat_interval=1,
                                                 grace_period=grace)
    failed_by_watcher: list[int] = []
    stop = threading.Event()

    def watch() -> None:  # another worker's stale check, over and over
        while not stop.is_set():
            try:
                study = optuna.load_study(study_name="hpo_tiny", storage=watcher_storage)
                before = {t.number for t in study.get_trials(states=(TrialState.FAIL,))}
                optuna.storages.fail_stale_trials(study)
                after = {t.number for t in study.get_trials(states=(TrialState.FAIL,))}
                failed_by_watcher.extend(after - before)
            except KeyError:
                pass
            stop.wait(0.3)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        cfg = load_configs(project.config_dir, project.hpo)
        outcome = run_sweep(cfg, output_dir=project.output_dir, storage_url=pg_url,
                            fit=slow_fit)
    finally:
        stop.set()
        thread.join(10)
    assert failed_by_watcher == []
    assert [t.state for t in outcome.study.trials] == [TrialState.COMPLETE]


def test_storage_url_from_the_environment_and_masked_in_status(project, pg_url,
                                                               monkeypatch) -> None:
    from hpo_helpers import study_status

    monkeypatch.setenv("HPO_STORAGE_URL", pg_url)
    _shared_config(project, max_trials=1)
    cfg = load_configs(project.config_dir, project.hpo)
    run_sweep(cfg, output_dir=project.output_dir)
    info = study_status(cfg)
    assert info["n_complete"] == 1
    assert info["checkpoint_path"].startswith("postgresql+psycopg://postgres:***@")
    assert PASSWORD not in json.dumps(info, default=str)


def test_unreachable_server_is_one_clear_error(project) -> None:
    from hpo_helpers import StudyError

    _shared_config(project, max_trials=1)
    cfg = load_configs(project.config_dir, project.hpo)
    with pytest.raises(StudyError, match=r"cannot open the shared study storage "
                                         r"postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:1/x"):
        run_sweep(cfg, output_dir=project.output_dir,
                  storage_url=f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:1/x")


def test_panel_and_inspection_work_on_a_shared_study(project, pg_url) -> None:
    from hpo_helpers.frontends.widgets import ResumePanel
    from hpo_helpers.results.inspection import inspect_all

    _shared_config(project, max_trials=2)
    panel = ResumePanel(config_dir=project.config_dir, hpo_config=project.hpo,
                        output_dir=project.output_dir, storage_url=pg_url, max_trials=1)
    assert "New study hpo_tiny" in panel.action.value
    assert PASSWORD not in panel.where.value
    panel.resume(block=True)
    assert panel.outcome.stop_reason == "Sweep complete: 1/1 trials COMPLETE"
    shown: list = []
    studies = inspect_all([], storage_url=pg_url, display=shown.append)
    assert [s.study_name for s in studies] == ["hpo_tiny"]
    assert any(hasattr(x, "columns") and "param_learning_rate" in x.columns for x in shown)


def test_shared_study_gets_test_scores_and_evaluate_runs_on_it(project, pg_url,
                                                               tmp_path) -> None:
    """Issue 16: test scores on a shared study, written under the workers' advisory lock."""
    from hpo_helpers.results.evaluate import evaluate_study
    from hpo_helpers.study.status import status

    _shared_config(project, max_trials=1, epochs=1, shared_dir=tmp_path / "shared")
    cfg = load_configs(project.config_dir, project.hpo)
    outcome = run_sweep(cfg, output_dir=project.output_dir, storage_url=pg_url)
    assert set(outcome.test_scores) == {"0"}
    info = status(cfg, output_dir=project.output_dir, storage_url=pg_url)
    assert info["test_f1"] == outcome.test_scores["0"]["f1"]
    assert set(info["test_per_entity"]) == set(outcome.test_scores["0"]["per_type"])
    scores, best = evaluate_study(cfg, output_dir=project.output_dir, storage_url=pg_url,
                                  trial=0)
    assert best == 0
    assert scores[0]["f1"] == pytest.approx(info["test_f1"])
    assert (tmp_path / "shared" / "hpo_tiny" / "models" / "trial_0" / "metrics.json").is_file()
