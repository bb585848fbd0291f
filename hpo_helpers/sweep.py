"""The sweep: the loop that runs trials until ``max_trials`` are COMPLETE, resumably.

Only COMPLETE trials count toward ``max_trials``. Each trial trains with epoch checkpoints in the
layout's ``trial_<root>`` folder, where ``root`` is the number of the first attempt of a retry
chain, so a retry continues where the interrupted attempt stopped. After every trial the study
database is snapshotted to the durable folder (when that differs from the working folder).
Paths come from one :class:`~hpo_helpers.layout.StudyLayout` per call; one trial's training is
in ``trial``; disk and memory between trials in ``housekeeping``; the read-only side in
``status``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import faults
from .backbones import load_backbone
from .config import Configs, load_configs
from .data import load_data
from .device import default_device, policy_for, worker_devices
from .durable import DurableWrites, set_aside
from .errors import CheckpointError, SweepFailedError, TrialOutOfMemoryError
from .evaluate import after_sweep, record_data
from .events import SweepEvents, SweepOutcome
from .housekeeping import disk_usage, keep_top_k, reconcile, send_waiting_models, snapshot_all
from .layout import StudyLayout, backbone_cache
from .mirror import CheckpointMirror
from .mlflow_setup import TrackingSetup, setup_mlflow_from_config
from .opening import adopt_seed_study, open_run
from .paths import StudyPaths, resolve
from .queries import best_trial, recent_durations
from .redaction import mask
from .runtime import Runtime, detect
from .schema import (
    DEVICE,
    ERROR,
    INTERRUPTED,
    OOM,
    RETRY_OF,
    SESSIONS,
    retry_root,
)
from .status import status, storage_url_for
from .stopping import StopRequest as _StopRequest
from .study import OpenedStudy, count_states, fingerprint, requeue
from .tracking import SweepTracker
from .train import fit  # looked up per trial: benchmarks and tests replace it here
from .trial import Prepared, TrialRun, prepare, progress, run_trial, suggest
from .workers import Claims, work

if TYPE_CHECKING:
    import optuna

__all__ = ["Configs", "SweepEvents", "SweepOutcome", "load_configs", "load_data",
           "run_local_hpo_sweep", "run_sweep", "status", "storage_url_for"]

logger = logging.getLogger(__name__)

OOM_TRIALS_IN_A_ROW_STOP = 5


def _estimate_trial_seconds(study: optuna.Study) -> float | None:
    durations = recent_durations(study, 5)
    return statistics.mean(durations) if durations else None


def _finished(events: SweepEvents, study: optuna.Study, number: int, state: str,
              value: float | None) -> None:
    n_complete = count_states(study)["COMPLETE"]
    best = best_trial(study) if n_complete else None
    events.trial_finished(number, state, value, n_complete, best.value if best else None)


class _Sweep:
    """One session of a sweep: the loop and the bookkeeping around each trial."""

    def __init__(self, cfg: Configs, opened: OpenedStudy, prep: Prepared, layout: StudyLayout,
                 stop: _StopRequest, tracker: SweepTracker, events: SweepEvents,
                 stop_after_trial: threading.Event | None, outcome: SweepOutcome,
                 mirror: CheckpointMirror | None = None,
                 writes: DurableWrites | None = None, devices: list[Any] | None = None,
                 ) -> None:
        self.cfg, self.hpo = cfg, cfg.hpo
        self.writes = writes or DurableWrites()
        self.opened, self.study, self.shared = opened, opened.study, opened.shared
        self.prep = prep
        self.layout = layout
        self.stop, self.tracker, self.events = stop, tracker, events
        self.stop_after_trial = stop_after_trial
        self.outcome = outcome
        self.mirror = mirror
        self.session_start = time.monotonic()
        self.failures_in_a_row = 0
        self.oom_in_a_row = 0  # out-of-memory trials: not failures, but five in a row stop
        self._waiting_logged = False
        self.devices = devices or [None]  # one worker per entry (issue 13)
        self.claims = Claims()
        self.books = threading.Lock()  # snapshots and clean-up, one worker at a time

    def n_complete(self) -> int:
        return count_states(self.study)["COMPLETE"]

    def _why_stop(self, n_complete: int) -> str | None:
        """The reason to end the loop now, or None to start (or wait for) a trial."""
        hpo, outcome = self.hpo, self.outcome
        if n_complete >= hpo.max_trials:
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
        if hpo.timeout_minutes is not None:
            elapsed = time.monotonic() - self.session_start
            estimate = _estimate_trial_seconds(self.study) or 0.0
            if elapsed + estimate > hpo.timeout_minutes * 60:
                reason = (f"Time budget: {elapsed / 60:.1f} of {hpo.timeout_minutes} min used; "
                          f"a trial takes about {estimate / 60:.1f} min, so none more starts "
                          f"({n_complete}/{hpo.max_trials} COMPLETE). Re-run to continue.")
                logger.warning("%s", reason)
                return reason
        return None

    def _claim(self) -> optuna.Trial | None:
        """The next trial, or None while other workers' running trials cover the budget."""
        if self.shared is None:
            return self.study.ask()
        trial = self.shared.reserve(self.study, self.hpo.max_trials)
        if trial is None and not self._waiting_logged:
            logger.info("The remaining budget is covered by trials running on other workers; "
                        "waiting in case one of them fails")
            self._waiting_logged = True
        return trial

    def _start(self, trial: optuna.Trial, params: dict[str, Any], ckpt_dir: Path | None) -> None:
        logger.info("Trial %d started%s: %s", trial.number,
                    f" (retry of trial {trial.user_attrs[RETRY_OF]})"
                    if RETRY_OF in trial.user_attrs else "", json.dumps(params, sort_keys=True))
        self.outcome.trials_run += 1
        if len(self.devices) > 1:
            trial.set_user_attr(DEVICE, str(default_device()))
        self.tracker.trial_started(trial, params)
        self.events.trial_started(trial.number, params, trial.user_attrs.get(RETRY_OF))
        if self.mirror is not None and ckpt_dir is not None:
            # The durable study must know this trial and its params, so that a fresh VM finds
            # it RUNNING, retries it with the same params and continues from the mirror.
            with self.books:
                snapshot_all(self.opened.paths, self.tracker.setup, self.writes)
            self.mirror.pull(ckpt_dir)  # a fresh VM continues from the durable copy

    def _run_one(self, trial: optuna.Trial, trial_bar: Any) -> tuple[bool, Path | None]:
        """Train and record one trial.

        Returns whether the sweep goes on (False: interrupted) and the checkpoint folder to
        drop once the study is snapshotted (None: keep it, the trial will be retried).
        """
        import optuna
        from optuna.trial import TrialState

        study, hpo, mirror = self.study, self.hpo, self.mirror
        params = suggest(trial, hpo)
        root = retry_root(trial)
        ckpt_dir = self.layout.trial_dir(root)
        self._start(trial, params, ckpt_dir)
        try:
            run = run_trial(trial, params, self.prep, self.cfg, ckpt_dir, self.cfg.train.seed
                            + root, self.stop.is_set, self.tracker, self.events,
                            mirror.submit if mirror is not None else None, fit=fit)
        except optuna.TrialPruned as exc:
            study.tell(trial, state=TrialState.PRUNED)
            self._record(trial, "PRUNED", None)
            logger.info("Trial %d pruned: %s", trial.number, exc)
            self.failures_in_a_row = self.oom_in_a_row = 0
            return True, ckpt_dir
        except Exception as exc:  # noqa: BLE001 - one bad trial must not end the sweep
            # a failed trial is not retried: free its disk (a damaged folder is kept aside)
            return True, self._failed(trial, exc, ckpt_dir)
        if run.result.interrupted:
            self._interrupted(trial, run, ckpt_dir)
            return False, None
        self.failures_in_a_row = self.oom_in_a_row = 0
        study.tell(trial, run.value)
        faults.point("db_commit")
        self._record(trial, "COMPLETE", run.value)
        trial_bar.update(1)
        logger.info("Trial %d finished: F1 %.4f (best so far %.4f)", trial.number, run.value,
                    study.best_value)
        if ckpt_dir is not None:
            keep_top_k(study, self.layout, hpo.keep_top_k, trial.number, run.best_model,
                       self.writes)
        return True, ckpt_dir

    def _failed(self, trial: optuna.Trial, exc: Exception,
                ckpt_dir: Path | None) -> Path | None:
        """Record a failed trial; returns its folder to drop (None when it was set aside)."""
        from optuna.trial import TrialState

        if isinstance(exc, CheckpointError) and ckpt_dir is not None and ckpt_dir.exists():
            moved = set_aside(ckpt_dir, "damaged")  # evidence, never deleted (issue 11)
            logger.error("Trial %d's checkpoint folder is damaged: set aside as %s",
                         trial.number, moved)
            ckpt_dir = None
        oom = isinstance(exc, TrialOutOfMemoryError)  # issue 13: FAIL with oom=True
        last_error = str(exc) if oom else f"{type(exc).__name__}: {exc}"
        trial.set_user_attr(ERROR, mask(last_error)[:1000])  # no secret in the study
        if oom:
            trial.set_user_attr(OOM, True)
        self.study.tell(trial, state=TrialState.FAIL)
        self._record(trial, "FAIL", None)
        if oom:  # not counted toward max_failed_trials, but five in a row stop the sweep
            self.oom_in_a_row += 1
            logger.error("Trial %d failed: %s", trial.number, exc)
            if self.oom_in_a_row >= OOM_TRIALS_IN_A_ROW_STOP:
                raise SweepFailedError(
                    f"{self.oom_in_a_row} trials in a row ran out of memory (last: {exc}). "
                    "Finished trials are kept. Fix: lower the batch_size choices in the search "
                    "space (or max_length in train.yaml), or set oom_retry: true in train.yaml, "
                    "then re-run to continue.") from exc
            return
        self.failures_in_a_row += 1
        self.oom_in_a_row = 0
        logger.exception("Trial %d failed (%d in a row)", trial.number, self.failures_in_a_row)
        if self.failures_in_a_row >= self.hpo.max_failed_trials:
            self._drop_checkpoints(ckpt_dir)
            raise SweepFailedError(
                f"{self.failures_in_a_row} trials failed in a row (max_failed_trials = "
                f"{self.hpo.max_failed_trials}); last error: {last_error}. Finished "
                "trials are kept. Fix the cause, then re-run to continue.") from exc
        return ckpt_dir

    def _interrupted(self, trial: optuna.Trial, run: TrialRun, ckpt_dir: Path | None) -> None:
        from optuna.trial import TrialState

        if self.mirror is not None:
            self.mirror.flush()  # the saved position must reach the durable folder first
        trial.set_user_attr(INTERRUPTED, True)
        self.study.tell(trial, state=TrialState.FAIL)
        requeue(self.study, trial)
        self._record(trial, "INTERRUPTED", None)
        self.outcome.interrupted = True
        logger.warning("Trial %d interrupted at step %d: checkpoint kept in %s and the trial "
                       "re-queued", trial.number, run.result.global_step, ckpt_dir)

    def _drop_checkpoints(self, ckpt_dir: Path | None) -> None:
        if ckpt_dir is None:
            return
        if self.mirror is not None:
            self.mirror.discard(ckpt_dir)
        shutil.rmtree(ckpt_dir, ignore_errors=True)

    def _report_disk(self) -> None:
        usage = disk_usage(self.layout, self.mirror)
        self.outcome.bytes_kept = usage
        logger.info("Disk kept: %s", ", ".join(f"{k.replace('_', ' ')} {v / 1e6:.1f} MB"
                                                for k, v in usage.items()))

    def _record(self, trial: optuna.Trial, state: str, value: float | None) -> None:
        self.tracker.trial_finished(self.study, trial, state, value)
        _finished(self.events, self.study, trial.number, state, value)


