"""One trial's training: a lean token-classification loop that can stop and resume anywhere.

Determinism is what makes resume exact: batch order of epoch ``e`` depends only on
``(seed, e)``, and a checkpoint stores the weights, optimizer, scheduler and the global RNG (for
dropout). Resuming from the checkpoint of epoch ``k`` (or step ``s`` inside an epoch) on the same
device therefore gives the same final metric as the uninterrupted run.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core import faults
from ..core.errors import CheckpointError, TrialOutOfMemoryError
from ..data.dataset import Document
from ..settings.config import RECIPE_DEFAULTS, TrainConfig
from ..storage.checkpoints import load_latest, quarantine, write_checkpoint
from ..storage.layout import StudyLayout
from .backbones import Backbone
from .device import (
    DevicePolicy,
    apply_global,
    default_device,
    describe,
    free_memory,
    policy_for,
)
from .encoding import IGNORE, Window, merge_predictions
from .metrics import entity_scores

__all__ = ["FitHooks", "FitInputs", "FitResult", "evaluate", "fit", "params_match"]

logger = logging.getLogger(__name__)

HEAD_PREFIX = "classifier."  # AutoModelForTokenClassification's head, for every backbone here


@dataclass
class FitResult:
    """What a (possibly interrupted) fit produced."""

    best_f1: float
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    resumed_from_step: int | None = None
    global_step: int = 0
    steps_this_session: int = 0
    interrupted: bool = False
    policy: DevicePolicy | None = None  # the device policy the run trained with
    micro_batch_size: int | None = None  # set when oom_retry split the batches


def params_match(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Trial params equal up to float noise (SQLite round-trips floats exactly, JSON may not)."""
    if set(a) != set(b):
        return False
    for k in a:
        x, y = a[k], b[k]
        if isinstance(x, float) or isinstance(y, float):
            if not math.isclose(float(x), float(y), rel_tol=1e-9, abs_tol=1e-12):
                return False
        elif x != y:
            return False
    return True


def _with_entity(window: Window, o_id: int | None) -> bool:
    return any(label not in (IGNORE, o_id) for label in window.labels)


def _epoch_windows(windows: Sequence[Window], seed: int, epoch: int, keep_empty: float,
                   o_id: int | None) -> list[int]:
    """The windows trained on in ``epoch``: every window with an entity, and a seeded share
    ``keep_empty`` of those without one (a pure function of its arguments, so a resumed epoch
    sees the same windows). ``keep_empty`` 1.0: all windows, in order."""
    if keep_empty >= 1.0:
        return list(range(len(windows)))
    empty = [i for i, w in enumerate(windows) if not _with_entity(w, o_id)]
    keep = set(random.Random(f"{seed}:{epoch}:empty").sample(empty,
                                                             _kept_empty(len(empty), keep_empty)))
    return [i for i in range(len(windows)) if i in keep or _with_entity(windows[i], o_id)]


def _kept_empty(n_empty: int, keep_empty: float) -> int:
    return n_empty if keep_empty >= 1.0 else max(1, round(n_empty * keep_empty)) \
        if n_empty else 0


def steps_per_epoch(windows: Sequence[Window], batch_size: int, keep_empty: float,
                    o_id: int | None) -> int:
    """Optimizer steps of one epoch (the same for every epoch: the empty share is fixed)."""
    if keep_empty >= 1.0:
        return math.ceil(len(windows) / batch_size)
    n_empty = sum(1 for w in windows if not _with_entity(w, o_id))
    return math.ceil((len(windows) - n_empty + _kept_empty(n_empty, keep_empty)) / batch_size)


