"""Figures of a study worth looking at (``python -m hpo_helpers report`` writes them as PNG).

* ``history``: validation F1 (strict) by trial number, best so far as a step line; pruned
  trials at their last reported value, interrupted attempts and their retries marked, trials
  that learned nothing (best F1 below 0.05) marked, and said in the title when the best did;
* ``learning_curves``: validation F1 by epoch for every trial (a large study: its 10 best and
  10 latest), pruned ones cut with an x;
* ``params``: validation F1 against each searched hyperparameter (log axis where searched so);
* ``anytime``: the best validation F1 so far against the training epochs consumed (trials in
  order, each counting the epochs it trained: a retry or a promotion continued from a
  checkpoint counts only the epochs after it), the measure by which search methods compare;
* ``schedules`` (scheduler pbt): each member's hyperparameters against its epochs, one panel
  per perturbed hyperparameter that changed: the schedules PBT found (an exploit jumps to the
  donor's values);
* ``test_per_type``: test F1 per entity type of the best trial's kept model (after ``evaluate``);
* ``backbones``: best validation and test F1 per study, when several studies are given.

Axes carry names and units; trial and epoch ticks are integers; one title per figure. Text
from the data (entity types, study names) is drawn as plain text, never as mathtext: a ``$``
in a label is escaped (issue 23: a type named ``$\\frac{$`` crashed ``report``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..settings.schema import (
    FINGERPRINT,
    INTERRUPTED,
    LEARNED_NOTHING,
    LEARNED_NOTHING_BELOW,
    NOT_IN_MACRO,
    NOT_IN_MACRO_NOTE,
    PBT_MEMBER,
    RETRY_OF,
    RETRY_ROOT,
    TEST_SCORES,
)
from ..study.queries import (
    best_trial,
    top_complete,
    trial_by_number,
    trial_numbers,
    trial_summaries,
)

__all__ = ["figures", "load_study", "log_params", "objective_label", "write_report"]

logger = logging.getLogger(__name__)

VAL = "validation F1 (strict)"
VAL_MACRO = "validation macro F1 (strict)"


def objective_label(study: Any) -> str:
    """The axis name of the study's objective: validation (macro) F1, strict."""
    parts = study.user_attrs.get(FINGERPRINT) or {}
    metric = (parts.get("objective") or {}).get("metric", "f1")
    return VAL_MACRO if metric == "macro_f1" else VAL


def log_params(study: Any) -> set[str]:
    """Hyperparameters the study searched on a log scale (from its recorded search space)."""
    space = (study.user_attrs.get(FINGERPRINT) or {}).get("search_space") or {}
    return {name for name, p in space.items() if p.get("type") == "loguniform"}


def _plain(text: object) -> str:
    """``text`` as matplotlib draws it literally: every ``$`` escaped, so no mathtext."""
    return str(text).replace("$", r"\$")


def _plt() -> Any:
    import matplotlib

    if not matplotlib.get_backend().lower().startswith(("module://", "agg")):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


CURVES = 10  # a large study's learning curves: its best CURVES trials and latest CURVES


def _history(study: Any, trials: list[Any], plt: Any) -> Any:
    val = objective_label(study)
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5))
    groups: dict[str, list[tuple[int, float]]] = {"complete": [], "pruned": [],
                                                  "interrupted": [], "retry": [],
                                                  "learned_nothing": []}
    best, best_line, best_learned_nothing = None, [], False
    for t in trials:
        if t.state == "COMPLETE" and t.value is not None:
            key = ("learned_nothing" if t.attrs.get(LEARNED_NOTHING)
                   else "retry" if RETRY_OF in t.attrs else "complete")
            groups[key].append((t.number, t.value))
            if best is None or t.value > best:
                best, best_learned_nothing = t.value, key == "learned_nothing"
        elif t.state == "PRUNED" and t.last_reported is not None:
            groups["pruned"].append((t.number, t.last_reported))
        elif t.attrs.get(INTERRUPTED):
            groups["interrupted"].append((t.number, t.last_reported or 0.0))
        if best is not None:
            best_line.append((t.number, best))
    styles = {"complete": ("o", "tab:blue", "complete"),
              "pruned": ("x", "tab:gray", "pruned (last epoch reported)"),
              "interrupted": ("v", "tab:red", "interrupted (continued by a retry)"),
              "retry": ("o", "tab:orange", "retry of an interrupted trial"),
              "learned_nothing": ("s", "tab:purple",
                                  f"learned nothing (best F1 < {LEARNED_NOTHING_BELOW})")}
    for key, pts in groups.items():
        if pts:
            marker, color, label = styles[key]
            ax.scatter(*zip(*pts), marker=marker, color=color, label=label, zorder=3)
    if best_line:
        ax.step(*zip(*best_line), where="post", color="tab:green", label="best so far")
    if groups["learned_nothing"]:  # the line below which a trial learned nothing
        ax.axhline(LEARNED_NOTHING_BELOW, color="tab:purple", linestyle=":", linewidth=1)
    ax.set_xlabel("trial number")
    ax.set_ylabel(val)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{_plain(study.study_name)}: {val} by trial"
                 + (" (the best trial learned nothing)" if best_learned_nothing else ""))
    ax.legend(loc="lower right", fontsize="small")
    ax.grid(alpha=0.3)
    return fig