def _mirror_for(hpo: Any, opened: OpenedStudy, layout: StudyLayout,
                writes: DurableWrites) -> CheckpointMirror | None:
    on = hpo.mirror_trial_checkpoints
    if on is None:  # default: on where the working folder dies with the VM (Colab)
        on = opened.paths is not None and opened.paths.snapshots_needed
    if on and opened.paths is not None and layout.mirror_root is not None:
        return CheckpointMirror(layout, writes)
    return None


def _prepare_sweep(cfg: Configs, backbone: str, dataset_path: Path | str | None,
                   local: StudyPaths | None, url: str | None,
                   split_files: dict[str, Any] | None = None) -> Prepared:
    """Load the dataset and the backbone's tokenizer, and encode every fold once."""
    dataset = load_data(cfg, dataset_path, split_files)
    if local is not None:
        # Durable (and shared across workers): the tiny tokenizer is trained once per dataset,
        # and a checkpoint only fits the vocabulary it was trained with.
        base = Path(cfg.hpo.shared_checkpoint_dir) if url and cfg.hpo.shared_checkpoint_dir \
            else local.durable_dir
        cache = backbone_cache(base, backbone, dataset.fingerprint)
    else:
        import tempfile

        cache = Path(tempfile.mkdtemp(prefix="hpo-tiny-"))
    bb = load_backbone(backbone, cfg.config_dir,
                       texts=[" ".join(d.words) for d in dataset.train], cache_dir=cache)
    return prepare(cfg, dataset, bb, cfg.train.seed)


