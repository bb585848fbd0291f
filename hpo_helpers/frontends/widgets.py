"""The resume panel of notebook 02 (ipywidgets).

It shows where the study lives, what a run will do (new study, resume N of M, all done), the
stale trials a dead session left, the best value so far, a progress bar over trials and one
over the current trial's steps with elapsed and estimated time left (trial and sweep, from the
measured step times), a live plot of F1 per trial with the best-so-far line, and four buttons:
Resume, Start fresh (archives the old study; nothing is deleted), Stop after this trial, and
Stop now (checkpoints the exact step; the trial is recorded interrupted and re-queued, as
SIGINT does). A button starts the sweep in a background thread so that the notebook stays
responsive (the kernel must be idle to receive button clicks); the kernel's interrupt does not
reach that thread, which the panel says while it runs.
Every update is also logged as a plain line, which is what headless runs (papermill) show.

From the sweep's thread the panel only sets widget values and ``Output.outputs`` (the way
ipywidgets documents for background threads): the live plot, the summary and the sweep's log
lines stay in the panel instead of landing under whichever cell ran last. Running the panel's
cell again while its sweep runs attaches the new panel to that sweep (:mod:`.running`).
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
import json
import logging
import threading
import time
from pathlib import Path
from typing import Any

from ..core.runtime import Runtime, detect
from ..settings.config import load_configs
from ..study.status import learned_nothing_warning, plan, storage_url_for, study_paths
from ..study.store import archive_study
from ..sweep.events import SweepEvents, SweepOutcome
from ..tracking.setup import TrackingSetup
from .running import RunningSweep, SweepLog, attach_or_none, register

__all__ = ["ResumePanel", "plan"]

logger = logging.getLogger(__name__)

#: The note shown while the sweep runs in the background (the README said it alone before).
INTERRUPT_NOTE = ("&#9432; The sweep runs in a background thread so these buttons stay live: "
                  "the kernel's interrupt (&#9632;) does <b>not</b> stop it. Use <b>Stop after "
                  "this trial</b> or <b>Stop now</b>.")
#: Log lines a panel keeps (the oldest go first).
LOG_LINES = 200


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
        self._sweep: RunningSweep | None = None
        self._clock = _Clock()
        self._scores: list[tuple[int, float]] = []
        self.where = w.HTML()
        self.action = w.HTML()
        self.stale = w.HTML()
        self.best = w.HTML()
        self.warning = w.HTML()  # the best trial learned nothing (issue 21)
        self.trials = w.IntProgress(value=0, min=0, max=self.cfg.hpo.max_trials,
                                    description="Trials", bar_style="info")
        self.steps = w.IntProgress(value=0, min=0, max=1, description="Trial steps")
        # With several trial workers (train.yaml `devices`), one row per running trial.
        self.running_rows = w.VBox([])
        self._rows: dict[int, Any] = {}
        self._rows_lock = threading.Lock()
        self.times = w.HTML()
        self.plot = w.Output()
        self.message = w.HTML()
        self.note = w.HTML()  # while the sweep runs in the background: interrupt is no stop
        self.log = w.Output(layout={"max_height": "12em", "overflow": "auto"})
        self._log_lock = threading.Lock()
        self.resume_button = w.Button(description="Resume", button_style="success",
                                      icon="play")
        self.fresh_button = w.Button(description="Start fresh", button_style="warning",
                                     icon="refresh")
        self.stop_button = w.Button(description="Stop after this trial", icon="stop",
                                    disabled=True)
        self.resume_button.on_click(lambda _: self.resume())
        self.fresh_button.on_click(lambda _: self.start_fresh())
        self.stop_now_button = w.Button(description="Stop now", icon="hand-paper-o",
                                        button_style="danger", disabled=True)
        self.stop_button.on_click(lambda _: self.stop_after_trial())
        self.stop_now_button.on_click(lambda _: self.stop_now())
        self.widget = w.VBox([
            self.where, self.action, self.stale, self.best, self.warning, self.trials,
            self.steps,
            self.running_rows, self.times,
            w.HBox([self.resume_button, self.fresh_button, self.stop_button,
                    self.stop_now_button]), self.note, self.message, self.plot, self.log,
        ])
        self.refresh()
        running = attach_or_none(self.key)
        if running is not None:  # the cell ran again while this study's sweep runs
            self._attach(running)

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
        self._show_warning(learned_nothing_warning(info["best_trial"], info["best_value"])
                           if info["best_learned_nothing"] else None)
        done = info.get("configurations_started", info["n_complete"])  # scheduler hyperband
        self.trials.max = max(1, info["max_trials"])
        self.trials.value = min(done, self.trials.max)
        self.trials.description = f"Trials {done}/{info['max_trials']}"
        self._log(f"{info['action']}; best so far: {info['best_value']}")
        return info

    @property
    def key(self) -> str:
        """The study this panel shows, as the running-sweep registry knows it."""
        return f"{self.info['durable_path']}|{self.info['study_name']}"

    def _show_best(self, value: float | None, params: dict[str, Any] | None) -> None:
        self.best.value = "No finished trial yet" if value is None else (
            f"<b>Best F1 so far:</b> {value:.4f} &nbsp; <code>"
            f"{json.dumps(params, sort_keys=True)}</code>")

    def _show_warning(self, text: str | None) -> None:
        """A visible warning box when the study's best trial learned nothing."""
        if text is None:
            self.warning.value = ""
            return
        shown = ('<div style="border-left: 4px solid #c0392b; padding: 4px 8px; '
                 f'background: #fdecea">&#9888; <b>{html.escape(text)}</b></div>')
        if shown != self.warning.value:  # logged once, for headless runs
            self.warning.value = shown
            logger.warning("[panel] %s", text)

    def _log(self, text: str) -> None:
        self.message.value = text
        logger.info("[panel] %s", text)

    @property
    def running(self) -> bool:
        return self._sweep is not None and self._sweep.alive

    def append_log(self, line: str) -> None:
        """Add a log line to the panel's log area (any thread; the last LOG_LINES kept)."""
        with self._log_lock:
            kept = tuple(self.log.outputs)[-(LOG_LINES - 1):]
            self.log.outputs = (*kept, {"output_type": "stream", "name": "stdout",
                                        "text": line})

    def _attach(self, sweep: RunningSweep) -> None:
        """Show ``sweep`` (already running) here: its progress, and buttons that stop it."""
        self._sweep = sweep
        sweep.add(self)
        self._buttons(running=True)
        self.note.value = INTERRUPT_NOTE
        self._log("Attached to the sweep of this study already running in this kernel (started "
                  "by an earlier run of this cell): the Stop buttons here stop it")

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
        """Where the study stands now, as a one-column table. While a sweep runs in the
        background, an output area showing it that is refreshed when the sweep ends."""
        if not self.running:
            return self._summary_table()
        import ipywidgets as w

        self._summary_out = w.Output()
        self._show_summary()
        return self._summary_out

    def _summary_table(self) -> Any:
        import pandas as pd

        info = self.refresh()
        keys = ("study_name", "action", "n_complete", "max_trials", "n_pruned", "n_failed",
                "n_interrupted", "n_learned_nothing", "best_value", "best_learned_nothing",
                "best_params", "durable_path")
        return pd.DataFrame({"value": [str(info.get(k)) for k in keys]}, index=list(keys))

    def _show_summary(self) -> None:
        out = getattr(self, "_summary_out", None)
        if out is None:
            return
        # replaced whole from any thread; ``with out:`` from the sweep's thread would put the
        # table under whichever cell ran last
        out.outputs = (_display_data(self._summary_table()),)

    def resume(self, *, block: bool = False) -> None:
        """Run or resume the sweep (in a background thread unless ``block``)."""
        if self.running:
            self._log("The sweep is already running")
            return
        info = self.refresh()
        running = attach_or_none(self.key)
        if running is not None:  # another panel of this study started it
            self._attach(running)
            return
        self._clock = _Clock()
        self.error = None
        sweep = RunningSweep(self.key, background=not block)
        sweep.add(self)
        self._sweep = sweep
        self._log(("Resuming: " if info["exists"] else "Starting: ") + info["action"])
        self._buttons(running=True)
        if block:  # headless: the kernel's own thread, plain log lines
            self._run(sweep)
            if self.error is not None:
                raise self.error
            return
        self.note.value = INTERRUPT_NOTE
        if not register(sweep, lambda: self._run(sweep)):
            self._attach(attach_or_none(self.key) or sweep)

    def _buttons(self, *, running: bool) -> None:
        self.resume_button.disabled = self.fresh_button.disabled = running
        self.stop_button.disabled = self.stop_now_button.disabled = not running

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
        if self._sweep is None:
            self._log("No sweep is running")
            return
        self._sweep.stop_after.set()
        self._sweep.each(lambda p: setattr(p.stop_button, "disabled", True))
        self._log("Will stop after the running trial")

    def stop_now(self) -> None:
        """Stop at the next step: checkpoint it, record the trial interrupted and re-queue it
        (what SIGINT does in a blocking run); the next Resume continues from that step."""
        if self._sweep is None:
            self._log("No sweep is running")
            return
        self._sweep.stop_now.request()
        self._sweep.each(_stopping)
        self._log("Stopping now: saving a checkpoint at the next step")

    def wait(self, timeout: float | None = None) -> SweepOutcome | None:
        """Block until a background sweep ends; returns its outcome."""
        thread = self._sweep.thread if self._sweep is not None else None
        if thread is not None:
            thread.join(timeout)
        return self.outcome

    def _run(self, sweep: RunningSweep) -> None:
        from ..sweep.run import run_sweep  # the one writer: only the Run button needs it

        error: BaseException | None = None
        try:
            # headless (blocking): the kernel's own thread, whose log lines stay plain
            with SweepLog(sweep) if sweep.draws_progress else contextlib.nullcontext():
                run_sweep(self.cfg, backbone=self.backbone, dataset_path=self.dataset_path,
                          output_dir=self.output_dir, runtime=self.runtime,
                          tracking=self.tracking, events=sweep,
                          stop_after_trial=sweep.stop_after, storage_url=self.storage_url,
                          stop=sweep.stop_now)
        except BaseException as exc:  # noqa: BLE001 - shown in the panel, re-raised if blocking
            error = exc
            logger.exception("Sweep failed")
        finally:
            def ended(panel: ResumePanel) -> None:
                panel.error = error
                if error is not None:
                    panel._log(f"Sweep stopped with an error: {error}")
                panel._buttons(running=False)
                panel.note.value = ""

            sweep.each(ended)

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
        import ipywidgets as w

        with self._rows_lock:
            self._rows[number] = w.IntProgress(value=0, min=0, max=1,
                                               description=f"Trial {number}")
            self._show_rows()
        self._clock.trial_started()
        self.steps.value = 0
        self.steps.description = f"Trial {number}"
        self._log(f"Trial {number} started" + (f" (continues trial {retry_of})"
                                               if retry_of is not None else ""))

    def step(self, done: int, total: int) -> None:
        if self.steps.max != total:
            self.steps.max = max(1, total)
        self.steps.value = min(done, self.steps.max)
        self._clock.step(done, total)
        self.times.value = self._clock.text(self.trials.value, self.trials.max)

    def trial_step(self, number: int, done: int, total: int) -> None:
        bar = self._rows.get(number)
        if bar is not None:
            bar.max = max(1, total)
            bar.value = min(done, bar.max)
        self.step(done, total)

    def _show_rows(self) -> None:
        """The per-trial rows, shown only while more than one trial runs (one is ``steps``)."""
        self.running_rows.children = tuple(self._rows.values()) if len(self._rows) > 1 else ()

    def trial_finished(self, number: int, state: str, value: float | None, n_complete: int,
                       best_value: float | None) -> None:
        with self._rows_lock:
            self._rows.pop(number, None)
            self._show_rows()
        self.trials.value = min(n_complete, self.trials.max)
        self.trials.description = f"Trials {n_complete}/{self.trials.max}"
        self._clock.trial_finished(state == "COMPLETE")
        self.times.value = self._clock.text(n_complete, self.trials.max)
        if best_value is not None:
            self.best.value = f"<b>Best F1 so far:</b> {best_value:.4f}"
        if value is not None:
            self._scores.append((number, value))
            self._draw()
        self._log(f"Trial {number} {state.lower()}" + (f": F1 {value:.4f}" if value is not None
                                                         else "") +
                  f"; {n_complete}/{self.trials.max} complete")

    def sweep_finished(self, outcome: SweepOutcome) -> None:
        self.outcome = outcome  # every attached panel hears it (RunningSweep)
        text = outcome.stop_reason or "Sweep ended"
        self.action.value = f"<b>{text}</b>"
        self._log(text)
        self._show_warning(outcome.learned_nothing)  # None clears one a better trial ended
        self.times.value = self._clock.text(self.trials.value, self.trials.max, ended=True)
        if self.running or getattr(self, "_summary_out", None) is not None:
            self._show_summary()  # the summary cell showed the state before the sweep

    def _draw(self) -> None:
        """F1 per finished trial and the best-so-far line (matplotlib, redrawn per trial).

        A bare ``Figure``, never pyplot: a pyplot figure made in the sweep's thread is shown
        by the inline backend at the end of whichever cell runs then."""
        try:
            from matplotlib.figure import Figure
        except ImportError:  # plots are optional: the text still tells everything
            return
        numbers = [n for n, _ in self._scores]
        values = [v for _, v in self._scores]
        best = [max(values[: i + 1]) for i in range(len(values))]
        fig = Figure(figsize=(5, 2.4))
        ax = fig.subplots()
        ax.plot(numbers, values, "o", label="F1")
        ax.step(numbers, best, where="post", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel("validation F1")
        ax.legend(loc="lower right")
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format="png")
        # one assignment from the sweep's thread, never ``with self.plot:`` (see the docstring)
        self.plot.outputs = ({"output_type": "display_data", "metadata": {},
                              "data": {"image/png": base64.b64encode(png.getvalue()).decode(),
                                       "text/plain": f"F1 of {len(values)} trials"}},)