def _anytime(study: Any, trials: list[Any], plt: Any) -> Any | None:
    val = objective_label(study)
    consumed, best, xs, ys = 0, None, [0], [None]
    for t in trials:
        consumed += t.epochs_trained
        seen = t.value if t.state == "COMPLETE" else t.last_reported
        if seen is not None and (best is None or seen > best):
            best = seen
        if t.epochs_trained:
            xs.append(consumed)
            ys.append(best)
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.step(*zip(*pts), where="post", color="tab:green")
    ax.set_xlabel("training epochs consumed (all trials)")
    ax.set_ylabel(f"best {val} so far")
    ax.set_title(f"{_plain(study.study_name)}: best {val} against epochs consumed")
    ax.grid(alpha=0.3)
    return fig


def _schedules(study: Any, trials: list[Any], plt: Any) -> Any | None:
    """Scheduler pbt: per perturbed hyperparameter that changed, each member's value against
    the epochs its segments trained (None for other studies)."""
    if not any(PBT_MEMBER in t.attrs for t in trials):
        return None
    done = [t for t in trials if t.state == "COMPLETE" and t.steps]
    lines: dict[int, list[tuple[int, int, dict[str, Any]]]] = {}
    for t in done:
        member = int(t.attrs.get(PBT_MEMBER, t.attrs.get(RETRY_ROOT, t.number)))
        lines.setdefault(member, []).append((t.steps - t.epochs_trained, t.steps, t.params))
    names = [k for k in sorted({k for t in done for k in t.params})
             if len({t.params.get(k) for t in done}) > 1 and all(
                 isinstance(t.params.get(k), (int, float)) for t in done)]
    if not names:
        return None
    logs = log_params(study)
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.6 * len(names) + 0.6), sharex=True,
                             squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        for member, segments in sorted(lines.items()):
            xs, ys = [], []
            for start, end, params in sorted(segments, key=lambda s: (s[0], s[1])):
                xs += [start, end]
                ys += [params.get(name), params.get(name)]
            ax.plot(xs, ys, marker=".", label=f"member {member}")
        if name in logs:
            ax.set_yscale("log")
        ax.set_ylabel(_plain(name))
        ax.grid(alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    axes[-1, 0].set_xlabel("epoch")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0, 0].legend(loc="best", fontsize="small", ncol=2)
    axes[0, 0].set_title(f"{_plain(study.study_name)}: hyperparameter schedules (PBT)")
    return fig


def _learning_curves(study: Any, plt: Any) -> Any:
    val = objective_label(study)
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(8, 4.5))
    numbers = sorted(trial_numbers(study))
    subset = len(numbers) > 2 * CURVES  # a large study: its best and its latest trials
    if subset:
        numbers = sorted({n for n, _ in top_complete(study, CURVES)} | set(numbers[-CURVES:]))
    for t in (trial_by_number(study, n) for n in numbers):
        iv = t.intermediate_values
        if not iv:
            continue
        steps = sorted(iv)
        x = [s + 1 for s in steps]
        y = [iv[s] for s in steps]
        pruned = t.state.name == "PRUNED"
        (line,) = ax.plot(x, y, marker=".", alpha=0.5 if pruned else 0.9,
                          linestyle="--" if pruned else "-", label=f"trial {t.number}")
        if pruned:
            ax.scatter([x[-1]], [y[-1]], marker="x", color=line.get_color(), s=60, zorder=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel(val)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(f"{_plain(study.study_name)}: learning curves (x: pruned)" if not subset else
                 f"{_plain(study.study_name)}: learning curves of the {CURVES} best and {CURVES} "
                 "latest trials (x: pruned)")
    if 0 < len(ax.lines) <= (2 * CURVES if subset else 12):
        ax.legend(fontsize="x-small", ncol=2)
    ax.grid(alpha=0.3)
    return fig


def _params(study: Any, trials: list[Any], plt: Any, log_scale: set[str]) -> Any | None:
    val = objective_label(study)
    done = [t for t in trials if t.state == "COMPLETE" and t.value is not None]
    names = sorted({k for t in done for k in t.params})
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.6), squeeze=False,
                             sharey=True)
    for ax, name in zip(axes[0], names):
        pts = [(t.params[name], t.value) for t in done if name in t.params]
        ax.scatter(*zip(*pts), color="tab:blue")
        if name in log_scale:
            ax.set_xscale("log")
        ax.set_xlabel(_plain(name) + (" (log scale)" if name in log_scale else ""))
        ax.tick_params(axis="x", labelrotation=45, labelsize="small")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(val)
    fig.suptitle(f"{_plain(study.study_name)}: {val} by hyperparameter")
    fig.tight_layout()
    return fig


