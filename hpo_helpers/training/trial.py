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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import CheckpointError, ConfigError
from ..data.dataset import Dataset, Document, kfold_split
from ..settings.config import Configs, HpoConfig
from ..settings.schema import (
    BEST_EPOCH,
    FIXED_PARAMS,
    FOLD_F1,
    FOLD_F1_MEAN,
    FOLD_F1_STD,
    LEARNED_NOTHING,
    LEARNED_NOTHING_BELOW,
    RESUMED_FROM_EPOCH,
    RESUMED_FROM_FOLD,
    RESUMED_FROM_STEP,
    VAL_PER_ENTITY_F1,
    VAL_PRECISION,
    VAL_RECALL,
)
from ..storage.durable import set_aside, write_file
from ..storage.layout import StudyLayout
from .backbones import Backbone
from .encoding import Window, encode_documents
from .train import FitResult

if TYPE_CHECKING:
    import optuna

    from ..tracking.tracker import SweepTracker

__all__ = ["Prepared", "RungPause", "TrialRun", "prepare", "progress", "run_trial", "suggest"]

logger = logging.getLogger(__name__)

FLAT_LOSS = 0.05  # a train loss that changed less than this (relative) in an epoch has flattened


def suggest(trial: optuna.Trial, hpo: HpoConfig) -> dict[str, Any]:
    """The trial's parameters: sampled ones from Optuna, fixed ones from the config.

    When nothing is sampled (every value fixed: one recipe reproduced), Optuna records no
    params, so they are stored as ``fixed_params``: a killed trial is then known to have drawn
    its params and is re-queued to continue from its checkpoint (issue 23)."""
    params: dict[str, Any] = {}
    for p in hpo.search_space:
        low, high = float(p.low or 0.0), float(p.high or 0.0)  # set for every range type
        if p.type == "fixed":
            params[p.name] = p.value
        elif p.type == "loguniform":
            params[p.name] = trial.suggest_float(p.name, low, high, log=True)
        elif p.type == "uniform":
            params[p.name] = trial.suggest_float(p.name, low, high)
        elif p.type == "int":
            params[p.name] = trial.suggest_int(p.name, int(low), int(high))
        else:
            params[p.name] = trial.suggest_categorical(p.name, list(p.choices))
    if not trial.params:
        trial.set_user_attr(FIXED_PARAMS, params)
    return params


Folds = list[tuple[list[Window], list[Document], list[Window]]]


@dataclass
class Prepared:
    """The sweep's data, encoded once per window length: one (train windows, eval documents,
    eval windows) per fold. ``folds`` uses ``train.yaml``'s ``max_length``; a search space
    with ``max_length`` encodes each other length once, on first use."""

    dataset: Dataset
    backbone: Backbone
    folds: Folds
    splits: list[tuple[list[Document], list[Document]]] = field(default_factory=list)
    max_length: int = 0
    stride: int = 0
    _by_length: dict[int, Folds] = field(default_factory=dict)

    def record(self, study: optuna.Study) -> None:
        """Log the windows of each split and store the data summary (shown by ``status``)."""
        from ..data.dataset import data_summary
        from ..settings.schema import DATA

        if len(self.folds) != 1:
            return
        windows = {"train": len(self.folds[0][0]), "validation": len(self.folds[0][2])}
        logger.info("Windows: train %d, validation %d", windows["train"],
                    windows["validation"])
        study.set_user_attr(DATA, data_summary(self.dataset, windows))

    def folds_for(self, max_length: int | None) -> Folds:
        if max_length is None or max_length == self.max_length:
            return self.folds
        if max_length not in self._by_length:
            if self.stride >= max_length // 2:
                raise ConfigError(f"search_space.max_length {max_length} is too short for "
                                  f"train.yaml's stride {self.stride}. Fix: choose max_length "
                                  f"above {2 * self.stride}, or lower stride.")
            self._by_length[max_length] = _encode(self.dataset, self.backbone, self.splits,
                                                  max_length, self.stride)
        return self._by_length[max_length]


