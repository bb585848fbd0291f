"""Model selection across backbones: accuracy against speed.

The rule has the original tool's ``selection:`` meaning (:class:`~hpo_helpers.settings.config.
SelectionConfig`): start from the best-scoring model; going down the ranking, a *faster* model
replaces the current choice when the current one's gain over it is below
``max(accuracy_threshold, min_accuracy_gain)``. The gain is relative to the better score when
``use_relative_threshold`` (default), else absolute. "Faster" is measured inference tokens/s
(training tokens/s when inference was not measured), measured on this machine in the same run
by :func:`measure_speed`, never taken from a table.

:func:`select` reads every finished study of a config (one per backbone), measures the kept
best model of each, applies :func:`choose`, writes ``selection.json`` and ``selection.md`` in
the output folder (names from :mod:`~hpo_helpers.storage.layout`) and logs to MLflow when asked
(tracking failures warn and never stop it). When every candidate learned nothing (its best
trial's F1 stayed below 0.05, ``learned_nothing``) it refuses, naming them (issue 21).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.errors import HpoHelpersError
from ..settings.config import Configs, SelectionConfig
from ..settings.schema import (
    CREATED_AT,
    FOLD_F1_STD,
    LEARNED_NOTHING,
    LEARNED_NOTHING_BELOW,
    SELECTED_BACKBONE,
    TEST_SCORES,
    study_name,
)
from ..storage.durable import folder_bytes, write_file
from ..storage.layout import selection_files

if TYPE_CHECKING:
    from ..core.runtime import Runtime
    from ..tracking.setup import TrackingSetup

__all__ = ["Candidate", "Choice", "choose", "measure_speed", "refuse_learned_nothing", "select",
           "selection_markdown"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """One finished study's best model, as selection compares it."""

    backbone: str
    score: float  # best validation F1 (mean over folds with k-fold)
    spread: float | None = None  # standard deviation over folds
    test_score: float | None = None  # where the study was evaluated on the test split
    train_tokens_per_s: float | None = None
    infer_tokens_per_s: float | None = None
    n_parameters: int | None = None
    size_mb: float | None = None
    study_name: str = ""
    best_trial: int | None = None
    model_dir: str | None = None
    learned_nothing: bool = False  # its best trial's F1 stayed below 0.05 (issue 21)

    @property
    def speed(self) -> float | None:
        return self.infer_tokens_per_s if self.infer_tokens_per_s else self.train_tokens_per_s


@dataclass(frozen=True)
class Choice:
    chosen: Candidate
    reasons: tuple[str, ...]
    candidates: tuple[Candidate, ...]


def _gain(better: float, worse: float, relative: bool) -> float:
    gap = better - worse
    return gap / abs(better) if relative and better else gap


def choose(candidates: list[Candidate], rules: SelectionConfig) -> Choice:
    """Apply the threshold rules (see the module docstring) and say why in plain lines."""
    if not candidates:
        raise HpoHelpersError("no finished study to select from. Fix: run the sweeps first "
                              "(python -m hpo_helpers run --config C).")
    refuse_learned_nothing(candidates)
    ranked = sorted(candidates, key=lambda c: (-c.score, c.backbone))
    limit = max(rules.accuracy_threshold, rules.min_accuracy_gain)
    unit = "relative" if rules.use_relative_threshold else "absolute"
    chosen = ranked[0]
    reasons = [f"{chosen.backbone} has the best score ({chosen.score:.4f})."]
    for other in ranked[1:]:
        gain = _gain(chosen.score, other.score, rules.use_relative_threshold)
        if chosen.speed is None or other.speed is None:
            reasons.append(f"{other.backbone}: speed not measured, kept {chosen.backbone}.")
        elif other.speed <= chosen.speed:
            reasons.append(f"{other.backbone} ({other.score:.4f}) is not faster than "
                           f"{chosen.backbone}: kept {chosen.backbone}.")
        elif gain < limit:
            reasons.append(f"{other.backbone} ({other.score:.4f}, {other.speed:.0f} tokens/s) "
                           f"is faster than {chosen.backbone} ({chosen.speed:.0f} tokens/s), "
                           f"whose gain {gain:.4f} ({unit}) is below {limit:.4f}: "
                           f"{other.backbone} chosen.")
            chosen = other
        else:
            reasons.append(f"{chosen.backbone}'s gain over the faster {other.backbone} is "
                           f"{gain:.4f} ({unit}), at least {limit:.4f}: kept {chosen.backbone}.")
    return Choice(chosen, tuple(reasons), tuple(ranked))