def _batch_plan(windows: Sequence[Window], batch_size: int, seed: int, epoch: int,
                bucketing: bool, keep_empty: float = 1.0,
                o_id: int | None = None) -> list[list[int]]:
    """Window indices per batch for ``epoch``: a pure function of its arguments."""
    rng = random.Random(f"{seed}:{epoch}")
    idx = _epoch_windows(windows, seed, epoch, keep_empty, o_id)
    rng.shuffle(idx)
    if bucketing:
        # Sort a shuffled order by length (stable) so that a batch holds similar lengths and
        # ties differ per epoch; then shuffle the batches.
        idx.sort(key=lambda i: len(windows[i]))
    batches = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(windows: Sequence[Window], pad_id: int, multiple: int, device: Any,
             pin: bool = False) -> dict[str, Any]:
    """One padded batch on ``device``; with ``pin`` (CUDA) the host tensors are pinned and
    copied without blocking, so the host builds the next batch while the GPU computes."""
    import torch

    longest = max(len(w) for w in windows)
    width = -(-longest // multiple) * multiple
    ids = [list(w.input_ids) + [pad_id] * (width - len(w)) for w in windows]
    labels = [list(w.labels) + [IGNORE] * (width - len(w)) for w in windows]
    mask = [[1] * len(w) + [0] * (width - len(w)) for w in windows]
    batch = {"input_ids": torch.tensor(ids, dtype=torch.long),
             "attention_mask": torch.tensor(mask, dtype=torch.long),
             "labels": torch.tensor(labels, dtype=torch.long)}
    if pin:
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return {k: v.to(device) for k, v in batch.items()}


def evaluate(model: Any, docs: Sequence[Document], windows: Sequence[Window],
             labels: list[str], cfg: TrainConfig, pad_id: int,
             policy: DevicePolicy | None = None, *,
             untrained: Sequence[str] = ()) -> dict[str, Any]:
    """Entity-level scores of ``model`` on ``docs`` (predictions merged per word); types in
    ``untrained`` are left out of macro F1 (see :func:`~hpo_helpers.training.metrics.
    entity_scores`)."""
    import torch

    device = next(model.parameters()).device
    policy = policy or policy_for(cfg, device)
    model.eval()
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    preds: list[list[int]] = [[] for _ in windows]
    with torch.inference_mode(), policy.autocast():
        for i in range(0, len(order), cfg.eval_batch_size):
            chunk = order[i:i + cfg.eval_batch_size]
            batch = _collate([windows[j] for j in chunk], pad_id, cfg.pad_to_multiple_of, device,
                             policy.pin_memory)
            logits = model(input_ids=batch["input_ids"],
                           attention_mask=batch["attention_mask"]).logits
            top = logits.argmax(-1).cpu().tolist()
            for j, row in zip(chunk, top):
                preds[j] = row[: len(windows[j])]
    model.train()
    id2label = dict(enumerate(labels))
    predicted = merge_predictions(docs, windows, preds, id2label)
    return entity_scores([d.tags for d in docs], predicted, untrained=untrained)


def _optimizer(model: Any, lr: float, weight_decay: float, device: Any,
               head_lr_ratio: float = 1.0) -> Any:
    """AdamW; the token-classification head (``classifier``, new and randomly initialised)
    learns at ``head_lr_ratio`` times the body's rate. At 1.0 the parameter groups are the
    two they always were (decay, no decay), so older checkpoints' optimizer states load."""
    import torch

    split = head_lr_ratio != 1.0
    groups: list[dict[str, Any]] = []
    for head in (False, True) if split else (None,):
        decay: list[Any] = []
        no_decay: list[Any] = []
        for name, p in model.named_parameters():
            if head is not None and name.startswith(HEAD_PREFIX) != head:
                continue
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
        rate = lr * head_lr_ratio if head else lr
        groups += [{"params": decay, "weight_decay": weight_decay, "lr": rate},
                   {"params": no_decay, "weight_decay": 0.0, "lr": rate}]
    if split:
        groups = [g for g in groups if g["params"]]
    fused = device.type == "cuda"
    return torch.optim.AdamW(groups, lr=lr, fused=fused) if fused else \
        torch.optim.AdamW(groups, lr=lr)


def _rng_state() -> dict[str, Any]:
    import torch

    state = {"torch": torch.get_rng_state(), "python": list(random.getstate()[1])}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate((3, tuple(state["python"]), None))


def fit(*, backbone: Backbone, labels: list[str], train_windows: Sequence[Window],
        eval_docs: Sequence[Document], eval_windows: Sequence[Window], params: dict[str, Any],
        cfg: TrainConfig, seed: int, checkpoint_dir: Path | None,
        on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_step: Callable[[int, int], None] | None = None,
        on_checkpoint: Callable[[Path], None] | None = None,
        on_resume: Callable[[int, int], None] | None = None,
        metric: str = "f1", policy: DevicePolicy | None = None,
        untrained: Sequence[str] = ()) -> FitResult:
    """Train with ``params``, resuming from the latest checkpoint in ``checkpoint_dir``.

    ``on_epoch(epoch, metrics)`` runs after each epoch's checkpoint is safe (it may raise
    ``optuna.TrialPruned``); epochs restored from a checkpoint are replayed through it first.
    ``should_stop()`` is polled after every step: when true, a checkpoint of the exact position
    is written and the result says ``interrupted``. Checkpoints are written at every epoch end
    and also every ``cfg.checkpoint_every_steps`` steps / ``cfg.checkpoint_every_minutes``
    minutes; ``on_checkpoint(path)`` runs after each (the sweep mirrors it to durable storage).
    ``metric`` (``f1`` or ``macro_f1``) chooses the best epoch; ``best_f1`` holds its value.
    ``untrained``: types without a training example, left out of macro F1.

    ``policy`` (default: :func:`~hpo_helpers.training.device.policy_for` of ``cfg``) sets precision,
    gradient scaling, TF32 and compile. Out of memory raises :class:`TrialOutOfMemoryError`
    naming the batch size, after freeing the memory; with ``cfg.oom_retry`` the batch is first
    split into halves (then quarters...) with gradient accumulation, resuming from the latest
    checkpoint.
    """
    import torch

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    device = default_device()
    policy = policy or policy_for(cfg, device)
    apply_global(policy)
    logger.info("Device policy: %s on %s, %s%s (%s)", policy.precision, device.type,
                "compiled" if policy.compile else "eager",
                ", gradient scaling" if policy.grad_scaler else "", policy.reason)
    inputs = FitInputs(backbone, labels, train_windows, eval_docs, eval_windows, params, cfg,
                       seed, checkpoint_dir, metric, tuple(untrained))
    batch_size = micro = inputs.batch_size
    replayed = 0  # epochs passed to on_epoch by this call: a retry does not report them again

    def on_epoch_once(epoch: int, metrics: dict[str, Any]) -> None:
        nonlocal replayed
        if epoch >= replayed:
            replayed = epoch + 1
            if on_epoch is not None:
                on_epoch(epoch, metrics)

    hooks = FitHooks(on_epoch_once, should_stop, on_step, on_checkpoint, on_resume)
    while True:
        run = _Fit(inputs, hooks, policy, device, micro)
        try:
            return run.run()
        except torch.OutOfMemoryError as exc:
            detail = str(exc).splitlines()[0][:200] if str(exc) else "out of memory"
        phase, micro = run.phase, run.micro_batch
        del run  # with the exception gone, nothing holds the model, optimizer or activations
        free_memory()
        if phase == "train" and cfg.oom_retry and micro > 1:
            micro //= 2
            logger.warning("Out of memory at batch size %d (%s); retrying with micro-batches of "
                           "%d and gradient accumulation (oom_retry)", batch_size, detail, micro)
            hooks.on_resume = None  # the trial's resume is already recorded; this is not one
            continue
        what = (f"batch size {batch_size}" + (f" (micro-batch {micro})" if micro < batch_size
                                              else "")
                if phase == "train" else f"eval_batch_size {cfg.eval_batch_size}")
        raise TrialOutOfMemoryError(
            f"out of memory in {phase} at {what} on {describe(device)} ({detail}). Fix: lower "
            "the batch_size choices (or max_length) in the config"
            + ("" if cfg.oom_retry or phase != "train" else
               ", or set oom_retry: true in train.yaml to split batches") + ".",
            batch_size=batch_size if phase == "train" else cfg.eval_batch_size) from None


_compile_broken = False  # torch.compile failed once in this process: later trials stay eager


def _compile_failed(exc: BaseException) -> None:
    global _compile_broken
    if not _compile_broken:
        # e.g. "backend='inductor' raised:" then the cause on the next line
        first = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())[:300]
        logger.warning("torch.compile failed (%s: %s); training continues without compiling, "
                       "for this and later trials of this process", type(exc).__name__, first)
    _compile_broken = True


