"""The final model: the best trial's params trained on train+validation, scored on test.

Refit trains a fresh model with the best COMPLETE trial's params for its ``best_epoch`` epochs
on the training and validation documents together, as a resumable job: it checkpoints into
the layout's ``refit_checkpoints`` (every epoch, and every ``checkpoint_every_steps`` steps), so a
killed refit continues from its last checkpoint with the same result. When done it exports a
Hugging Face folder, the layout's ``refit_model`` (weights, tokenizer, ``id2label``,
``metrics.json``, a model card ``README.md``), and stores its test scores on the study
(user attr ``refit``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ..core.errors import HpoHelpersError
from ..settings.schema import BEST_EPOCH, REFIT, RETRY_ROOT
from ..storage.durable import remove_tree, write_folder
from ..storage.layout import StudyLayout

__all__ = ["refit", "refit_study"]

logger = logging.getLogger(__name__)



def _best_params(study: Any, hpo: Any) -> tuple[Any, dict[str, Any], int]:
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise HpoHelpersError("no COMPLETE trial to refit. Fix: run the sweep first.")
    best = study.best_trial
    params = {p.name: p.value if p.type == "fixed" else best.params[p.name]
              for p in hpo.search_space}
    epochs = int(best.user_attrs.get(BEST_EPOCH, params["epochs"]))
    return best, {**params, "epochs": epochs}, int(best.user_attrs.get(RETRY_ROOT,
                                                                      best.number))


def refit_study(study: Any, layout: StudyLayout, cfg: Any, dataset: Any, *,
                backbone: str, should_stop: Any = None) -> dict[str, Any] | None:
    """Run (or resume, or return the finished) refit of ``study`` in its layout's refit folder.

    Returns the stored result, or None when ``should_stop`` interrupted it (checkpoint kept).
    """
    from ..storage.checkpoints import latest_checkpoint, read_state
    from ..training.backbones import load_backbone
    from ..training.encoding import encode_documents
    from ..training.train import fit, params_match
    from .evaluate import score_model

    best, params, seed_root = _best_params(study, cfg.hpo)
    root, export, ckpt_dir = layout.refit_root, layout.refit_model, layout.refit_checkpoints
    if root is None or export is None or ckpt_dir is None:
        raise HpoHelpersError(f"study {layout.study_name} is not kept on disk, so it has no "
                              "refit folder. Fix: run it with checkpoint.enabled: true.")
    done = study.user_attrs.get(REFIT)
    if done and (export / "config.json").is_file() and params_match(done["params"], params):
        logger.info("Refit already done: %s (test F1 %.4f)", export, done["test"]["f1"])
        return done
    docs = list(dataset.train) + list(dataset.validation)
    bb = load_backbone(backbone, cfg.config_dir, texts=[" ".join(d.words) for d in dataset.train],
                       cache_dir=layout.tokenizer_cache(backbone, dataset.fingerprint))
    label2id = {lab: i for i, lab in enumerate(dataset.labels)}
    windows = encode_documents(docs, bb.tokenizer, label2id,
                               max_length=int(params.get("max_length", cfg.train.max_length)),
                               stride=cfg.train.stride)
    seed = cfg.train.seed + seed_root
    logger.info("Refit of trial %d: %d epochs on %d documents (train+validation), params %s, "
                "checkpoints %s", best.number, params["epochs"], len(docs),
                json.dumps(params, sort_keys=True), ckpt_dir)
    result = fit(backbone=bb, labels=dataset.labels, train_windows=windows, eval_docs=[],
                 eval_windows=[], params=params, cfg=cfg.train, seed=seed,
                 checkpoint_dir=ckpt_dir, should_stop=should_stop)
    if result.interrupted:
        logger.warning("Refit interrupted at step %d: checkpoint kept in %s; run refit again "
                       "to continue", result.global_step, ckpt_dir)
        return None
    newest = latest_checkpoint(ckpt_dir)
    if newest is None:
        raise HpoHelpersError(f"the refit finished but left no checkpoint in {ckpt_dir}. Fix: "
                              "run refit again.")
    model_state, _, _ = read_state(newest)
    model = bb.build_model(dataset.labels, dropout=float(params["dropout"]), seed=seed)
    model.load_state_dict(model_state)
    stored: dict[str, Any] = {}
    # types without an example in train+validation (what the refit trained on): not in macro F1
    untrained = [t for t in dataset.untrained_types
                 if not any(f"B-{t}" in d.tags for d in docs)]

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        bb.tokenizer.save_pretrained(tmp)
        scores = score_model(tmp, dataset.test, cfg.train, untrained=untrained)
        stored.update({"trial": best.number, "params": params, "test": scores,
                       "validation_f1": best.value, "study": layout.study_name,
                       "documents": len(docs),
                       "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "path": str(export)})
        (tmp / "metrics.json").write_text(json.dumps(stored, indent=1, sort_keys=True))
        (tmp / "README.md").write_text(model_card(stored, dataset, cfg, backbone))

    write_folder(export, fill)
    scores = stored["test"]
    study.set_user_attr(REFIT, stored)
    remove_tree(ckpt_dir, "checkpoints of the finished refit")
    logger.info("Refit exported: %s (test F1 %.4f, macro F1 %.4f)", export, scores["f1"],
                scores["macro_f1"])
    return stored


def model_card(stored: dict[str, Any], dataset: Any, cfg: Any, backbone: str) -> str:
    """A Hugging Face model card: data, params, scores and the study it came from."""
    from .evaluate import format_scores

    splits = "\n".join(f"| {s} | {d['documents']} | {d['entities']} | {d.get('source', '')} |"
                       for s, d in dataset.splits.items())
    params = "\n".join(f"| {k} | {v} |" for k, v in sorted(stored["params"].items()))
    return f"""---
