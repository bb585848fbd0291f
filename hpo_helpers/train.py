"""One trial's training: a lean token-classification loop that can stop and resume anywhere.

Determinism is what makes resume exact: batch order of epoch ``e`` depends only on
``(seed, e)``, and a checkpoint stores the weights, optimizer, scheduler and the global RNG (for
dropout). Resuming from the checkpoint of epoch ``k`` (or step ``s`` inside an epoch) on the same
device therefore gives the same final metric as the uninterrupted run.
"""

from __future__ import annotations

import functools
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
from .encoding import IGNORE, Window, merge_predictions
from .errors import CheckpointError
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


def _collate(windows: Sequence[Window], pad_id: int, multiple: int, device: Any
             ) -> dict[str, Any]:
    import torch

    longest = max(len(w) for w in windows)
    width = -(-longest // multiple) * multiple
    ids = torch.full((len(windows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(windows), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(windows), width), dtype=torch.long)
    for row, w in enumerate(windows):
        n = len(w)
        ids[row, :n] = torch.tensor(w.input_ids)
        labels[row, :n] = torch.tensor(w.labels)
        mask[row, :n] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device),
            "labels": labels.to(device)}


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bf16 natively (AVX512-BF16 or AMX): autocast then pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def uses_bf16(device: Any, precision: str) -> bool:
    """bf16 autocast for ``precision`` on ``device`` (``auto``: where the hardware has it)."""
    import torch

    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and _cpu_has_bf16()