def run_sweep(cfg: Configs, *, backbone: str | None = None, dataset_path: Path | str | None = None,
              output_dir: Path | str | None = None, runtime: Runtime | None = None,
              stop: _StopRequest | None = None,
              tracking: TrackingSetup | None = None, events: SweepEvents | None = None,
              stop_after_trial: threading.Event | None = None,
              storage_url: str | None = None,
              split_files: dict[str, Any] | None = None) -> SweepOutcome:
    """Run (or resume) the sweep described by ``cfg``; see the module docstring.

    ``split_files`` (``--train/--validation/--test``) name split files explicitly.

    ``stop_after_trial`` (the panel's button) ends the sweep once the running trial is done;
    ``events`` receives progress. ``storage_url`` (or ``HPO_STORAGE_URL``, or the config's
    ``storage_url``) makes this process one worker of a shared study (see ``distributed``).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    hpo = cfg.hpo
    backbone_name = backbone or hpo.backbone
    runtime = runtime or detect()
    url = storage_url_for(hpo, storage_url)
    devices = worker_devices(cfg.train.devices, cfg.train.source)
    for device in devices:  # refuses precision/compile a device cannot run, before any work
        policy_for(cfg.train, device)
    local = resolve(runtime, backbone=backbone_name, storage_path=hpo.checkpoint.storage_path,
                    output_dir=output_dir) if hpo.checkpoint.enabled or url else None
    if local is not None and not url and output_dir is None:
        adopt_seed_study(local, runtime, backbone_name)
    prep = _prepare_sweep(cfg, backbone_name, dataset_path, local, url, split_files)
    tracker = SweepTracker(tracking)
    o = open_run(hpo, backbone_name, url, local, fingerprint(hpo, prep.dataset.fingerprint),
                 tracker)
    opened, study = o.opened, o.opened.study
    outcome = SweepOutcome(study, opened.study_name, opened.paths, opened.resumed,
                           recovered=opened.recovered, checkpoint_path=o.checkpoint_path)
    stop = stop or _StopRequest()
    events = events or SweepEvents()
    writes = DurableWrites.for_folder(
        opened.paths.durable_dir if opened.paths and opened.paths.snapshots_needed else None)
    mirror = _mirror_for(hpo, opened, o.layout, writes)
    sweep = _Sweep(cfg, opened, prep, o.layout, stop, tracker, events, stop_after_trial,
                   outcome, mirror, writes, devices)
    try:
        if opened.paths is not None:
            study.set_user_attr(SESSIONS, int(study.user_attrs.get(SESSIONS, 0)) + 1)
            if opened.shared is None:
                reconcile(study, o.layout)
                send_waiting_models(study, o.layout, hpo.keep_top_k, writes)
            # What an earlier session on this VM committed but did not copy (it died in
            # between) goes to the durable folder before anything else happens.
            snapshot_all(opened.paths, tracking, writes)
        with opened.shared.exclusive("mlflow") if opened.shared else contextlib.nullcontext():
            tracker.open(study, backbone=backbone_name, max_trials=hpo.max_trials,
                         checkpoint_path=o.checkpoint_path, resumed=opened.resumed,
                         runtime=runtime.kind, objective_metric=hpo.objective.metric,
                         recovered=opened.recovered)
        record_data(study, prep)
        _loop(sweep, stop, outcome, backbone_name)
    finally:
        failed = sys.exc_info()[0] is not None
        tracker.close("KILLED" if outcome.interrupted or failed and isinstance(
            sys.exc_info()[1], KeyboardInterrupt) else "FAILED" if failed else "FINISHED")
        if mirror is not None:
            mirror.close()
        snapshot_all(opened.paths, tracking, writes)
        writes.retry()
        writes.report()
        opened.close()
        events.sweep_finished(outcome)
    return outcome


def _loop(sweep: _Sweep, stop: _StopRequest, outcome: SweepOutcome, backbone: str) -> None:
    max_trials = sweep.hpo.max_trials
    n_complete = sweep.n_complete()
    sweep.events.sweep_started(outcome, n_complete, max_trials)
    trial_bar = progress(max_trials, min(n_complete, max_trials), "trials")  # line 0
    from tqdm.contrib.logging import logging_redirect_tqdm

    # Log lines go through tqdm.write, above the bars, instead of overwriting them (#14).
    with stop.installed(), contextlib.closing(trial_bar), \
            logging_redirect_tqdm(tqdm_class=type(trial_bar)):
        work(sweep, trial_bar)
    after_sweep(sweep, backbone)
    if outcome.interrupted:
        outcome.stop_reason = (
            f"Interrupted by {stop.signal_name or 'a stop request'}: state saved. To resume, "
            "run the same command or cell again")
        logger.warning("%s", outcome.stop_reason)


def run_local_hpo_sweep(dataset_path: Path | str | None, config_dir: Path | str,
                        backbone: str | None, hpo_config: Any, train_config: Any = None,
                        output_dir: Path | str | None = None,
                        mlflow_experiment_name: str | None = None, *, data_config: Any = None,
                        max_trials: int | None = None, storage_url: str | None = None) -> Any:
    """Run or resume an HPO sweep and return the Optuna study (the seed's signature).

    ``hpo_config``/``train_config``/``data_config`` may be paths (absolute, relative to the
    current folder, or relative to ``config_dir``), mappings or loaded config objects.
    ``mlflow_experiment_name`` turns on MLflow tracking through ``config/mlflow.yaml``
    (:func:`~hpo_helpers.mlflow_setup.setup_mlflow_from_config`); tracking problems warn and
    never stop the search.
    """
    cfg = load_configs(config_dir, hpo_config, train_config, data_config)
    if max_trials is not None:
        cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=max_trials))
    tracking = setup_mlflow_from_config(mlflow_experiment_name, config_dir) \
        if mlflow_experiment_name else None
    return run_sweep(cfg, backbone=backbone, dataset_path=dataset_path, output_dir=output_dir,
                     tracking=tracking, storage_url=storage_url).study