def _encode(dataset: Dataset, backbone: Backbone,
            splits: list[tuple[list[Document], list[Document]]], max_length: int,
            stride: int) -> Folds:
    label2id = {lab: i for i, lab in enumerate(dataset.labels)}

    def enc(docs: list[Document]) -> list[Window]:
        return encode_documents(docs, backbone.tokenizer, label2id, max_length=max_length,
                                stride=stride)

    return [(enc(train), val, enc(val)) for train, val in splits]


def prepare(cfg: Configs, dataset: Dataset, backbone: Backbone, seed: int) -> Prepared:
    """Encode windows once per sweep: one (train, eval docs, eval windows) per fold."""
    k = cfg.hpo.k_folds
    if not k:
        splits = [(list(dataset.train), list(dataset.validation))]
    else:
        docs = list(dataset.train) + list(dataset.validation)
        if len(docs) < k:
            raise ConfigError(f"{cfg.hpo.source}: key 'k_folds' = {k} exceeds the {len(docs)} "
                              "documents. Fix: lower k_folds.")
        fold_seed = seed if cfg.hpo.k_fold_seed is None else cfg.hpo.k_fold_seed
        splits = kfold_split(docs, k, fold_seed, stratified=cfg.hpo.k_fold_stratified)
    length, stride = cfg.train.max_length, cfg.train.stride
    return Prepared(dataset, backbone, _encode(dataset, backbone, splits, length, stride),
                    splits, length, stride)


def progress(total: int, initial: int, desc: str, position: int = 0, *,
             quiet: bool = False) -> Any:
    """A tqdm bar (a widget in a notebook); ``quiet``: none, because the front end draws its
    own (a bar drawn from a background thread would land under whichever cell ran last)."""
    from tqdm.auto import tqdm

    # Fixed positions keep both bars on screen: trials on line 0, the trial's steps below.
    return tqdm(total=total, initial=initial, desc=desc, disable=True if quiet else None,
                leave=False, dynamic_ncols=True, position=position)


@dataclass
class TrialRun:
    """What :func:`run_trial` returns: the objective, the last fold's result and the folder of
    the model to keep (with k-fold: the best fold's best model)."""

    value: float
    result: FitResult
    best_model: Path | None = None
    learned_nothing: bool = False  # best validation F1 (strict micro) below 0.05

    @property
    def note(self) -> str:
        """What the trial's log line adds: that it learned nothing (issue 21)."""
        return (f"; it learned nothing (best validation F1 below {LEARNED_NOTHING_BELOW})"
                if self.learned_nothing else "")


class RungPause(Exception):  # noqa: N818 - control flow, like optuna.TrialPruned
    """The scheduler paused the trial at a rung: its checkpoint there is kept for a promotion.
    ``value``: the objective's best so far; ``epochs``: the rung; ``best_epoch``: the epoch
    (1-based) that scored ``value``."""

    def __init__(self, value: float, epochs: int, best_epoch: int = 0) -> None:
        super().__init__(f"paused at rung {epochs} epochs with {value:.4f}")
        self.value, self.epochs, self.best_epoch = value, epochs, best_epoch


