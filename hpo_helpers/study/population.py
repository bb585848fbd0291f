"""Population-based training in synchronous generations (``scheduler.type: pbt``).

Jaderberg et al. (2017): a population trains side by side; every ``interval`` epochs the
worst members take the weights, optimizer state and hyperparameters of a better one (exploit)
and change those hyperparameters a little (explore), so the search spends its epochs on what
works and finds a *schedule* of hyperparameters rather than one point.

Here a member trains in segments of ``interval`` epochs, one Optuna trial each, on the
learning-rate schedule of the search space's fixed ``epochs``:

- Generation 0: ``max_trials`` members (the population) drawn by the configured sampler; a
  member is named by the number of its first trial. A segment that reaches the generation's
  last epoch records its score there (``RUNG_SCORES``: validation F1 of that epoch, what PBT
  ranks by) and ends COMPLETE with its best value so far and ``PAUSED_AT`` (its checkpoint
  kept, mirrored like any other).
- Once every member still alive has paused at epoch ``e``, the generation is decided from the
  study alone: members ranked by their score at ``e``; the worst ``quantile`` (at least one)
  each exploit a member of the best ``quantile`` (chosen by a random stream seeded with the
  sampler's seed, ``e`` and the member, so any worker decides the same) and explore its
  params; the others keep theirs. Each decision is one ``enqueue_trial`` of the next segment
  with ``CONTINUES`` (the paused segment it starts from), ``SEED_ROOT`` (that segment's
  checkpoint folder), ``PBT_MEMBER``, ``PBT_GENERATION`` and, for an exploit,
  ``PBT_EXPLOITED``. "Decided" is read from the study, so a kill between two decisions leaves
  the rest to be made, identically, by the next claim; with several workers it happens under
  the study's scheduling lock, so no member is decided twice.
- A next segment starts by copying the checkpoint it continues into its own folder (the
  exploit copy, :func:`~hpo_helpers.storage.checkpoints.seed_checkpoint`: atomic, redone after
  a kill) with its own params; the optimizer takes the new learning rate and weight decay, the
  model the new dropout. Paused segments never train again, so their folders stay as they were
  until no decision and no queued segment needs them (:meth:`PopulationPolicy.spent`).

``max_trials`` counts members (configurations started); the sweep is complete when every
member has trained ``epochs`` epochs (or failed for good). The total budget is
``max_trials * epochs`` epochs, whatever the exploits.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core import faults
from ..core.errors import ConfigError
from ..settings.config import HpoConfig, ParamSpec
from ..settings.schema import (
    CONTINUES,
    CONTINUES_FROM_EPOCH,
    INTERRUPTED,
    PAUSED_AT,
    PBT_EXPLOITED,
    PBT_GENERATION,
    PBT_MEMBER,
    PBT_POPULATION,
    RUNG_SCORES,
    SEED_ROOT,
    retry_root,
)

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["Population", "PopulationPolicy", "PopulationView", "explore", "fix_size",
           "member_of", "members", "population_of", "view"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Population:
    """A ``scheduler.type: pbt`` config, read once."""

    size: int
    interval: int
    top: int  # the search space's fixed epochs: every member trains that many
    quantile: float
    explore: str  # perturb | resample
    factor: float
    resample_probability: float
    perturb: tuple[ParamSpec, ...]  # the ranges of the search space PBT may change
    seed: int

    def boundaries(self) -> list[int]:
        """The epochs at which generations end (every ``interval`` below ``top``)."""
        return list(range(self.interval, self.top, self.interval))

    def n_exploit(self, n: int) -> int:
        """How many of ``n`` members exploit (and how many donors they choose from)."""
        return 0 if n < 2 else min(n // 2, max(1, math.floor(n * self.quantile)))


def population_of(hpo: HpoConfig) -> Population | None:
    """The population of a ``scheduler.type: pbt`` config (None for the other schedulers)."""
    sch = hpo.scheduler
    if sch.type != "pbt":
        return None
    epochs = next(p for p in hpo.search_space if p.name == "epochs")  # fixed: config checks it
    ranges = tuple(p for p in hpo.search_space
                   if p.name in sch.perturb and p.type in ("loguniform", "uniform", "int"))
    return Population(hpo.max_trials, sch.interval, int(epochs.value), sch.quantile,
                      sch.explore, sch.perturb_factor, sch.resample_probability, ranges,
                      int(hpo.sampler.seed or 0))


def fix_size(study: optuna.Study, pop: Population) -> None:
    """Record the population size in a new study; refuse another one later (members added
    mid-way would have to be ranked against generations the others have left)."""
    size = study.user_attrs.get(PBT_POPULATION)
    if size is None:
        study.set_user_attr(PBT_POPULATION, pop.size)
    elif int(size) != pop.size:
        raise ConfigError(
            f"study {study.study_name} is a PBT population of {size} members; max_trials "
            f"{pop.size} would change it. Fix: use max_trials: {size} (or --max-trials {size}) "
            "for this study, or a new study_name for another population.")


def member_of(trial: Any) -> int:
    """The member a trial trains: the number of the member's first trial."""
    return int(trial.user_attrs.get(PBT_MEMBER, retry_root(trial)))