def _compiled(model: Any, policy: DevicePolicy) -> Any | None:
    """``torch.compile(model)`` when the policy asks and it has not failed before, else None.

    Dynamic shapes: bucketed batches vary in length. The plain module keeps the weights."""
    if not policy.compile or _compile_broken:
        return None
    import torch

    try:
        return torch.compile(model, dynamic=True)
    except Exception as exc:  # noqa: BLE001 - e.g. no compiler for this Python/GPU
        _compile_failed(exc)
        return None


@dataclass
class FitHooks:
    """What a fit tells its caller, and how it learns to stop (see :func:`fit`)."""

    on_epoch: Callable[[int, dict[str, Any]], None] | None = None
    should_stop: Callable[[], bool] | None = None
    on_step: Callable[[int, int], None] | None = None
    on_checkpoint: Callable[[Path], None] | None = None
    on_resume: Callable[[int, int], None] | None = None

    def stop_requested(self) -> bool:
        return self.should_stop is not None and self.should_stop()


@dataclass(frozen=True)
class FitInputs:
    """What one trial (or fold, or refit) trains on, and with which params."""

    backbone: Backbone
    labels: list[str]
    train_windows: Sequence[Window]
    eval_docs: Sequence[Document]
    eval_windows: Sequence[Window]
    params: dict[str, Any]
    cfg: TrainConfig
    seed: int
    checkpoint_dir: Path | None
    metric: str = "f1"  # objective.metric: chooses the best epoch
    untrained: tuple[str, ...] = ()  # types without a training example: not in macro F1

    @property
    def epochs(self) -> int:
        return int(self.params["epochs"])

    @property
    def batch_size(self) -> int:
        return int(self.params["batch_size"])

    def recipe(self, name: str) -> float:
        """A sparse-NER recipe parameter (``head_lr_ratio``, ``empty_window_keep``,
        ``o_weight``), neutral when the search space does not set it."""
        return float(self.params.get(name, RECIPE_DEFAULTS[name]))

    @property
    def o_id(self) -> int | None:
        return self.labels.index("O") if "O" in self.labels else None


