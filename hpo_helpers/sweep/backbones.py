"""Several backbones, one study each, in sequence.

``backbones: [a, b]`` in the HPO config (or ``--backbone a,b``) runs
:func:`~hpo_helpers.sweep.run.run_sweep` for each backbone in order. A restart skips the
studies that already have
``max_trials`` COMPLETE trials (read through :func:`~hpo_helpers.study.status.status`, without
loading data or models) and continues the interrupted one from its checkpoints; an
interrupted study stops the list there, so the next run resumes it first.
"""

from __future__ import annotations

import logging
from typing import Any

from ..settings.config import Configs
from ..study.status import status
from .events import SweepOutcome

__all__ = ["backbone_list", "run_backbones"]

logger = logging.getLogger(__name__)


def backbone_list(cfg: Configs, requested: str | None = None) -> list[str]:
    """The backbones to sweep: ``requested`` (comma-separated), else the config's
    ``backbones``, else its ``backbone``."""
    if requested:
        return [b.strip() for b in requested.split(",") if b.strip()]
    return list(cfg.hpo.backbones) or [cfg.hpo.backbone]


def run_backbones(cfg: Configs, backbones: list[str], **kwargs: Any) -> list[SweepOutcome]:
    """Run (or resume) one study per backbone in order; ``kwargs`` go to ``run_sweep``.

    Returns the outcomes of the studies run this time (skipped finished ones excluded); the
    last one is interrupted when the list stopped early."""
    from .run import run_sweep

    outcomes = []
    for i, backbone in enumerate(backbones, 1):
        info = status(cfg, backbone=backbone, output_dir=kwargs.get("output_dir"),
                      runtime=kwargs.get("runtime"), storage_url=kwargs.get("storage_url"),
                      durable_url=kwargs.get("durable_url"))
        if info["exists"] and info["n_complete"] >= cfg.hpo.max_trials:
            logger.info("Backbone %d/%d %s: study %s already has %d/%d trials; skipped", i,
                        len(backbones), backbone, info["study_name"], info["n_complete"],
                        cfg.hpo.max_trials)
            continue
        logger.info("Backbone %d/%d %s: %s study %s", i, len(backbones), backbone,
                    "resuming" if info["exists"] else "starting", info["study_name"])
        outcome = run_sweep(cfg, backbone=backbone, **kwargs)
        outcomes.append(outcome)
        if outcome.interrupted:
            break
    return outcomes