library_name: transformers
pipeline_tag: token-classification
tags: [ner, resume, hpo_helpers]
---

# Resume NER: {backbone}, refit of trial {stored['trial']} of study `{stored['study']}`

Token classification (IOB2) of resumes into: {', '.join(dataset.entity_types)}.
Trained on train+validation ({stored['documents']} documents) with the best trial's
hyperparameters for its best number of epochs; scored on the held-out test split.

```python
from transformers import pipeline
ner = pipeline("token-classification", model="<this folder>", aggregation_strategy="first")
```
For resumes longer than {cfg.train.max_length} tokens use
`hpo_helpers.predict(texts, "<this folder>")`, which windows them like training did.

## Data

| split | documents | entities | source |
|---|---|---|---|
{splits}

## Hyperparameters

| name | value |
|---|---|
{params}

Validation F1 of the trial (strict, entity level): {stored['validation_f1']:.4f}.
Windows: max_length {cfg.train.max_length}, stride {cfg.train.stride}.

## Test scores (seqeval, strict IOB2)

```
{format_scores(stored['test'])}
```
"""


def refit(cfg: Any, *, backbone: str | None = None, output_dir: Path | str | None = None,
          dataset_path: Path | str | None = None, split_files: dict[str, Any] | None = None,
          runtime: Any = None) -> dict[str, Any] | None:
    """``python -m hpo_helpers refit``: refit a study's best trial (takes the study lock)."""
    from ..core.stopping import StopRequest
    from .evaluate import open_finished

    stop = StopRequest()
    with open_finished(cfg, backbone=backbone, output_dir=output_dir, dataset_path=dataset_path,
                       split_files=split_files, runtime=runtime) as (run, dataset):
        if run.opened.shared is not None or run.layout.refit_root is None:
            raise HpoHelpersError(f"{cfg.hpo.source}: refit runs on a study kept on disk "
                                  "(SQLite), not on a shared one. Fix: refit with a config "
                                  "without storage_url.")
        with stop.installed():
            return refit_study(run.opened.study, run.layout, cfg, dataset,
                               backbone=backbone or cfg.hpo.backbone, should_stop=stop.is_set)
