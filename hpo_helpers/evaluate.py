"""Test scores of kept models: how the chosen models do on resumes no trial has seen.

After a sweep (and on demand: ``python -m hpo_helpers evaluate``) every kept top-k model is
scored on the test split with the same windows and per-word merge as validation: micro
precision/recall/F1, macro F1 and a per-type table (seqeval, strict IOB2). The scores are
stored as the study user attribute ``test_scores`` (trial number -> scores), in the model
folder's ``metrics.json`` (key ``test``) and in MLflow (each trial's child run and the parent).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .data import Document
from .errors import HpoHelpersError

__all__ = ["TEST_ATTR", "best_model_dir", "evaluate_study", "format_scores", "load_model",
           "models_root", "refit_root", "score_kept_models", "score_model", "test_scores"]

logger = logging.getLogger(__name__)

TEST_ATTR = "test_scores"
METRICS_FILE = "metrics.json"


def models_root(paths: Any, study_name: str) -> Path:
    """Folder of a study's kept models (with :func:`refit_root`, the one place that knows
    where this module's outputs live)."""
    return paths.models_dir(study_name)


def refit_root(paths: Any, study_name: str) -> Path:
    """Folder of a study's refit job: ``checkpoints/`` while it runs, ``model/`` when done."""
    return paths.durable_db.parent / "refit" / study_name


def best_model_dir(cfg: Any, *, backbone: str | None = None,
                   output_dir: Path | str | None = None, runtime: Any = None) -> Path:
    """The model ``--model best`` means: the refit export if there is one, else the kept
    model of the best trial."""
    from .paths import resolve
    from .runtime import detect
    from .sweep import status

    hpo = cfg.hpo
    name = backbone or hpo.backbone
    runtime = runtime or detect()
    info = status(cfg, backbone=name, output_dir=output_dir, runtime=runtime)
    if not info["exists"] or info["best_trial"] is None:
        raise HpoHelpersError(f"no finished study {info['study_name']} at "
                              f"{info['checkpoint_path']}. Fix: run the sweep first (or pass "
                              "--model DIR).")
    paths = resolve(runtime, backbone=name, storage_path=hpo.checkpoint.storage_path,
                    output_dir=output_dir)
    refit = refit_root(paths, info["study_name"]) / "model"
    if (refit / "config.json").is_file():
        return refit
    kept = models_root(paths, info["study_name"]) / f"trial_{info['best_trial']}"
    if not (kept / "config.json").is_file():
        raise HpoHelpersError(f"the best trial {info['best_trial']} has no kept model at {kept}."
                              " Fix: keep_top_k >= 1, or refit (python -m hpo_helpers refit).")
    return kept


def load_model(model_dir: Path | str) -> tuple[Any, Any, list[str]]:
    """``(model, tokenizer, labels)`` of a saved Hugging Face token-classification folder."""
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise HpoHelpersError(f"{folder}: not a saved model (no config.json). Fix: pass a kept "
                              "model folder (models/<study>/trial_<n>) or an exported refit.")
    model = AutoModelForTokenClassification.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    return model, tokenizer, labels


def score_model(model_dir: Path | str, docs: Sequence[Document], cfg: TrainConfig
                ) -> dict[str, Any]:
    """Entity-level scores of the model in ``model_dir`` on ``docs``.

    Gold tags of types the model does not know count as missed entities (they stay in the
    gold sequences; the model can only predict its own labels).
    """
    import torch

    from .encoding import encode_documents
    from .train import evaluate

    model, tokenizer, labels = load_model(model_dir)
    model.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    label2id = {lab: i for i, lab in enumerate(labels)}
    known = [Document(d.id, d.words, tuple(t if t in label2id else "O" for t in d.tags))
             for d in docs]
    windows = encode_documents(known, tokenizer, label2id, max_length=cfg.max_length,
                               stride=cfg.stride)
    scores = evaluate(model, list(docs), windows, labels, cfg, tokenizer.pad_token_id or 0)
    return {k: scores[k] for k in ("f1", "precision", "recall", "macro_f1", "per_type")}


def test_scores(study: Any) -> dict[int, dict[str, Any]]:
    """The stored test scores of a study, by trial number."""
    return {int(k): v for k, v in (study.user_attrs.get(TEST_ATTR) or {}).items()}