def _stopping(panel: ResumePanel) -> None:
    """Buttons of a panel whose sweep was told to stop now: nothing to click until it ends."""
    for button in (panel.stop_button, panel.stop_now_button, panel.resume_button,
                   panel.fresh_button):
        button.disabled = True


def _display_data(obj: Any) -> dict[str, Any]:
    """``obj`` as a display_data output, formatted as IPython would display it."""
    from IPython.core.interactiveshell import InteractiveShell

    formatter = InteractiveShell.instance().display_formatter
    if formatter is None:
        return {"output_type": "display_data", "data": {"text/plain": repr(obj)}, "metadata": {}}
    data, metadata = formatter.format(obj)
    return {"output_type": "display_data", "data": data, "metadata": metadata}


def _clock_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class _Clock:
    """Elapsed and estimated time left, from the measured step times of this session."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.trial_start: float | None = None
        self.done = self.total = 0
        self.first_step: tuple[int, float] | None = None
        self.trial_seconds: list[float] = []

    def trial_started(self) -> None:
        self.trial_start = time.monotonic()
        self.done = self.total = 0
        self.first_step = None

    def step(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        if self.first_step is None:  # a resumed trial starts mid-way: time from here
            self.first_step = (done, time.monotonic())

    def trial_finished(self, complete: bool) -> None:
        if complete and self.trial_start is not None:
            self.trial_seconds.append(time.monotonic() - self.trial_start)
        self.trial_start = None

    def trial_left(self) -> float | None:
        if self.first_step is None or self.done <= self.first_step[0] or not self.total:
            return None
        per_step = (time.monotonic() - self.first_step[1]) / (self.done - self.first_step[0])
        return per_step * (self.total - self.done)

    def text(self, n_complete: int, max_trials: int, *, ended: bool = False) -> str:
        now = time.monotonic()
        parts = [f"<b>Sweep:</b> elapsed {_clock_text(now - self.start)}"]
        if ended:
            return parts[0] + " (ended)"
        running = self.trial_start is not None
        left_now = self.trial_left() if running else 0.0
        per_trial = (sum(self.trial_seconds) / len(self.trial_seconds)
                     if self.trial_seconds else None)
        if per_trial is None and running and self.total and self.first_step is not None \
                and left_now is not None:
            per_trial = (now - self.trial_start) + left_now  # type: ignore[operator]
        rest = max(0, max_trials - n_complete - (1 if running else 0))
        sweep_left = None if per_trial is None or left_now is None else \
            left_now + rest * per_trial
        parts.append(f"left ~{_clock_text(sweep_left)}")
        if running:
            parts.append(f"&nbsp; <b>Trial:</b> elapsed "
                         f"{_clock_text(now - self.trial_start)}, "  # type: ignore[operator]
                         f"left ~{_clock_text(left_now)}")
        return " ".join(parts)
