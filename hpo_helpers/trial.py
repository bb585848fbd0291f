"""One trial: its search-space draw, its folds' training, and what it records on the trial.

Windows are encoded once per sweep (:func:`prepare`); :func:`run_trial` trains every fold of one
trial with epoch checkpoints in the layout's fold folders, skips folds a retry already finished,
and reports per-epoch F1 for pruning (step ``fold * epochs + epoch``).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backbones import Backbone
from .config import Configs, HpoConfig
from .data import Dataset, Document, kfold_split
from .encoding import Window, encode_documents
from .errors import CheckpointError, ConfigError
from .layout import StudyLayout
from .schema import (
    BEST_EPOCH,
    FOLD_F1,
    FOLD_F1_MEAN,
    FOLD_F1_STD,
    RESUMED_FROM_EPOCH,
    RESUMED_FROM_FOLD,
    RESUMED_FROM_STEP,
    VAL_PER_ENTITY_F1,
    VAL_PRECISION,
    VAL_RECALL,
)
from .train import FitResult

if TYPE_CHECKING:
    import optuna

    from .tracking import SweepTracker

__all__ = ["Prepared", "TrialRun", "prepare", "progress", "run_trial", "sampler_and_pruner",
           "suggest"]

logger = logging.getLogger(__name__)


def suggest(trial: optuna.Trial, hpo: HpoConfig) -> dict[str, Any]:
    """The trial's parameters: sampled ones from Optuna, fixed ones from the config."""
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


def sampler_and_pruner(hpo: HpoConfig) -> tuple[optuna.samplers.BaseSampler,
                                                optuna.pruners.BasePruner]:
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
class Prepared:
    dataset: Dataset
    backbone: Backbone
    folds: list[tuple[list[Window], list[Document], list[Window]]]


def prepare(cfg: Configs, dataset: Dataset, backbone: Backbone, seed: int) -> Prepared:
    """Encode windows once per sweep: one (train, eval docs, eval windows) per fold."""
    label2id = {lab: i for i, lab in enumerate(dataset.labels)}

    def enc(docs: list[Document]) -> list[Window]:
        return encode_documents(docs, backbone.tokenizer, label2id,
                                max_length=cfg.train.max_length, stride=cfg.train.stride)

    k = cfg.hpo.k_folds
    if not k:
        return Prepared(dataset, backbone, [(enc(list(dataset.train)), list(dataset.validation),
                                             enc(list(dataset.validation)))])
    docs = list(dataset.train) + list(dataset.validation)
    if len(docs) < k:
        raise ConfigError(f"{cfg.hpo.source}: key 'k_folds' = {k} exceeds the {len(docs)} "
                          "documents. Fix: lower k_folds.")
    fold_seed = seed if cfg.hpo.k_fold_seed is None else cfg.hpo.k_fold_seed
    return Prepared(dataset, backbone,
                    [(enc(train), val, enc(val)) for train, val in
                     kfold_split(docs, k, fold_seed, stratified=cfg.hpo.k_fold_stratified)])


def progress(total: int, initial: int, desc: str, position: int = 0) -> Any:
    from tqdm.auto import tqdm

    # Fixed positions keep both bars on screen: trials on line 0, the trial's steps below.
    return tqdm(total=total, initial=initial, desc=desc, disable=None, leave=False,
                dynamic_ncols=True, position=position)


@dataclass
class TrialRun:
    """What :func:`run_trial` returns: the objective, the last fold's result and the folder of
    the model to keep (with k-fold: the best fold's best model)."""

    value: float
    result: FitResult
    best_model: Path | None = None


@dataclass
class _Hooks:
    trial: optuna.Trial
    tracker: SweepTracker
    events: Any  # sweep.SweepEvents
    epochs: int
    step_bar: Any
    done: list[float]  # best score of the folds finished so far
    metric: str = "f1"  # objective.metric: f1 or macro_f1
    resumed: bool = False
    drawn: float = 0.0  # when on_step last redrew

    def on_epoch(self, fold: int) -> Callable[[int, dict[str, Any]], None]:
        import optuna

        def report(epoch: int, metrics: dict[str, Any]) -> None:
            step = fold * self.epochs + epoch
            self.tracker.epoch(self.trial, step, metrics)
            # k-fold: prune on the running mean (finished folds' best F1 and this fold's F1),
            # so a weak fold does not prune a trial whose earlier folds were strong.
            value = (sum(self.done) + float(metrics.get(self.metric, 0.0))) / (len(self.done) + 1)
            self.trial.report(value, step)
            if self.trial.should_prune():
                what = (f"running mean {self.metric} over folds" if self.done
                        else f"validation {self.metric}")
                raise optuna.TrialPruned(f"{what} {value:.4f} at fold {fold} epoch "
                                         f"{epoch + 1} is below the median")
        return report

    def on_step(self, done: int, total: int) -> None:
        # Cheap per step (#13): the bar and the panel redraw at most 10 times a second.
        now = time.monotonic()
        if done < total and now - self.drawn < 0.1:
            return
        self.drawn = now
        if self.step_bar.total != total:
            self.step_bar.total = total
        self.step_bar.n = done
        self.step_bar.refresh()
        self.events.trial_step(self.trial.number, done, total)

    def on_resume(self, fold: int) -> Callable[[int, int], None]:
        def record(epoch: int, step: int) -> None:
            if not self.resumed:  # recorded at once: a retry killed again still shows it
                self.resumed = True
                self.trial.set_user_attr(RESUMED_FROM_EPOCH, epoch)
                self.trial.set_user_attr(RESUMED_FROM_STEP, step)
                if len(self.done) or fold:
                    self.trial.set_user_attr(RESUMED_FROM_FOLD, fold)
        return record