def refuse_learned_nothing(candidates: list[Candidate]) -> None:
    """Refuse (one line naming them) when every candidate learned nothing: there is no model
    worth choosing among models that all score like random or all-O predictions."""
    if not candidates or not all(c.learned_nothing for c in candidates):
        return
    names = "; ".join(f"{c.backbone} (study {c.study_name or '?'}, trial {c.best_trial}, "
                      f"F1 {c.score:.4f})" for c in sorted(candidates, key=lambda c: c.backbone))
    raise HpoHelpersError(
        f"every candidate learned nothing (best validation F1 below {LEARNED_NOTHING_BELOW}): "
        f"{names}. Fix: run sweeps that learn first (see the README, Troubleshooting, "
        "\"Learned nothing\"), then select again.")


def measure_speed(model_dir: Path | str, *, batch_size: int = 8, seq_len: int = 128,
                  seconds: float = 2.0) -> dict[str, float]:
    """Training and inference tokens/s of the model in ``model_dir`` on this machine (random
    token ids, ``batch_size`` x ``seq_len``; each mode runs about ``seconds``), with its
    parameter count and size on disk."""
    import torch
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(str(model_dir),
                                                            trust_remote_code=False)
    vocab = int(model.config.vocab_size)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (batch_size, seq_len), generator=gen)
    mask = torch.ones_like(ids)
    labels = torch.zeros_like(ids)
    tokens = batch_size * seq_len

    def rate(step: Any) -> float:
        step()  # warm-up
        n, start = 0, time.perf_counter()
        while n < 2 or time.perf_counter() - start < seconds:
            step()
            n += 1
        return n * tokens / (time.perf_counter() - start)

    model.eval()

    def infer() -> None:
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)

    infer_rate = rate(infer)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def train() -> None:
        opt.zero_grad(set_to_none=True)
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()

    train_rate = rate(train)
    return {"train_tokens_per_s": train_rate, "infer_tokens_per_s": infer_rate,
            "n_parameters": float(sum(p.numel() for p in model.parameters())),
            "size_mb": folder_bytes(Path(model_dir)) / 1e6}


def _test_score(attrs: dict[str, Any], number: int) -> float | None:
    """The test F1 of trial ``number`` from the study attr ``test_scores``, read defensively
    (written by the evaluation: trial number -> scores)."""
    scores = attrs.get(TEST_SCORES)
    if not isinstance(scores, dict):
        return None
    entry = scores.get(str(number), scores.get(number))
    if isinstance(entry, dict):
        entry = entry.get("f1", entry.get("test_f1"))
    return float(entry) if isinstance(entry, (int, float)) else None


def _backbones_on_disk(cfg: Configs, output_dir: Path | str | None,
                       runtime: Runtime | None) -> list[str]:
    """Backbones (their path names) whose study file lies in the output folder, found through
    ``checkpoint.storage_path`` (``{backbone}/study.db``)."""
    from ..study.status import study_paths

    pattern = cfg.hpo.checkpoint.storage_path
    if "{backbone}" not in pattern:
        return []
    paths = study_paths(cfg, output_dir=output_dir, runtime=runtime)
    prefix, _, suffix = pattern.partition("{backbone}")
    names: set[str] = set()
    for root in dict.fromkeys([paths.durable_dir, paths.working_dir]):
        for db in Path(root).glob(pattern.replace("{backbone}", "*")):
            rel = db.relative_to(root).as_posix()
            if rel.startswith(prefix) and rel.endswith(suffix) and (
                    name := rel[len(prefix):len(rel) - len(suffix)]) and "/" not in name:
                names.add(name)
    return sorted(names)


