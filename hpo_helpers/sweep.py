"""The sweep: the loop that runs trials until ``max_trials`` are COMPLETE, resumably.

Only COMPLETE trials count toward ``max_trials``. Each trial trains with epoch checkpoints in
``trials/<study>/trial_<root>`` where ``root`` is the number of the first attempt of a retry
chain, so a retry continues where the interrupted attempt stopped. After every trial the study
database is snapshotted to the durable folder (when that differs from the working folder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import shutil
import signal
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import faults
from .backbones import Backbone, load_backbone
from .config import (
    DataConfig,
    HpoConfig,
    TrainConfig,
    load_data_config,
    load_hpo_config,
    load_train_config,
)
from .data import Dataset, Document, load_dataset
from .device import policy_for
from .distributed import fail_stale_trials
from .encoding import Window, encode_documents
from .errors import CheckpointError, ConfigError, SweepFailedError, TrialOutOfMemoryError
from .mirror import CheckpointMirror, folder_bytes
from .mlflow_setup import TrackingSetup, setup_mlflow_from_config
from .paths import StudyPaths, resolve
from .redaction import mask
from .runtime import Runtime, detect
from .snapshot import snapshot
from .study import (
    OpenedStudy,
    count_states,
    fingerprint,
    open_shared_study,
    open_study,
    requeue,
)
from .tracking import SweepTracker
from .train import BEST_MODEL_DIR, FitResult, fit

__all__ = ["SweepEvents", "SweepOutcome", "load_configs", "run_local_hpo_sweep", "run_sweep"]

logger = logging.getLogger(__name__)

OOM_TRIALS_IN_A_ROW_STOP = 5


@dataclass
class SweepOutcome:
    """What a call of the sweep did; ``study`` is the (possibly resumed) Optuna study."""

    study: Any
    study_name: str
    paths: StudyPaths | None
    resumed: bool
    trials_run: int = 0
    interrupted: bool = False
    stop_reason: str = ""
    recovered: list[int] = field(default_factory=list)
    checkpoint_path: str | None = None  # durable study file, or the masked storage URL
    bytes_kept: dict[str, int] = field(default_factory=dict)


class SweepEvents:
    """Hooks for a front end (the notebook panel); every default does nothing.

    Called from the thread that runs the sweep; implementations must be quick.
    """

    def sweep_started(self, outcome: SweepOutcome, n_complete: int, max_trials: int) -> None:
        """The study is open; ``outcome.recovered`` lists trials found interrupted."""

    def trial_started(self, number: int, params: dict[str, Any], retry_of: int | None) -> None:
        """A trial begins (``retry_of``: the interrupted attempt it continues)."""

    def step(self, done: int, total: int) -> None:
        """An optimizer step of the current trial finished."""

    def trial_finished(self, number: int, state: str, value: float | None, n_complete: int,
                       best_value: float | None) -> None:
        """A trial ended: COMPLETE, PRUNED, FAIL or INTERRUPTED."""

    def sweep_finished(self, outcome: SweepOutcome) -> None:
        """The sweep returned (also after an interrupt or an error)."""


@dataclass(frozen=True)
class Configs:
    hpo: HpoConfig
    train: TrainConfig
    data: DataConfig
    config_dir: Path


def _resolve_file(value: Any, config_dir: Path) -> Any:
    if isinstance(value, (str, Path)):
        p = Path(value)
        if not p.is_absolute() and not p.exists() and (config_dir / p).exists():
            return config_dir / p
        return p
    return value


def load_configs(config_dir: Path | str, hpo_config: Any, train_config: Any = None,
                 data_config: Any = None) -> Configs:
    """Read the HPO, train and data configs (paths are tried as given, then under config_dir)."""
    cdir = Path(config_dir)
    hpo = load_hpo_config(_resolve_file(hpo_config, cdir))
    train = load_train_config(_resolve_file(train_config or hpo.train_config, cdir))
    data = load_data_config(_resolve_file(data_config or hpo.data_config, cdir))
    return Configs(hpo, train, data, cdir)


class _StopRequest:
    """SIGINT/SIGTERM (the Jupyter stop button sends SIGINT) ask the sweep to stop safely.

    The first signal sets a flag: the running trial checkpoints at its next step and the sweep
    records it as interrupted. A second SIGINT raises KeyboardInterrupt at once.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signal_name = ""

    def is_set(self) -> bool:
        return self.event.is_set()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.event.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        self.event.set()
        logger.warning("%s received: saving a checkpoint at the next step, then stopping "
                       "(press the stop button / Ctrl-C again to abort without saving)",
                       self.signal_name)

    @contextlib.contextmanager
    def installed(self) -> Iterator[_StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, self._handle)
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)