#: The scheduler's question at the end of an epoch: (epochs done, best value so far, this
#: epoch's value) -> go on?
RungCheck = Callable[[int, float, float], bool]


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
    folds: int = 1
    losses: dict[int, dict[int, float]] = field(default_factory=dict)  # fold -> epoch -> loss
    best_micro: dict[int, float] = field(default_factory=dict)  # fold -> best micro F1 so far
    warned: set[int] = field(default_factory=set)  # folds already warned about
    rung: RungCheck | None = None  # scheduler.type hyperband or pbt
    rung_from: int = 0  # a continuation: the rung it was promoted from (not decided again)
    best_seen: float = float("-inf")
    best_epoch: int = 0  # the epoch (1-based) that scored best_seen

    def on_epoch(self, fold: int) -> Callable[[int, dict[str, Any]], None]:
        import optuna

        def report(epoch: int, metrics: dict[str, Any]) -> None:
            self._watch(fold, epoch, metrics)
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
            if self.rung is not None:  # after the epoch's checkpoint: a pause keeps it
                if value > self.best_seen:
                    self.best_seen, self.best_epoch = value, epoch + 1
                if epoch + 1 > self.rung_from and not self.rung(epoch + 1, self.best_seen,
                                                                value):
                    raise RungPause(self.best_seen, epoch + 1, self.best_epoch)
        return report

    def _watch(self, fold: int, epoch: int, metrics: dict[str, Any]) -> None:
        """Warn once per fold when validation F1 (strict micro) is still below
        ``LEARNED_NOTHING_BELOW`` after half the epochs, before the last, while the train loss
        has flattened (changed by less than ``FLAT_LOSS`` relative over the last two epochs).
        The trial goes on: it may still learn, and its end says whether it learned nothing
        (issue 21)."""
        best = max(self.best_micro.get(fold, 0.0), float(metrics.get("f1", 0.0)))
        self.best_micro[fold] = best
        if "train_loss" not in metrics:
            return
        losses = self.losses.setdefault(fold, {})
        losses[epoch] = float(metrics["train_loss"])
        before, now = losses.get(epoch - 1), losses[epoch]
        if (fold in self.warned or best >= LEARNED_NOTHING_BELOW or before is None
                or 2 * (epoch + 1) < self.epochs or epoch + 1 >= self.epochs  # the end says it
                or abs(now - before) > FLAT_LOSS * max(abs(before), 1e-12)):
            return
        self.warned.add(fold)
        where = f" fold {fold + 1}/{self.folds}" if self.folds > 1 else ""
        logger.warning(
            "Trial %d%s: validation F1 is still %.4f after %d of %d epochs and the train loss "
            "has flattened (%.4f -> %.4f): it is learning nothing so far (likely a learning "
            "rate too low or too high, or labels that do not match the data). The trial goes "
            "on.", self.trial.number, where, best, epoch + 1, self.epochs, before, now)

    def on_step(self, done: int, total: int) -> None:
        if self.rung_from and not self.resumed:  # training from epoch 0: its first step
            raise CheckpointError(
                f"trial {self.trial.number} continues from epoch {self.rung_from} but found "
                "no readable checkpoint of it: it fails rather than train from epoch 0 "
                "(which would spend epochs the budget does not have).")
        # Cheap per step: the bar and the panel redraw at most 10 times a second.
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
            if epoch < self.rung_from:  # a continuation must start where it continues
                raise CheckpointError(
                    f"trial {self.trial.number} continues from epoch {self.rung_from} but its "
                    f"newest readable checkpoint is of epoch {epoch}: it fails rather than "
                    "train those epochs again.")
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
    length = params.get("max_length")
    train_w, eval_docs, eval_w = prep.folds_for(None if length is None else int(length))[fold]
    for attempt in range(2):
        try:
            return fit(backbone=prep.backbone, labels=prep.dataset.labels,
                       train_windows=train_w, eval_docs=eval_docs, eval_windows=eval_w,
                       params=params, cfg=cfg.train, seed=seed + fold, checkpoint_dir=fold_dir,
                       on_epoch=hooks.on_epoch(fold), should_stop=stop,
                       on_step=hooks.on_step, on_checkpoint=on_checkpoint,
                       on_resume=hooks.on_resume(fold), metric=hooks.metric,
                       untrained=prep.dataset.untrained_types)
        except CheckpointError as exc:
            if attempt or hooks.rung_from:  # a continuation never starts over
                raise
            logger.error("%s The trial starts over from epoch 0.", exc)
    raise AssertionError("unreachable")


