"""The on-disk layout of a study: the one place that names its folders and files.

:func:`~hpo_helpers.storage.paths.resolve` gives the study's two roots (durable and working, see
``paths``); a :class:`StudyLayout` adds every path below them. Nothing else in the package joins
``"trials"``, ``"models"`` or ``"best-model"`` to a path (a test greps for it)::

    <durable>/<storage_path>                      study.db (+ .lock), the durable copy
    <working>/<storage_path>                      the live SQLite file (local disk)
    <working>/trials/<study>/trial_<root>/        epoch checkpoints (checkpoint-<step>/)
                            .../fold_<f>/         the same per fold with k_folds
                            .../best-model/       the trial's (fold's) best model so far
    <durable>/trials/<study>/...                  the mirror of the above (Colab: Drive)
    <durable>/models/<study>-<created>/trial_<n>/ kept best models of the top-k trials
    <durable>/refit/<study>-<created>/{checkpoints,model}/  the refit job and its export
    <durable>/.backbones/<backbone>-<dataset>/    the tiny tokenizer cache
    <shared_checkpoint_dir>/<study>/{trials,models,refit}/  the same, shared

``<root>`` is the first attempt of a retry chain. Kept models live in a study-unique folder
(``<created>`` is the study's creation time), so a reset or archived study never collides with
a new one; a study made before this layout keeps its ``models/<study>`` folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..core.names import backbone_path_name, check_name
from ..core.runtime import DRIVE_MOUNT

__all__ = [
    "BACKBONE_CACHE",
    "BEST_MODEL",
    "COLAB_LOCAL_ROOT",
    "COLAB_PROJECT_ON_DRIVE",
    "DRIVE_ROOT",
    "FOLD_RESULT",
    "JOB_OUTPUTS",
    "KAGGLE_ROOT",
    "MIGRATION_REPORT",
    "MLFLOW_DB",
    "SELECTION",
    "SELECTION_REPORT",
    "StudyLayout",
    "backbone_cache",
    "checkpoint_name",
    "checkpoint_step",
    "default_study_name",
    "earlier_output_roots",
    "holds_no_study",
    "is_study_file",
    "kaggle_inputs",
    "lock_file",
    "owner_file",
    "report_dir",
    "migration_report",
    "mlflow_beside",
    "on_drive",
    "seed_study_beside",
    "seed_study_files",
    "selection_files",
    "trial_root_of",
]

# Runtime roots, relative to the runtime's file-system root (tests use a tmp folder).
DRIVE_ROOT = (*DRIVE_MOUNT, "resume-ner-checkpoints")
COLAB_LOCAL_ROOT = ("content", "resume-ner")
# The notebooks' project folder on Colab with Drive: the user's config/, dataset/ and notebook
# 01's tracking choice outlive the VM (the live databases stay on local disk all the same).
COLAB_PROJECT_ON_DRIVE = (*DRIVE_MOUNT, "resume-ner")
KAGGLE_WORKING = ("kaggle", "working")
KAGGLE_ROOT = (*KAGGLE_WORKING, "resume-ner")
KAGGLE_INPUT = ("kaggle", "input")  # a version's output attached to the next one, read-only
JOB_OUTPUTS = ("outputs",)  # what an Azure ML job keeps
HPO_DIR = (*JOB_OUTPUTS, "hpo")
MLFLOW_DB = ("mlruns", "mlflow.db")

TRIALS = "trials"
MODELS = "models"
BEST_MODEL = "best-model"
BACKBONE_CACHE = ".backbones"
REFIT = "refit"
REFIT_CHECKPOINTS = "checkpoints"
REFIT_MODEL = "model"
FOLD_RESULT = "fold_result.json"
LOCK_SUFFIX = ".lock"
OWNER = ".owner"
REPORT = "report"
SELECTION = "selection.json"  # in the output folder: the model `select` chose, and why
SELECTION_REPORT = "selection.md"
MIGRATION_REPORT = "MIGRATION.md"  # in a folder written by `migrate-config`
_TRIAL = re.compile(r"trial_(\d+)\Z")
_CHECKPOINT = re.compile(r"checkpoint-(\d+)\Z")


def checkpoint_name(step: int) -> str:
    """Folder name of the checkpoint written after ``step`` optimizer steps."""
    return f"checkpoint-{step}"


def checkpoint_step(path: Path | None) -> int:
    """The step of a ``checkpoint-<step>`` folder, or -1 for anything else."""
    m = _CHECKPOINT.fullmatch(path.name) if path is not None else None
    return int(m.group(1)) if m else -1


def trial_root_of(folder: Path) -> int | None:
    """The retry-chain root of a ``trial_<root>`` folder, or None for anything else."""
    m = _TRIAL.fullmatch(folder.name)
    return int(m.group(1)) if m else None


def is_study_file(path: Path) -> bool:
    """False for files inside checkpoint folders (``trials/``), which hold no study."""
    return TRIALS not in path.parts


def default_study_name(backbone: str, study_name: str | None = None) -> str:
    """``study_name`` when set, else ``hpo_<backbone>`` (backbone in its path-safe form)."""
    if study_name:
        return check_name(study_name, key="study_name",
                          fix="use letters, digits, '_', '-' or '.', e.g. 'hpo_minilm_v2'")
    return f"hpo_{backbone_path_name(backbone)}"


# Where the seed (resume-ner-azureml) kept a study: ``resolve_platform_checkpoint_path`` put
# its ``storage_path`` under the notebook's ``outputs/hpo`` on Kaggle, under ``/content`` on
# Colab without Drive, and under ``MyDrive/resume-ner-azureml/outputs/hpo`` with Drive.
# ``{folder}`` is the backbone (``storage_path: "{backbone}/study.db"``, the default) or the
# study name (``storage_path: "{study_name}/study.db"``, e.g. ``hpo_distilbert_v2``).
SEED_STUDY_FILES = {
    "kaggle": (("kaggle", "working", "resume-ner-azureml", "outputs", "hpo", "{folder}",
                "study.db"),),
    "colab": (("content", "{folder}", "study.db"),
              (*DRIVE_MOUNT, "resume-ner-azureml", "outputs", "hpo", "{folder}", "study.db")),
}
SEED_STUDY_FILE = "study.db"  # the file name of the seed's ``storage_path``


def seed_study_files(runtime_kind: str, fs_root: Path, backbone: str,
                     study_name: str | None = None) -> list[Path]:
    """The seed's study files for ``backbone`` (in a ``{backbone}`` folder, or in a
    ``{study_name}`` folder) that exist on this runtime (newest layout first)."""
    folders = dict.fromkeys([backbone_path_name(backbone), *([study_name] if study_name else [])])
    found = [fs_root.joinpath(*(p.replace("{folder}", folder) for p in parts))
             for parts in SEED_STUDY_FILES.get(runtime_kind, ()) for folder in folders]
    return [f for f in found if f.is_file()]


def earlier_output_roots() -> tuple[tuple[str, ...], ...]:
    """Where, inside a folder holding an earlier run's output, the output folder (the one
    holding ``<storage_path>``) may be, most specific first: the folder itself (an
    ``--output-dir``), ``hpo/`` (Drive's ``resume-ner-checkpoints/``, an unpacked bundle),
    ``outputs/hpo/`` (a project folder, an Azure ML job's outputs), ``resume-ner/outputs/hpo/``
    (a Kaggle version's ``/kaggle/working``), ``resume-ner-checkpoints/hpo/`` (``MyDrive``) and
    the seed's ``resume-ner-azureml/outputs/hpo/`` (its ``{folder}/study.db``)."""
    seed = SEED_STUDY_FILES["kaggle"][0]
    return ((), (HPO_DIR[-1],), HPO_DIR, (*KAGGLE_ROOT[len(KAGGLE_WORKING):], *HPO_DIR),
            (DRIVE_ROOT[-1], HPO_DIR[-1]),
            seed[len(KAGGLE_WORKING):seed.index("{folder}")])


def mlflow_beside(output_root: Path) -> list[Path]:
    """Where the MLflow store of the run whose output folder is ``output_root`` may be: its
    parent's ``mlruns/`` (Drive, an Azure ML job, a bundle) or its grandparent's (a local
    project's ``./mlruns``, Kaggle's ``resume-ner/mlruns``)."""
    return [base.joinpath(*MLFLOW_DB) for base in (output_root.parent, output_root.parent.parent)]


def kaggle_inputs(fs_root: Path) -> list[Path]:
    """The folders attached to a Kaggle notebook (``/kaggle/input/<name>/``), sorted."""
    folder = fs_root.joinpath(*KAGGLE_INPUT)
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def seed_study_beside(durable_root: Path, study_name: str) -> Path:
    """The seed's ``{study_name}/study.db`` in the output folder ``durable_root``: where the
    original tool with ``storage_path: "{study_name}/study.db"`` kept the study that this
    project keeps in ``{backbone}/study.db`` (``outputs/hpo/hpo_distilbert_v2/study.db``)."""
    return durable_root / study_name / SEED_STUDY_FILE


def holds_no_study(folder_name: str) -> bool:
    """Folders no study file is in: checkpoints, kept models, refits, MLflow stores, hidden
    folders (a search for the seed's studies skips them)."""
    return folder_name in (TRIALS, MODELS, REFIT, MLFLOW_DB[0]) \
        or folder_name.startswith(("checkpoint", "."))


def on_drive(path: Path | str) -> bool:
    """Whether ``path`` lies under Google Drive's mount (``.../content/drive/MyDrive/...``,
    whatever the runtime's root): SQLite must never open such a file."""
    parts, n = Path(path).absolute().parts, len(DRIVE_MOUNT)
    return any(parts[i:i + n] == DRIVE_MOUNT for i in range(len(parts) - n))


def backbone_cache(base: Path, backbone: str, dataset_fingerprint: str) -> Path:
    """Folder of the tokenizer trained for ``backbone`` on one dataset (``tiny``)."""
    return base / BACKBONE_CACHE / f"{backbone_path_name(backbone)}-{dataset_fingerprint}"


def lock_file(db: Path) -> Path:
    """The OS lock beside a SQLite study (``study.db.lock``): one sweep per study."""
    return Path(f"{db}{LOCK_SUFFIX}")


def owner_file(folder: Path) -> Path:
    """The process lock that marks a private temporary folder as in use by its process."""
    return folder / OWNER


def report_dir(db: Path) -> Path:
    """Where ``report`` writes a study's figures by default: beside its database."""
    return db.parent / REPORT


def selection_files(output_root: Path) -> tuple[Path, Path]:
    """``(selection.json, selection.md)`` of the studies under ``output_root``."""
    return output_root / SELECTION, output_root / SELECTION_REPORT


def migration_report(new_dir: Path) -> Path:
    """The report ``migrate-config`` writes beside the configs it converted."""
    return new_dir / MIGRATION_REPORT


def _stamp(created_at: str | None) -> str | None:
    digits = re.sub(r"\D", "", created_at or "")
    return f"{digits[:8]}-{digits[8:14]}" if len(digits) >= 14 else None


@dataclass(frozen=True)
class StudyLayout:
    """Every folder of one study. Build it once per call with :meth:`for_study`.

    ``trials_root`` (working disk) holds the checkpoints, ``mirror_root`` (durable) their
    mirror, ``models_root`` (durable) the kept best models, ``refit_root`` (durable) the refit
    job. All are None for an in-memory study.
    """

    study_name: str
    trials_root: Path | None = None
    mirror_root: Path | None = None
    models_root: Path | None = None
    refit_root: Path | None = None
    cache_root: Path | None = None  # holds BACKBONE_CACHE (shared by the sweep and refit)

    @classmethod
    def for_study(cls, study_name: str, *, working_dir: Path | None = None,
                  durable_dir: Path | None = None, created_at: str | None = None,
                  shared_dir: Path | str | None = None, legacy_models: bool = False,
                  cache_root: Path | None = None) -> StudyLayout:
        """The layout of ``study_name`` whose database lives in ``working_dir`` (local disk)
        and ``durable_dir``; ``shared_dir`` (a shared study's ``shared_checkpoint_dir``)
        replaces both for checkpoints and models. ``created_at`` is the study's attr;
        ``legacy_models``: the study keeps its models in ``models/<study>``, made before
        study-unique folders (:meth:`StudyPaths.layout` looks); ``cache_root`` holds the
        tokenizer cache (default ``durable_dir``; the output root, shared by the backbone's
        studies). Pure: reads no disk."""
        check_name(study_name, key="study_name", fix="use letters, digits, '_', '-' or '.'")
        if shared_dir is not None:
            root = Path(shared_dir) / study_name
            return cls(study_name, root / TRIALS, None, root / MODELS, root / REFIT,
                       Path(shared_dir))
        if working_dir is None or durable_dir is None:
            return cls(study_name)
        kept = cls.legacy_models_dir(durable_dir, study_name)
        stamp = _stamp(created_at)
        if stamp and not legacy_models:
            kept = kept.with_name(f"{study_name}-{stamp}")
        return cls(study_name, working_dir / TRIALS / study_name,
                   durable_dir / TRIALS / study_name, kept, durable_dir / REFIT / kept.name,
                   cache_root or durable_dir)

    @staticmethod
    def legacy_models_dir(durable_dir: Path, study_name: str) -> Path:
        """``models/<study>``: kept models of a study made before study-unique folders."""
        return durable_dir / MODELS / study_name

    def tokenizer_cache(self, backbone: str, dataset_fingerprint: str) -> Path | None:
        """The ``tiny`` tokenizer trained for ``backbone`` on one dataset (None: in memory)."""
        return None if self.cache_root is None else \
            backbone_cache(self.cache_root, backbone, dataset_fingerprint)

    @property
    def checkpointing(self) -> bool:
        return self.trials_root is not None

    def trial_dir(self, root: int) -> Path | None:
        """Checkpoint folder of the retry chain that started with trial ``root``."""
        return None if self.trials_root is None else self.trials_root / f"trial_{root}"

    @staticmethod
    def fold_dir(trial_dir: Path, fold: int, n_folds: int) -> Path:
        """Checkpoint folder of one fold (the trial folder itself without k-fold)."""
        return trial_dir if n_folds <= 1 else trial_dir / f"fold_{fold}"

    @staticmethod
    def fold_result(fold_dir: Path) -> Path:
        """File recording a finished fold's score, so a retry skips that fold."""
        return fold_dir / FOLD_RESULT

    @staticmethod
    def best_model_dir(checkpoint_dir: Path) -> Path:
        """Where ``fit`` keeps the best model so far of a trial (or fold)."""
        return checkpoint_dir / BEST_MODEL

    def kept_model_dir(self, number: int) -> Path | None:
        """Where the best model of trial ``number`` is kept when it is among the top k."""
        return None if self.models_root is None else self.models_root / f"trial_{number}"

    def local_model_dir(self, number: int) -> Path | None:
        """Local-disk stand-in for :meth:`kept_model_dir` while the durable folder refuses
        writes (full, read-only, unmounted); moved there when it works again."""
        local = self._local_models_root
        return None if local is None else local / f"trial_{number}"

    @property
    def _local_models_root(self) -> Path | None:
        if self.trials_root is None or self.models_root is None or self.mirror_root is None:
            return self.models_root  # no separate durable side (a shared folder): no waiting
        return self.trials_root.parent.parent / MODELS / self.models_root.name

    def kept_models(self) -> dict[int, Path]:
        """Trial number -> its kept best model: in the durable folder, or still waiting on
        local disk (:meth:`local_model_dir`) for the durable folder to take it."""
        found: dict[int, Path] = {}
        for root in dict.fromkeys((self._local_models_root, self.models_root)):  # durable wins
            if root is not None and root.is_dir():
                found.update({n: p for p in sorted(root.iterdir())
                              if (n := trial_root_of(p)) is not None and p.is_dir()})
        return found

    def waiting_model_numbers(self) -> set[int]:
        """Trial numbers whose kept model waits on local disk (the durable folder refused it)."""
        local = self._local_models_root
        if local is None or local == self.models_root or not local.is_dir():
            return set()
        return {n for p in local.iterdir() if (n := trial_root_of(p)) is not None}

    @property
    def refit_checkpoints(self) -> Path | None:
        """Checkpoints of the refit job while it runs."""
        return None if self.refit_root is None else self.refit_root / REFIT_CHECKPOINTS

    @property
    def refit_model(self) -> Path | None:
        """The exported refit model (a Hugging Face folder)."""
        return None if self.refit_root is None else self.refit_root / REFIT_MODEL

    def mirror_of(self, local: Path) -> Path:
        """The durable counterpart of a folder under ``trials_root``."""
        if self.trials_root is None or self.mirror_root is None:
            raise ValueError(f"{self.study_name} has no mirror")
        return self.mirror_root / local.relative_to(self.trials_root)

    def kept_model_numbers(self) -> set[int]:
        """Trial numbers whose best model is kept now."""
        if self.models_root is None or not self.models_root.is_dir():
            return set()
        return {n for p in self.models_root.iterdir() if (n := trial_root_of(p)) is not None}

    def study_models_folders(self) -> list[Path]:
        """Every kept-models folder of this study name (``<study>`` and ``<study>-<created>``),
        archived ones excepted."""
        if self.models_root is None or not self.models_root.parent.is_dir():
            return []
        pattern = re.compile(rf"{re.escape(self.study_name)}(-\d{{8}}-\d{{6}})?\Z")
        return sorted(p for p in self.models_root.parent.iterdir() if pattern.fullmatch(p.name))

    def archived_folders(self) -> list[Path]:
        """The folders that "Start fresh" sets aside with the database."""
        return [p for p in (self.trials_root, self.mirror_root, self.models_root,
                            self.refit_root) if p is not None]
