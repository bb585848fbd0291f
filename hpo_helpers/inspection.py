"""What notebook 03 shows: checkpoints on disk and in MLflow, trials, best params, plots.

Plots use Optuna's matplotlib backend so that they are saved as PNG images in the notebook.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .layout import is_study_file
from .schema import INTERRUPTED, RESUMED_FROM_EPOCH, RETRY_OF, study_name

if TYPE_CHECKING:
    import matplotlib.figure
    import optuna
    import pandas


__all__ = [
    "compare_studies",
    "default_roots",
    "find_study_files",
    "inspect_all",
    "load_studies",
    "mlflow_checkpoints",
    "plot_study",
    "trials_table",
]

logger = logging.getLogger(__name__)


def find_study_files(roots: Iterable[Path | str]) -> list[Path]:
    """Every ``study.db``-like SQLite file under ``roots`` (archived/corrupt copies skipped)."""
    found: dict[Path, None] = {}
    for root in roots:
        r = Path(root)
        if r.is_file() and r.suffix == ".db":
            found[r.resolve()] = None
        elif r.is_dir():
            for p in sorted(r.rglob("*.db")):
                if p.name == "mlflow.db" or not is_study_file(p):
                    continue
                found[p.resolve()] = None
    return list(found)


def load_studies(files: Iterable[Path | str]) -> list[optuna.Study]:
    """Every Optuna study in ``files`` (SQLite paths or database URLs; unreadable ones skipped)."""
    import optuna

    from .redaction import mask
    from .study import sqlite_storage

    studies = []
    for f in files:
        try:
            storage = optuna.storages.RDBStorage(str(f)) if "://" in str(f) else sqlite_storage(
                Path(f))
            for summary in optuna.get_all_study_summaries(storage, include_best_trial=False):
                studies.append(optuna.load_study(study_name=summary.study_name,
                                                 storage=storage))
        except Exception as exc:  # noqa: BLE001 - show the others
            logger.warning("Skipping %s: not a readable study (%s)", mask(f), mask(exc))
    return studies


def trials_table(study: optuna.Study) -> pandas.DataFrame:
    """One row per trial: number, state, value, params, interrupted/retry info, duration."""
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({
            "number": t.number, "state": t.state.name, "value": t.value,
            **{f"param_{k}": v for k, v in t.params.items()},
            INTERRUPTED: bool(t.user_attrs.get(INTERRUPTED, False)),
            RETRY_OF: t.user_attrs.get(RETRY_OF),
            RESUMED_FROM_EPOCH: t.user_attrs.get(RESUMED_FROM_EPOCH),
            "duration_s": t.duration.total_seconds() if t.duration else None,
        })
    return pd.DataFrame(rows)


def compare_studies(studies: Iterable[optuna.Study]) -> pandas.DataFrame:
    """One row per study: counts by state and the best value and params."""
    import pandas as pd

    from .study import count_states

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
                     "best_params": best.params if best else None})
    return pd.DataFrame(rows)


def plot_study(study: optuna.Study) -> list[matplotlib.figure.Figure]:
    """Matplotlib figures: history, importances, parallel coordinates, intermediate values."""
    import matplotlib

    if not matplotlib.get_backend().lower().startswith(("module://", "agg")):
        matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    figures = []
    plots = [("optimization history", ovm.plot_optimization_history),
             ("parameter importances", ovm.plot_param_importances),
             ("parallel coordinates", ovm.plot_parallel_coordinate),
             ("intermediate values", ovm.plot_intermediate_values)]
    for name, fn in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = fn(study)
        except Exception as exc:  # noqa: BLE001 - e.g. too few trials for importances
            logger.info("No %s plot for %s: %s", name, study.study_name, exc)
            continue
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        fig.suptitle(f"{study.study_name}: {name}")
        figures.append(fig)
    return figures


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
    from .config import load_configs
    from .status import study_paths

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
        display(trials_table(study))
        for fig in plot_study(study):
            display(fig)
            plt.close(fig)
    if studies:
        display(compare_studies(studies))
    return studies