def run_trial(trial: optuna.Trial, params: dict[str, Any], prep: Prepared, cfg: Configs,
              trial_dir: Path | None, seed: int, stop: Callable[[], bool],
              tracker: SweepTracker, events: Any,
              on_checkpoint: Callable[[Path], None] | None = None, *,
              fit: Callable[..., FitResult] | None = None, rung: RungCheck | None = None,
              rung_from: int = 0) -> TrialRun:
    """Train every fold of one trial; the value is the mean of the folds' best F1.

    ``fit`` is :func:`~hpo_helpers.training.train.fit` unless the caller passes its own.
    ``rung`` (the scheduler) is asked after every epoch beyond ``rung_from`` whether the trial
    goes on; when it says no, :class:`RungPause` ends the trial with its checkpoint kept."""
    if fit is None:
        from .train import fit as default_fit

        fit = default_fit
    n = len(prep.folds)
    scores: list[float] = []
    micro: list[float] = []  # each fold's best validation F1 (strict micro)
    result = FitResult(best_f1=-1.0)
    quiet = getattr(events, "draws_progress", False)
    step_bar = progress(0, 0, f"trial {trial.number}", 1, quiet=quiet)
    hooks = _Hooks(trial, tracker, events, int(params["epochs"]), step_bar, scores,
                   cfg.hpo.objective.metric, folds=n, rung=rung, rung_from=rung_from)
    try:
        for f in range(n):
            fold_dir = None if trial_dir is None else StudyLayout.fold_dir(trial_dir, f, n)
            done = None if fold_dir is None or n == 1 else StudyLayout.fold_result(fold_dir)
            finished = _fold_result(done)
            if finished is not None:
                scores.append(finished)
                micro.append(finished)  # the fold's score is all a finished fold kept
                logger.info("Trial %d fold %d/%d already finished (F1 %.4f): not retrained",
                            trial.number, f + 1, n, scores[-1])
                continue
            result = _fit_fold(prep, cfg, params, f, seed, fold_dir, hooks, stop, on_checkpoint,
                               fit)
            if result.interrupted:
                return TrialRun(math.nan, result)
            scores.append(result.best_f1)
            micro.append(_best_micro(result))
            if n > 1:
                trial.set_user_attr(FOLD_F1, list(scores))
                logger.info("Trial %d fold %d/%d finished: F1 %.4f", trial.number, f + 1, n,
                            result.best_f1)
            if done is not None:
                write_file(done, json.dumps({"best_f1": result.best_f1}).encode())
                if on_checkpoint is not None:
                    on_checkpoint(done)  # the mirror keeps it for a fresh VM
    finally:
        hooks.step_bar.close()
    learned_nothing = statistics.mean(micro) < LEARNED_NOTHING_BELOW
    _record_best(trial, result, scores, hooks.metric, learned_nothing)
    if n > 1:
        tracker.folds(trial, scores)
    best_fold = max(range(n), key=lambda f: (scores[f], -f))
    best_model = None if trial_dir is None else StudyLayout.best_model_dir(
        StudyLayout.fold_dir(trial_dir, best_fold, n))
    return TrialRun(float(statistics.mean(scores)), result, best_model, learned_nothing)


def _best_micro(result: FitResult) -> float:
    """The best validation F1 (strict micro) of a fold's epochs (its ``best_f1`` when the fit
    kept no history)."""
    if not result.history:
        return result.best_f1
    return max(float(h.get("f1", 0.0)) for h in result.history)


def _fold_result(path: Path | None) -> float | None:
    """A finished fold's score, or None to (re)train it: missing, or unreadable (a kill while
    an older version wrote it in place; the damaged file is set aside, never trusted)."""
    if path is None or not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())["best_f1"]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"best_f1 is {type(value).__name__}")
        return float(value)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        moved = set_aside(path, "unreadable")
        logger.warning("Fold result %s is unreadable (%s): set aside as %s; the fold is "
                       "trained again", path, exc, moved.name)
        return None


def _record_best(trial: optuna.Trial, result: FitResult, scores: list[float],
                 metric: str = "f1", learned_nothing: bool = False) -> None:
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
    if learned_nothing:
        trial.set_user_attr(LEARNED_NOTHING, True)
