"""Test scores of kept models: how the chosen models do on resumes no trial has seen.

After a sweep (and on demand: ``python -m hpo_helpers evaluate``) every kept top-k model is
scored on the test split with the same windows and per-word merge as validation: micro
precision/recall/F1, macro F1 and a per-type table (seqeval, strict IOB2). The scores are
stored as the study user attribute ``test_scores`` (trial number -> scores; written under the
study lock, or the shared study's advisory lock), in the model
folder's ``metrics.json`` (key ``test``) and in MLflow (each trial's child run and the parent).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import HpoHelpersError
from ..data.dataset import Document, load_data
from ..settings.config import TrainConfig
from ..settings.schema import NOT_IN_MACRO, NOT_IN_MACRO_NOTE, TEST_SCORES

__all__ = ["best_model_dir", "evaluate_study", "format_scores", "load_model", "open_finished",
           "score_kept_models", "score_model", "scores_lock", "test_scores"]

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def best_model_dir(cfg: Any, *, backbone: str | None = None,
                   output_dir: Path | str | None = None, runtime: Any = None) -> Path:
    """The model ``--model best`` means: the refit export if there is one, else the kept
    model of the best trial."""
    from ..study.status import status, study_paths

    name = backbone or cfg.hpo.backbone
    paths = study_paths(cfg, backbone=name, output_dir=output_dir, runtime=runtime)
    info = status(cfg, backbone=name, paths=paths)
    if not info["exists"] or info["best_trial"] is None:
        raise HpoHelpersError(f"no finished study {info['study_name']} at "
                              f"{info['checkpoint_path']}. Fix: run the sweep first (or pass "
                              "--model DIR).")
    layout = paths.layout(info["study_name"], info.get("created_at"))
    refit = layout.refit_model
    if refit is not None and (refit / "config.json").is_file():
        return refit
    best = info["best_trial"]  # its model may wait on local disk while Drive refuses it
    kept = layout.kept_models().get(best, layout.kept_model_dir(best))
    if kept is None or not (kept / "config.json").is_file():
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
    try:  # code shipped in a model folder (config.json's auto_map) is never run, and
        # transformers never asks on standard input whether to run it (issue 23)
        model = AutoModelForTokenClassification.from_pretrained(folder, trust_remote_code=False)
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    except Exception as exc:  # noqa: BLE001 - a damaged or hostile folder is the user's input
        raise model_load_error(folder, exc) from None
    return model, tokenizer, labels


def model_load_error(folder: Path | str, exc: BaseException) -> HpoHelpersError:
    """One line for a model folder transformers cannot load: damaged files, a pickle that
    ``weights_only`` refuses, or code it would have to run."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    if "custom code" in first or "trust_remote_code" in first:
        why = "it ships code of its own (auto_map), which is never run"
    else:
        why = f"{type(exc).__name__}: {first}"
    return HpoHelpersError(f"{folder}: cannot load the model ({why}). Fix: pass a model folder "
                           "this project wrote (a kept trial model, models/<study>/trial_<n>, or "
                           "an exported refit).")


def score_model(model_dir: Path | str, docs: Sequence[Document], cfg: TrainConfig, *,
                untrained: Sequence[str] = ()) -> dict[str, Any]:
    """Entity-level scores of the model in ``model_dir`` on ``docs``.

    Gold tags of types the model does not know count as missed entities (they stay in the
    gold sequences; the model can only predict its own labels). Types in ``untrained`` (no
    training example) are left out of macro F1 and listed in ``not_in_macro``.
    """
    from ..training.device import default_device
    from ..training.encoding import encode_documents
    from ..training.train import evaluate

    model, tokenizer, labels = load_model(model_dir)
    model.to(default_device())
    label2id = {lab: i for i, lab in enumerate(labels)}
    known = [Document(d.id, d.words, tuple(t if t in label2id else "O" for t in d.tags))
             for d in docs]
    windows = encode_documents(known, tokenizer, label2id, max_length=cfg.max_length,
                               stride=cfg.stride)
    scores = evaluate(model, list(docs), windows, labels, cfg, tokenizer.pad_token_id or 0,
                      untrained=untrained)
    return {k: scores[k] for k in ("f1", "precision", "recall", "macro_f1", "per_type",
                                   NOT_IN_MACRO) if k in scores}