def _suggest(trial: Any, hpo: HpoConfig) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for p in hpo.search_space:
        if p.type == "fixed":
            params[p.name] = p.value
        elif p.type == "loguniform":
            params[p.name] = trial.suggest_float(p.name, p.low, p.high, log=True)
        elif p.type == "uniform":
            params[p.name] = trial.suggest_float(p.name, p.low, p.high)
        elif p.type == "int":
            params[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high))
        else:
            params[p.name] = trial.suggest_categorical(p.name, list(p.choices))
    return params


def _sampler_and_pruner(hpo: HpoConfig) -> tuple[Any, Any]:
    import optuna

    if hpo.sampler.type == "tpe":
        sampler = optuna.samplers.TPESampler(seed=hpo.sampler.seed,
                                             n_startup_trials=hpo.sampler.n_startup_trials)
    else:
        sampler = optuna.samplers.RandomSampler(seed=hpo.sampler.seed)
    if hpo.pruner.type == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=hpo.pruner.n_startup_trials,
                                             n_warmup_steps=hpo.pruner.n_warmup_steps)
    else:
        pruner = optuna.pruners.NopPruner()
    return sampler, pruner


@dataclass
class _Prepared:
    dataset: Dataset
    backbone: Backbone
    folds: list[tuple[list[Window], list[Document], list[Window]]]


def _prepare(cfg: Configs, dataset: Dataset, backbone: Backbone, seed: int) -> _Prepared:
    """Encode windows once per sweep: one (train, eval docs, eval windows) per fold."""
    label2id = {lab: i for i, lab in enumerate(dataset.labels)}

    def enc(docs: list[Document]) -> list[Window]:
        return encode_documents(docs, backbone.tokenizer, label2id,
                                max_length=cfg.train.max_length, stride=cfg.train.stride)

    k = cfg.hpo.k_folds
    if not k:
        return _Prepared(dataset, backbone, [(enc(list(dataset.train)), list(dataset.validation),
                                              enc(list(dataset.validation)))])
    docs = list(dataset.train) + list(dataset.validation)
    if len(docs) < k:
        raise ConfigError(f"{cfg.hpo.source}: key 'k_folds' = {k} exceeds the {len(docs)} "
                          "documents. Fix: lower k_folds.")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    folds = []
    for f in range(k):
        held = set(order[f::k])
        train = [d for i, d in enumerate(docs) if i not in held]
        val = [d for i, d in enumerate(docs) if i in held]
        folds.append((enc(train), val, enc(val)))
    return _Prepared(dataset, backbone, folds)


def _estimate_trial_seconds(study: Any) -> float | None:
    from optuna.trial import TrialState

    durations = [t.duration.total_seconds() for t in
                 study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                 if t.duration is not None]
    return statistics.mean(durations[-5:]) if durations else None


def _keep_top_k(study: Any, models_dir: Path, k: int, trial_number: int, best_src: Path) -> None:
    """Keep best models of the top-k COMPLETE trials under ``models_dir``; drop the rest."""
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ranked = sorted(done, key=lambda t: (-(t.value if t.value is not None else -math.inf),
                                         t.number))
    keep = {t.number for t in ranked[:k]}
    if trial_number in keep and best_src.is_dir():
        models_dir.mkdir(parents=True, exist_ok=True)
        target = models_dir / f"trial_{trial_number}"
        if target.exists():
            shutil.rmtree(target)
        shutil.move(str(best_src), str(target))
        logger.info("Best model of trial %d kept: %s", trial_number, target)
    if models_dir.is_dir():
        for child in models_dir.iterdir():
            if child.name.startswith("trial_") and int(child.name[6:]) not in keep:
                shutil.rmtree(child, ignore_errors=True)


