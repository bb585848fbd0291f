"""MLflow runs of a sweep: one parent per study (reopened on resume), one child per trial.

The parent run's id lives in the study's user attrs (``mlflow_parent_run_id``), so every
session of a study logs into the same parent. Each trial's child run id lives in the trial's
user attrs (``mlflow_run_id``); a trial left RUNNING by a dead process gets its child ended
KILLED on the next start, and its retry gets a new child tagged with the original.

Tracking never stops the search: the first failure logs one warning and turns tracking off for
the rest of the session.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from ..core.redaction import mask
from ..settings.schema import (
    CONTINUES,
    CONTINUES_FROM_EPOCH,
    MLFLOW_PARENT_RUN_ID,
    MLFLOW_RUN_ID,
    PAUSED_AT,
    PBT_EXPLOITED,
    PBT_GENERATION,
    PBT_MEMBER,
    RETRY_OF,
    SESSIONS,
)
from ..study.distributed import worker_id
from ..study.queries import best_trial, state_counts, trial_by_number, trial_numbers
from .setup import TrackingSetup

__all__ = ["SweepTracker", "metric_key"]

logger = logging.getLogger(__name__)

PARENT_ATTR = MLFLOW_PARENT_RUN_ID
CHILD_ATTR = MLFLOW_RUN_ID


#: MLflow refuses longer metric names (and the session's tracking went off over one label).
MAX_METRIC_KEY = 250
_METRIC_KEY = re.compile(r"[\w.\- ]+\Z")


def metric_key(prefix: str, label: str) -> str:
    """The MLflow metric name for ``prefix`` + an entity ``label``: the two joined when MLflow
    takes that, else the label's safe characters, shortened, with 8 hex of its SHA-256 (so two
    labels never share a name). A label never turns tracking off (issue 23)."""
    key = prefix + label
    if len(key) <= MAX_METRIC_KEY and _METRIC_KEY.fullmatch(key) and ".." not in key \
            and not key.endswith((".", " ")):
        return key
    digest = hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    safe = re.sub(r"[^\w\-]+", "_", label, flags=re.ASCII)
    return f"{prefix}{safe[:MAX_METRIC_KEY - len(prefix) - 9]}-{digest}"


def _guarded(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: SweepTracker, *args: Any, **kwargs: Any) -> Any:
        if not self.active:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tracking must never stop the search
            self.active = False
            logger.warning("MLflow tracking failed and is off for the rest of this session "
                           "(%s); the search goes on. Fix: check the tracking store %s.",
                           mask(f"{type(exc).__name__}: {exc}")[:300],
                           mask(self.setup.tracking_uri if self.setup else "?"))
            return None

    return wrapper


def _storage_type(checkpoint_path: str | None) -> str:
    """``sqlite`` for a study file, the database kind for a URL (``postgresql``), or None."""
    if checkpoint_path is None:
        return "None"
    if "://" not in checkpoint_path:
        return "sqlite"
    return checkpoint_path.split("://", 1)[0].split("+", 1)[0].lower()


class SweepTracker:
    """Logs a study's sweep to MLflow; every method is a no-op once tracking is off."""

    def __init__(self, setup: TrackingSetup | None) -> None:
        self.setup = setup
        self.active = setup is not None
        self.parent_id: str | None = None
        self._client: Any = None
        self.metric = "f1"

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self._setup.tracking_uri)
        return self._client

    @property
    def _setup(self) -> TrackingSetup:
        """The tracking set-up (only called while tracking is on)."""
        if self.setup is None:
            raise RuntimeError("tracking is off")
        return self.setup

    def _find_run(self, run_id: str | None) -> Any:
        if not run_id:
            return None
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id)
        except MlflowException:
            return None

    @_guarded
    def open(self, study: Any, *, backbone: str, max_trials: int, checkpoint_path: str | None,
             resumed: bool, runtime: str, objective_metric: str, recovered: list[int]) -> None:
        """Create or reopen the parent run; end the children of trials a dead session left."""
        from mlflow.entities import Param, RunTag

        self.metric = objective_metric
        existing = self._find_run(study.user_attrs.get(PARENT_ATTR))
        now = time.strftime("%Y-%m-%dT%H:%M:%S")
        if existing is not None:
            self.parent_id = existing.info.run_id
            self.client.update_run(self.parent_id, status="RUNNING")
        else:
            run = self.client.create_run(
                self._setup.experiment_id,
                run_name=f"hpo_{backbone}_{time.strftime('%Y%m%d_%H%M%S')}",
                tags={"hpo.study_name": study.study_name, "hpo.kind": "sweep"},
            )
            self.parent_id = run.info.run_id
            params = {
                "backbone": backbone, "max_trials": max_trials,
                "checkpoint_path": checkpoint_path or "None",
                "checkpoint_enabled": str(checkpoint_path is not None).lower(),
                "checkpoint_storage_type": _storage_type(checkpoint_path),
                "study_name": study.study_name, "objective_metric": objective_metric,
                "resumed_from_checkpoint": str(resumed).lower(),
            }
            self.client.log_batch(self.parent_id, params=[Param(k, mask(v)) for k, v in
                                                          params.items()])
            if checkpoint_path is not None:  # an in-memory study has nowhere to keep the id
                study.set_user_attr(PARENT_ATTR, self.parent_id)
        sessions = int(study.user_attrs.get(SESSIONS, 1))
        self.client.log_batch(self.parent_id, tags=[
            RunTag("resumed_from_checkpoint", str(resumed).lower()),
            RunTag("last_session_start", now),
            RunTag("runtime", runtime),
            RunTag("max_trials_now", str(max_trials)),
        ])
        self.client.log_metric(self.parent_id, "resume_count", max(0, sessions - 1),
                               step=sessions)
        for number in recovered:
            self.trial_interrupted(trial_by_number(study, number))
        if existing is not None:
            self._reconcile(study)
        self.update_parent(study)
        logger.info("MLflow parent run %s %s", self.parent_id,
                    "reopened" if existing is not None else "created")

    @_guarded
    def trial_interrupted(self, trial: Any) -> None:
        """End the child run of a trial whose process died (KILLED).

        Also when MLflow already had it FINISHED: on Colab the MLflow snapshot can be newer
        than the study's, and the study is what counts.
        """
        child = self._find_run(trial.user_attrs.get(CHILD_ATTR))
        if child is not None and child.info.status != "KILLED":
            self.client.set_tag(child.info.run_id, "trial_state", "FAIL")
            self.client.set_tag(child.info.run_id, "interrupted", "true")
            self.client.set_terminated(child.info.run_id, status="KILLED")

    def _reconcile(self, study: Any) -> None:
        """Children left RUNNING whose trial the study knows as finished: a kill fell between
        the study's snapshot and MLflow's. Make MLflow agree with the study."""
        from optuna.trial import TrialState

        stale = self.client.search_runs(
            [self._setup.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.parent_id}' and "
                          "attributes.status = 'RUNNING'", max_results=1000)
        numbers = trial_numbers(study) if stale else set()
        for run in stale:
            number = int(run.data.tags.get("trial_number", -1))
            if number not in numbers:
                continue
            trial = trial_by_number(study, number)
            if trial.state == TrialState.COMPLETE:
                self.client.log_metric(run.info.run_id, f"final_{self.metric}",
                                       float(trial.value or 0.0))
                self.client.set_tag(run.info.run_id, "trial_state", "COMPLETE")
                self.client.set_terminated(run.info.run_id, status="FINISHED")
            elif trial.state.is_finished():
                self.client.set_tag(run.info.run_id, "trial_state", trial.state.name)
                self.client.set_terminated(run.info.run_id, status="KILLED")

    @_guarded
    def trial_started(self, trial: Any, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        tags = {"mlflow.parentRunId": self.parent_id, "trial_number": str(trial.number),
                "trial_state": "RUNNING", "worker": worker_id()}
        retry_of = trial.user_attrs.get(RETRY_OF)
        if retry_of is not None:
            tags["retry_of_trial"] = str(retry_of)
            original = trial_by_number(trial.study, int(retry_of)) \
                if hasattr(trial, "study") else None
            if original is not None and original.user_attrs.get(CHILD_ATTR):
                tags["retry_of_run"] = original.user_attrs[CHILD_ATTR]
        continues = trial.user_attrs.get(CONTINUES)
        if continues is not None:  # a promotion (scheduler hyperband): the lineage link
            tags["continues_trial"] = str(continues)
            tags["continues_from_epoch"] = str(trial.user_attrs.get(CONTINUES_FROM_EPOCH))
            paused = trial_by_number(trial.study, int(continues)) \
                if hasattr(trial, "study") else None
            if paused is not None and paused.user_attrs.get(CHILD_ATTR):
                tags["continues_run"] = paused.user_attrs[CHILD_ATTR]
        for key, tag in ((PBT_MEMBER, "pbt_member"), (PBT_GENERATION, "pbt_generation"),
                         (PBT_EXPLOITED, "pbt_exploited_member")):  # scheduler pbt: lineage
            if key in trial.user_attrs:
                tags[tag] = str(trial.user_attrs[key])
        run = self.client.create_run(self._setup.experiment_id, run_name=f"trial_{trial.number}",
                                     tags=tags)
        trial.set_user_attr(CHILD_ATTR, run.info.run_id)
        self.client.log_batch(run.info.run_id, params=[Param(k, mask(v)) for k, v in
                                                       sorted(params.items())])

    @_guarded
    def epoch(self, trial: Any, epoch: int, metrics: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        run_id = trial.user_attrs.get(CHILD_ATTR)
        if not run_id:
            return
        ts = int(time.time() * 1000)
        values = {"val_f1": metrics["f1"], "val_precision": metrics["precision"],
                  "val_recall": metrics["recall"], "train_loss": metrics["train_loss"]}
        if "macro_f1" in metrics:  # the objective with objective.metric: macro_f1
            values["val_macro_f1"] = metrics["macro_f1"]
        values.update({metric_key("val_f1_", k): v for k, v in metrics["per_entity"].items()})
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), ts, epoch + 1)
                                               for k, v in values.items()])

    @_guarded
    def folds(self, trial: Any, scores: list[float]) -> None:
        """k-fold: each fold's best F1 (``fold_f1``, step = fold) and their mean and spread."""
        import statistics

        from mlflow.entities import Metric

        run_id = trial.user_attrs.get(CHILD_ATTR)
        if not run_id:
            return
        ts = int(time.time() * 1000)
        metrics = [Metric("fold_f1", float(v), ts, f) for f, v in enumerate(scores)]
        metrics += [Metric("cv_f1_mean", statistics.mean(scores), ts, 0),
                    Metric("cv_f1_std", statistics.pstdev(scores), ts, 0)]
        self.client.log_batch(run_id, metrics=metrics)

    @_guarded
    def trial_finished(self, study: Any, trial: Any, state: str, value: float | None) -> None:
        run_id = trial.user_attrs.get(CHILD_ATTR)
        if run_id:
            if value is not None:
                self.client.log_metric(run_id, f"final_{self.metric}", float(value))
            self.client.set_tag(run_id, "trial_state", state)
            if PAUSED_AT in trial.user_attrs:
                self.client.set_tag(run_id, "paused_at_rung", str(trial.user_attrs[PAUSED_AT]))
            status = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED",
                      "INTERRUPTED": "KILLED", "PAUSED": "FINISHED"}[state]
            self.client.set_terminated(run_id, status=status)
        self.update_parent(study)

    @_guarded
    def update_parent(self, study: Any) -> None:
        from mlflow.entities import Metric

        counts = state_counts(study)
        n_trials, n_complete = sum(counts.values()), counts["COMPLETE"]
        ts = int(time.time() * 1000)
        metrics = [Metric("n_trials", n_trials, ts, n_trials),
                   Metric("n_completed_trials", n_complete, ts, n_trials)]
        best = best_trial(study) if n_complete else None
        if best is not None:
            metrics += [Metric("best_value", float(best.value or 0.0), ts, n_trials),
                        Metric(f"best_{self.metric}", float(best.value or 0.0), ts, n_trials)]
            if best.user_attrs.get(CHILD_ATTR):
                self.client.set_tag(self.parent_id, "best_trial_run_id",
                                    best.user_attrs[CHILD_ATTR])
            self.client.set_tag(self.parent_id, "best_trial_number", str(best.number))
        self.client.log_batch(self.parent_id, metrics=metrics)

    @_guarded
    def test_scores(self, study: Any, scores: dict[int, dict[str, Any]]) -> None:
        """Log test scores on each scored trial's child run, and the best trial's on the parent."""
        from mlflow.entities import Metric

        def metrics(s: dict[str, Any]) -> list[Metric]:
            ts = int(time.time() * 1000)
            values = {f"test_{k}": s[k] for k in ("f1", "precision", "recall", "macro_f1")}
            values.update({metric_key("test_f1_", k): v["f1"]
                           for k, v in s.get("per_type", {}).items()})
            return [Metric(k, float(v), ts, 0) for k, v in values.items()]

        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        for number, s in scores.items():
            run_id = trials[number].user_attrs.get(CHILD_ATTR) if number in trials else None
            if run_id:
                self.client.log_batch(run_id, metrics=metrics(s))
        best = study.best_trial.number if any(
            t.state.name == "COMPLETE" for t in trials.values()) else None
        if self.parent_id and best in scores:
            self.client.log_batch(self.parent_id, metrics=metrics(scores[best]))

    @_guarded
    def close(self, status: str) -> None:
        """End this session's hold on the parent run (``FINISHED``, ``KILLED`` or ``FAILED``);
        the next session of the study reopens it."""
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status=status)