def _fit_fold(prep: Prepared, cfg: Configs, params: dict[str, Any], fold: int, seed: int,
              fold_dir: Path | None, hooks: _Hooks, stop: Callable[[], bool],
              on_checkpoint: Callable[[Path], None] | None, fit: Callable[..., FitResult],
              ) -> FitResult:
    train_w, eval_docs, eval_w = prep.folds[fold]
    for attempt in range(2):
        try:
            return fit(backbone=prep.backbone, labels=prep.dataset.labels,
                       train_windows=train_w, eval_docs=eval_docs, eval_windows=eval_w,
                       params=params, cfg=cfg.train, seed=seed + fold, checkpoint_dir=fold_dir,
                       on_epoch=hooks.on_epoch(fold), should_stop=stop,
                       on_step=hooks.on_step, on_checkpoint=on_checkpoint,
                       on_resume=hooks.on_resume(fold), metric=hooks.metric)
        except CheckpointError as exc:
            if attempt:
                raise
            logger.error("%s The trial starts over from epoch 0.", exc)
    raise AssertionError("unreachable")


def run_trial(trial: optuna.Trial, params: dict[str, Any], prep: Prepared, cfg: Configs,
              trial_dir: Path | None, seed: int, stop: Callable[[], bool],
              tracker: SweepTracker, events: Any,
              on_checkpoint: Callable[[Path], None] | None = None, *,
              fit: Callable[..., FitResult] | None = None) -> TrialRun:
    """Train every fold of one trial; the value is the mean of the folds' best F1.

    ``fit`` is :func:`~hpo_helpers.train.fit` unless the caller passes its own."""
    if fit is None:
        from .train import fit
    n = len(prep.folds)
    scores: list[float] = []
    result = FitResult(best_f1=-1.0)
    step_bar = progress(0, 0, f"trial {trial.number}", 1)
    hooks = _Hooks(trial, tracker, events, int(params["epochs"]), step_bar, scores,
                   cfg.hpo.objective.metric)
    try:
        for f in range(n):
            fold_dir = None if trial_dir is None else StudyLayout.fold_dir(trial_dir, f, n)
            done = None if fold_dir is None or n == 1 else StudyLayout.fold_result(fold_dir)
            if done is not None and done.is_file():
                scores.append(json.loads(done.read_text())["best_f1"])
                logger.info("Trial %d fold %d/%d already finished (F1 %.4f): not retrained",
                            trial.number, f + 1, n, scores[-1])
                continue
            result = _fit_fold(prep, cfg, params, f, seed, fold_dir, hooks, stop, on_checkpoint,
                               fit)
            if result.interrupted:
                return TrialRun(math.nan, result)
            scores.append(result.best_f1)
            if n > 1:
                trial.set_user_attr(FOLD_F1, list(scores))
                logger.info("Trial %d fold %d/%d finished: F1 %.4f", trial.number, f + 1, n,
                            result.best_f1)
            if done is not None:
                done.write_text(json.dumps({"best_f1": result.best_f1}))
                if on_checkpoint is not None:
                    on_checkpoint(done)  # the mirror keeps it for a fresh VM
    finally:
        hooks.step_bar.close()
    _record_best(trial, result, scores, hooks.metric)
    if n > 1:
        tracker.folds(trial, scores)
    best_fold = max(range(n), key=lambda f: (scores[f], -f))
    best_model = None if trial_dir is None else StudyLayout.best_model_dir(
        StudyLayout.fold_dir(trial_dir, best_fold, n))
    return TrialRun(float(statistics.mean(scores)), result, best_model)


def _record_best(trial: optuna.Trial, result: FitResult, scores: list[float],
                 metric: str = "f1") -> None:
    best = max(result.history, key=lambda h: h.get(metric, 0.0)) if result.history else None
    if best is not None:
        trial.set_user_attr(BEST_EPOCH, int(best["epoch"]) + 1)
        trial.set_user_attr(VAL_PER_ENTITY_F1, best["per_entity"])
        trial.set_user_attr(VAL_PRECISION, best["precision"])
        trial.set_user_attr(VAL_RECALL, best["recall"])
    if len(scores) > 1:
        trial.set_user_attr(FOLD_F1, scores)
        trial.set_user_attr(FOLD_F1_MEAN, statistics.mean(scores))
        trial.set_user_attr(FOLD_F1_STD, statistics.pstdev(scores))
