"""``migrate-config``: the original tool's config folder (resume-ner-azureml) in our formats.

Reads ``hpo/*.yaml``, ``train.yaml``, ``data/*.yaml``, ``mlflow.yaml`` and
``infrastructure.yaml`` of the original layout and writes our files under ``NEW_DIR`` with
``MIGRATION.md``: every key of the old files is listed as **mapped** (to which key of ours),
**defaulted** (a key of ours the old files did not give) or **not supported** (with why).

Nothing read from the environment is written: files are read without ``${VAR}`` expansion, a
``${VAR}`` reference is written as it was, and a literal Azure subscription or resource group
is replaced by a ``${VAR}`` reference (reported), so no written file holds a secret. The
written HPO files are loaded back with our loader before the command reports success.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import ConfigError
from ..core.names import backbone_path_name, short
from ..settings.config import (
    CheckpointConfig,
    HpoConfig,
    TrainConfig,
    load_configs,
    load_yaml,
)
from ..storage.durable import write_file
from ..storage.layout import (
    SEED_STUDY_FILE,
    default_study_name,
    holds_no_study,
    migration_report,
)

__all__ = ["MigrationReport", "migrate_config"]

logger = logging.getLogger(__name__)

MAPPED, DEFAULTED, UNSUPPORTED = "mapped", "defaulted", "not supported"
_PARAMS = ("learning_rate", "batch_size", "dropout", "weight_decay")
_SAMPLERS = {"random": "random", "tpe": "tpe"}
# The original's metric names (case, '-', '_' and spaces aside) -> our objective.metric.
_METRICS = {"f1": "f1", "micro_f1": "f1", "f1_micro": "f1", "microf1": "f1",
            "macro_f1": "macro_f1", "f1_macro": "macro_f1", "macrof1": "macro_f1"}


@dataclass
class MigrationReport:
    old_dir: Path
    new_dir: Path
    entries: list[tuple[str, str, str, str]] = field(default_factory=list)  # file, key, what, note
    written: list[Path] = field(default_factory=list)
    pending: list[tuple[Path, bytes]] = field(default_factory=list)  # written once all converted
    studies: list[str] = field(default_factory=list)  # the original's studies found, and how

    def add(self, file: str, key: str, what: str, note: str) -> None:
        self.entries.append((file, key, what, note))

    def of(self, what: str) -> list[tuple[str, str, str, str]]:
        return [e for e in self.entries if e[2] == what]

    def summary(self) -> str:
        lines = [f"migrated {self.old_dir} -> {self.new_dir}: {len(self.of(MAPPED))} keys "
                 f"mapped, {len(self.of(DEFAULTED))} defaulted, {len(self.of(UNSUPPORTED))} "
                 f"not supported (see {migration_report(self.new_dir)})"]
        lines += [f"  not supported: {f} {k}: {n}" for f, k, _w, n in self.of(UNSUPPORTED)]
        lines += [f"  WARNING: {note}" for note in self.studies]
        lines += [f"  wrote {p}" for p in self.written]
        return "\n".join(lines)

    def markdown(self) -> str:
        out = [f"# Migration of {self.old_dir}", "",
               "Written by `python -m hpo_helpers migrate-config`. `${VAR}` references are kept "
               "as written; they are expanded from the environment when a file is loaded.", ""]
        for what in (MAPPED, DEFAULTED, UNSUPPORTED):
            out += [f"## {what.capitalize()}", "", "| old file | key | note |", "|---|---|---|"]
            out += [f"| {f} | `{k}` | {n} |" for f, k, _w, n in self.of(what)] or ["| - | - | - |"]
            out.append("")
        out += ["## Studies of the original tool", ""]
        out += [f"- {note}" for note in self.studies] or ["None found under the original "
                                                          "project's outputs/."]
        return "\n".join(out) + "\n"


def _num(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-5 as a string
        except ValueError:
            return value
    return value


class _Old:
    """One old file's keys; every key read is ticked off, the rest are reported at the end."""

    def __init__(self, report: MigrationReport, name: str, raw: dict[str, Any]) -> None:
        self.report, self.name, self.raw = report, name, raw
        self.seen: set[str] = set()

    def get(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.raw
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        self.seen.add(dotted)
        return node

    def mapped(self, dotted: str, ours: str, note: str = "") -> None:
        self.report.add(self.name, dotted, MAPPED, f"-> `{ours}`" + (f" ({note})" if note else ""))

    def unsupported(self, dotted: str, why: str) -> None:
        self.seen.add(dotted)
        self.report.add(self.name, dotted, UNSUPPORTED, why)

    def leftovers(self, why: str = "not a key this project knows") -> None:
        """Report every leaf key nobody read."""
        def walk(node: Any, prefix: str) -> None:
            if prefix in self.seen or any(prefix.startswith(s + ".") for s in self.seen):
                return
            if isinstance(node, dict) and node:
                for k, v in node.items():
                    walk(v, f"{prefix}.{k}" if prefix else str(k))
            else:
                self.unsupported(prefix, why)
        walk(self.raw, "")


def _search_space(old: _Old, train: _Old | None, out: dict[str, Any]) -> None:
    space: dict[str, Any] = {}
    for name in _PARAMS:
        spec = old.get(f"search_space.{name}")
        if spec is None:
            continue
        kind = spec.get("type") if isinstance(spec, dict) else None
        if kind == "choice":
            space[name] = {"type": "choice", "choices": [_num(v) for v in spec.get("values", [])]}
        elif kind in ("uniform", "loguniform"):
            space[name] = {"type": kind, "low": _num(spec.get("min")),
                           "high": _num(spec.get("max"))}
        else:
            old.unsupported(f"search_space.{name}", f"type {short(kind)}: use choice, uniform "
                            "or loguniform")
            continue
        old.mapped(f"search_space.{name}", f"search_space.{name}")
    for name, from_train in (("batch_size", "training.batch_size"),
                             ("learning_rate", "training.learning_rate"),
                             ("weight_decay", "training.weight_decay"),
                             ("epochs", "training.epochs")):
        if name in space:
            if train is not None and train.get(from_train) is not None \
                    and from_train not in {e[1] for e in train.report.entries}:
                train.unsupported(from_train, f"search_space.{name} of the HPO file is used")
            continue
        value = train.get(from_train) if train is not None else None
        if value is not None:
            space[name] = _num(value)
            train.mapped(from_train, f"search_space.{name}", "a fixed value")  # type: ignore
        elif name == "epochs":
            space[name] = 3
            old.report.add(old.name, "search_space.epochs", DEFAULTED,
                           "3 (no training.epochs given)")
    if "dropout" not in space:
        space["dropout"] = 0.1
        old.report.add(old.name, "search_space.dropout", DEFAULTED, "0.1 (fixed)")
    space["warmup_ratio"] = 0.1
    old.report.add(old.name, "search_space.warmup_ratio", DEFAULTED,
                   "0.1 (fixed; the original warms up for a number of steps, see warmup_steps)")
    for name in (old.get("search_space") or {}):
        if name not in _PARAMS and name != "backbone":
            old.unsupported(f"search_space.{name}", "the trainer tunes only learning_rate, "
                            "batch_size, dropout, weight_decay, warmup_ratio and epochs")
    out["search_space"] = space


def _backbones(old: _Old, out: dict[str, Any]) -> None:
    spec = old.get("search_space.backbone")
    values = spec.get("values") if isinstance(spec, dict) else None
    if not values:
        return
    names = [str(v) for v in values]
    if len(names) == 1:
        out["backbone"] = names[0]
        old.mapped("search_space.backbone", "backbone")
    else:
        out["backbone"], out["backbones"] = names[0], names
        old.mapped("search_space.backbone", "backbones", "one study per backbone, in sequence")


def _hpo(old: _Old, train: _Old | None, data_config: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    _backbones(old, out)
    _search_space(old, train, out)
    algo = old.get("sampling.algorithm")
    if algo is not None:
        if algo in _SAMPLERS:
            out["sampler"] = {"type": _SAMPLERS[algo]}
            old.mapped("sampling.algorithm", "sampler.type")
        else:
            out["sampler"] = {"type": "tpe"}
            old.unsupported("sampling.algorithm", f"{short(algo)}: samplers here are tpe and "
                            "random; tpe written")
    for key in ("max_trials", "timeout_minutes"):
        if (v := old.get(f"sampling.{key}")) is not None:
            out[key] = v
            old.mapped(f"sampling.{key}", key)
    policy = old.get("early_termination.policy")
    if policy is not None:
        out["pruner"] = {"type": "median",
                         "n_warmup_steps": int(old.get("early_termination.delay_evaluation", 1))}
        old.mapped("early_termination.policy", "pruner.type", f"{policy} -> median: Optuna's "
                   "MedianPruner prunes a trial below the median of earlier trials")
        if "delay_evaluation" in (old.get("early_termination") or {}):
            old.mapped("early_termination.delay_evaluation", "pruner.n_warmup_steps")
        for k, why in (("slack_factor", "the median pruner has no slack; it compares with the "
                                        "median of earlier trials at the same epoch"),
                       ("evaluation_interval", "trials are evaluated after every epoch")):
            if k in (old.get("early_termination") or {}):
                old.unsupported(f"early_termination.{k}", why)
    _objective(old, train, out)
    goal = old.get("objective.goal")
    if goal is not None:
        if goal == "maximize":
            old.mapped("objective.goal", "objective.direction")
        else:
            old.unsupported("objective.goal", f"{short(goal)}: F1 is maximized")
    _kfold(old, out)
    _checkpoint(old, out)
    if isinstance(sel := old.get("selection"), dict):
        out["selection"] = {}
        for k in ("accuracy_threshold", "use_relative_threshold", "min_accuracy_gain"):
            if k in sel:
                out["selection"][k] = _num(sel[k])
                old.mapped(f"selection.{k}", f"selection.{k}", "same meaning")
    if old.get("mlflow.log_best_checkpoint") is not None:
        old.unsupported("mlflow.log_best_checkpoint", "best models are kept on disk "
                        "(keep_top_k), not uploaded to MLflow")
    mode = old.get("run.mode")
    if mode is not None:
        out.setdefault("checkpoint", {})["auto_resume"] = mode != "force_new"
        old.mapped("run.mode", "checkpoint.auto_resume", f"{mode}")
    if old.get("refit") is not None:
        old.unsupported("refit", "refit is its own step here, after `select`")
    out["train_config"] = "train.yaml"
    if data_config:
        out["data_config"] = data_config
    return out


def _metric(source: _Old, key: str, value: Any) -> str:
    """Our ``objective.metric`` for the original's metric name; an unknown one is refused."""
    ours = _METRICS.get(re.sub(r"[\s_-]+", "_", str(value).strip().lower()))
    if ours is None:
        raise ConfigError(
            f"{source.report.old_dir / source.name}: {key} {short(value)} is not a metric this "
            "project can optimise (it would not be migrated faithfully). Fix: write macro-f1 "
            "(macro F1 over entity types) or f1 (entity-level micro F1) there, then run "
            "migrate-config again.")
    return ours


def _objective(old: _Old, train: _Old | None, out: dict[str, Any]) -> None:
    """``objective.metric`` (else ``training.metric`` of train.yaml): macro stays macro."""
    source, key, metric = old, "objective.metric", old.get("objective.metric")
    if metric is None and train is not None and train.get("training.metric") is not None:
        source, key, metric = train, "training.metric", train.get("training.metric")
    if metric is None:
        return
    ours = _metric(source, key, metric)
    out["objective"] = {"metric": ours}
    source.mapped(key, "objective.metric", f"{metric} -> {ours}: "
                  + ("macro F1 over entity types" if ours == "macro_f1" else
                     "entity-level micro F1") + " (seqeval, strict IOB2)")


def _kfold(old: _Old, out: dict[str, Any]) -> None:
    kf = old.get("k_fold")
    if not isinstance(kf, dict):
        return
    if kf.get("enabled"):
        out["k_folds"] = int(kf.get("n_splits", 5))
        old.mapped("k_fold.enabled", "k_folds", "set from n_splits")
        old.mapped("k_fold.n_splits", "k_folds")
    else:
        old.mapped("k_fold.enabled", "k_folds", "disabled: null")
    if "random_seed" in kf:
        out["k_fold_seed"] = int(kf["random_seed"])
        old.mapped("k_fold.random_seed", "k_fold_seed")
    if "stratified" in kf:
        out["k_fold_stratified"] = bool(kf["stratified"])
        old.mapped("k_fold.stratified", "k_fold_stratified", "by each document's rarest "
                   "entity type")
    if "shuffle" in kf:
        if kf["shuffle"]:
            old.mapped("k_fold.shuffle", "(always)", "folds are always a seeded shuffle")
        else:
            old.unsupported("k_fold.shuffle", "false: folds are always a seeded shuffle")
    old.seen.update(f"k_fold.{k}" for k in kf)


def _checkpoint(old: _Old, out: dict[str, Any]) -> None:
    ck = old.get("checkpoint")
    if not isinstance(ck, dict):
        return
    mine = out.setdefault("checkpoint", {})
    for k in ("enabled", "auto_resume"):
        if k in ck:
            mine[k] = bool(ck[k])
            old.mapped(f"checkpoint.{k}", f"checkpoint.{k}")
    path = ck.get("storage_path")
    if path is not None:
        mine["storage_path"] = str(path).replace("{study_name}", "{backbone}")
        old.mapped("checkpoint.storage_path", "checkpoint.storage_path",
                   "{study_name} -> {backbone}: one study per backbone, one folder each"
                   if "{study_name}" in str(path) else "")
    name = ck.get("study_name")
    if name is not None:
        single = out.get("backbone") if not out.get("backbones") else None
        resolved = str(name).replace("{backbone}", single) if single else str(name)
        if "{" not in resolved:  # the study the original made, so that it can be continued
            out["study_name"] = resolved
            old.mapped("checkpoint.study_name", "study_name", "" if resolved == name else
                       f"{{backbone}} -> {single}: the name of the original's study")
        else:
            old.unsupported("checkpoint.study_name", f"{short(name)}: study names here are "
                            "hpo_{backbone} (a fixed study_name cannot hold placeholders); "
                            "with several backbones, set study_name per backbone's run to "
                            "continue the original's studies")
    if ck.get("save_only_best") is not None:
        out["keep_top_k"] = 1 if ck["save_only_best"] else 3
        old.mapped("checkpoint.save_only_best", "keep_top_k")
    old.seen.update(f"checkpoint.{k}" for k in ck)


_TRAIN_WHY = {
    "training.gradient_accumulation_steps": "not implemented here; batch_size is the "
                                            "effective batch",
    "training.warmup_steps": "warmup here is search_space.warmup_ratio (a fraction of steps)",
    "training.metric": "the best epoch is chosen by objective.metric of the HPO file",
    "training.metric_mode": "F1 is maximized",
    "training.early_stopping": "pruning (pruner:) stops weak trials early",
    "logging": "one log line per milestone; MLflow gets per-epoch metrics",
    "checkpointing": "checkpoints are written every epoch (and checkpoint_every_steps); the "
                     "newest is kept, and the best model of each top-k trial",
    "distributed": "several workers share a study through storage_url (PostgreSQL)",
}


def _train(old: _Old | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if old is None:
        return out
    if (v := old.get("training.max_grad_norm")) is not None:
        out["max_grad_norm"] = _num(v)
        old.mapped("training.max_grad_norm", "max_grad_norm")
    for key in ("seed", "training.seed"):
        if (v := old.get(key)) is not None:
            out["seed"] = int(v)
            old.mapped(key, "seed")
    done = {e[1] for e in old.report.entries if e[0] == old.name}
    for key, why in _TRAIN_WHY.items():
        if old.get(key) is not None and key not in done:
            old.unsupported(key, why)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name != "source"}
    for k, v in defaults.items():
        if k not in out:
            old.report.add(old.name, k, DEFAULTED, f"{v!r}")
    return out


def _data_path(old: _Old, old_dir: Path, new_dir: Path, out: dict[str, Any]) -> Path | None:
    """``local_path`` (and the ``seed`` subfolder it picked) as our ``path``; the folder."""
    local, seed = old.get("local_path"), old.get("seed")
    if local is None:
        if seed is not None:
            old.unsupported("seed", "no local_path: the original used seed only to pick a "
                            "seed<N> subfolder of local_path")
        return None
    local = str(local)
    # The original's resolve_dataset_path: with a seed, a dataset_tiny folder means its
    # seed<N> subfolder (dataset_tiny/seed0); any other folder is read as it is.
    picked = seed is not None and "dataset_tiny" in local
    rel = f"{local.rstrip('/')}/seed{seed}" if picked else local
    target = Path(rel) if Path(rel).is_absolute() else (old_dir / rel).resolve()
    out["path"] = os.path.relpath(target, new_dir.absolute().parent)
    old.mapped("local_path", "path", "relative to the project folder (above the config "
               "folder)")
    if picked:
        old.mapped("seed", "path", f"seed {seed} picked the subfolder seed{seed} of {local} "
                   "in the original; path points at it")
    elif seed is not None:
        there = (target / f"seed{seed}").is_dir()
        old.unsupported("seed", f"the original used seed only to pick a seed<N> subfolder of "
                        f"a dataset_tiny folder, and {local} is not one, so it read {local} "
                        "itself" + (f" (not its seed{seed} subfolder)" if there else ""))
    return target


def _read_as(path: Path, fmt: str) -> str | None:
    """The format ``read_file`` reads ``path`` as with ``format: fmt``, or None."""
    from ..core.errors import DataError
    from ..data.dataset import read_file
    from ..settings.config import DataConfig

    quiet = logging.getLogger("hpo_helpers.data.dataset")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # a trial read, not the user's load: no repair reports
    try:
        return read_file(path, DataConfig(source=path, format=fmt))[1].format
    except DataError:
        return None
    finally:
        quiet.setLevel(level)


def _format(fmt: str, target: Path | None) -> tuple[bool, str]:
    """Whether to keep the original's forced ``format`` (only where it reads the user's files
    and auto would not read them so), and the note for MIGRATION.md."""
    from ..core.errors import DataError
    from ..data.dataset import split_files

    files: dict[str, Path] = {}
    with contextlib.suppress(DataError):
        files = split_files(target) if target is not None else {}
    if not files:
        return False, (f"{fmt} -> auto: no data files were found at {target} to check; auto "
                       "reads JSON, DataTurks and CoNLL files alike")
    auto = {f: _read_as(f, "auto") for f in files.values()}
    if all(found == fmt for found in auto.values()):
        return False, f"{fmt} -> auto, which reads these files as {fmt} too"
    odd = next(f for f, found in auto.items() if found != fmt)
    if all(_read_as(f, fmt) == fmt for f in files.values()):
        seen = auto[odd] or "none of the formats"
        return True, f"kept: auto would read {odd.name} as {seen}, the original's {fmt} reads it"
    return False, (f"{fmt} -> auto: {fmt} does not read {odd.name}"
                   + (f", auto reads it as {auto[odd]}" if auto[odd] else ""))


def _data(old: _Old, old_dir: Path, new_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    target = _data_path(old, old_dir, new_dir, out)
    if (v := old.get("splitting.random_seed")) is not None:
        out["split_seed"] = int(v)
        old.mapped("splitting.random_seed", "split_seed")
    if (r := old.get("splitting.train_test_ratio")) is not None:
        out["test_fraction"] = min(0.5, round(1 - float(r), 4))
        old.mapped("splitting.train_test_ratio", "test_fraction", "1 - ratio")
    if old.get("splitting.stratified") is not None:
        old.unsupported("splitting.stratified", "the train/validation/test split is a seeded "
                        "shuffle; stratification applies to k-fold (k_fold_stratified)")
    fmt = old.get("schema.format")
    if fmt in ("json", "conll", "dataturks"):
        keep, note = _format(str(fmt), target)
        if keep:
            out["format"] = fmt
        old.mapped("schema.format", "format", note)
    elif fmt is not None:
        old.unsupported("schema.format", f"{short(fmt)}: formats are json, dataturks, conll; "
                        "auto written")
    ann = old.get("schema.annotation_format")
    if ann == "character_spans":
        old.mapped("schema.annotation_format", "format", "json files hold character spans")
    elif ann is not None:
        old.unsupported("schema.annotation_format", f"{short(ann)}: only character spans")
    if (types := old.get("schema.entity_types")) is not None:
        out["entity_types"] = [str(t) for t in types]
        old.mapped("schema.entity_types", "entity_types")
    for key in ("name", "version", "description", "schema.stats"):
        if old.get(key) is not None:
            old.unsupported(key, "informational; the study's fingerprint identifies the data")
    return out


def _mlflow(old: _Old) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("azure_ml.enabled", "azure_ml.workspace_name", "local.tracking_uri"):
        if (v := old.get(key)) is not None:
            section, name = key.split(".")
            out.setdefault(section, {})[name] = v
            old.mapped(key, key)
    for key, why in (("tracking", "per-stage switches: this project tracks HPO sweeps only"),
                     ("naming", "experiment names are given with --mlflow-experiment")):
        if old.get(key) is not None:
            old.unsupported(key, why)
    return out


def _infrastructure(old: _Old) -> dict[str, Any]:
    ws: dict[str, Any] = {}
    for key, ours, var in (("azure.subscription_id", "subscription_id", "AZURE_SUBSCRIPTION_ID"),
                           ("azure.resource_group", "resource_group", "AZURE_RESOURCE_GROUP")):
        v = old.get(key)
        if v is None:
            continue
        if isinstance(v, str) and v.strip().startswith("${"):
            ws[ours] = v
            old.mapped(key, f"workspace.{ours}", "the ${VAR} reference is kept")
        else:
            ws[ours] = f"${{{var}}}"
            old.mapped(key, f"workspace.{ours}", f"a literal value is not copied: set {var} "
                       "in the environment")
    if (v := old.get("workspace.name")) is not None:
        ws["name"] = v
        old.mapped("workspace.name", "workspace.name")
    for key in ("azure.location", "workspace.description", "storage", "compute", "identity"):
        if old.get(key) is not None:
            old.unsupported(key, "this project creates no Azure resources; it only logs to an "
                            "existing workspace")
    return {"workspace": ws}


def _dump(report: MigrationReport, path: Path, data: dict[str, Any], header: str) -> None:
    """Queue one of our files: nothing is written until every old file converted."""
    text = f"# {header}\n" + yaml.safe_dump(data, sort_keys=False)
    report.pending.append((path, text.encode()))


def _read(report: MigrationReport, old_dir: Path, rel: str) -> _Old | None:
    path = old_dir / rel
    if not path.is_file():
        return None
    return _Old(report, rel, load_yaml(path, expand=False))


def migrate_config(old_dir: Path | str, new_dir: Path | str, *,
                   force: bool = False) -> MigrationReport:
    """Convert ``old_dir`` (the original's ``config/``) into ``new_dir``; see the module doc."""
    old_dir, new_dir = Path(old_dir), Path(new_dir)
    if not (old_dir / "hpo").is_dir():
        raise ConfigError(f"{old_dir}: no hpo/ folder. Fix: give the original project's config "
                          "folder (the one holding hpo/, train.yaml, data/).")
    if new_dir.resolve() == old_dir.resolve():
        raise ConfigError(f"{new_dir}: the new folder must differ from the old one. Fix: give "
                          "an empty folder.")
    if new_dir.is_dir() and any(new_dir.iterdir()) and not force:
        raise ConfigError(f"{new_dir}: not empty. Fix: give an empty folder, or --force to "
                          "overwrite the files migrate-config writes.")
    report = MigrationReport(old_dir, new_dir)
    header = f"migrated from {old_dir} by migrate-config; see MIGRATION.md"
    train = _read(report, old_dir, "train.yaml")
    data_files = sorted(p.relative_to(old_dir).as_posix() for p in (old_dir / "data").glob(
        "*.yaml")) if (old_dir / "data").is_dir() else []
    for rel in data_files:
        old = _read(report, old_dir, rel)
        _dump(report, new_dir / rel, _data(old, old_dir, new_dir), header)  # type: ignore
        old.leftovers()  # type: ignore[union-attr]
    hpo_outs: dict[Path, dict[str, Any]] = {}
    for hpo_file in sorted((old_dir / "hpo").glob("*.yaml")):
        rel = hpo_file.relative_to(old_dir).as_posix()
        old = _read(report, old_dir, rel)
        out = _hpo(old, train, data_files[0] if data_files else None)  # type: ignore[arg-type]
        _dump(report, new_dir / rel, out, header)
        hpo_outs[new_dir / rel] = out
        old.leftovers()  # type: ignore[union-attr]
    _dump(report, new_dir / "train.yaml", _train(train), header)
    if train is not None:
        train.leftovers()
    for rel, convert in (("mlflow.yaml", _mlflow), ("infrastructure.yaml", _infrastructure)):
        if (old := _read(report, old_dir, rel)) is not None:
            _dump(report, new_dir / rel, convert(old), header)
            old.leftovers()
    for path, data in report.pending:  # every old file converted: now write
        write_file(path, data)
        report.written.append(path)
    _registry(report, new_dir)
    _original_studies(report, old_dir, hpo_outs)
    for other in sorted(p for p in old_dir.rglob("*.yaml")
                        if p.relative_to(old_dir).as_posix() not in
                        {"train.yaml", "mlflow.yaml", "infrastructure.yaml", *data_files}
                        and p.parent.name != "hpo"):
        report.add(other.relative_to(old_dir).as_posix(), "(file)", UNSUPPORTED,
                   "not a config this project reads")
    write_file(migration_report(new_dir), report.markdown().encode())
    report.written.append(migration_report(new_dir))
    for hpo_file in sorted((new_dir / "hpo").glob("*.yaml")):
        load_configs(new_dir, hpo_file)  # what we wrote must load
    logger.info("Migrated %s -> %s (%d files)", old_dir, new_dir, len(report.written))
    for note in report.studies:
        logger.warning("%s", note)
    return report


def _study_files(outputs: Path, depth: int = 6) -> list[Path]:
    """SQLite files under the original project's ``outputs/`` (not in checkpoint or MLflow
    folders), ``depth`` folders deep at most."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(outputs):
        here = Path(folder)
        dirs[:] = [] if len(here.relative_to(outputs).parts) >= depth else sorted(
            d for d in dirs if not holds_no_study(d))
        found += [here / f for f in sorted(files) if f.endswith(".db")]
    return found


def _original_studies(report: MigrationReport, old_dir: Path,
                      hpo_outs: dict[Path, dict[str, Any]]) -> None:
    """The studies the original left under its project's ``outputs/``: each is named in the
    report with the command that continues it (never silently abandoned)."""
    from ..study.store import study_summaries

    wanted: dict[str, tuple[Path, str, dict[str, Any]]] = {}
    for new_file, out in hpo_outs.items():
        for backbone in out.get("backbones") or [out.get("backbone", HpoConfig.backbone)]:
            name = str(out.get("study_name") or default_study_name(backbone))
            wanted.setdefault(name, (new_file, backbone, out))
    for db in _study_files(old_dir.absolute().parent / "outputs"):
        names = study_summaries(db)
        if names is None:
            if db.name == SEED_STUDY_FILE:
                report.studies.append(f"{db} is not readable as an Optuna study: left alone")
            continue
        for name, n_trials in names.items():
            if name in wanted:
                report.studies.append(_continue_study(db, name, n_trials, *wanted[name]))
            else:
                report.studies.append(
                    f"{db} holds study {name} ({n_trials} trials), which no migrated HPO file "
                    f"names: to continue it, set study_name: {name} in the HPO file and run "
                    f"it with --output-dir {db.parent.parent}")


def _continue_study(db: Path, name: str, n_trials: int, new_file: Path, backbone: str,
                    out: dict[str, Any]) -> str:
    """How the original's study ``name`` in ``db`` continues with the migrated ``new_file``."""
    storage = (out.get("checkpoint") or {}).get("storage_path", CheckpointConfig.storage_path)
    ours = Path(storage.format(backbone=backbone_path_name(backbone)))
    flags = f" --backbone {backbone}" if out.get("backbones") else ""
    run = "python -m hpo_helpers run --config {config}{flags} --output-dir {root}"
    if db.parts[-len(ours.parts):] == ours.parts:  # already our layout: resumed in place
        root = Path(*db.parts[:-len(ours.parts)])
        how = "continue it in place with: " + run.format(config=new_file, flags=flags, root=root)
    elif db.parent.name == name and db.name == SEED_STUDY_FILE:
        how = ("continue it with: " + run.format(config=new_file, flags=flags,
                                                 root=db.parent.parent)
               + f" (it is copied to {db.parent.parent / ours} and adopted as the run starts; "
               "the original is left untouched)")
    else:
        how = (f"copy it to <output folder>/{ours}, then run: "
               + run.format(config=new_file, flags=flags, root="<output folder>"))
    return f"the original's study {name} ({n_trials} trials) is at {db}: {how}"


def _registry(report: MigrationReport, new_dir: Path) -> None:
    """Our backbone registry beside the migrated files (the original names its backbones in
    ``model/*.yaml``, which we do not read)."""
    ours = Path(__file__).resolve().parents[2] / "config" / "backbones.yaml"
    if ours.is_file() and not (new_dir / "backbones.yaml").exists():
        shutil.copyfile(ours, new_dir / "backbones.yaml")
        report.written.append(new_dir / "backbones.yaml")
    elif not ours.is_file():
        report.add("backbones.yaml", "(file)", DEFAULTED, "not written: copy config/"
                   "backbones.yaml of this project beside the migrated files")