def _candidate(cfg: Configs, backbone: str, output_dir: Path | str | None,
               runtime: Runtime | None, storage_url: str | None = None) -> Candidate | None:
    import optuna

    from ..core.redaction import mask
    from ..storage.layout import StudyLayout
    from ..study.status import storage_url_for, study_paths
    from ..study.store import reader_storage

    paths = study_paths(cfg, backbone=backbone, output_dir=output_dir, runtime=runtime)
    url = storage_url_for(cfg.hpo, storage_url)  # --storage-url, HPO_STORAGE_URL, config
    db = paths.working_db if paths.working_db.exists() else paths.durable_db
    name = study_name(backbone, cfg.hpo.study_name)
    storage = reader_storage(url or db)  # read-only, like status: select never writes a study
    if storage is None or name not in optuna.get_all_study_names(storage):
        logger.warning("Selection: no study %s at %s; skipped", name, mask(url) if url else db)
        return None
    study = optuna.load_study(study_name=name, storage=storage)
    try:
        best = study.best_trial
    except ValueError:
        logger.warning("Selection: study %s has no finished trial; skipped", name)
        return None
    if url and cfg.hpo.shared_checkpoint_dir:  # a shared study keeps its models there
        layout = StudyLayout.for_study(name, shared_dir=cfg.hpo.shared_checkpoint_dir)
    else:
        layout = paths.layout(name, study.user_attrs.get(CREATED_AT))
    model = layout.kept_models().get(best.number, layout.kept_model_dir(best.number))
    return Candidate(backbone, float(best.value or 0.0), best.user_attrs.get(FOLD_F1_STD),
                     _test_score(study.user_attrs, best.number), study_name=name,
                     best_trial=best.number, model_dir=str(model) if model else None,
                     learned_nothing=bool(best.user_attrs.get(LEARNED_NOTHING)))


def _measured(cand: Candidate, seconds: float) -> Candidate:
    """``cand`` with the speeds of its kept model measured on this machine."""
    model = Path(cand.model_dir) if cand.model_dir else None
    if model is None or not model.is_dir():
        logger.warning("Selection: the best model of %s (trial %s) is not kept at %s; its speed "
                       "is not measured", cand.study_name, cand.best_trial, model)
        return cand
    speed = measure_speed(model, seconds=seconds)
    return dataclasses.replace(cand, train_tokens_per_s=speed["train_tokens_per_s"],
                               infer_tokens_per_s=speed["infer_tokens_per_s"],
                               n_parameters=int(speed["n_parameters"]), size_mb=speed["size_mb"])


def _markdown(choice: Choice, rules: SelectionConfig) -> str:
    def num(v: float | None, fmt: str = ".4f") -> str:
        return "-" if v is None else format(v, fmt)

    lines = [f"# Model selection: {choice.chosen.backbone}", "",
             f"Chosen: **{choice.chosen.backbone}** (study {choice.chosen.study_name}, trial "
             f"{choice.chosen.best_trial}, model `{choice.chosen.model_dir}`).", "",
             f"Rules: accuracy_threshold {rules.accuracy_threshold}, min_accuracy_gain "
             f"{rules.min_accuracy_gain}, use_relative_threshold "
             f"{str(rules.use_relative_threshold).lower()}. Speeds measured on this machine.", "",
             "| backbone | score | spread | test | train tok/s | infer tok/s | params | MB |",
             "|---|---|---|---|---|---|---|---|"]
    for c in choice.candidates:
        lines.append(f"| {c.backbone} | {num(c.score)} | {num(c.spread)} | {num(c.test_score)} "
                     f"| {num(c.train_tokens_per_s, '.0f')} | {num(c.infer_tokens_per_s, '.0f')} "
                     f"| {c.n_parameters or '-'} | {num(c.size_mb, '.1f')} |")
    lines += ["", "Why:", *[f"- {r}" for r in choice.reasons], ""]
    return "\n".join(lines)