def score_kept_models(study: Any, models_dir: Path | None, docs: Sequence[Document],
                      cfg: TrainConfig, tracker: Any = None, *, trial: int | None = None,
                      again: bool = False) -> dict[int, dict[str, Any]]:
    """Score the kept models (or only ``trial``'s) on ``docs``; store and return the scores.

    Models already scored are skipped unless ``again``.
    """
    if not docs:
        logger.warning("No test documents: kept models are not scored on test")
        return {}
    stored = test_scores(study)
    folders = sorted(models_dir.glob("trial_*")) if models_dir and models_dir.is_dir() else []
    numbers = {int(f.name[6:]): f for f in folders if f.name[6:].isdigit()}
    if trial is not None:
        if trial not in numbers:
            raise HpoHelpersError(f"trial {trial} has no kept model in {models_dir} (kept: "
                                  f"{sorted(numbers) or 'none'}). Fix: pass one of those, or "
                                  "raise keep_top_k for future sweeps.")
        numbers = {trial: numbers[trial]}
    new: dict[int, dict[str, Any]] = {}
    for number, folder in sorted(numbers.items()):
        if number in stored and not again:
            continue
        scores = score_model(folder, docs, cfg)
        new[number] = scores
        metrics_file = folder / METRICS_FILE
        try:
            metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        except (OSError, ValueError):
            metrics = {}
        metrics["test"] = scores
        metrics_file.write_text(json.dumps(metrics, indent=1, sort_keys=True))
        logger.info("Test scores of trial %d: F1 %.4f, macro F1 %.4f (%d documents) -> %s",
                    number, scores["f1"], scores["macro_f1"], len(docs), metrics_file)
    if new:
        stored.update(new)
        study.set_user_attr(TEST_ATTR, {str(k): v for k, v in sorted(stored.items())})
        if tracker is not None:
            tracker.test_scores(study, new)
    return stored


def format_scores(scores: dict[str, Any], title: str = "test") -> str:
    """A plain-text table: micro P/R/F1, macro F1, then one row per entity type."""
    lines = [f"{title}: F1 {scores['f1']:.4f}  precision {scores['precision']:.4f}  recall "
             f"{scores['recall']:.4f}  macro F1 {scores['macro_f1']:.4f}",
             f"  {'type':<24} {'precision':>9} {'recall':>9} {'F1':>9} {'support':>8}"]
    for name, row in sorted(scores.get("per_type", {}).items()):
        lines.append(f"  {name:<24} {row['precision']:>9.4f} {row['recall']:>9.4f} "
                     f"{row['f1']:>9.4f} {row['support']:>8d}")
    return "\n".join(lines)


def evaluate_study(cfg: Any, *, backbone: str | None = None, output_dir: Path | str | None = None,
                   trial: int | None = None, dataset_path: Path | str | None = None,
                   split_files: dict[str, Any] | None = None, tracking: Any = None,
                   runtime: Any = None) -> tuple[dict[int, dict[str, Any]], int | None]:
    """Score a finished study's kept models on test (``trial``: only that one, scored again).

    Writes to the study, so it takes the study lock: refused while a sweep runs it. Returns
    the scores by trial and the best trial's number.
    """
    import dataclasses

    from .paths import resolve
    from .runtime import detect
    from .study import fingerprint, open_study
    from .sweep import _sampler_and_pruner, _snapshot, load_data, status, storage_url_for
    from .tracking import PARENT_ATTR, SweepTracker

    hpo = cfg.hpo
    name = backbone or hpo.backbone
    if storage_url_for(hpo) or not hpo.checkpoint.enabled:
        raise HpoHelpersError(f"{hpo.source}: evaluate needs a study kept on disk (SQLite, "
                              "checkpoint.enabled: true); shared (PostgreSQL) studies are not "
                              "supported yet. Fix: run it with such a config.")
    runtime = runtime or detect()
    info = status(cfg, backbone=name, output_dir=output_dir, runtime=runtime)
    if not info["exists"]:
        raise HpoHelpersError(f"no study {info['study_name']} at {info['checkpoint_path']}. "
                              "Fix: run the sweep first, or pass its --output-dir/--backbone.")
    dataset = load_data(cfg, dataset_path, split_files)
    paths = resolve(runtime, backbone=name, storage_path=hpo.checkpoint.storage_path,
                    output_dir=output_dir)
    resume = dataclasses.replace(hpo, checkpoint=dataclasses.replace(hpo.checkpoint,
                                                                     auto_resume=True))
    sampler, pruner = _sampler_and_pruner(hpo)
    opened = open_study(hpo=resume, backbone=name, paths=paths,
                        fingerprint_parts=fingerprint(hpo, dataset.fingerprint),
                        sampler=sampler, pruner=pruner)
    try:
        tracker = SweepTracker(tracking)
        tracker.parent_id = opened.study.user_attrs.get(PARENT_ATTR)
        scores = score_kept_models(opened.study, models_root(paths, opened.study_name),
                                   dataset.test, cfg.train, tracker, trial=trial,
                                   again=trial is not None)
        best = info["best_trial"]
    finally:
        _snapshot(opened.paths)
        opened.close()
    return scores, best
