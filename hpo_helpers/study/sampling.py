"""The sampler and pruner a study is opened with, built from the HPO config.

With ``scheduler.type: hyperband`` the pruner is Optuna's no-op: our scheduler
(:mod:`~hpo_helpers.study.halving`) stops trials at its rungs and continues them later."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..settings.config import HpoConfig

if TYPE_CHECKING:
    import optuna

__all__ = ["sampler_and_pruner"]


def sampler_and_pruner(hpo: HpoConfig) -> tuple[optuna.samplers.BaseSampler,
                                                optuna.pruners.BasePruner]:
    import optuna

    sampler: optuna.samplers.BaseSampler
    pruner: optuna.pruners.BasePruner
    if hpo.sampler.type == "tpe":
        sampler = optuna.samplers.TPESampler(seed=hpo.sampler.seed,
                                             n_startup_trials=hpo.sampler.n_startup_trials)
    else:
        sampler = optuna.samplers.RandomSampler(seed=hpo.sampler.seed)
    if hpo.scheduler.type in ("hyperband", "pbt"):
        pruner = optuna.pruners.NopPruner()
    elif hpo.pruner.type == "hyperband":
        epochs = next((p for p in hpo.search_space if p.name == "epochs"), None)
        top = int(epochs.value) if epochs is not None and epochs.type == "fixed" else "auto"
        pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=top,
                                                reduction_factor=3)
    elif hpo.pruner.type == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=hpo.pruner.n_startup_trials,
                                             n_warmup_steps=hpo.pruner.n_warmup_steps)
    else:
        pruner = optuna.pruners.NopPruner()
    return sampler, pruner