def _test_per_type(study: Any, plt: Any) -> Any | None:
    tested = study.user_attrs.get(TEST_SCORES) or {}
    best = best_trial(study)
    if best is None or str(best.number) not in tested:
        return None
    scores = tested[str(best.number)]
    rows = sorted(scores["per_type"].items(), key=lambda kv: kv[1]["f1"])
    left_out = set(scores.get(NOT_IN_MACRO) or ())
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.5))
    ax.barh(range(len(rows)), [v["f1"] for _, v in rows], color="tab:blue")
    ax.set_yticks(list(range(len(rows))), [_plain(f"{k} ({NOT_IN_MACRO_NOTE})" if k in left_out
                                                  else k) for k, _ in rows])
    ax.set_xlim(0, 1)
    ax.set_xlabel("test F1 (strict)")
    ax.set_ylabel("entity type")
    ax.set_title(f"{_plain(study.study_name)}: test F1 per type, trial {best.number} "
                 f"(micro {scores['f1']:.3f}, macro {scores['macro_f1']:.3f})")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def _backbones(studies: dict[str, Any], plt: Any) -> Any | None:
    rows = []
    for name, study in studies.items():
        best = best_trial(study)
        if best is None:
            continue
        test = (study.user_attrs.get(TEST_SCORES) or {}).get(str(best.number), {})
        rows.append((name, best.value, test.get("f1")))
    if len(rows) < 2:
        return None
    fig, ax = plt.subplots(figsize=(1.6 * len(rows) + 3, 4))
    x = range(len(rows))
    val = objective_label(next(iter(studies.values())))
    ax.bar([i - 0.2 for i in x], [r[1] for r in rows], width=0.4, label=val)
    ax.bar([i + 0.2 for i in x], [r[2] or 0.0 for r in rows], width=0.4, label="test F1 (strict)")
    ax.set_xticks(list(x), [_plain(r[0]) for r in rows])
    ax.set_xlabel("study (backbone)")
    ax.set_ylabel("F1 (strict)")
    ax.set_ylim(0, 1)
    ax.set_title("best trial per backbone")
    ax.legend(fontsize="small")
    return fig


def figures(studies: dict[str, Any], log_scale: set[str] | frozenset[str] | None = None
            ) -> dict[str, Any]:
    """Matplotlib figures by file stem (``<study>_history`` ..., ``backbones``).

    ``log_scale``: parameters drawn on a log axis (default: those the study searched so)."""
    plt = _plt()
    out: dict[str, Any] = {}
    for name, study in studies.items():
        trials = trial_summaries(study)  # read once for both figures
        for kind, fig in (("history", _history(study, trials, plt)),
                          ("learning_curves", _learning_curves(study, plt)),
                          ("anytime", _anytime(study, trials, plt)),
                          ("schedules", _schedules(study, trials, plt)),
                          ("params", _params(study, trials, plt, log_params(study)
                                             if log_scale is None else set(log_scale))),
                          ("test_per_type", _test_per_type(study, plt))):
            if fig is not None:
                out[f"{name}_{kind}"] = fig
    comparison = _backbones(studies, plt)
    if comparison is not None:
        out["backbones"] = comparison
    return out


def write_report(studies: dict[str, Any], out_dir: Path | str,
                 log_scale: set[str] | frozenset[str] | None = None) -> list[Path]:
    """Write :func:`figures` as PNG files into ``out_dir``; returns their paths."""
    plt = _plt()
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in figures(studies, log_scale).items():
        path = folder / f"{stem}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
        logger.info("Figure written: %s", path)
    return paths


def load_study(cfg: Any, *, backbone: str | None = None, output_dir: Path | str | None = None,
               runtime: Any = None) -> Any:
    """The study of ``cfg`` (and ``backbone``), read without its lock; None when absent."""
    import optuna

    from ..study.status import status, storage_url_for, study_paths
    from ..study.store import sqlite_storage

    info = status(cfg, backbone=backbone, output_dir=output_dir, runtime=runtime)
    if not info["exists"]:
        return None
    url = storage_url_for(cfg.hpo)
    if url:
        storage = optuna.storages.RDBStorage(url)
    else:
        paths = study_paths(cfg, backbone=info["backbone"], output_dir=output_dir,
                            runtime=runtime)
        db = paths.working_db if paths.working_db.exists() else paths.durable_db
        storage = sqlite_storage(db)
    return optuna.load_study(study_name=info["study_name"], storage=storage)
