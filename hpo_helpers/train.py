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

from . import faults
from .backbones import Backbone
from .checkpoints import load_latest, quarantine, write_checkpoint
from .config import TrainConfig
from .data import Document
from .device import (
    DevicePolicy,
    apply_global,
    default_device,
    describe,
    free_memory,
    policy_for,
)
from .encoding import IGNORE, Window, merge_predictions
from .errors import CheckpointError, TrialOutOfMemoryError
from .layout import StudyLayout
from .metrics import entity_scores

__all__ = ["FitResult", "evaluate", "fit", "params_match"]

logger = logging.getLogger(__name__)


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


def _batch_plan(windows: Sequence[Window], batch_size: int, seed: int, epoch: int,
                bucketing: bool) -> list[list[int]]:
    """Window indices per batch for ``epoch``: a pure function of its arguments."""
    rng = random.Random(f"{seed}:{epoch}")
    idx = list(range(len(windows)))
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
             policy: DevicePolicy | None = None) -> dict[str, Any]:
    """Entity-level scores of ``model`` on ``docs`` (predictions merged per word)."""
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
    return entity_scores([d.tags for d in docs], predicted)


def _optimizer(model: Any, lr: float, weight_decay: float, device: Any) -> Any:
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
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
        metric: str = "f1", policy: DevicePolicy | None = None) -> FitResult:
    """Train with ``params``, resuming from the latest checkpoint in ``checkpoint_dir``.

    ``on_epoch(epoch, metrics)`` runs after each epoch's checkpoint is safe (it may raise
    ``optuna.TrialPruned``); epochs restored from a checkpoint are replayed through it first.
    ``should_stop()`` is polled after every step: when true, a checkpoint of the exact position
    is written and the result says ``interrupted``. Checkpoints are written at every epoch end
    and also every ``cfg.checkpoint_every_steps`` steps / ``cfg.checkpoint_every_minutes``
    minutes; ``on_checkpoint(path)`` runs after each (the sweep mirrors it to durable storage).
    ``metric`` (``f1`` or ``macro_f1``) chooses the best epoch; ``best_f1`` holds its value.

    ``policy`` (default: :func:`~hpo_helpers.device.policy_for` of ``cfg``) sets precision,
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
    batch_size = int(params["batch_size"])
    micro = batch_size
    replayed = 0  # epochs passed to on_epoch by this call: a retry does not report them again

    def on_epoch_once(epoch: int, metrics: dict[str, Any]) -> None:
        nonlocal replayed
        if epoch >= replayed:
            replayed = epoch + 1
            if on_epoch is not None:
                on_epoch(epoch, metrics)

    while True:
        run = _Fit(backbone=backbone, labels=labels, train_windows=train_windows,
                   eval_docs=eval_docs, eval_windows=eval_windows, params=params, cfg=cfg,
                   seed=seed, checkpoint_dir=checkpoint_dir, on_epoch=on_epoch_once,
                   should_stop=should_stop, on_step=on_step, on_checkpoint=on_checkpoint,
                   on_resume=on_resume, policy=policy, device=device, micro_batch=micro,
                   metric=metric)
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
            on_resume = None  # the trial's resume is already recorded; this is not one
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
    except Exception as exc:  # noqa: BLE001 - e.g. no compiler for this Python/GPU (#13)
        _compile_failed(exc)
        return None


class _Fit:
    """One attempt at a trial's training (a retry after out of memory builds a new one)."""

    def __init__(self, *, backbone: Backbone, labels: list[str],
                 train_windows: Sequence[Window], eval_docs: Sequence[Document],
                 eval_windows: Sequence[Window], params: dict[str, Any], cfg: TrainConfig,
                 seed: int, checkpoint_dir: Path | None,
                 on_epoch: Callable[[int, dict[str, Any]], None],
                 should_stop: Callable[[], bool] | None,
                 on_step: Callable[[int, int], None] | None,
                 on_checkpoint: Callable[[Path], None] | None,
                 on_resume: Callable[[int, int], None] | None,
                 policy: DevicePolicy, device: Any, micro_batch: int,
                 metric: str = "f1") -> None:
        self.backbone, self.labels, self.params, self.cfg = backbone, labels, params, cfg
        self.train_windows, self.eval_docs, self.eval_windows = (train_windows, eval_docs,
                                                                 eval_windows)
        self.seed, self.checkpoint_dir = seed, checkpoint_dir
        self.on_epoch, self.should_stop, self.on_step = on_epoch, should_stop, on_step
        self.on_checkpoint, self.on_resume = on_checkpoint, on_resume
        self.policy, self.device, self.micro_batch = policy, device, micro_batch
        self.phase = "train"
        self.metric = metric  # objective.metric: chooses the best epoch

    def run(self) -> FitResult:
        import torch

        cfg, params, policy, device = self.cfg, self.params, self.policy, self.device
        model = self.backbone.build_model(self.labels, dropout=float(params["dropout"]),
                                          seed=self.seed).to(device)
        model.train()
        pad_id = self.backbone.tokenizer.pad_token_id or 0
        epochs = int(params["epochs"])
        batch_size = int(params["batch_size"])
        compiled = _compiled(model, policy)
        train_model = model if compiled is None else compiled
        steps_per_epoch = math.ceil(len(self.train_windows) / batch_size)
        total = steps_per_epoch * epochs
        warmup = int(float(params["warmup_ratio"]) * total)
        optimizer = _optimizer(model, float(params["learning_rate"]),
                               float(params["weight_decay"]), device)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            return max(0.0, (total - step) / max(1, total - warmup))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        scaler = torch.amp.GradScaler(device.type, enabled=policy.grad_scaler)
        result = FitResult(best_f1=-1.0, policy=policy)
        start_epoch, start_step = 0, 0
        # Running train loss of the current epoch, summed on the device: reading it back is a
        # sync, done only at checkpoints and epoch ends (#13). float64: same sums as before.
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        loss_n = 0
        torch.manual_seed(self.seed + 1)  # dropout stream of a fresh trial
        # the newest readable checkpoint; damaged ones are set aside (issue 11)
        loaded = load_latest(self.checkpoint_dir) if self.checkpoint_dir else None
        if loaded is not None:
            ckpt, contents = loaded
            state = self._restore(ckpt, contents, model, optimizer, scheduler, scaler, total)
            start_epoch, start_step = int(state["epoch"]), int(state["step_in_epoch"])
            result.history = list(state["history"])
            result.best_f1 = float(state["best_f1"])
            result.global_step = int(state["global_step"])
            loss_sum.fill_(float(state["epoch_loss_sum"]))
            loss_n = int(state["epoch_loss_n"])
            # A split batch stays split (oom_retry); old checkpoints have no such key.
            self.micro_batch = min(self.micro_batch,
                                   int(state.get("micro_batch_size", batch_size)))
            result.resumed_from_epoch, result.resumed_from_step = start_epoch, \
                result.global_step
            if self.on_resume is not None:
                self.on_resume(start_epoch, result.global_step)
        for epoch, metrics in enumerate(result.history):
            self.on_epoch(epoch, metrics)
        if self.micro_batch < batch_size:
            result.micro_batch_size = self.micro_batch

        last_save = time.monotonic()

        def save(epoch: int, step_in_epoch: int) -> None:
            nonlocal last_save
            last_save = time.monotonic()
            if self.checkpoint_dir is None:
                return
            training = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                        "rng": _rng_state()}
            if scaler.is_enabled():
                training["scaler"] = scaler.state_dict()
            path = write_checkpoint(
                self.checkpoint_dir, result.global_step, model_state=model.state_dict(),
                training_state=training,
                state={"epoch": epoch, "step_in_epoch": step_in_epoch,
                       "global_step": result.global_step, "history": result.history,
                       "best_f1": result.best_f1, "params": params, "saved_at": time.time(),
                       "precision": policy.precision, "micro_batch_size": self.micro_batch,
                       "epoch_loss_sum": float(loss_sum) if step_in_epoch else 0.0,
                       "epoch_loss_n": loss_n if step_in_epoch else 0})
            if self.on_checkpoint is not None:
                self.on_checkpoint(path)

        def forward_backward(net: Any, rows: list[int]) -> Any:
            """Loss of one optimizer step (summed over its micro-batches), gradients in place."""
            chunks = [rows[i:i + self.micro_batch] for i in range(0, len(rows),
                                                                   self.micro_batch)]
            step_loss = None
            for chunk in chunks:
                batch = _collate([self.train_windows[i] for i in chunk], pad_id,
                                 cfg.pad_to_multiple_of, device, policy.pin_memory)
                with policy.autocast():
                    loss = net(**batch).loss
                if len(chunks) > 1:
                    loss = loss * (len(chunk) / len(rows))
                scaler.scale(loss).backward()
                step_loss = loss.detach() if step_loss is None else step_loss + loss.detach()
            return step_loss

        for epoch in range(start_epoch, epochs):
            plan = _batch_plan(self.train_windows, batch_size, self.seed, epoch,
                               cfg.length_bucketing)
            skip = start_step if epoch == start_epoch else 0
            if not skip:
                loss_sum.zero_()
                loss_n = 0
            for step_in_epoch in range(skip, len(plan)):
                rows = plan[step_in_epoch]
                if train_model is model:
                    step_loss = forward_backward(model, rows)
                else:
                    # A compile error surfaces at the first call (or a recompile): fall back
                    # to eager for this step and the rest, with the RNG as it was (exactness).
                    rng = _rng_state()
                    try:
                        step_loss = forward_backward(train_model, rows)
                    except torch.OutOfMemoryError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - never fail a trial for it (#13)
                        _compile_failed(exc)
                        train_model = model
                        optimizer.zero_grad(set_to_none=True)
                        _set_rng_state(rng)
                        step_loss = forward_backward(model, rows)
                if scaler.is_enabled():
                    scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                loss_sum += step_loss
                loss_n += 1
                result.global_step += 1
                result.steps_this_session += 1
                # read by benchmarks/fault_injection.py (debug level: no cost when off, no sync)
                logger.debug("step %d/%d", result.global_step, total)
                faults.point("train_step")
                if self.on_step:
                    self.on_step(result.global_step, total)
                last = step_in_epoch + 1 == len(plan)
                if not last and self.should_stop is not None and self.should_stop():
                    save(epoch, step_in_epoch + 1)
                    result.interrupted = True
                    return result
                due = (cfg.checkpoint_every_steps
                       and result.global_step % cfg.checkpoint_every_steps == 0) or (
                    cfg.checkpoint_every_minutes
                    and time.monotonic() - last_save >= cfg.checkpoint_every_minutes * 60)
                if not last and due:
                    save(epoch, step_in_epoch + 1)
            self.phase = "evaluation"
            metrics = evaluate(model, self.eval_docs, self.eval_windows, self.labels, cfg,
                               pad_id, policy) if self.eval_docs \
                else {"f1": 0.0, "precision": 0.0, "recall": 0.0, "per_entity": {}}
            self.phase = "train"
            metrics["train_loss"] = float(loss_sum) / max(1, loss_n)
            metrics["epoch"] = epoch
            result.history.append(metrics)
            if metrics.get(self.metric, 0.0) > result.best_f1:
                result.best_f1 = float(metrics.get(self.metric, 0.0))
                if self.checkpoint_dir is not None:
                    _save_best(model, self.backbone,
                               StudyLayout.best_model_dir(self.checkpoint_dir), metrics)
            save(epoch + 1, 0)
            logger.info("Epoch %d/%d: train loss %.4f, validation F1 %.4f", epoch + 1, epochs,
                        metrics["train_loss"], metrics["f1"])
            self.on_epoch(epoch, metrics)
            if self.should_stop is not None and self.should_stop() and epoch + 1 < epochs:
                result.interrupted = True
                return result
        return result

    def _restore(self, ckpt: Path, contents: tuple[dict, dict, dict], model: Any,
                 optimizer: Any, scheduler: Any, scaler: Any, total: int) -> dict[str, Any]:
        """Load ``ckpt``'s ``contents`` into the training objects; returns its state."""
        global _scaler_missing_logged
        model_state, training, state = contents
        params = self.params
        if not params_match(state.get("params", {}), params):
            moved = quarantine(ckpt, "mismatch")
            raise CheckpointError(
                f"checkpoint {ckpt} was written for params {state.get('params')}, not this "
                f"trial's {params}; set aside as {moved.name}.")
        try:
            model.load_state_dict(model_state)
            optimizer.load_state_dict(training["optimizer"])
            scheduler.load_state_dict(training["scheduler"])
        except (RuntimeError, ValueError, KeyError) as exc:
            moved = quarantine(ckpt, "mismatch")
            raise CheckpointError(
                f"checkpoint {ckpt} does not fit this trial's model ("
                f"{str(exc).splitlines()[0][:200]}); set aside as {moved.name}.") from None
        if scaler.is_enabled():
            if "scaler" in training:
                scaler.load_state_dict(training["scaler"])
            elif not _scaler_missing_logged:
                # Written by an older version or under another precision: it resumes, with a
                # fresh loss scale (the first steps may be skipped while the scale settles).
                logger.warning("Checkpoint %s has no gradient-scaler state (older version or "
                               "precision %s): unverified resume with a fresh scale", ckpt,
                               state.get("precision", "unknown"))
                _scaler_missing_logged = True
        _set_rng_state(training["rng"])
        logger.info("Checkpoint restored: %s (epoch %d, step %d of %d)", ckpt,
                    int(state["epoch"]), int(state["global_step"]), total)
        return state


_scaler_missing_logged = False


def _save_best(model: Any, backbone: Backbone, target: Path, metrics: dict[str, Any]) -> None:
    """Write the trial's best model as a Hugging Face folder, replacing the previous one."""
    import json

    from .durable import write_folder

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        backbone.tokenizer.save_pretrained(tmp)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))

    write_folder(target, fill)
