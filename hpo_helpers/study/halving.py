"""Asynchronous successive halving with continuation (``scheduler.type: hyperband``).

Every configuration trains with the same learning-rate schedule, the one of the search space's
fixed ``epochs`` (the top rung), and stops at each rung below it (``min_epochs`` times powers of
``reduction_factor``) unless it ranks well there. Optuna's pruners throw a stopped trial's
training away; here a stopped trial waits with its checkpoint and is *promoted* later, when
enough trials reached its rung below it: it continues from that checkpoint (weights, optimizer,
scheduler and random state) instead of training again. With ``brackets`` > 1, configuration
``c`` belongs to bracket ``c % brackets``, whose first rung is ``min_epochs * factor**bracket``
(Hyperband's brackets, run side by side; ``c`` is the number of the configuration's first
trial); trials compete only within their bracket.

Every decision is made from the study alone (user attributes of its trials), so any worker, a
later session or a fresh VM makes the same one, and a kill at any moment leaves a study from
which the next decision is simply made again:

- A trial that reaches a rung first records its value there (``RUNG_SCORES``), then ranks its
  chain among the chains of its bracket that reached the rung: in the top
  ``max(1, n // reduction_factor)`` it trains on at once; otherwise it ends COMPLETE with its
  value so far and ``PAUSED_AT`` (its checkpoint kept, mirrored like any other). A kill before
  the end of that decision leaves the trial RUNNING: it is retried from the rung's checkpoint
  and decides again. A rung the chain was let through is recorded (``RUNG_PASSED``, carried by
  retries), so a retry replaying its epochs never sends a chain back below a rung it passed.
- Before a new configuration starts, a paused trial that now ranks in the top of its rung and
  has no continuation yet is promoted: one ``enqueue_trial`` of its params with ``CONTINUES``,
  ``RETRY_ROOT`` (the chain's checkpoint folder) and ``CONTINUES_FROM_EPOCH``. That insert is the
  whole promotion (atomic), and "has a continuation" is read from the study, so a trial is never
  promoted twice; with several workers it happens under the study's scheduling lock.
- ``max_trials`` counts configurations started (chains; retries and continuations are not new
  configurations). The sweep is complete when every configuration has started, none runs or
  waits, and no paused trial can be promoted; the paused ones left are then listed in the
  study's ``STOPPED_AT_RUNG`` (a finished trial's attributes are frozen) and their checkpoints
  go.

A paused trial is one trial record, counted once: COMPLETE with its value at the rung (the
sampler learns from it); its continuation is another COMPLETE trial whose value is the chain's
best. ``status``, the panel and notebook 03 show rung occupancy from :func:`occupancy`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core import faults
from ..settings.config import HpoConfig
from ..settings.schema import (
    CONTINUES,
    CONTINUES_FROM_EPOCH,
    PAUSED_AT,
    RETRY_ROOT,
    RUNG_PASSED,
    RUNG_SCORES,
    STOPPED_AT_RUNG,
    retry_root,
)

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["HalvingPolicy", "Rungs", "View", "decide", "decided_up_to", "finish", "occupancy",
           "promote_one", "rungs_of", "view"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rungs:
    """The rungs (in epochs) of each bracket; ``top`` is the search space's fixed epochs."""

    min_epochs: int
    factor: int
    brackets: int
    top: int

    def bracket(self, root: int) -> int:
        return root % self.brackets

    def of_bracket(self, bracket: int) -> list[int]:
        """The decision rungs of ``bracket``: every one below ``top``."""
        out, r = [], self.min_epochs * self.factor ** bracket
        while r < self.top:
            out.append(r)
            r *= self.factor
        return out

    def top_k(self, n: int) -> int:
        """How many of ``n`` chains at a rung go on (the best one always does)."""
        return max(1, n // self.factor)


def rungs_of(hpo: HpoConfig) -> Rungs | None:
    """The rungs of a ``scheduler.type: hyperband`` config (None for ``tpe_median``)."""
    sch = hpo.scheduler
    if sch.type != "hyperband":
        return None
    epochs = next(p for p in hpo.search_space if p.name == "epochs")  # fixed: config checks it
    return Rungs(sch.min_epochs, sch.reduction_factor, sch.brackets, int(epochs.value))


@dataclass
class View:
    """What the scheduler reads from a study, in one pass over its trials."""

    rungs: Rungs
    # (bracket, rung) -> chain root -> the chain's value there (its latest record)
    scores: dict[tuple[int, int], dict[int, float]] = field(default_factory=dict)
    paused: list[FrozenTrial] = field(default_factory=list)  # not promoted, not stopped
    started: set[int] = field(default_factory=set)  # chain roots of trials that ran
    waiting: int = 0
    running: int = 0
    promoted: dict[tuple[int, int], int] = field(default_factory=dict)  # (bracket, rung) -> n
    stopped: dict[tuple[int, int], int] = field(default_factory=dict)  # (bracket, rung) -> n

    def rank(self, root: int, bracket: int, rung: int) -> tuple[int, int]:
        """(rank of ``root``'s chain at the rung, 0 best; chains there)."""
        at = self.scores.get((bracket, rung), {})
        mine = at[root]
        better = sum(1 for r, v in at.items() if v > mine or (v == mine and r < root))
        return better, len(at)

    def goes_on(self, root: int, rung: int) -> bool:
        bracket = self.rungs.bracket(root)
        rank, n = self.rank(root, bracket, rung)
        return rank < self.rungs.top_k(n)


def view(study: optuna.Study, rungs: Rungs) -> View:
    from optuna.trial import TrialState

    v = View(rungs)
    trials = study.get_trials(deepcopy=False)
    continued = {int(t.user_attrs[CONTINUES]) for t in trials if CONTINUES in t.user_attrs}
    stopped = set(study.user_attrs.get(STOPPED_AT_RUNG) or ())
    for t in sorted(trials, key=lambda t: t.number):  # later records of a chain win
        root = retry_root(t)
        if t.state == TrialState.WAITING:
            v.waiting += 1
            continue
        v.started.add(root)
        if t.state == TrialState.RUNNING:
            v.running += 1
        for rung, value in (t.user_attrs.get(RUNG_SCORES) or {}).items():
            v.scores.setdefault((rungs.bracket(root), int(rung)), {})[root] = float(value)
        if t.state == TrialState.COMPLETE and PAUSED_AT in t.user_attrs:
            key = (rungs.bracket(root), int(t.user_attrs[PAUSED_AT]))
            if t.number in continued:
                v.promoted[key] = v.promoted.get(key, 0) + 1
            elif t.number in stopped:
                v.stopped[key] = v.stopped.get(key, 0) + 1
            else:
                v.paused.append(t)
    return v


def decide(study: optuna.Study, trial: optuna.Trial, rungs: Rungs, epochs: int,
           value: float) -> bool:
    """Record ``trial``'s ``value`` at ``epochs`` when that is one of its rungs; True: it trains
    on (not a rung, or among the best there), False: it pauses here."""
    root = retry_root(trial)
    if epochs not in rungs.of_bracket(rungs.bracket(root)):
        return True
    scores = dict(trial.user_attrs.get(RUNG_SCORES) or {})
    scores[str(epochs)] = float(value)
    trial.set_user_attr(RUNG_SCORES, scores)  # the record first: a kill after it is harmless
    faults.point("rung_decision")
    v = view(study, rungs)
    on = v.goes_on(root, epochs)
    rank, n = v.rank(root, rungs.bracket(root), epochs)
    logger.info("Trial %d at rung %d epochs: %.4f ranks %d of %d in bracket %d: %s",
                trial.number, epochs, value, rank + 1, n, rungs.bracket(root),
                "goes on" if on else "paused with its checkpoint (promoted if it ranks so later)")
    if on:  # decided for good: a retry that replays this epoch does not send it back
        trial.set_user_attr(RUNG_PASSED, epochs)
    return on


def decided_up_to(trial: Any) -> int:
    """The epochs below which ``trial``'s chain has no rung left to decide: the rung it was
    promoted from, or the highest one it was let through (a retry carries both)."""
    return max(int(trial.user_attrs.get(CONTINUES_FROM_EPOCH, 0)),
               int(trial.user_attrs.get(RUNG_PASSED, 0)))


def promote_one(study: optuna.Study, rungs: Rungs, v: View | None = None) -> int | None:
    """Queue the continuation of the best promotable paused trial (highest rung first);
    returns the paused trial's number, or None. Call it under the scheduling lock."""
    v = v or view(study, rungs)
    for t in sorted(v.paused, key=lambda t: (-int(t.user_attrs[PAUSED_AT]), t.number)):
        rung, root = int(t.user_attrs[PAUSED_AT]), retry_root(t)
        if not v.goes_on(root, rung):
            continue
        study.enqueue_trial(dict(t.params), user_attrs={
            CONTINUES: t.number, RETRY_ROOT: root, CONTINUES_FROM_EPOCH: rung})
        faults.point("promotion")  # queued, not yet claimed
        logger.info("Trial %d promoted from rung %d epochs: it continues from its checkpoint",
                    t.number, rung)
        return t.number
    return None


def finish(study: optuna.Study, rungs: Rungs, v: View | None = None) -> list[int]:
    """Mark the paused trials left at the end of a complete sweep as stopped (``v``: the view
    the caller just read); returns them."""
    stopped = [t.number for t in (v or view(study, rungs)).paused]
    if stopped:
        before = list(study.user_attrs.get(STOPPED_AT_RUNG) or ())
        study.set_user_attr(STOPPED_AT_RUNG, sorted(set(before) | set(stopped)))
        logger.info("Stopped at their rungs for good (not among the best): trials %s",
                    ", ".join(map(str, stopped)))
    return stopped


def occupancy(study: optuna.Study, rungs: Rungs) -> list[dict[str, Any]]:
    """One row per (bracket, rung): chains that reached it, paused there (waiting), promoted
    from it, and stopped there when the sweep was complete."""
    v = view(study, rungs)
    rows = []
    for b in range(rungs.brackets):
        for r in rungs.of_bracket(b):
            rows.append({"bracket": b, "rung": r,
                         "reached": len(v.scores.get((b, r), {})),
                         "paused": sum(1 for t in v.paused
                                       if rungs.bracket(retry_root(t)) == b
                                       and int(t.user_attrs[PAUSED_AT]) == r),
                         "promoted": v.promoted.get((b, r), 0),
                         "stopped": v.stopped.get((b, r), 0)})
    return rows


class HalvingPolicy:
    """The scheduler's side of successive halving for
    :class:`~hpo_helpers.sweep.scheduled.Scheduled`."""

    name = "hyperband"

    def __init__(self, rungs: Rungs) -> None:
        self.rungs = rungs

    def view(self, study: optuna.Study) -> View:
        return view(study, self.rungs)

    def queue(self, study: optuna.Study, v: View) -> bool:
        return promote_one(study, self.rungs, v) is not None

    def pending(self, v: View) -> bool:
        """A paused trial can still be promoted."""
        return any(v.goes_on(retry_root(t), int(t.user_attrs[PAUSED_AT])) for t in v.paused)

    def finish(self, study: optuna.Study, v: View) -> tuple[set[int], str]:
        roots = {retry_root(t) for t in v.paused}
        stopped = finish(study, self.rungs, v)
        return roots, "every promotion made" + (
            f" ({len(stopped)} stopped at their rungs)" if stopped else "")

    def decide(self, study: optuna.Study, trial: optuna.Trial, epochs: int, best: float,
               current: float) -> bool:
        return decide(study, trial, self.rungs, epochs, best)

    @staticmethod
    def decided_up_to(trial: Any) -> int:
        return decided_up_to(trial)

    def spent(self, study: optuna.Study) -> set[int]:
        return set()  # a promotion continues in the paused chain's own folder