def select(cfg: Configs, *, backbones: list[str] | None = None,
           output_dir: Path | str | None = None, runtime: Runtime | None = None,
           tracking: TrackingSetup | None = None, measure: bool = True,
           seconds: float = 2.0, storage_url: str | None = None) -> dict[str, Any]:
    """Compare the finished studies of ``cfg`` (its ``backbones``, or its ``backbone``), choose
    one model, write ``selection.json`` and ``selection.md``; returns what the JSON holds.

    The studies are read where ``status`` reads them: ``storage_url``, else
    ``HPO_STORAGE_URL``, else the config's ``storage_url``, else the local study files."""
    from ..core.runtime import detect
    from ..study.status import study_paths

    runtime = runtime or detect()
    names = backbones or list(cfg.hpo.backbones) or [cfg.hpo.backbone]
    found = [c for b in names
             if (c := _candidate(cfg, b, output_dir, runtime, storage_url)) is not None]
    if not found and not backbones and not storage_url:
        # e.g. 02 ran with backbone="tiny" while the config names minilm
        names = _backbones_on_disk(cfg, output_dir, runtime)
        logger.info("Selection: the config's backbones have no finished study; comparing the "
                    "studies found in the output folder: %s", ", ".join(names) or "none")
        found = [c for b in names if (c := _candidate(cfg, b, output_dir, runtime)) is not None]
    refuse_learned_nothing(found)  # before the speeds are measured
    if measure:
        found = [_measured(c, seconds) for c in found]
    choice = choose(found, cfg.hpo.selection)
    root = study_paths(cfg, backbone=names[0], output_dir=output_dir,
                       runtime=runtime).durable_dir
    json_path, md_path = selection_files(root)
    result = {SELECTED_BACKBONE: choice.chosen.backbone,
              "study_name": choice.chosen.study_name, "trial": choice.chosen.best_trial,
              "model_dir": choice.chosen.model_dir,
              "rules": dataclasses.asdict(cfg.hpo.selection),
              "reasons": list(choice.reasons),
              "candidates": [dataclasses.asdict(c) for c in choice.candidates],
              "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "selection_json": str(json_path), "report": str(md_path)}
    root.mkdir(parents=True, exist_ok=True)
    write_file(json_path, json.dumps(result, indent=2, sort_keys=True).encode())
    write_file(md_path, _markdown(choice, cfg.hpo.selection).encode())
    logger.info("Selection: %s chosen; %s", choice.chosen.backbone, md_path)
    if tracking is not None:
        _log(tracking, result, md_path)
    return result


def selection_markdown(config_dir: Path | str, hpo_config: Any, *,
                       output_dir: Path | str | None = None, runtime: Runtime | None = None,
                       backbones: list[str] | None = None, seconds: float = 1.0) -> str:
    """Notebook 03's selection cell: run :func:`select` and return its Markdown report, or
    one line saying why there is nothing to select yet."""
    from ..settings.config import load_configs

    cfg = load_configs(config_dir, hpo_config)
    try:
        result = select(cfg, backbones=backbones, output_dir=output_dir, runtime=runtime,
                        seconds=seconds)
    except HpoHelpersError as exc:
        return f"Model selection: {exc}"
    return Path(result["report"]).read_text(encoding="utf-8")


def _log(tracking: TrackingSetup, result: dict[str, Any], report: Path) -> None:
    """One MLflow run with the choice; a tracking failure warns and is otherwise ignored."""
    try:
        from mlflow.tracking import MlflowClient

        from ..tracking.tracker import metric_key

        client = MlflowClient(tracking.tracking_uri)
        run = client.create_run(tracking.experiment_id, run_name="model-selection")
        rid = run.info.run_id
        client.log_param(rid, SELECTED_BACKBONE, result[SELECTED_BACKBONE])
        for c in result["candidates"]:
            for key in ("score", "infer_tokens_per_s", "train_tokens_per_s"):
                if c[key] is not None:
                    client.log_metric(rid, metric_key("", f"{c['backbone']}_{key}"),
                                      float(c[key]))
        client.log_artifact(rid, str(report))
        client.set_terminated(rid)
    except Exception as exc:  # noqa: BLE001 - tracking never stops selection
        logger.warning("Selection not logged to MLflow: %s", exc)