def test_scores(study: Any) -> dict[int, dict[str, Any]]:
    """The stored test scores of a study, by trial number."""
    return {int(k): v for k, v in (study.user_attrs.get(TEST_SCORES) or {}).items()}


def score_kept_models(study: Any, kept: dict[int, Path], docs: Sequence[Document],
                      cfg: TrainConfig, tracker: Any = None, *, trial: int | None = None,
                      again: bool = False, untrained: Sequence[str] = ()
                      ) -> dict[int, dict[str, Any]]:
    """Score the kept models (``kept``: trial number -> model folder, as
    :meth:`~hpo_helpers.storage.layout.StudyLayout.kept_models` gives; or only ``trial``'s) on
    ``docs``; store and return the scores. Models already scored are skipped unless ``again``.
    ``untrained``: types without a training example, left out of macro F1.
    """
    if not docs:
        logger.warning("No test documents: kept models are not scored on test")
        return {}
    stored = test_scores(study)
    numbers = dict(sorted(kept.items()))
    if trial is not None:
        if trial not in numbers:
            raise HpoHelpersError(f"trial {trial} has no kept model (kept: "
                                  f"{sorted(numbers) or 'none'}). Fix: pass one of those, or "
                                  "raise keep_top_k for future sweeps.")
        numbers = {trial: numbers[trial]}
    new: dict[int, dict[str, Any]] = {}
    for number, folder in sorted(numbers.items()):
        if number in stored and not again:
            continue
        metrics_file = folder / METRICS_FILE
        try:
            scores = score_model(folder, docs, cfg, untrained=untrained)
            try:
                metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
            except (OSError, ValueError):
                metrics = {}
            metrics["test"] = scores
            metrics_file.write_text(json.dumps(metrics, indent=1, sort_keys=True))
        except (HpoHelpersError, OSError):
            if folder.is_dir():
                raise
            # another worker of a shared study dropped it from the top k meanwhile
            logger.info("Trial %d's model left the top k while it was scored: skipped", number)
            continue
        new[number] = scores
        logger.info("Test scores of trial %d: F1 %.4f, macro F1 %.4f (%d documents) -> %s",
                    number, scores["f1"], scores["macro_f1"], len(docs), metrics_file)
    if new:
        stored.update(new)
        study.set_user_attr(TEST_SCORES, {str(k): v for k, v in sorted(stored.items())})
        if tracker is not None:
            tracker.test_scores(study, new)
    return stored


def format_scores(scores: dict[str, Any], title: str = "test") -> str:
    """A plain-text table: micro P/R/F1, macro F1, then one row per entity type."""
    lines = [f"{title}: F1 {scores['f1']:.4f}  precision {scores['precision']:.4f}  recall "
             f"{scores['recall']:.4f}  macro F1 {scores['macro_f1']:.4f}",
             f"  {'type':<24} {'precision':>9} {'recall':>9} {'F1':>9} {'support':>8}"]
    left_out = set(scores.get(NOT_IN_MACRO) or ())
    for name, row in sorted(scores.get("per_type", {}).items()):
        lines.append(f"  {name:<24} {row['precision']:>9.4f} {row['recall']:>9.4f} "
                     f"{row['f1']:>9.4f} {row['support']:>8d}"
                     + (f"  {NOT_IN_MACRO_NOTE}" if name in left_out else ""))
    return "\n".join(lines)


