"""The sweep: the loop that runs trials until ``max_trials`` are COMPLETE, resumably.

Only COMPLETE trials count toward ``max_trials`` (with ``scheduler.type: hyperband``, the
configurations started: ``sweep.scheduled``). Each trial trains with epoch checkpoints in the
layout's ``trial_<root>`` folder, where ``root`` is the number of the first attempt of a retry
chain, so a retry continues where the interrupted attempt stopped. After every trial the study
database is snapshotted to the durable folder (when that differs from the working folder).

One :class:`SweepSession` is one session of a sweep. :meth:`SweepSession.open` acquires
everything a session holds (the study and its lock, the MLflow parent run, the checkpoint
mirror, pending durable writes) on one :class:`contextlib.ExitStack`, so every path out of the
session, an error included, releases them in order. Workers (one per device) run
:meth:`SweepSession.worker_loop`; ``sweep.listeners`` hear each trial (MLflow, the front end).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ..core import faults
from ..core.errors import CheckpointError, SweepFailedError, TrialOutOfMemoryError
from ..core.redaction import mask
from ..core.stopping import StopRequest
from ..data.dataset import Dataset
from ..results.evaluate import score_kept_models, scores_lock
from ..results.refit import refit_study
from ..settings.schema import (
    CONTINUES,
    DEVICE,
    ERROR,
    INTERRUPTED,
    MAX_TRIALS,
    OOM,
    RESUMED_FROM_EPOCH,
    SESSIONS,
    TEST_SCORES,
    retry_root,
)
from ..storage.durable import DurableWrites, remove_tree, set_aside
from ..storage.mirror import CheckpointMirror
from ..storage.snapshot import snapshot_all
from ..study.inputs import RunInputs
from ..study.opening import OpenedRun, open_run
from ..study.queries import state_counts
from ..study.store import enqueue_if_new, fingerprint, requeue
from ..tracking.setup import TrackingSetup
from ..tracking.tracker import SweepTracker
from ..training.device import default_device, free_memory
from ..training.train import FitResult
from ..training.trial import Prepared, RungPause, TrialRun, progress, run_trial, suggest
from .budget import over_budget
from .events import SweepEvents, SweepOutcome
from .failures import FailureCount
from .housekeeping import disk_usage, keep_top_k, reconcile, send_waiting_models
from .listeners import EventsListener, TrackingListener, TrialListener
from .plan import SweepPlan
from .scheduled import Scheduled, start_note
from .workers import Claims, run_workers

if TYPE_CHECKING:
    import optuna

__all__ = ["Fit", "SweepSession"]

logger = logging.getLogger(__name__)

Fit = Callable[..., FitResult]


class SweepSession:
    """One session of a sweep: the loop, the bookkeeping around each trial, and what it holds.

    Build it with :meth:`open` (a context manager); workers call :meth:`next_trial`,
    :meth:`run_trial` and :meth:`after_trial` through :meth:`worker_loop`.
    """

    def __init__(self, plan: SweepPlan, run: OpenedRun, prep: Prepared, outcome: SweepOutcome, *,
                 tracker: SweepTracker,
                 events: SweepEvents, stop: StopRequest,
                 stop_after_trial: threading.Event | None, fit: Fit | None,
                 writes: DurableWrites, mirror: CheckpointMirror | None, bucket: Any) -> None:
        self.plan, self.cfg, self.hpo = plan, plan.cfg, plan.cfg.hpo
        self.opened, self.study, self.shared = run.opened, run.opened.study, run.opened.shared
        self.layout, self.prep = run.layout, prep
        self.tracker, self.events, self.stop, self.outcome = tracker, events, stop, outcome
        self.stop_after_trial, self.fit = stop_after_trial, fit
        self.writes, self.mirror, self.bucket = writes, mirror, bucket  # bucket: BucketSync|NoSync
        self.listeners: list[TrialListener] = [TrackingListener(tracker), EventsListener(
            events, self.n_complete if plan.cfg.hpo.scheduler.type != "tpe_median" else None)]
        self.session_start = time.monotonic()
        self.failures = FailureCount(self.hpo.max_failed_trials)
        self.waiting_logged = False
        self.claims = Claims()
        self.books = threading.Lock()  # snapshots and clean-up, one worker at a time
        self.scheduled = Scheduled.of(self.study, self.hpo, self.shared)  # hyperband

    # -- opening and closing -------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def open(cls, plan: SweepPlan, dataset: Dataset, *, tracking: TrackingSetup | None,
             events: SweepEvents, stop: StopRequest, stop_after_trial: threading.Event | None,
             fit: Fit | None = None, inputs: RunInputs | None = None) -> Iterator[SweepSession]:
        """Open the study and everything a session holds; release it all on the way out
        (``inputs``: the data files and devices, stored on the study for later commands)."""
        hpo = plan.cfg.hpo
        tracker = SweepTracker(tracking)
        with contextlib.ExitStack() as stack:
            run = open_run(hpo, plan.backbone, plan.url, plan.local,
                           fingerprint(hpo, dataset.fingerprint), tracker.trial_interrupted)
            opened = run.opened
            outcome = SweepOutcome(opened.study, opened.study_name, opened.paths, opened.resumed,
                                   recovered=opened.recovered,
                                   checkpoint_path=run.checkpoint_path)
            # Released in reverse order of registration: the front end hears last, once the
            # study lock is free.
            stack.callback(events.sweep_finished, outcome)
            stack.callback(opened.close)
            prep = plan.prepare(dataset, run.layout)
            paths = opened.paths
            writes = plan.durable_writes(paths)
            mirror = plan.mirror(paths, run.layout, writes)
            bucket = plan.bucket_sync(paths, writes, tracking.local_db if tracking else None)
            session = cls(plan, run, prep, outcome, tracker=tracker, events=events, stop=stop,
                          stop_after_trial=stop_after_trial, fit=fit, writes=writes,
                          mirror=mirror, bucket=bucket)
            stack.callback(writes.report)
            stack.callback(bucket.close)  # the last copy, with MLflow's final status, lock held
            stack.callback(writes.retry)
            stack.callback(snapshot_all, paths, tracking, writes)
            if mirror is not None:
                stack.callback(mirror.close)
            stack.push(session._close_tracker)
            session._begin(tracking, inputs)
            yield session

    def _begin(self, tracking: TrackingSetup | None, inputs: RunInputs | None) -> None:
        study, opened, plan = self.study, self.opened, self.plan
        if inputs is not None and (opened.paths is not None or opened.shared is not None):
            inputs.remember(study)  # before the first snapshot below takes it along
        if opened.paths is not None:
            study.set_user_attr(SESSIONS, int(study.user_attrs.get(SESSIONS, 0)) + 1)
            study.set_user_attr(MAX_TRIALS, self.hpo.max_trials)  # what status compares to
            if opened.shared is None:
                reconcile(study, self.layout)
                send_waiting_models(study, self.layout, self.hpo.keep_top_k, self.writes)
            # What an earlier session on this VM committed but did not copy (it died in
            # between) goes to the durable folder before anything else happens.
            snapshot_all(opened.paths, tracking, self.writes)
        with opened.shared.exclusive("mlflow") if opened.shared else contextlib.nullcontext():
            self.tracker.open(study, backbone=plan.backbone, max_trials=self.hpo.max_trials,
                              checkpoint_path=self.outcome.checkpoint_path,
                              resumed=opened.resumed, runtime=plan.runtime.kind,
                              objective_metric=self.hpo.objective.metric,
                              recovered=opened.recovered)
        self.prep.record(study)
        if self.hpo.enqueue_trials:
            with opened.shared.exclusive("enqueue") if opened.shared else \
                    contextlib.nullcontext():
                enqueue_if_new(study, self.hpo.enqueue_trials)

    def _close_tracker(self, exc_type: type[BaseException] | None,
                       exc: BaseException | None, tb: TracebackType | None) -> None:
        status = ("KILLED" if self.outcome.interrupted or isinstance(exc, KeyboardInterrupt)
                  else "FAILED" if exc_type is not None else "FINISHED")
        self.tracker.close(status)

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Run trials on every device until a stop reason, then score and refit."""
        max_trials, n_complete = self.hpo.max_trials, self.n_complete()
        self.events.sweep_started(self.outcome, n_complete, max_trials)
        quiet = self.events.draws_progress  # a panel: its own bars, no tqdm from a thread
        trial_bar = progress(max_trials, min(n_complete, max_trials), "trials", quiet=quiet)
        from tqdm.contrib.logging import logging_redirect_tqdm

        # Log lines go through tqdm.write, above the bars, instead of overwriting them.
        with self.stop.installed(), contextlib.closing(trial_bar), contextlib.nullcontext() \
                if quiet else logging_redirect_tqdm(tqdm_class=type(trial_bar)):
            run_workers(lambda: self.worker_loop(trial_bar), self.plan.devices, self.stop.event)
        if self.scheduled is not None:  # stopped trials' checkpoints go
            self.after_trial(None)
        self.after_sweep()
        self.outcome.finish(self.stop.signal_name)

    def after_sweep(self) -> None:
        """Score the kept models on test, then refit (``refit: true``). Nothing happens after
        an interrupt; a refit interrupted in turn marks the outcome so. (The results layer
        never calls back into the sweep: the sweep orchestrates them here.)"""
        outcome, layout, opened = self.outcome, self.layout, self.opened
        if outcome.interrupted:
            return
        if layout.models_root is not None:
            with scores_lock(opened):
                score_kept_models(self.study, layout.kept_models(), self.prep.dataset.test,
                                  self.cfg.train, self.tracker,
                                  untrained=self.prep.dataset.untrained_types)
            outcome.test_scores = self.study.user_attrs.get(TEST_SCORES) or {}
        if self.hpo.refit and opened.paths is not None and layout.refit_root is not None:
            with self.stop.installed():
                outcome.refit = refit_study(self.study, layout, self.cfg, self.prep.dataset,
                                            backbone=self.plan.backbone,
                                            should_stop=self.stop.is_set)
            outcome.interrupted = outcome.refit is None

    def worker_loop(self, trial_bar: Any) -> None:
        """One worker's loop: claim a trial, train it, record it, until a stop reason."""
        while True:
            with self.claims.cond:
                trial = self.next_trial()
                if trial is None:
                    return
                held = self.claims.held(trial.number, str(default_device()))
            beat = self.shared.heartbeat(trial, self.hpo.heartbeat_interval) \
                if self.shared is not None else contextlib.nullcontext()
            with held, beat:
                keep_going, finished_dir = self.run_trial(trial, trial_bar)
            free_memory()
            self.after_trial(finished_dir)
            if not keep_going:
                return

    def n_complete(self) -> int:
        """What ``max_trials`` counts: COMPLETE trials (hyperband: configurations started)."""
        if self.scheduled is not None:
            return self.scheduled.started()
        return state_counts(self.study)["COMPLETE"]

    def next_trial(self) -> optuna.Trial | None:
        """Claim the next trial (the caller holds ``claims.cond``); None: stop (reason kept)."""
        if self.scheduled is not None:
            trial, reason = self.scheduled.next_trial(
                self.claims, lambda started: self.stop_reason(started, budget=False),
                self.outcome.trials_run)
            if reason is not None:
                self.outcome.stop_reason = reason
            return trial
        while True:
            n_complete = self.n_complete()
            reason = self.stop_reason(n_complete)
            if reason is not None:
                self.outcome.stop_reason = reason
                return None
            # The budget stays exact with several workers: trials running here count too.
            if n_complete + len(self.claims.running) < self.hpo.max_trials:
                trial = self._claim()
                if trial is not None:
                    self.waiting_logged = False
                    return trial
            self.claims.wait(self.shared.poll_s if self.shared is not None else 1.0)

    def stop_reason(self, n_complete: int, *, budget: bool = True) -> str | None:
        """The reason to end the loop now, or None to start (or wait for) a trial
        (``budget`` False: the scheduler judges ``max_trials`` itself)."""
        hpo, outcome = self.hpo, self.outcome
        if budget and n_complete >= hpo.max_trials:
            reason = (f"All trials already completed ({n_complete}/{hpo.max_trials})"
                      if outcome.trials_run == 0 else
                      f"Sweep complete: {n_complete}/{hpo.max_trials} trials COMPLETE")
            logger.info("%s", reason)
            return reason
        if self.stop.is_set():
            outcome.interrupted = True
            return ""
        if self.stop_after_trial is not None and self.stop_after_trial.is_set():
            reason = (f"Stopped as asked after the running trial ({n_complete}/"
                      f"{hpo.max_trials} COMPLETE). Resume to continue.")
            logger.info("%s", reason)
            return reason
        return over_budget(hpo, self.study, time.monotonic() - self.session_start, n_complete)

    def _claim(self) -> optuna.Trial | None:
        """The next trial, or None while other workers' running trials cover the budget."""
        if self.shared is None:
            return self.study.ask()
        trial = self.shared.reserve(self.study, self.hpo.max_trials)
        if trial is None and not self.waiting_logged:
            logger.info("The remaining budget is covered by trials running on other workers; "
                        "waiting in case one of them fails")
            self.waiting_logged = True
        return trial

    # -- one trial -----------------------------------------------------------------------

    def run_trial(self, trial: optuna.Trial, trial_bar: Any) -> tuple[bool, Path | None]:
        """Train and record one trial.

        Returns whether the sweep goes on (False: interrupted) and the checkpoint folder to
        drop once the study is snapshotted (None: keep it, the trial will be retried).
        """
        import optuna
        from optuna.trial import TrialState

        params = suggest(trial, self.hpo)
        ckpt_dir = self.layout.trial_dir(retry_root(trial))
        self._start(trial, params, ckpt_dir)
        try:
            run = self._train(trial, params, ckpt_dir)
        except RungPause as pause:
            self._paused(trial, pause, ckpt_dir)
            return True, None  # the checkpoint stays for a promotion
        except optuna.TrialPruned as exc:
            self.study.tell(trial, state=TrialState.PRUNED)
            self._record(trial, "PRUNED", None)
            logger.info("Trial %d pruned: %s", trial.number, exc)
            self.failures.succeeded()
            return True, ckpt_dir
        except Exception as exc:  # noqa: BLE001 - one bad trial must not end the sweep
            # a failed trial is not retried: free its disk (a damaged folder is kept aside)
            return True, self._failed(trial, exc, ckpt_dir)
        if run.result.interrupted:
            self._interrupted(trial, run, ckpt_dir)
            return False, None
        self.failures.succeeded()
        self.study.tell(trial, run.value)
        faults.point("db_commit")
        self._record(trial, "COMPLETE", run.value)
        trial_bar.update(1)
        logger.log(logging.WARNING if run.learned_nothing else logging.INFO,
                   "Trial %d finished: F1 %.4f (best so far %.4f)%s", trial.number, run.value,
                   self.study.best_value, run.note)
        if ckpt_dir is not None:
            keep_top_k(self.study, self.layout, self.hpo.keep_top_k, trial.number,
                       run.best_model, self.writes, continues=CONTINUES in trial.user_attrs)
        return True, ckpt_dir

    def _paused(self, trial: optuna.Trial, pause: RungPause, ckpt_dir: Path | None) -> None:
        """Paused at a rung (scheduler hyperband): its checkpoint stays, durable first."""
        assert self.scheduled is not None
        if self.mirror is not None:
            self.mirror.flush()
        self.bucket.flush()
        self.failures.succeeded()
        self.scheduled.pause(trial, pause)
        faults.point("db_commit")
        self._record(trial, "PAUSED", pause.value)
        if ckpt_dir is not None:
            keep_top_k(self.study, self.layout, self.hpo.keep_top_k, trial.number,
                       self.layout.best_model_dir(ckpt_dir), self.writes,
                       continues=CONTINUES in trial.user_attrs)

    def after_trial(self, finished_dir: Path | None) -> None:
        """Snapshot the study, retry waiting copies, then drop the finished trial's folder and
        those the scheduler no longer needs."""
        with self.books:
            # The durable study must record the trial's end before its checkpoints go: a kill
            # in between then costs nothing (the trial is done) instead of the whole trial.
            snapshot_all(self.opened.paths, self.tracker.setup, self.writes)
            self.writes.retry()  # kept models that waited on local disk
            spent = [self.layout.trial_dir(r) for r in sorted(self.scheduled.spent())] \
                if self.scheduled is not None and not self.writes.pending else []
            for folder in [finished_dir, *spent]:
                self._drop_checkpoints(folder)
            if finished_dir is not None or spent:
                self.outcome.bytes_kept = disk_usage(self.layout, self.mirror, log=True)
            self.bucket.request()  # the study first, then the checkpoints' removal

    def _train(self, trial: optuna.Trial, params: dict[str, Any],
               ckpt_dir: Path | None) -> TrialRun:
        mirror, bucket = self.mirror, self.bucket
        on_checkpoint = mirror.submit if mirror else bucket.request if bucket.active else None
        s = self.scheduled
        if s is not None:  # a PBT segment starts from a copy of the checkpoint it continues
            s.seed(trial, params, ckpt_dir, self.layout, mirror, on_checkpoint)
        return run_trial(trial, params, self.prep, self.cfg, ckpt_dir,
                         self.cfg.train.seed + retry_root(trial), self.stop.is_set,
                         self.tracker, self.events, on_checkpoint, fit=self.fit,
                         rung=s.rung_check(trial) if s else None,
                         rung_from=s.rung_from(trial) if s else 0)

    def _start(self, trial: optuna.Trial, params: dict[str, Any], ckpt_dir: Path | None) -> None:
        logger.info("Trial %d started%s: %s", trial.number, start_note(trial.user_attrs),
                    json.dumps(params, sort_keys=True))
        self.outcome.trials_run += 1
        if len(self.plan.devices) > 1:
            trial.set_user_attr(DEVICE, str(default_device()))
        for listener in self.listeners:
            listener.trial_started(self.study, trial, params)
        if self.mirror is not None and ckpt_dir is not None:
            # The durable study must know this trial and its params, so that a fresh VM finds
            # it RUNNING, retries it with the same params and continues from the mirror.
            with self.books:
                snapshot_all(self.opened.paths, self.tracker.setup, self.writes)
            self.mirror.pull(ckpt_dir)  # a fresh VM continues from the durable copy

    def _failed(self, trial: optuna.Trial, exc: Exception,
                ckpt_dir: Path | None) -> Path | None:
        """Record a failed trial; returns its folder to drop (None when it was set aside)."""
        from optuna.trial import TrialState

        resumed = RESUMED_FROM_EPOCH in trial.user_attrs and not isinstance(
            exc, TrialOutOfMemoryError)  # failed after resuming: its checkpoint is evidence
        if (isinstance(exc, CheckpointError) or resumed) and ckpt_dir and ckpt_dir.exists():
            moved = set_aside(ckpt_dir, "damaged")  # evidence, never deleted
            logger.error("Trial %d's checkpoint folder is damaged: set aside as %s",
                         trial.number, moved)
            ckpt_dir = None
        oom = isinstance(exc, TrialOutOfMemoryError)  # FAIL with oom=True
        last_error = str(exc) if oom else f"{type(exc).__name__}: {exc}"
        trial.set_user_attr(ERROR, mask(last_error)[:1000])  # no secret in the study
        if oom:
            trial.set_user_attr(OOM, True)
        self.study.tell(trial, state=TrialState.FAIL)
        self._record(trial, "FAIL", None)
        try:
            self.failures.failed(trial.number, exc, last_error)
        except SweepFailedError:
            if not oom:
                self._drop_checkpoints(ckpt_dir)
            raise
        return ckpt_dir

    def _interrupted(self, trial: optuna.Trial, run: TrialRun, ckpt_dir: Path | None) -> None:
        from optuna.trial import TrialState

        if self.mirror is not None:
            self.mirror.flush()  # the saved position must reach the durable folder first
        self.bucket.flush()
        trial.set_user_attr(INTERRUPTED, True)
        with self.shared.exclusive("budget") if self.shared else contextlib.nullcontext():
            self.study.tell(trial, state=TrialState.FAIL)  # with its retry: one step for
            requeue(self.study, trial)  # workers counting under the lock
        self._record(trial, "INTERRUPTED", None)
        self.outcome.interrupted = True
        logger.warning("Trial %d interrupted at step %d: checkpoint kept in %s and the trial "
                       "re-queued", trial.number, run.result.global_step, ckpt_dir)

    def _drop_checkpoints(self, ckpt_dir: Path | None) -> None:
        if ckpt_dir is None:
            return
        if self.mirror is not None:
            self.mirror.discard(ckpt_dir)
        remove_tree(ckpt_dir, "checkpoints of finished trial")

    def _record(self, trial: optuna.Trial, state: str, value: float | None) -> None:
        for listener in self.listeners:
            listener.trial_finished(self.study, trial, state, value)