@dataclass
class _Trainer:
    """The objects that train: the model (and its compiled twin), optimizer, scheduler and
    gradient scaler, built for one attempt."""

    model: Any
    train_model: Any  # the compiled model, or ``model`` itself
    optimizer: Any
    scheduler: Any
    scaler: Any
    pad_id: int
    total_steps: int


class _Fit:
    """One attempt at a trial's training (a retry after out of memory builds a new one).

    The training position lives in ``result`` (global step, history, best score) and in
    ``epoch``, ``step_in_epoch`` and the running loss of the current epoch; a checkpoint
    stores exactly these (:meth:`_save`), and :meth:`_restore` puts them back.
    """

    def __init__(self, inputs: FitInputs, hooks: FitHooks, policy: DevicePolicy, device: Any,
                 micro_batch: int) -> None:
        self.inputs, self.hooks = inputs, hooks
        self.policy, self.device, self.micro_batch = policy, device, micro_batch
        self.phase = "train"
        self.result = FitResult(best_f1=-1.0, policy=policy)
        self.loss_n = 0
        self.loss_sum: Any = None
        self.last_save = time.monotonic()

    def run(self) -> FitResult:
        tr = self._build()
        start_epoch, start_step = self._resume(tr)
        inputs, result = self.inputs, self.result
        for epoch in range(start_epoch, inputs.epochs):
            skip = start_step if epoch == start_epoch else 0
            if self._train_epoch(tr, epoch, skip):
                result.interrupted = True
                return result
            self._end_epoch(tr, epoch)
            if self.hooks.stop_requested() and epoch + 1 < inputs.epochs:
                result.interrupted = True
                return result
        return result

    # -- set-up ----------------------------------------------------------------------

    def _build(self) -> _Trainer:
        import torch

        inputs, params, policy, device = self.inputs, self.inputs.params, self.policy, \
            self.device
        model = inputs.backbone.build_model(inputs.labels, dropout=float(params["dropout"]),
                                            seed=inputs.seed).to(device)
        model.train()
        compiled = _compiled(model, policy)
        total = steps_per_epoch(inputs.train_windows, inputs.batch_size,
                                inputs.recipe("empty_window_keep"), inputs.o_id) * inputs.epochs
        warmup = int(float(params["warmup_ratio"]) * total)
        optimizer = _optimizer(model, float(params["learning_rate"]),
                               float(params["weight_decay"]), device,
                               inputs.recipe("head_lr_ratio"))

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        tr = _Trainer(model, model if compiled is None else compiled, optimizer,
                      torch.optim.lr_scheduler.LambdaLR(optimizer, schedule),
                      torch.amp.GradScaler(device.type, enabled=policy.grad_scaler),
                      inputs.backbone.tokenizer.pad_token_id or 0, total)
        # Running train loss of the current epoch, summed on the device: reading it back is a
        # sync, done only at checkpoints and epoch ends. float64: exact sums across resumes.
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        torch.manual_seed(inputs.seed + 1)  # dropout stream of a fresh trial
        return tr

    def _resume(self, tr: _Trainer) -> tuple[int, int]:
        """Restore the newest readable checkpoint (damaged ones are set aside) and replay its
        epochs to ``on_epoch``; returns where training continues (epoch, step in epoch)."""
        inputs, result = self.inputs, self.result
        start = (0, 0)
        loaded = load_latest(inputs.checkpoint_dir) if inputs.checkpoint_dir else None
        if loaded is not None:
            ckpt, contents = loaded
            state = self._restore(ckpt, contents, tr)
            start = int(state["epoch"]), int(state["step_in_epoch"])
            result.history = list(state["history"])
            result.best_f1 = float(state["best_f1"])
            result.global_step = int(state["global_step"])
            self.loss_sum.fill_(float(state["epoch_loss_sum"]))
            self.loss_n = int(state["epoch_loss_n"])
            # A split batch stays split (oom_retry); old checkpoints have no such key.
            self.micro_batch = min(self.micro_batch,
                                   int(state.get("micro_batch_size", inputs.batch_size)))
            result.resumed_from_epoch, result.resumed_from_step = start[0], result.global_step
            if self.hooks.on_resume is not None:
                self.hooks.on_resume(start[0], result.global_step)
        for epoch, metrics in enumerate(result.history):
            if self.hooks.on_epoch is not None:
                self.hooks.on_epoch(epoch, metrics)
        if self.micro_batch < inputs.batch_size:
            result.micro_batch_size = self.micro_batch
        self.last_save = time.monotonic()
        return start

    # -- training --------------------------------------------------------------------

    def _train_epoch(self, tr: _Trainer, epoch: int, skip: int) -> bool:
        """Train ``epoch`` from step ``skip``; True when a stop request interrupted it (the
        exact position is saved)."""
        inputs, cfg, result = self.inputs, self.inputs.cfg, self.result
        plan = _batch_plan(inputs.train_windows, inputs.batch_size, inputs.seed, epoch,
                           cfg.length_bucketing, inputs.recipe("empty_window_keep"), inputs.o_id)
        if not skip:
            self.loss_sum.zero_()
            self.loss_n = 0
        for step_in_epoch in range(skip, len(plan)):
            self._step(tr, plan[step_in_epoch])
            # read by benchmarks/fault_injection.py (debug level: no cost when off, no sync)
            logger.debug("step %d/%d", result.global_step, tr.total_steps)
            faults.point("train_step")
            if self.hooks.on_step:
                self.hooks.on_step(result.global_step, tr.total_steps)
            if step_in_epoch + 1 == len(plan):
                break
            if self.hooks.stop_requested():
                self._save(tr, epoch, step_in_epoch + 1)
                return True
            if self._checkpoint_due():
                self._save(tr, epoch, step_in_epoch + 1)
        return False

    def _checkpoint_due(self) -> bool:
        cfg = self.inputs.cfg
        return bool((cfg.checkpoint_every_steps
                     and self.result.global_step % cfg.checkpoint_every_steps == 0) or (
            cfg.checkpoint_every_minutes
            and time.monotonic() - self.last_save >= cfg.checkpoint_every_minutes * 60))

    def _step(self, tr: _Trainer, rows: list[int]) -> None:
        """One optimizer step on the windows ``rows``."""
        import torch

        if tr.train_model is tr.model:
            step_loss = self._forward_backward(tr, tr.model, rows)
        else:
            # A compile error surfaces at the first call (or a recompile): fall back to eager
            # for this step and the rest, with the RNG as it was (the run stays exact).
            rng = _rng_state()
            try:
                step_loss = self._forward_backward(tr, tr.train_model, rows)
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - never fail a trial for it
                _compile_failed(exc)
                tr.train_model = tr.model
                tr.optimizer.zero_grad(set_to_none=True)
                _set_rng_state(rng)
                step_loss = self._forward_backward(tr, tr.model, rows)
        if tr.scaler.is_enabled():
            tr.scaler.unscale_(tr.optimizer)
        torch.nn.utils.clip_grad_norm_(tr.model.parameters(), self.inputs.cfg.max_grad_norm)
        tr.scaler.step(tr.optimizer)
        tr.scaler.update()
        tr.scheduler.step()
        tr.optimizer.zero_grad(set_to_none=True)
        self.loss_sum += step_loss
        self.loss_n += 1
        self.result.global_step += 1
        self.result.steps_this_session += 1

    def _forward_backward(self, tr: _Trainer, net: Any, rows: list[int]) -> Any:
        """Loss of one optimizer step (summed over its micro-batches), gradients in place."""
        inputs, policy = self.inputs, self.policy
        chunks = [rows[i:i + self.micro_batch] for i in range(0, len(rows), self.micro_batch)]
        step_loss = None
        for chunk in chunks:
            batch = _collate([inputs.train_windows[i] for i in chunk], tr.pad_id,
                             inputs.cfg.pad_to_multiple_of, self.device, policy.pin_memory)
            with policy.autocast():
                loss = self._loss(net, batch)
            if len(chunks) > 1:
                loss = loss * (len(chunk) / len(rows))
            tr.scaler.scale(loss).backward()
            step_loss = loss.detach() if step_loss is None else step_loss + loss.detach()
        return step_loss

    def _loss(self, net: Any, batch: dict[str, Any]) -> Any:
        """The batch's token cross-entropy; with ``o_weight`` below 1 the ``O`` class counts
        less (a weighted mean over labelled tokens)."""
        o_weight, o_id = self.inputs.recipe("o_weight"), self.inputs.o_id
        if o_weight == 1.0 or o_id is None:
            return net(**batch).loss
        import torch

        logits = net(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        weight = torch.ones(logits.shape[-1], device=logits.device, dtype=torch.float32)
        weight[o_id] = o_weight
        return torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), batch["labels"].reshape(-1),
            weight=weight, ignore_index=IGNORE)

    def _end_epoch(self, tr: _Trainer, epoch: int) -> None:
        """Evaluate, keep the best model, checkpoint, then tell ``on_epoch`` (which may prune)."""
        inputs, result = self.inputs, self.result
        self.phase = "evaluation"
        metrics: dict[str, Any] = evaluate(
            tr.model, inputs.eval_docs, inputs.eval_windows, inputs.labels, inputs.cfg,
            tr.pad_id, self.policy, untrained=inputs.untrained) if inputs.eval_docs \
            else {"f1": 0.0, "precision": 0.0, "recall": 0.0, "per_entity": {}}
        self.phase = "train"
        metrics["train_loss"] = float(self.loss_sum) / max(1, self.loss_n)
        metrics["epoch"] = epoch
        result.history.append(metrics)
        if metrics.get(inputs.metric, 0.0) > result.best_f1:
            result.best_f1 = float(metrics.get(inputs.metric, 0.0))
            if inputs.checkpoint_dir is not None:
                _save_best(tr.model, inputs.backbone,
                           StudyLayout.best_model_dir(inputs.checkpoint_dir), metrics)
        self._save(tr, epoch + 1, 0)
        logger.info("Epoch %d/%d: train loss %.4f, validation F1 %.4f", epoch + 1,
                    inputs.epochs, metrics["train_loss"], metrics["f1"])
        if self.hooks.on_epoch is not None:
            self.hooks.on_epoch(epoch, metrics)

    # -- checkpoints -----------------------------------------------------------------

    def _save(self, tr: _Trainer, epoch: int, step_in_epoch: int) -> None:
        """Checkpoint the exact position: ``epoch`` and the step inside it."""
        self.last_save = time.monotonic()
        inputs, result = self.inputs, self.result
        if inputs.checkpoint_dir is None:
            return
        training = {"optimizer": tr.optimizer.state_dict(),
                    "scheduler": tr.scheduler.state_dict(), "rng": _rng_state()}
        if tr.scaler.is_enabled():
            training["scaler"] = tr.scaler.state_dict()
        path = write_checkpoint(
            inputs.checkpoint_dir, result.global_step, model_state=tr.model.state_dict(),
            training_state=training,
            state={"epoch": epoch, "step_in_epoch": step_in_epoch,
                   "global_step": result.global_step, "history": result.history,
                   "best_f1": result.best_f1, "params": inputs.params, "saved_at": time.time(),
                   "precision": self.policy.precision, "micro_batch_size": self.micro_batch,
                   "epoch_loss_sum": float(self.loss_sum) if step_in_epoch else 0.0,
                   "epoch_loss_n": self.loss_n if step_in_epoch else 0})
        if self.hooks.on_checkpoint is not None:
            self.hooks.on_checkpoint(path)

    def _restore(self, ckpt: Path, contents: tuple[dict, dict, dict],
                 tr: _Trainer) -> dict[str, Any]:
        """Load ``ckpt``'s ``contents`` into the training objects; returns its state."""
        global _scaler_missing_logged
        model_state, training, state = contents
        params = self.inputs.params
        if not params_match(state.get("params", {}), params):
            moved = quarantine(ckpt, "mismatch")
            raise CheckpointError(
                f"checkpoint {ckpt} was written for params {state.get('params')}, not this "
                f"trial's {params}; set aside as {moved.name}.")
        fresh = [(g["initial_lr"], g["weight_decay"]) for g in tr.optimizer.param_groups]
        try:  # a value of the wrong kind anywhere is a damaged checkpoint (issue 23)
            tr.model.load_state_dict(model_state)
            tr.optimizer.load_state_dict(training["optimizer"])
            tr.scheduler.load_state_dict(training["scheduler"])
            _set_rng_state(training["rng"])
            if state.get("seeded_from"):  # scheduler pbt: another member's state, our params
                _take_rates(tr, fresh)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            moved = quarantine(ckpt, "mismatch")
            raise CheckpointError(
                f"checkpoint {ckpt} does not fit this trial's model ("
                f"{str(exc).splitlines()[0][:200]}); set aside as {moved.name}.") from None
        if tr.scaler.is_enabled():
            if "scaler" in training:
                tr.scaler.load_state_dict(training["scaler"])
            elif not _scaler_missing_logged:
                # Written by an older version or under another precision: it resumes, with a
                # fresh loss scale (the first steps may be skipped while the scale settles).
                logger.warning("Checkpoint %s has no gradient-scaler state (older version or "
                               "precision %s): unverified resume with a fresh scale", ckpt,
                               state.get("precision", "unknown"))
                _scaler_missing_logged = True
        logger.info("Checkpoint restored: %s (epoch %d, step %d of %d)", ckpt,
                    int(state["epoch"]), int(state["global_step"]), tr.total_steps)
        return state


_scaler_missing_logged = False


def _take_rates(tr: _Trainer, fresh: list[tuple[float, float]]) -> None:
    """Give a restored optimizer the learning rates and weight decays of this trial's params
    (``fresh``: each group's, as built), at the schedule's current step: the moment and the
    momentum are the checkpoint's, the rates ours (PBT's explore step)."""
    sched = tr.scheduler
    for group, lam, (rate, decay) in zip(tr.optimizer.param_groups, sched.lr_lambdas, fresh,
                                         strict=True):
        group["initial_lr"], group["weight_decay"] = rate, decay
        group["lr"] = rate * lam(sched.last_epoch)
    sched.base_lrs = [rate for rate, _ in fresh]
    sched._last_lr = [group["lr"] for group in tr.optimizer.param_groups]


def _save_best(model: Any, backbone: Backbone, target: Path, metrics: dict[str, Any]) -> None:
    """Write the trial's best model as a Hugging Face folder, replacing the previous one."""
    import json

    from ..storage.durable import write_folder

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        backbone.tokenizer.save_pretrained(tmp)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))

    write_folder(target, fill)
