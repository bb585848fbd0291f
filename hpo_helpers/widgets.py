"""The resume panel of notebook 02 (ipywidgets).

It shows where the study lives, what a run will do (new study, resume N of M, all done), the
stale trials a dead session left, the best value so far, a progress bar over trials and one
over the current trial's steps, and three buttons: Resume, Start fresh (archives the old study;
nothing is deleted) and Stop after this trial. A button starts the sweep in a background thread
so that the notebook stays responsive (the kernel must be idle to receive button clicks).
Every update is also logged as a plain line, which is what headless runs (papermill) show.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from .config import load_configs
from .events import SweepEvents, SweepOutcome
from .mlflow_setup import TrackingSetup
from .runtime import Runtime, detect
from .status import plan, storage_url_for, study_paths
from .study import archive_study

__all__ = ["ResumePanel", "plan"]

logger = logging.getLogger(__name__)


class ResumePanel(SweepEvents):
    """Resume panel for one study; ``display()`` shows it, the buttons drive the sweep."""

    def __init__(self, *, config_dir: Path | str, hpo_config: Any, backbone: str | None = None,
                 output_dir: Path | str | None = None, dataset_path: Path | str | None = None,
                 max_trials: int | None = None, tracking: TrackingSetup | None = None,
                 runtime: Runtime | None = None, storage_url: str | None = None) -> None:
        import dataclasses

        import ipywidgets as w

        self.cfg = load_configs(config_dir, hpo_config)
        if max_trials is not None:
            self.cfg = dataclasses.replace(
                self.cfg, hpo=dataclasses.replace(self.cfg.hpo, max_trials=int(max_trials)))
        self.backbone = backbone
        self.output_dir = output_dir
        self.dataset_path = dataset_path
        self.tracking = tracking
        self.storage_url = storage_url
        self.runtime = runtime or detect()
        self.outcome: SweepOutcome | None = None
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._stop_after = threading.Event()
        self.where = w.HTML()
        self.action = w.HTML()
        self.stale = w.HTML()
        self.best = w.HTML()
        self.trials = w.IntProgress(value=0, min=0, max=self.cfg.hpo.max_trials,
                                    description="Trials", bar_style="info")
        self.steps = w.IntProgress(value=0, min=0, max=1, description="Trial steps")
        self.message = w.HTML()
        self.resume_button = w.Button(description="Resume", button_style="success",
                                      icon="play")
        self.fresh_button = w.Button(description="Start fresh", button_style="warning",
                                     icon="refresh")
        self.stop_button = w.Button(description="Stop after this trial", icon="stop",
                                    disabled=True)
        self.resume_button.on_click(lambda _: self.resume())
        self.fresh_button.on_click(lambda _: self.start_fresh())
        self.stop_button.on_click(lambda _: self.stop_after_trial())
        self.widget = w.VBox([
            self.where, self.action, self.stale, self.best, self.trials, self.steps,
            w.HBox([self.resume_button, self.fresh_button, self.stop_button]), self.message,
        ])
        self.refresh()

    # -- state ---------------------------------------------------------------------------

    def refresh(self) -> dict[str, Any]:
        """Re-read the study and update the texts (safe while a sweep runs)."""
        info = plan(self.cfg, backbone=self.backbone, output_dir=self.output_dir,
                    runtime=self.runtime, storage_url=self.storage_url)
        self.info = info
        self.where.value = (f"<b>Platform:</b> {self.runtime.kind} &nbsp; <b>durable:</b> "
                            f"<code>{info['durable_path']}</code> &nbsp; <b>working:</b> "
                            f"<code>{info['working_path']}</code>")
        self.action.value = f"<b>{info['action']}</b>"
        self.stale.value = (f"Stale trials found: {info['stale']} (marked interrupted and "
                            "continued from their checkpoints)" if info["stale"] else
                            "No stale trials")
        self._show_best(info["best_value"], info["best_params"])
        self.trials.max = max(1, info["max_trials"])
        self.trials.value = min(info["n_complete"], self.trials.max)
        self.trials.description = f"Trials {info['n_complete']}/{info['max_trials']}"
        self._log(f"{info['action']}; best so far: {info['best_value']}")
        return info

    def _show_best(self, value: float | None, params: dict[str, Any] | None) -> None:
        self.best.value = "No finished trial yet" if value is None else (
            f"<b>Best F1 so far:</b> {value:.4f} &nbsp; <code>"
            f"{json.dumps(params, sort_keys=True)}</code>")

    def _log(self, text: str) -> None:
        self.message.value = text
        logger.info("[panel] %s", text)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- actions -------------------------------------------------------------------------

    def display(self, *, auto_start: bool = False, start_fresh: bool = False) -> None:
        """Show the panel. ``auto_start`` runs the sweep now in this thread, as a headless run
        (papermill) needs; with ``start_fresh`` the old study is archived first."""
        from IPython.display import display

        display(self.widget)
        if auto_start and start_fresh:
            self.start_fresh(block=True)
        elif auto_start:
            self.resume(block=True)

    def summary(self) -> Any:
        """Where the study stands now, as a one-column table."""
        import pandas as pd

        info = self.refresh()
        keys = ("study_name", "action", "n_complete", "max_trials", "n_pruned", "n_failed",
                "n_interrupted", "best_value", "best_params", "durable_path")
        return pd.DataFrame({"value": [str(info.get(k)) for k in keys]}, index=list(keys))

    def resume(self, *, block: bool = False) -> None:
        """Run or resume the sweep (in a background thread unless ``block``)."""
        if self.running:
            self._log("The sweep is already running")
            return
        self._stop_after.clear()
        self.error = None
        info = self.refresh()
        self._log(("Resuming: " if info["exists"] else "Starting: ") + info["action"])
        self.resume_button.disabled = self.fresh_button.disabled = True
        self.stop_button.disabled = False
        if block:
            self._run()
            if self.error is not None:
                raise self.error
        else:
            self._thread = threading.Thread(target=self._run, name="hpo-sweep", daemon=True)
            self._thread.start()

    def start_fresh(self, *, block: bool = False) -> list[Path]:
        """Archive the current study (renamed aside, never deleted) and start a new one."""
        if self.running:
            self._log("Stop the running sweep before starting fresh")
            return []
        moved: list[Path] = []
        if storage_url_for(self.cfg.hpo, self.storage_url):
            self._log("Start fresh is not available for a shared study: set a new study_name")
            return []
        if self.cfg.hpo.checkpoint.enabled:
            paths = study_paths(self.cfg, backbone=self.backbone, output_dir=self.output_dir,
                                runtime=self.runtime)
            moved = archive_study(paths, self.info["study_name"])
        self._log("Archived the old study: " + (", ".join(p.name for p in moved) or "nothing"))
        self.resume(block=block)
        return moved

    def stop_after_trial(self) -> None:
        """Ask the sweep to stop once the running trial finishes (graceful)."""
        self._stop_after.set()
        self.stop_button.disabled = True
        self._log("Will stop after the running trial")

    def wait(self, timeout: float | None = None) -> SweepOutcome | None:
        """Block until a background sweep ends; returns its outcome."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.outcome

    def _run(self) -> None:
        from .sweep import run_sweep  # the one writer: only the Run button needs it

        try:
            self.outcome = run_sweep(self.cfg, backbone=self.backbone,
                                     dataset_path=self.dataset_path, output_dir=self.output_dir,
                                     runtime=self.runtime, tracking=self.tracking, events=self,
                                     stop_after_trial=self._stop_after,
                                     storage_url=self.storage_url)
        except BaseException as exc:  # noqa: BLE001 - shown in the panel, re-raised if blocking
            self.error = exc
            self._log(f"Sweep stopped with an error: {exc}")
            logger.exception("Sweep failed")
        finally:
            self.resume_button.disabled = self.fresh_button.disabled = False
            self.stop_button.disabled = True

    # -- SweepEvents -----------------------------------------------------------------------

    def sweep_started(self, outcome: SweepOutcome, n_complete: int, max_trials: int) -> None:
        self.trials.max = max(1, max_trials)
        self.trials.value = min(n_complete, max_trials)
        self.trials.description = f"Trials {n_complete}/{max_trials}"
        if outcome.recovered:
            self.stale.value = (f"Stale trials found: {len(outcome.recovered)} "
                                f"({', '.join(map(str, outcome.recovered))}): marked "
                                "interrupted and re-queued")
        self._log(f"{'Resumed' if outcome.resumed else 'Created'} study {outcome.study_name}: "
                  f"{n_complete}/{max_trials} trials complete")

    def trial_started(self, number: int, params: dict[str, Any], retry_of: int | None) -> None:
        self.steps.value = 0
        self.steps.description = f"Trial {number}"
        self._log(f"Trial {number} started" + (f" (continues trial {retry_of})"
                                               if retry_of is not None else ""))

    def step(self, done: int, total: int) -> None:
        if self.steps.max != total:
            self.steps.max = max(1, total)
        self.steps.value = min(done, self.steps.max)

    def trial_finished(self, number: int, state: str, value: float | None, n_complete: int,
                       best_value: float | None) -> None:
        self.trials.value = min(n_complete, self.trials.max)
        self.trials.description = f"Trials {n_complete}/{self.trials.max}"
        if best_value is not None:
            self.best.value = f"<b>Best F1 so far:</b> {best_value:.4f}"
        self._log(f"Trial {number} {state.lower()}" + (f": F1 {value:.4f}" if value is not None
                                                         else "") +
                  f"; {n_complete}/{self.trials.max} complete")

    def sweep_finished(self, outcome: SweepOutcome) -> None:
        self.outcome = outcome
        text = outcome.stop_reason or "Sweep ended"
        self.action.value = f"<b>{text}</b>"
        self._log(text)
