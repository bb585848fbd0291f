"""Real training whose validation F1 is scripted: a scheduler test needs to know which trial
ranks where. Training, checkpoints, resumes and the study are all real; only the score that
evaluation reports is replaced by a value chosen from the trial's learning rate (the same at
every epoch), so the rung decisions are known in advance.

Used in-process (``install``) and by a driver script in a subprocess that the tests SIGKILL.
"""

from __future__ import annotations

from typing import Any

DRIVER = """
import logging, sys
logging.basicConfig(level=logging.INFO)
sys.path.insert(0, {repo!r})
from tests.scripted_scores import install
from hpo_helpers import load_configs, run_sweep
fit = install({scores!r})
cfg = load_configs({config_dir!r}, {hpo!r})
run_sweep(cfg, output_dir={out!r}, fit=fit, storage_url={storage!r})
"""


def install(scores: dict[Any, float]) -> Any:
    """Patch evaluation to report ``scores[learning_rate]`` (or, given ``{"per_lr": a}``,
    ``a * learning_rate``: PBT explores rates no table lists); returns the ``fit`` to pass to
    ``run_sweep``."""
    from hpo_helpers.training import train

    real_evaluate, real_fit = train.evaluate, train.fit
    current: dict[str, float] = {}

    def evaluate(*args: Any, **kwargs: Any) -> dict[str, Any]:
        metrics = real_evaluate(*args, **kwargs)
        metrics["f1"] = metrics["macro_f1"] = current["score"]
        return metrics

    def fit(**kwargs: Any) -> Any:
        lr = float(kwargs["params"]["learning_rate"])
        current["score"] = (min(1.0, lr * scores["per_lr"]) if "per_lr" in scores else
                            next(v for k, v in scores.items() if abs(k - lr) < 1e-12))
        return real_fit(**kwargs)

    train.evaluate = evaluate  # type: ignore[assignment]
    return fit
