"""What a study stores besides Optuna's own fields: its name and its user attribute keys.

Every module reads and writes these keys through the constants below, never as bare strings.
"""

from __future__ import annotations

from ..storage.layout import default_study_name

__all__ = [
    "ATTEMPT",
    "BEST_EPOCH",
    "CONTINUES",
    "CONTINUES_FROM_EPOCH",
    "CREATED_AT",
    "DATA",
    "DEVICE",
    "ERROR",
    "FINGERPRINT",
    "FIXED_PARAMS",
    "FOLD_F1",
    "FOLD_F1_MEAN",
    "FOLD_F1_STD",
    "INTERRUPTED",
    "LEARNED_NOTHING",
    "LEARNED_NOTHING_BELOW",
    "MLFLOW_PARENT_RUN_ID",
    "MLFLOW_RUN_ID",
    "NOT_IN_MACRO",
    "NOT_IN_MACRO_NOTE",
    "OOM",
    "PAUSED_AT",
    "PBT_EXPLOITED",
    "PBT_GENERATION",
    "PBT_MEMBER",
    "PBT_POPULATION",
    "REFIT",
    "RESUMED_FROM_EPOCH",
    "RESUMED_FROM_FOLD",
    "RESUMED_FROM_STEP",
    "RETRY_OF",
    "RETRY_ROOT",
    "RUNG_PASSED",
    "RUNG_SCORES",
    "RUN_INPUTS",
    "SEED_ROOT",
    "SELECTED_BACKBONE",
    "MAX_TRIALS",
    "SESSIONS",
    "STOPPED_AT_RUNG",
    "TEST_SCORES",
    "VAL_PER_ENTITY_F1",
    "VAL_PRECISION",
    "VAL_RECALL",
    "WORKER",
    "retry_root",
    "study_name",
]

# Study attributes
FINGERPRINT = "fingerprint"  # search space, objective and dataset the study was made for
CREATED_AT = "created_at"  # "%Y-%m-%dT%H:%M:%S"; names the kept-models folder
SESSIONS = "sessions"  # how many sessions opened the study
#: the budget (``max_trials``) of the last session, which a notebook or ``--max-trials`` may
#: have raised above the config's: ``status`` compares against it
MAX_TRIALS = "max_trials"
MLFLOW_PARENT_RUN_ID = "mlflow_parent_run_id"
DATA = "data"  # the data summary of the last session: split sizes, caps, windows, reports
TEST_SCORES = "test_scores"  # trial number (str) -> test scores of its kept model
REFIT = "refit"  # the finished refit: trial, params, test scores, exported folder
SELECTED_BACKBONE = "selected_backbone"  # selection.json: the model select chose
#: what ``run`` was given besides its configs (``--dataset``/``--train``/``--validation``/
#: ``--test`` as absolute paths, ``--devices``): reused until given again (``study.inputs``)
RUN_INPUTS = "run_inputs"

# Trial attributes: the retry chain
INTERRUPTED = "interrupted"  # on the dead attempt
RETRY_OF = "retry_of"  # the attempt this one continues
RETRY_ROOT = "retry_root"  # the first attempt; its checkpoint folder serves the chain
ATTEMPT = "attempt"
#: a space of fixed values only: Optuna records no params, so the values drawn are kept here
#: (a dead trial with neither sampled params nor these never drew any; issue 23)
FIXED_PARAMS = "fixed_params"
RESUMED_FROM_EPOCH = "resumed_from_epoch"
RESUMED_FROM_STEP = "resumed_from_step"
RESUMED_FROM_FOLD = "resumed_from_fold"  # k-fold: the fold the retry continued
# Trial attributes: the scheduler (``scheduler.type: hyperband``, ``study.halving``). A trial
# paused at a rung is COMPLETE with its value so far and PAUSED_AT; a promotion is a new trial
# with CONTINUES (the paused trial) and RETRY_ROOT (the chain's checkpoint folder) that starts
# from the paused trial's checkpoint at epoch CONTINUES_FROM_EPOCH.
RUNG_SCORES = "rungs"  # rung (epochs, as a string) -> the trial's value when it reached it
#: the highest rung the chain was let through: a retry replaying its epochs does not decide
#: that rung (or any below) again
RUNG_PASSED = "rung_passed"
PAUSED_AT = "paused_at"  # the rung (epochs) the trial stopped at, waiting for a promotion
#: (a study attribute) the paused trials a complete sweep ended without promoting
STOPPED_AT_RUNG = "stopped_at_rung"
CONTINUES = "continues"  # the paused trial this one continues
CONTINUES_FROM_EPOCH = "continues_from_epoch"  # where it starts: its parent's rung
# Trial attributes: population-based training (``scheduler.type: pbt``, ``study.population``).
# A member trains in segments of ``interval`` epochs, one trial each: a segment ends PAUSED_AT
# the generation's last epoch with its score there in RUNG_SCORES; the next segment is a new
# trial with CONTINUES (the segment whose checkpoint it starts from: its own member's, or a
# better member's when it exploits) and SEED_ROOT (that segment's checkpoint folder).
PBT_MEMBER = "pbt_member"  # the member (the number of its first trial) a segment trains
PBT_GENERATION = "pbt_generation"  # the segment's generation (0: drawn by the sampler)
PBT_EXPLOITED = "pbt_exploited"  # the member whose checkpoint and params it took (exploit)
SEED_ROOT = "seed_root"  # the folder (retry root) of the checkpoint it starts from
#: (a study attribute) the population size the study was started with: fixed for good
PBT_POPULATION = "pbt_population"
# Trial attributes: results and bookkeeping
ERROR = "error"
OOM = "oom"  # the trial ran out of device memory
BEST_EPOCH = "best_epoch"
FOLD_F1 = "fold_f1"  # k-fold: best F1 of each finished fold, in fold order
FOLD_F1_MEAN = "fold_f1_mean"  # k-fold: their mean (the trial's value)
FOLD_F1_STD = "fold_f1_std"  # k-fold: their population standard deviation
VAL_PER_ENTITY_F1 = "val_per_entity_f1"
VAL_PRECISION = "val_precision"
VAL_RECALL = "val_recall"
WORKER = "worker"
# The trial's best validation F1 (strict micro; the mean over folds with k-fold) stayed below
# LEARNED_NOTHING_BELOW: random or all-O predictions land there (a random tiny model scores
# about 0.015). Set (True) only on such trials; they still complete with their value.
LEARNED_NOTHING = "learned_nothing"
LEARNED_NOTHING_BELOW = 0.05
# Scores: a fixed entity_types entry without a training example is left out of macro F1; the
# scores list such types under NOT_IN_MACRO and the per-type tables mark their rows so.
NOT_IN_MACRO = "not_in_macro"
NOT_IN_MACRO_NOTE = "no training examples: not in macro F1"
DEVICE = "device"  # the device of a trial run beside others (devices)
MLFLOW_RUN_ID = "mlflow_run_id"


def study_name(backbone: str, configured: str | None = None) -> str:
    """The study's name: ``configured`` (``study_name`` in the config) or ``hpo_<backbone>``."""
    return default_study_name(backbone, configured)


def retry_root(trial: object) -> int:
    """The first attempt of ``trial``'s retry chain (its own number for a first attempt)."""
    return int(trial.user_attrs.get(RETRY_ROOT, trial.number))  # type: ignore[attr-defined]