@contextlib.contextmanager
def open_finished(cfg: Any, *, backbone: str | None = None,
                  output_dir: Path | str | None = None, dataset_path: Path | str | None = None,
                  split_files: dict[str, Any] | None = None, runtime: Any = None,
                  storage_url: str | None = None, tracker: Any = None) -> Iterator[Any]:
    """Open an existing study to write to it, as the sweep does: a SQLite study with its lock
    (refused while a sweep runs it), a shared one as one more worker. Yields
    ``(opened run, dataset)``; the SQLite study is snapshotted when the block ends.

    The data files and devices that ``run`` stored on the study are used unless given here
    (:mod:`~hpo_helpers.study.inputs`); the block runs on the first stored device."""
    from ..storage.snapshot import snapshot_all
    from ..study.inputs import RunInputs
    from ..study.opening import open_run
    from ..study.status import status, storage_url_for, study_paths
    from ..study.store import fingerprint
    from ..training.device import stored_devices, using

    hpo = cfg.hpo
    name = backbone or hpo.backbone
    url = storage_url_for(hpo, storage_url)
    if not url and not hpo.checkpoint.enabled:
        raise HpoHelpersError(f"{hpo.source}: checkpoint.enabled is false, so no study was "
                              "kept. Fix: run the sweep with checkpoint.enabled: true.")
    local = study_paths(cfg, backbone=name, output_dir=output_dir, runtime=runtime)
    info = status(cfg, backbone=name, storage_url=url, paths=None if url else local)
    if not info["exists"]:
        raise HpoHelpersError(f"no study {info['study_name']} at {info['checkpoint_path']}. "
                              "Fix: run the sweep first, or pass its --output-dir/--backbone.")
    inputs = RunInputs.given(dataset=dataset_path, split_files=split_files).over(
        RunInputs.from_attr(info.get("run_inputs")), info["study_name"])
    devices = stored_devices(inputs.devices, info["study_name"])
    dataset = load_data(cfg, inputs.dataset, inputs.split_files())
    resume = dataclasses.replace(hpo, checkpoint=dataclasses.replace(hpo.checkpoint,
                                                                     auto_resume=True))
    run = open_run(resume, name, url, local, fingerprint(hpo, dataset.fingerprint),
                   tracker.trial_interrupted if tracker is not None else None)
    try:
        with using(devices[0] if devices else None):
            yield run, dataset
    finally:
        snapshot_all(run.opened.paths, None)
        run.opened.close()


def evaluate_study(cfg: Any, *, backbone: str | None = None, output_dir: Path | str | None = None,
                   trial: int | None = None, dataset_path: Path | str | None = None,
                   split_files: dict[str, Any] | None = None, tracking: Any = None,
                   runtime: Any = None, storage_url: str | None = None,
                   ) -> tuple[dict[int, dict[str, Any]], int | None]:
    """Score a finished study's kept models on test (``trial``: only that one, scored again).

    Writes to the study: a SQLite study takes the study lock (refused while a sweep runs it);
    a shared study takes the advisory lock its workers use. Returns the scores by trial and
    the best trial's number.
    """
    from ..settings.schema import MLFLOW_PARENT_RUN_ID
    from ..study.store import count_states
    from ..tracking.tracker import SweepTracker

    tracker = SweepTracker(tracking)
    with open_finished(cfg, backbone=backbone, output_dir=output_dir,
                       dataset_path=dataset_path, split_files=split_files, runtime=runtime,
                       storage_url=storage_url, tracker=tracker) as (run, dataset):
        study = run.opened.study
        tracker.parent_id = study.user_attrs.get(MLFLOW_PARENT_RUN_ID)
        with scores_lock(run.opened):
            scores = score_kept_models(study, run.layout.kept_models(), dataset.test, cfg.train,
                                       tracker, trial=trial, again=trial is not None,
                                       untrained=dataset.untrained_types)
        best = study.best_trial.number if count_states(study)["COMPLETE"] else None
    return scores, best


def scores_lock(opened: Any) -> Any:
    """Shared studies: one worker at a time reads and writes ``test_scores``."""
    return opened.shared.exclusive(TEST_SCORES) if opened.shared is not None \
        else contextlib.nullcontext()