def _snapshot(paths: StudyPaths | None, tracking: TrackingSetup | None = None) -> None:
    """Copy the live SQLite files (study, MLflow) to the durable folder where they differ."""
    pairs = []
    if paths is not None and paths.snapshots_needed:
        pairs.append((paths.working_db, paths.durable_db))
    if tracking is not None and tracking.snapshots_needed:
        pairs.append((tracking.local_db, tracking.durable_db))
    for live, durable in pairs:
        try:
            snapshot(live, durable)
        except Exception as exc:  # noqa: BLE001 - a failed copy must not stop the search
            logger.warning("Could not snapshot %s to %s (%s); the next trial retries it", live,
                           durable, exc)


def _free_memory() -> None:
    """Release the finished trial's model and optimizer before the next trial builds its own.

    Besides the collector and CUDA's cache, glibc is asked to return freed heap pages to the
    system: without it the resident size of a long sweep creeps up trial after trial.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    libc = ctypes.util.find_library("c")
    if libc:
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


def _progress(total: int, initial: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=None, leave=False,
                dynamic_ncols=True)


def _run_trial(trial: Any, params: dict[str, Any], prep: _Prepared, cfg: Configs,
               ckpt_dir: Path | None, seed: int, stop: _StopRequest,
               tracker: SweepTracker, events: SweepEvents,
               on_checkpoint: Any = None) -> tuple[float, FitResult]:
    """Train every fold of one trial; returns the objective and the last fold's result."""
    import optuna

    epochs = int(params["epochs"])
    fold_scores: list[float] = []
    result = FitResult(best_f1=-1.0)
    step_bar = _progress(0, 0, f"trial {trial.number}")
    drawn = [0.0]  # when on_step last redrew
    try:
        for f, (train_w, eval_docs, eval_w) in enumerate(prep.folds):
            fold_dir = None if ckpt_dir is None else (
                ckpt_dir if len(prep.folds) == 1 else ckpt_dir / f"fold_{f}")
            done_file = None if fold_dir is None else fold_dir / "fold_result.json"
            if done_file is not None and done_file.is_file():
                fold_scores.append(json.loads(done_file.read_text())["best_f1"])
                continue

            def on_epoch(epoch: int, metrics: dict[str, Any], f: int = f) -> None:
                step = f * epochs + epoch
                tracker.epoch(trial, step, metrics)
                trial.report(float(metrics["f1"]), step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"validation F1 {metrics['f1']:.4f} at epoch "
                                             f"{epoch + 1} is below the median")

            def on_step(done: int, total: int) -> None:
                # Cheap per step (#13): the bar and the panel redraw at most 10 times a second.
                now = time.monotonic()
                if done < total and now - drawn[0] < 0.1:
                    return
                drawn[0] = now
                if step_bar.total != total:
                    step_bar.total = total
                step_bar.n = done
                step_bar.refresh()
                events.step(done, total)

            def on_resume(epoch: int, step: int, f: int = f) -> None:
                if f == 0:  # recorded at once: a retry killed again still shows it
                    trial.set_user_attr("resumed_from_epoch", epoch)
                    trial.set_user_attr("resumed_from_step", step)

            for attempt in range(2):
                try:
                    result = fit(backbone=prep.backbone, labels=prep.dataset.labels,
                                 train_windows=train_w, eval_docs=eval_docs, eval_windows=eval_w,
                                 params=params, cfg=cfg.train, seed=seed + f,
                                 checkpoint_dir=fold_dir, on_epoch=on_epoch,
                                 should_stop=stop.is_set, on_step=on_step,
                                 on_checkpoint=on_checkpoint, on_resume=on_resume)
                    break
                except CheckpointError as exc:
                    if attempt:
                        raise
                    logger.error("%s The trial starts over from epoch 0.", exc)
            if result.interrupted:
                return math.nan, result
            fold_scores.append(result.best_f1)
            if done_file is not None and len(prep.folds) > 1:
                done_file.write_text(json.dumps({"best_f1": result.best_f1}))
    finally:
        step_bar.close()
    best = max(result.history, key=lambda h: h["f1"]) if result.history else None
    if best is not None:
        trial.set_user_attr("best_epoch", int(best["epoch"]) + 1)
        trial.set_user_attr("val_per_entity_f1", best["per_entity"])
        trial.set_user_attr("val_precision", best["precision"])
        trial.set_user_attr("val_recall", best["recall"])
    if len(fold_scores) > 1:
        trial.set_user_attr("fold_f1", fold_scores)
    return float(statistics.mean(fold_scores)), result


def _finished(events: SweepEvents, study: Any, number: int, state: str,
              value: float | None) -> None:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = max((t.value for t in done), default=None)
    events.trial_finished(number, state, value, len(done), best)


