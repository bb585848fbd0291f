"""What notebook 03 shows: checkpoints on disk and in MLflow, trials, best params, test
scores of the chosen model, and the figures of ``report`` (saved as PNG images in the notebook).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..settings.schema import (
    CONTINUES,
    FOLD_F1,
    FOLD_F1_STD,
    INTERRUPTED,
    LEARNED_NOTHING,
    NOT_IN_MACRO,
    NOT_IN_MACRO_NOTE,
    PAUSED_AT,
    PBT_EXPLOITED,
    PBT_MEMBER,
    REFIT,
    RESUMED_FROM_EPOCH,
    RETRY_OF,
    RETRY_ROOT,
    TEST_SCORES,
    study_name,
)
from ..storage.layout import is_study_file, on_drive

if TYPE_CHECKING:
    import matplotlib.figure
    import optuna
    import pandas


__all__ = [
    "chosen_scores",
    "compare_studies",
    "default_roots",
    "find_study_files",
    "inspect_all",
    "load_studies",
    "mlflow_checkpoints",
    "plot_study",
    "test_scores_table",
    "trials_table",
]

logger = logging.getLogger(__name__)

TABLE_ROWS = 20  # a large study's table: its best TABLE_ROWS trials and latest TABLE_ROWS


def find_study_files(roots: Iterable[Path | str]) -> list[Path]:
    """Every ``study.db``-like SQLite file under ``roots`` (archived/corrupt copies skipped).

    A study found at the same place under two roots (the live copy on local disk and its
    durable snapshot on Drive) is listed once: the newest copy, which is the live one when it
    exists (the durable copy only ever receives snapshots of it; file times cannot tell, a
    snapshot is written after the last change), else the durable one."""
    found: dict[Path, list[Path]] = {}
    for root in roots:
        r = Path(root)
        if r.is_file() and r.suffix == ".db":
            found.setdefault(Path(r.name), []).append(r.resolve())
        elif r.is_dir():
            for p in sorted(r.rglob("*.db")):
                if p.name == "mlflow.db" or not is_study_file(p):
                    continue
                found.setdefault(p.relative_to(r), []).append(p.resolve())
    out: dict[Path, None] = {}
    for copies in found.values():
        copies = list(dict.fromkeys(copies))
        newest = min(copies, key=lambda p: (on_drive(p), copies.index(p)))
        if len(copies) > 1:
            logger.info("Study file in %d places (%s): showing the newest, %s", len(copies),
                        ", ".join(map(str, copies)), newest)
        out[newest] = None
    return list(out)


def load_studies(files: Iterable[Path | str]) -> list[optuna.Study]:
    """Every Optuna study in ``files`` (SQLite paths or database URLs; unreadable ones skipped).

    A file on Google Drive is read through a fresh local copy (SQLite never opens Drive)."""
    import optuna

    from ..core.redaction import mask
    from ..study.store import reader_storage

    studies = []
    for f in files:
        try:
            storage = reader_storage(f)  # read-only, never creates tables
            if storage is None:
                continue
            # names only: Optuna's study summaries load every trial of every study
            for name in optuna.get_all_study_names(storage):
                studies.append(optuna.load_study(study_name=name, storage=storage))
        except Exception as exc:  # noqa: BLE001 - show the others
            logger.warning("Skipping %s: not a readable study (%s)", mask(f), mask(exc))
    return studies


def trials_table(study: optuna.Study) -> pandas.DataFrame:
    """One row per trial: number, state, value, params, interrupted/retry info,
    ``learned_nothing`` (best validation F1 below 0.05), ``paused_at``/``continues`` (scheduler
    hyperband and pbt), ``pbt_member``/``exploited`` (pbt), epochs trained, duration (read
    with :func:`~hpo_helpers.study.queries.trial_summaries`, not Optuna's full read)."""
    import pandas as pd

    from ..study.queries import trial_summaries

    rows = []
    summaries = trial_summaries(study)
    pbt = any(PBT_MEMBER in t.attrs for t in summaries)
    for t in summaries:
        rows.append({
            "number": t.number, "state": t.state, "value": t.value,
            **{f"param_{k}": v for k, v in t.params.items()},
            INTERRUPTED: bool(t.attrs.get(INTERRUPTED, False)),
            LEARNED_NOTHING: bool(t.attrs.get(LEARNED_NOTHING, False)),
            RETRY_OF: t.attrs.get(RETRY_OF),
            RESUMED_FROM_EPOCH: t.attrs.get(RESUMED_FROM_EPOCH),
            **({FOLD_F1: t.attrs[FOLD_F1], FOLD_F1_STD: t.attrs.get(FOLD_F1_STD)}
               if FOLD_F1 in t.attrs else {}),  # k-fold: per-fold scores and spread
            # scheduler hyperband: the rung a trial paused at, the trial a promotion continues
            **({k: t.attrs[k] for k in (PAUSED_AT, CONTINUES) if k in t.attrs}),
            # scheduler pbt: the member a segment trains, the member it exploited
            **({"pbt_member": int(t.attrs.get(PBT_MEMBER, t.attrs.get(RETRY_ROOT, t.number))),
                "exploited": t.attrs.get(PBT_EXPLOITED)} if pbt else {}),
            "epochs_trained": t.epochs_trained,
            "duration_s": t.duration_s,
        })
    return pd.DataFrame(rows)


def _show_trials(study: optuna.Study, display: Any) -> None:
    """The trials table; a large study's best and latest trials only (said in the log)."""
    table = trials_table(study)
    if len(table) <= 2 * TABLE_ROWS:
        display(table)
        return
    logger.info("Study %s has %d trials: showing the %d best and the %d latest "
                "(hpo_helpers.results.inspection.trials_table(study) returns them all)",
                study.study_name, len(table), TABLE_ROWS, TABLE_ROWS)
    done = table[table["state"] == "COMPLETE"]
    display(done.sort_values(["value", "number"], ascending=[False, True]).head(TABLE_ROWS))
    display(table.tail(TABLE_ROWS))


def _warn_learned_nothing(study: optuna.Study, display: Any) -> None:
    """A visible warning above the trials when the study's best trial learned nothing."""
    from ..study.status import best_learned_nothing

    warning = best_learned_nothing(study)
    if warning is None:
        return
    text = f"{study.study_name}: {warning}"
    logger.warning("%s", text)
    try:
        from IPython.display import Markdown
    except ImportError:  # outside a notebook the log line says it
        return
    display(Markdown(f"**WARNING** {text}"))


def compare_studies(studies: Iterable[optuna.Study]) -> pandas.DataFrame:
    """One row per study: counts by state, the best value and params, and whether the best
    trial learned nothing."""
    import pandas as pd

    from ..study.store import count_states

    rows = []
    for s in studies:
        counts = count_states(s)
        best = None
        if counts["COMPLETE"]:
            best = s.best_trial
        rows.append({"study": s.study_name, "complete": counts["COMPLETE"],
                     "pruned": counts["PRUNED"], "failed": counts["FAIL"],
                     "running": counts["RUNNING"], "waiting": counts["WAITING"],
                     "best_value": best.value if best else None,
                     "best_trial": best.number if best else None,
                     "best_params": best.params if best else None,
                     "best_learned_nothing": bool(best and best.user_attrs.get(LEARNED_NOTHING)),
                     "test_f1": (chosen_scores(s) or ("", {}))[1].get("f1")})
    return pd.DataFrame(rows)


def plot_study(study: optuna.Study) -> list[matplotlib.figure.Figure]:
    """The figures of :mod:`~hpo_helpers.results.report` for one study: history, learning curves,
    validation score by hyperparameter, test F1 per type (when scored)."""
    from .report import figures

    return list(figures({study.study_name: study}).values())


def chosen_scores(study: optuna.Study) -> tuple[str, dict[str, Any]] | None:
    """The test scores of the model a user would take: the refit if done, else the best
    trial's kept model (None when neither was scored)."""
    refit = study.user_attrs.get(REFIT)
    if refit and refit.get("test"):
        return f"refit of trial {refit['trial']}", refit["test"]
    tested = study.user_attrs.get(TEST_SCORES) or {}
    from ..study.store import count_states

    if not count_states(study)["COMPLETE"]:
        return None
    best = study.best_trial.number
    return (f"best trial {best}", tested[str(best)]) if str(best) in tested else None


def test_scores_table(study: optuna.Study) -> pandas.DataFrame | None:
    """Test precision/recall/F1/support per entity type of the chosen model, then the micro
    and macro averages; ``model`` says which model (None when nothing was scored). A type
    without a training example has the note "no training examples: not in macro F1"."""
    import pandas as pd

    chosen = chosen_scores(study)
    if chosen is None:
        return None
    model, scores = chosen
    left_out = set(scores.get(NOT_IN_MACRO) or ())
    rows = [{"type": name, **row, **({"note": NOT_IN_MACRO_NOTE} if name in left_out else {})}
            for name, row in sorted(scores.get("per_type", {}).items())]
    rows.append({"type": "micro average", "precision": scores["precision"],
                 "recall": scores["recall"], "f1": scores["f1"]})
    rows.append({"type": "macro average", "f1": scores["macro_f1"]})
    table = pd.DataFrame(rows).set_index("type")
    table.attrs["model"] = model
    table.columns.name = f"{study.study_name}: test scores of the {model}"
    return table


def mlflow_checkpoints(tracking_uri: str | None = None) -> pandas.DataFrame | None:
    """Sweeps with checkpointing that MLflow knows of (the seed's search), or None."""
    try:
        import mlflow

        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
        return mlflow.search_runs(search_all_experiments=True,
                                  filter_string="params.checkpoint_enabled = 'true'")
    except Exception as exc:  # noqa: BLE001 - tracking is optional here
        logger.warning("MLflow search failed (%s); showing checkpoints on disk only", exc)
        return None


def default_roots(config_dir: Path | str, hpo_config: Any, *, output_dir: Path | str | None =
                  None, runtime: Any = None) -> list[Path]:
    """The durable and working output folders of the runtime, where studies are looked for."""
    from ..settings.config import load_configs
    from ..study.status import study_paths

    cfg = load_configs(config_dir, hpo_config)
    paths = study_paths(cfg, output_dir=output_dir, runtime=runtime)
    return list(dict.fromkeys([paths.durable_dir, paths.working_dir]))


def inspect_all(roots: Iterable[Path | str], *, tracking_uri: str | None = None,
                backbones: Iterable[str] | None = None, storage_url: str | None = None,
                display: Any = None) -> list[Any]:
    """Display checkpoints, per-study trials and plots, and a comparison; returns the studies.

    ``backbones`` limits the studies to ``hpo_<backbone>`` (and its timestamped siblings)."""
    if display is None:
        from IPython.display import display
    import matplotlib.pyplot as plt

    files = find_study_files(roots)
    logger.info("Checkpoints on disk: %s", ", ".join(map(str, files)) or "none")
    runs = mlflow_checkpoints(tracking_uri)
    if runs is not None and len(runs):
        cols = [c for c in ("run_id", "tags.mlflow.runName", "params.backbone",
                            "params.checkpoint_path", "metrics.best_value",
                            "metrics.n_completed_trials") if c in runs.columns]
        display(runs[cols])
    studies = load_studies(files + ([storage_url] if storage_url else []))
    if backbones:
        wanted = tuple(study_name(b) for b in backbones)
        studies = [s for s in studies if s.study_name.startswith(wanted)]
    for study in studies:
        logger.info("Study %s", study.study_name)
        _warn_learned_nothing(study, display)
        _show_trials(study, display)
        table = test_scores_table(study)
        if table is not None:
            display(table)
        else:
            logger.info("No test scores for %s yet (run: python -m hpo_helpers evaluate)",
                        study.study_name)
    from .report import figures

    for fig in figures({s.study_name: s for s in studies}).values():
        display(fig)
        plt.close(fig)
    if studies:
        display(compare_studies(studies))
    return studies