def _draw(spec: ParamSpec, rng: random.Random) -> float:
    low, high = float(spec.low or 0.0), float(spec.high or 0.0)
    if spec.type == "loguniform":
        return math.exp(rng.uniform(math.log(low), math.log(high)))
    return rng.uniform(low, high)


def explore(pop: Population, params: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """``params`` with each perturbable range moved: times ``factor`` or its inverse (or, with
    ``explore: resample``, drawn anew with ``resample_probability``), kept inside its range."""
    out = dict(params)
    for spec in pop.perturb:
        if spec.name not in out:
            continue
        if pop.explore == "resample" and rng.random() < pop.resample_probability:
            value = _draw(spec, rng)
        else:
            value = float(out[spec.name]) * (pop.factor if rng.random() < 0.5
                                             else 1.0 / pop.factor)
        value = min(max(value, float(spec.low or 0.0)), float(spec.high or 0.0))
        out[spec.name] = int(round(value)) if spec.type == "int" else value
    return out


@dataclass
class PopulationView:
    """What the scheduler reads from a study, in one pass over its trials."""

    pop: Population
    started: set[int] = field(default_factory=set)  # members that have a trial that ran
    waiting: int = 0
    running: int = 0
    latest: dict[int, FrozenTrial] = field(default_factory=dict)  # member -> newest trial
    # epoch -> member -> its segment paused there (the newest record)
    at: dict[int, dict[int, FrozenTrial]] = field(default_factory=dict)
    decided: dict[int, set[int]] = field(default_factory=dict)  # epoch -> members decided
    exploited: dict[int, set[int]] = field(default_factory=dict)  # member -> epochs it did
    needed_roots: set[int] = field(default_factory=set)  # folders a queued segment starts from

    def dead(self) -> set[int]:
        """Members whose newest trial failed for good (nothing queued or running for them)."""
        from optuna.trial import TrialState

        return {m for m, t in self.latest.items()
                if t.state in (TrialState.FAIL, TrialState.PRUNED)}

    def live(self) -> set[int]:
        return self.started - self.dead()

    def finished(self) -> set[int]:
        from optuna.trial import TrialState

        return {m for m, t in self.latest.items()
                if t.state == TrialState.COMPLETE and PAUSED_AT not in t.user_attrs}

    def pending(self) -> tuple[int, list[int]] | None:
        """The first generation end with undecided members: (epoch, those members)."""
        for e in self.pop.boundaries():
            todo = sorted(set(self.at.get(e, {})) - self.decided.get(e, set()))
            if todo:
                return e, todo
        return None

    def ready(self, epoch: int) -> bool:
        """Whether every member has started and every live one has paused at ``epoch``."""
        return (len(self.started) >= self.pop.size
                and all(m in self.at.get(epoch, {}) for m in self.live()))

    def ranking(self, epoch: int) -> list[int]:
        """Members paused at ``epoch``, best first (score there; ties: the earlier member)."""
        at = self.at.get(epoch, {})
        return sorted(at, key=lambda m: (-_score(at[m], epoch), m))


def _score(trial: FrozenTrial, epoch: int) -> float:
    return float((trial.user_attrs.get(RUNG_SCORES) or {}).get(str(epoch), trial.value or 0.0))


def view(study: optuna.Study, pop: Population) -> PopulationView:
    from optuna.trial import TrialState

    v = PopulationView(pop)
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        if (t.state == TrialState.FAIL and INTERRUPTED in t.user_attrs and not t.params
                and PBT_MEMBER not in t.user_attrs):
            continue  # killed before it drew its params: no member (a new one is drawn)
        m = member_of(t)
        if PBT_MEMBER in t.user_attrs and CONTINUES_FROM_EPOCH in t.user_attrs:
            v.decided.setdefault(int(t.user_attrs[CONTINUES_FROM_EPOCH]), set()).add(m)
            if PBT_EXPLOITED in t.user_attrs:  # a retry carries it: counted once per epoch
                v.exploited.setdefault(m, set()).add(int(t.user_attrs[CONTINUES_FROM_EPOCH]))
        if t.state == TrialState.WAITING:
            v.waiting += 1
        elif t.state == TrialState.RUNNING:
            v.running += 1
        if t.state in (TrialState.WAITING, TrialState.RUNNING) and SEED_ROOT in t.user_attrs:
            v.needed_roots.add(int(t.user_attrs[SEED_ROOT]))
        if t.state != TrialState.WAITING:
            v.started.add(m)
        v.latest[m] = t  # later numbers win
        if t.state == TrialState.COMPLETE and PAUSED_AT in t.user_attrs:
            v.at.setdefault(int(t.user_attrs[PAUSED_AT]), {})[m] = t
    return v


def decide_generation(study: optuna.Study, pop: Population,
                      v: PopulationView | None = None) -> list[int]:
    """Queue the next segment of every undecided member of the first generation whose members
    have all paused; returns those members (empty: nothing to decide yet). Call it under the
    scheduling lock."""
    v = v or view(study, pop)
    found = v.pending()
    if found is None or not v.ready(found[0]):
        return []
    epoch, todo = found
    at, ranking = v.at[epoch], v.ranking(epoch)
    k = pop.n_exploit(len(ranking))
    donors, worst = ranking[:k], set(ranking[len(ranking) - k:]) if k else set()
    for m in todo:
        source, attrs = at[m], {PBT_MEMBER: m, PBT_GENERATION: epoch // pop.interval,
                                CONTINUES_FROM_EPOCH: epoch}
        params = dict(source.params)
        if m in worst:
            rng = random.Random(f"pbt:{pop.seed}:{epoch}:{m}")
            donor = donors[rng.randrange(k)]
            source = at[donor]
            params = explore(pop, dict(source.params), rng)
            attrs[PBT_EXPLOITED] = donor
        attrs.update({CONTINUES: source.number, SEED_ROOT: retry_root(source)})
        study.enqueue_trial(params, user_attrs=attrs)
        faults.point("pbt_decision")  # this member decided, maybe not the others yet
        if m in worst:
            logger.info("PBT epoch %d: member %d (F1 %.4f, rank %d of %d) exploits member %d "
                        "(F1 %.4f): its checkpoint and params, explored to %s", epoch, m,
                        _score(at[m], epoch), ranking.index(m) + 1, len(ranking),
                        attrs[PBT_EXPLOITED], _score(source, epoch),
                        _short({p.name: params[p.name] for p in pop.perturb
                                if p.name in params}))
        else:
            logger.info("PBT epoch %d: member %d (F1 %.4f, rank %d of %d) goes on", epoch, m,
                        _score(at[m], epoch), ranking.index(m) + 1, len(ranking))
    return todo


def _short(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(params.items()))


def members(v: PopulationView) -> list[dict[str, Any]]:
    """One row per member of the study ``v`` was read from, for ``status`` and the panel: its
    newest trial, the epochs it has reached, its latest score, how many times it exploited
    another member, its state (running, waiting, paused, done, failed) and its params."""
    from optuna.trial import TrialState

    pop, dead, finished = v.pop, v.dead(), v.finished()
    rows = []
    for m in sorted(v.latest):
        t = v.latest[m]
        ends = [e for e, at in v.at.items() if m in at]  # generations it ended
        state = ("failed" if m in dead else "done" if m in finished else
                 "paused" if t.state == TrialState.COMPLETE else t.state.name.lower())
        epoch = (pop.top if m in finished else int(t.user_attrs.get(
            PAUSED_AT, t.user_attrs.get(CONTINUES_FROM_EPOCH, 0))))
        rows.append({"member": m, "trial": t.number,
                     "generation": int(t.user_attrs.get(PBT_GENERATION, 0)), "epoch": epoch,
                     "score": t.value if m in finished or not ends
                     else _score(v.at[max(ends)][m], max(ends)),
                     "exploits": len(v.exploited.get(m, ())), "state": state,
                     "params": dict(t.params)})
    return rows


class PopulationPolicy:
    """The scheduler's side of PBT for :class:`~hpo_helpers.sweep.scheduled.Scheduled`."""

    name = "pbt"

    def __init__(self, pop: Population) -> None:
        self.pop = pop

    def view(self, study: optuna.Study) -> PopulationView:
        return view(study, self.pop)

    def queue(self, study: optuna.Study, v: PopulationView) -> bool:
        return bool(decide_generation(study, self.pop, v))

    def pending(self, v: PopulationView) -> bool:
        """Something may still be decided (a live member is not done)."""
        return bool(v.live() - v.finished())

    def finish(self, study: optuna.Study, v: PopulationView) -> tuple[set[int], str]:
        done, dead = v.finished(), v.dead()
        note = f"{len(done)} members trained {self.pop.top} epochs"
        return set(), note + (f", {len(dead)} failed" if dead else "")

    def decide(self, study: optuna.Study, trial: optuna.Trial, epochs: int, best: float,
               current: float) -> bool:
        """Record ``current`` at a generation end and pause there (False); True elsewhere."""
        if epochs not in self.pop.boundaries():
            return True
        scores = dict(trial.user_attrs.get(RUNG_SCORES) or {})
        scores[str(epochs)] = float(current)
        trial.set_user_attr(RUNG_SCORES, scores)
        logger.info("Trial %d (PBT member %d) ends generation %d at epoch %d: F1 %.4f; it "
                    "waits for the population", trial.number, member_of(trial),
                    epochs // self.pop.interval - 1, epochs, current)
        return False

    @staticmethod
    def decided_up_to(trial: Any) -> int:
        return int(trial.user_attrs.get(CONTINUES_FROM_EPOCH, 0))

    def spent(self, study: optuna.Study) -> set[int]:
        """Checkpoint folders of paused segments no decision and no queued or running segment
        needs any more."""
        v = view(study, self.pop)
        out = set()
        for e, at in v.at.items():
            if set(at) - v.decided.get(e, set()):
                continue  # a decision may still copy any of them
            out |= {retry_root(t) for t in at.values()}
        return out - v.needed_roots