def _dataset_path(cfg: Configs, dataset_path: Path | str | None) -> Path:
    if dataset_path is not None:
        return Path(dataset_path)
    if cfg.data.path is None:
        raise ConfigError(f"{cfg.data.source}: key 'path' is not set and no dataset was "
                          "given. Fix: set path or pass --dataset.")
    path = Path(cfg.data.path)
    return path if path.is_absolute() else cfg.config_dir.absolute().parent / path


def storage_url_for(hpo: HpoConfig, override: str | None = None) -> str | None:
    """The shared storage URL: CLI/API ``override``, else ``HPO_STORAGE_URL``, else config."""
    from .config import check_storage_url
    from .runtime import environ

    url = override or environ().get("HPO_STORAGE_URL") or hpo.storage_url
    return check_storage_url(hpo.source, url) if url else None


class _Sweep:
    """One session of a sweep: the loop and the bookkeeping around each trial."""

    def __init__(self, cfg: Configs, opened: OpenedStudy, prep: _Prepared,
                 trials_root: Path | None, models_root: Path | None, stop: _StopRequest,
                 tracker: SweepTracker, events: SweepEvents,
                 stop_after_trial: threading.Event | None, outcome: SweepOutcome,
                 mirror: CheckpointMirror | None = None) -> None:
        self.cfg, self.hpo = cfg, cfg.hpo
        self.opened, self.study, self.shared = opened, opened.study, opened.shared
        self.prep = prep
        self.trials_root, self.models_root = trials_root, models_root
        self.stop, self.tracker, self.events = stop, tracker, events
        self.stop_after_trial = stop_after_trial
        self.outcome = outcome
        self.mirror = mirror
        self.session_start = time.monotonic()
        self.failures_in_a_row = 0
        self.oom_in_a_row = 0  # out-of-memory trials: not failures, but five in a row stop
        self._waiting_logged = False

    def n_complete(self) -> int:
        from optuna.trial import TrialState

        return len(self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

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

    def _claim(self) -> Any | None:
        """The next trial, or None while other workers' running trials cover the budget."""
        if self.shared is None:
            return self.study.ask()
        trial = self.shared.reserve(self.study, self.hpo.max_trials)
        if trial is None and not self._waiting_logged:
            logger.info("The remaining budget is covered by trials running on other workers; "
                        "waiting in case one of them fails")
            self._waiting_logged = True
        return trial

    def run(self, trial_bar: Any) -> None:
        while True:
            if self.shared is not None:
                fail_stale_trials(self.study)
            reason = self._why_stop(self.n_complete())
            if reason is not None:
                self.outcome.stop_reason = reason
                return
            trial = self._claim()
            if trial is None:
                self.stop.event.wait(self.shared.poll_s)
                continue
            self._waiting_logged = False
            beat = self.shared.heartbeat(trial, self.hpo.heartbeat_interval) \
                if self.shared is not None else contextlib.nullcontext()
            with beat:
                keep_going, finished_dir = self._run_one(trial, trial_bar)
            _free_memory()
            # The durable study must record the trial's end before its checkpoints go: a kill
            # in between then costs nothing (the trial is done) instead of the whole trial.
            _snapshot(self.opened.paths, self.tracker.setup)
            if finished_dir is not None:
                self._drop_checkpoints(finished_dir)
                self._report_disk()
            if not keep_going:
                return

    def _run_one(self, trial: Any, trial_bar: Any) -> tuple[bool, Path | None]:
        """Train and record one trial.

        Returns whether the sweep goes on (False: interrupted) and the checkpoint folder to
        drop once the study is snapshotted (None: keep it, the trial will be retried).
        """
        import optuna
        from optuna.trial import TrialState

        study, tracker, events, hpo = self.study, self.tracker, self.events, self.hpo
        params = _suggest(trial, hpo)
        root = int(trial.user_attrs.get("retry_root", trial.number))
        ckpt_dir = self.trials_root / f"trial_{root}" if self.trials_root else None
        seed = self.cfg.train.seed + root
        logger.info("Trial %d started%s: %s", trial.number,
                    f" (retry of trial {trial.user_attrs['retry_of']})"
                    if "retry_of" in trial.user_attrs else "", json.dumps(params, sort_keys=True))
        self.outcome.trials_run += 1
        tracker.trial_started(trial, params)
        events.trial_started(trial.number, params, trial.user_attrs.get("retry_of"))
        mirror = self.mirror
        if mirror is not None and ckpt_dir is not None:
            # The durable study must know this trial and its params, so that a fresh VM finds
            # it RUNNING, retries it with the same params and continues from the mirror.
            _snapshot(self.opened.paths, self.tracker.setup)
            mirror.pull(ckpt_dir)  # a fresh VM continues from the durable copy
        try:
            value, result = _run_trial(trial, params, self.prep, self.cfg, ckpt_dir, seed,
                                       self.stop, tracker, events,
                                       mirror.submit if mirror is not None else None)
        except optuna.TrialPruned as exc:
            study.tell(trial, state=TrialState.PRUNED)
            self._record(trial, "PRUNED", None)
            logger.info("Trial %d pruned: %s", trial.number, exc)
            self.failures_in_a_row = self.oom_in_a_row = 0
            return True, ckpt_dir
        except TrialOutOfMemoryError as exc:  # issue 13: FAIL with oom=True, the sweep goes on
            trial.set_user_attr("oom", True)
            trial.set_user_attr("error", str(exc)[:1000])
            study.tell(trial, state=TrialState.FAIL)
            self._record(trial, "FAIL", None)
            self.oom_in_a_row += 1
            logger.error("Trial %d failed: %s", trial.number, exc)
            if self.oom_in_a_row >= OOM_TRIALS_IN_A_ROW_STOP:
                raise SweepFailedError(
                    f"{self.oom_in_a_row} trials in a row ran out of memory (last: {exc}). "
                    "Finished trials are kept. Fix: lower the batch_size choices in the search "
                    "space (or max_length in train.yaml), or set oom_retry: true in train.yaml, "
                    "then re-run to continue.") from exc
            return True, ckpt_dir
        except Exception as exc:  # noqa: BLE001 - one bad trial must not end the sweep
            last_error = f"{type(exc).__name__}: {exc}"
            trial.set_user_attr("error", last_error[:1000])
            study.tell(trial, state=TrialState.FAIL)
            self._record(trial, "FAIL", None)
            self.failures_in_a_row += 1
            self.oom_in_a_row = 0
            logger.exception("Trial %d failed (%d in a row)", trial.number,
                             self.failures_in_a_row)
            if self.failures_in_a_row >= hpo.max_failed_trials:
                self._drop_checkpoints(ckpt_dir)
                raise SweepFailedError(
                    f"{self.failures_in_a_row} trials failed in a row (max_failed_trials = "
                    f"{hpo.max_failed_trials}); last error: {last_error}. Finished "
                    "trials are kept. Fix the cause, then re-run to continue.") from exc
            return True, ckpt_dir  # a failed trial is not retried: free its disk
        if result.interrupted:
            if mirror is not None:
                mirror.flush()  # the saved position must reach the durable folder first
            trial.set_user_attr("interrupted", True)
            study.tell(trial, state=TrialState.FAIL)
            requeue(study, trial)
            self._record(trial, "INTERRUPTED", None)
            self.outcome.interrupted = True
            logger.warning("Trial %d interrupted at step %d: checkpoint kept in %s and the trial "
                           "re-queued", trial.number, result.global_step, ckpt_dir)
            return False, None
        self.failures_in_a_row = self.oom_in_a_row = 0
        study.tell(trial, value)
        faults.point("db_commit")
        self._record(trial, "COMPLETE", value)
        trial_bar.update(1)
        logger.info("Trial %d finished: F1 %.4f (best so far %.4f)", trial.number, value,
                    study.best_value)
        if ckpt_dir is not None and self.models_root is not None:
            _keep_top_k(study, self.models_root, hpo.keep_top_k, trial.number,
                        ckpt_dir / BEST_MODEL_DIR)
        return True, ckpt_dir

    def _drop_checkpoints(self, ckpt_dir: Path | None) -> None:
        if ckpt_dir is None:
            return
        if self.mirror is not None:
            self.mirror.discard(ckpt_dir.name)
        shutil.rmtree(ckpt_dir, ignore_errors=True)

    def disk_usage(self) -> dict[str, int]:
        """Bytes kept: checkpoints of unfinished trials (working, mirrored) and best models."""
        return {"checkpoints": folder_bytes(self.trials_root),
                "mirrored_checkpoints": folder_bytes(self.mirror.durable_root
                                                     if self.mirror else None),
                "best_models": folder_bytes(self.models_root)}

    def _report_disk(self) -> None:
        usage = self.disk_usage()
        self.outcome.bytes_kept = usage
        logger.info("Disk kept: %s", ", ".join(f"{k.replace('_', ' ')} {v / 1e6:.1f} MB"
                                                for k, v in usage.items()))

    def _record(self, trial: Any, state: str, value: float | None) -> None:
        self.tracker.trial_finished(self.study, trial, state, value)
        _finished(self.events, self.study, trial.number, state, value)


def run_sweep(cfg: Configs, *, backbone: str | None = None, dataset_path: Path | str | None = None,
              output_dir: Path | str | None = None, runtime: Runtime | None = None,
              stop: _StopRequest | None = None,
              tracking: TrackingSetup | None = None, events: SweepEvents | None = None,
              stop_after_trial: threading.Event | None = None,
              storage_url: str | None = None) -> SweepOutcome:
    """Run (or resume) the sweep described by ``cfg``; see the module docstring.

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
    policy_for(cfg.train)  # refuses precision/compile this device cannot run, before any work
    dataset = load_dataset(_dataset_path(cfg, dataset_path), cfg.data)
    local = resolve(runtime, backbone=backbone_name, storage_path=hpo.checkpoint.storage_path,
                    output_dir=output_dir) if hpo.checkpoint.enabled or url else None
    if local is not None:
        # Durable (and shared across workers): the tiny tokenizer is trained once per dataset,
        # and a checkpoint only fits the vocabulary it was trained with.
        base = Path(hpo.shared_checkpoint_dir) if url and hpo.shared_checkpoint_dir \
            else local.durable_dir
        cache = base / ".backbones" / f"{backbone_name}-{dataset.fingerprint}"
    else:
        import tempfile

        cache = Path(tempfile.mkdtemp(prefix="hpo-tiny-"))
    bb = load_backbone(backbone_name, cfg.config_dir,
                       texts=[" ".join(d.words) for d in dataset.train], cache_dir=cache)
    prep = _prepare(cfg, dataset, bb, cfg.train.seed)
    sampler, pruner = _sampler_and_pruner(hpo)
    parts = fingerprint(hpo, dataset.fingerprint)
    tracker = SweepTracker(tracking)
    if url:
        def on_stale(study: Any, frozen: Any) -> None:
            logger.warning("Trial %d lost its worker (no heartbeat for %d s): marked FAIL%s",
                           frozen.number, hpo.grace_period,
                           "" if int(frozen.user_attrs.get("attempt", 1)) > 1 else
                           " and re-queued once with the same params")
            tracker.trial_interrupted(frozen)
            if int(frozen.user_attrs.get("attempt", 1)) == 1:
                requeue(study, frozen)

        opened = open_shared_study(hpo=hpo, backbone=backbone_name, url=url,
                                   fingerprint_parts=parts, sampler=sampler, pruner=pruner,
                                   on_stale=on_stale)
        root = Path(hpo.shared_checkpoint_dir) / opened.study_name if \
            hpo.shared_checkpoint_dir else None
        trials_root = root / "trials" if root else local.trials_dir(opened.study_name)
        models_root = root / "models" if root else local.models_dir(opened.study_name)
        checkpoint_path = mask(url)
    else:
        opened = open_study(hpo=hpo, backbone=backbone_name, paths=local,
                            fingerprint_parts=parts, sampler=sampler, pruner=pruner)
        trials_root = local.trials_dir(opened.study_name) if local else None
        models_root = local.models_dir(opened.study_name) if local else None
        checkpoint_path = str(local.durable_db) if local else None
    study = opened.study
    outcome = SweepOutcome(study, opened.study_name, opened.paths, opened.resumed,
                           recovered=opened.recovered, checkpoint_path=checkpoint_path)
    stop = stop or _StopRequest()
    events = events or SweepEvents()
    mirror = None
    mirror_on = hpo.mirror_trial_checkpoints
    if mirror_on is None:  # default: on where the working folder dies with the VM (Colab)
        mirror_on = opened.paths is not None and opened.paths.snapshots_needed
    if mirror_on and opened.paths is not None and trials_root is not None:
        mirror = CheckpointMirror(trials_root,
                                  opened.paths.durable_db.parent / "trials" / opened.study_name)
    sweep = _Sweep(cfg, opened, prep, trials_root, models_root, stop, tracker, events,
                   stop_after_trial, outcome, mirror)
    try:
        if opened.paths is not None:
            study.set_user_attr("sessions", int(study.user_attrs.get("sessions", 0)) + 1)
            # What an earlier session on this VM committed but did not copy (it died in
            # between) goes to the durable folder before anything else happens.
            _snapshot(opened.paths, tracking)
        with opened.shared.exclusive("mlflow") if opened.shared else contextlib.nullcontext():
            tracker.open(study, backbone=backbone_name, max_trials=hpo.max_trials,
                         checkpoint_path=checkpoint_path, resumed=opened.resumed,
                         runtime=runtime.kind, objective_metric=hpo.objective.metric,
                         recovered=opened.recovered)
        n_complete = sweep.n_complete()
        events.sweep_started(outcome, n_complete, hpo.max_trials)
        trial_bar = _progress(hpo.max_trials, min(n_complete, hpo.max_trials), "trials")
        with stop.installed(), contextlib.closing(trial_bar):
            sweep.run(trial_bar)
        if outcome.interrupted:
            outcome.stop_reason = (
                f"Interrupted by {stop.signal_name or 'a stop request'}: state saved. To resume, "
                "run the same command or cell again")
            logger.warning("%s", outcome.stop_reason)
    finally:
        failed = sys.exc_info()[0] is not None
        tracker.close("KILLED" if outcome.interrupted or failed and isinstance(
            sys.exc_info()[1], KeyboardInterrupt) else "FAILED" if failed else "FINISHED")
        if mirror is not None:
            mirror.close()
        _snapshot(opened.paths, tracking)
        opened.close()
        events.sweep_finished(outcome)
    return outcome


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


def status(cfg: Configs, *, backbone: str | None = None, output_dir: Path | str | None = None,
           runtime: Runtime | None = None, storage_url: str | None = None) -> dict[str, Any]:
    """Where a study stands, read without taking its lock (safe while a sweep runs).

    For a shared study (``storage_url``) it also lists ``workers``: the running trials with
    their worker (host:pid) and heartbeat age. Passwords in URLs are masked.
    """
    import optuna

    from .study import interrupted_numbers, sqlite_storage

    hpo = cfg.hpo
    name_bb = backbone or hpo.backbone
    study_name = hpo.study_name or f"hpo_{name_bb}"
    url = storage_url_for(hpo, storage_url)
    out: dict[str, Any] = {"study_name": study_name, "backbone": name_bb,
                           "checkpoint_enabled": hpo.checkpoint.enabled or bool(url),
                           "checkpoint_path": None, "exists": False, "max_trials": hpo.max_trials,
                           "n_trials": 0, "n_complete": 0, "n_running": 0, "n_failed": 0,
                           "n_pruned": 0, "n_waiting": 0, "n_interrupted": 0, "n_oom": 0,
                           "best_value": None, "best_params": None, "best_trial": None}
    shared = None
    if url:
        from .distributed import SharedStudy

        out["checkpoint_path"] = mask(url)
        storage = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        shared = SharedStudy(storage, study_name)
    elif not hpo.checkpoint.enabled:
        return out
    else:
        paths = resolve(runtime or detect(), backbone=name_bb,
                        storage_path=hpo.checkpoint.storage_path, output_dir=output_dir)
        out["checkpoint_path"] = str(paths.durable_db)
        db = paths.working_db if paths.working_db.exists() else paths.durable_db
        if not db.exists():
            return out
        storage = sqlite_storage(db)
    if study_name not in optuna.get_all_study_names(storage):
        return out
    study = optuna.load_study(study_name=study_name, storage=storage)
    counts = count_states(study)
    trials = study.get_trials(deepcopy=False)
    out.update(exists=True, n_trials=len(trials), n_complete=counts["COMPLETE"],
               n_running=counts["RUNNING"], n_failed=counts["FAIL"], n_pruned=counts["PRUNED"],
               n_waiting=counts["WAITING"], n_interrupted=len(interrupted_numbers(trials)),
               n_oom=sum(1 for t in trials if t.user_attrs.get("oom")))
    if counts["COMPLETE"]:
        best = study.best_trial
        out.update(best_value=best.value, best_params=best.params, best_trial=best.number)
    if shared is not None:
        out["workers"] = shared.workers()
    return out