def _autocast(device: Any, precision: str) -> Any:
    import contextlib

    import torch

    if uses_bf16(device, precision):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def evaluate(model: Any, docs: Sequence[Document], windows: Sequence[Window],
             labels: list[str], cfg: TrainConfig, pad_id: int) -> dict[str, Any]:
    """Entity-level scores of ``model`` on ``docs`` (predictions merged per word)."""
    import torch

    device = next(model.parameters()).device
    model.eval()
    order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
    preds: list[list[int]] = [[] for _ in windows]
    with torch.inference_mode(), _autocast(device, cfg.precision):
        for i in range(0, len(order), cfg.eval_batch_size):
            chunk = order[i:i + cfg.eval_batch_size]
            batch = _collate([windows[j] for j in chunk], pad_id, cfg.pad_to_multiple_of, device)
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
        metric: str = "f1") -> FitResult:
    """Train with ``params``, resuming from the latest checkpoint in ``checkpoint_dir``.

    ``on_epoch(epoch, metrics)`` runs after each epoch's checkpoint is safe (it may raise
    ``optuna.TrialPruned``); epochs restored from a checkpoint are replayed through it first.
    ``should_stop()`` is polled after every step: when true, a checkpoint of the exact position
    is written and the result says ``interrupted``. Checkpoints are written at every epoch end
    and also every ``cfg.checkpoint_every_steps`` steps / ``cfg.checkpoint_every_minutes``
    minutes; ``on_checkpoint(path)`` runs after each (the sweep mirrors it to durable storage).
    ``metric`` (``f1`` or ``macro_f1``) chooses the best epoch; ``best_f1`` holds its value.
    """
    import torch

    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = backbone.build_model(labels, dropout=float(params["dropout"]), seed=seed).to(device)
    model.train()
    pad_id = backbone.tokenizer.pad_token_id or 0
    epochs = int(params["epochs"])
    batch_size = int(params["batch_size"])
    # torch.compile pays on GPUs (dynamic shapes: bucketed batches vary in length); on CPUs
    # its start-up costs more than it saves for a trial. The plain module keeps the weights.
    use_compile = cfg.compile == "on" or (cfg.compile == "auto" and device.type == "cuda")
    train_model = torch.compile(model, dynamic=True) if use_compile else model
    steps_per_epoch = math.ceil(len(train_windows) / batch_size)
    total = steps_per_epoch * epochs
    warmup = int(float(params["warmup_ratio"]) * total)
    optimizer = _optimizer(model, float(params["learning_rate"]), float(params["weight_decay"]),
                           device)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    result = FitResult(best_f1=-1.0)
    start_epoch, start_step = 0, 0
    loss_sum, loss_n = 0.0, 0  # running train loss of the current epoch
    torch.manual_seed(seed + 1)  # dropout stream of a fresh trial
    loaded = load_latest(checkpoint_dir) if checkpoint_dir else None
    if loaded is not None:
        ckpt, (model_state, training, state) = loaded
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
        _set_rng_state(training["rng"])
        start_epoch, start_step = int(state["epoch"]), int(state["step_in_epoch"])
        result.history = list(state["history"])
        result.best_f1 = float(state["best_f1"])
        result.global_step = int(state["global_step"])
        loss_sum, loss_n = float(state["epoch_loss_sum"]), int(state["epoch_loss_n"])
        result.resumed_from_epoch, result.resumed_from_step = start_epoch, result.global_step
        logger.info("Checkpoint restored: %s (epoch %d, step %d of %d)", ckpt, start_epoch,
                    result.global_step, total)
        if on_resume is not None:
            on_resume(start_epoch, result.global_step)
    for epoch, metrics in enumerate(result.history):
        if on_epoch:
            on_epoch(epoch, metrics)

    last_save = time.monotonic()

    def save(epoch: int, step_in_epoch: int) -> None:
        nonlocal last_save
        last_save = time.monotonic()
        if checkpoint_dir is None:
            return
        path = write_checkpoint(
            checkpoint_dir, result.global_step,
            model_state=model.state_dict(),
            training_state={"optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "rng": _rng_state()},
            state={"epoch": epoch, "step_in_epoch": step_in_epoch,
                   "global_step": result.global_step, "history": result.history,
                   "best_f1": result.best_f1, "params": params, "saved_at": time.time(),
                   "epoch_loss_sum": loss_sum if step_in_epoch else 0.0,
                   "epoch_loss_n": loss_n if step_in_epoch else 0},
        )
        if on_checkpoint is not None:
            on_checkpoint(path)

    for epoch in range(start_epoch, epochs):
        plan = _batch_plan(train_windows, batch_size, seed, epoch, cfg.length_bucketing)
        skip = start_step if epoch == start_epoch else 0
        if not skip:
            loss_sum, loss_n = 0.0, 0
        for step_in_epoch in range(skip, len(plan)):
            batch = _collate([train_windows[i] for i in plan[step_in_epoch]], pad_id,
                             cfg.pad_to_multiple_of, device)
            with _autocast(device, cfg.precision):
                loss = train_model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            loss_sum += float(loss.detach())
            loss_n += 1
            result.global_step += 1
            result.steps_this_session += 1
            logger.debug("step %d/%d", result.global_step, total)
            faults.point("train_step")
            if on_step:
                on_step(result.global_step, total)
            last = step_in_epoch + 1 == len(plan)
            if not last and should_stop is not None and should_stop():
                save(epoch, step_in_epoch + 1)
                result.interrupted = True
                return result
            due = (cfg.checkpoint_every_steps
                   and result.global_step % cfg.checkpoint_every_steps == 0) or (
                cfg.checkpoint_every_minutes
                and time.monotonic() - last_save >= cfg.checkpoint_every_minutes * 60)
            if not last and due:
                save(epoch, step_in_epoch + 1)
        metrics = evaluate(model, eval_docs, eval_windows, labels, cfg, pad_id) if eval_docs \
            else {"f1": 0.0, "precision": 0.0, "recall": 0.0, "per_entity": {}}
        metrics["train_loss"] = loss_sum / max(1, loss_n)
        metrics["epoch"] = epoch
        result.history.append(metrics)
        if metrics.get(metric, 0.0) > result.best_f1:
            result.best_f1 = float(metrics.get(metric, 0.0))
            if checkpoint_dir is not None:
                _save_best(model, backbone, StudyLayout.best_model_dir(checkpoint_dir), metrics)
        save(epoch + 1, 0)
        logger.info("Epoch %d/%d: train loss %.4f, validation F1 %.4f", epoch + 1, epochs,
                    metrics["train_loss"], metrics["f1"])
        if on_epoch:
            on_epoch(epoch, metrics)
        if should_stop is not None and should_stop() and epoch + 1 < epochs:
            result.interrupted = True
            return result
    return result


def _save_best(model: Any, backbone: Backbone, target: Path, metrics: dict[str, Any]) -> None:
    """Write the trial's best model as a Hugging Face folder, replacing the previous one."""
    import json

    from .durable import write_folder

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        backbone.tokenizer.save_pretrained(tmp)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1, sort_keys=True))

    write_folder(target, fill)
