"""Population-based training (``scheduler.type: pbt``) on real SQLite and PostgreSQL studies and
the tiny backbone: synchronous generations, exploit copies that continue another member's
checkpoint with explored params, an exact budget in epochs, kills at awkward moments, a fresh
VM, two workers, the drift guard and config validation."""

from __future__ import annotations

import logging
import random
import shutil
import signal
import subprocess

import optuna
import pytest
from optuna.trial import TrialState

from hpo_helpers import ConfigError, load_configs
from hpo_helpers.settings.schema import (
    CONTINUES,
    CONTINUES_FROM_EPOCH,
    PAUSED_AT,
    PBT_EXPLOITED,
    PBT_GENERATION,
    RESUMED_FROM_EPOCH,
    RUNG_SCORES,
    SEED_ROOT,
)
from hpo_helpers.storage.checkpoints import latest_checkpoint
from hpo_helpers.study import population

from .conftest import TINY_HPO
from .test_distributed import pg_url  # noqa: F401 - the fixture
from .test_durability import DURABLE, WORKING, _colab
from .test_kill_resume import _env
from .test_scheduler import _driver as scheduled_driver
from .test_scheduler import _driver_args as scheduled_driver_args
from .test_scheduler import _epochs
from .test_scheduler import _sweep as scheduled_sweep

#: validation F1 = 100 x learning rate (tests.scripted_scores): members arrive best first
SCORES = {"per_lr": 100.0}
LRS = (3e-3, 2.5e-3, 2e-3, 1.5e-3)


def _pbt(project, *, epochs: int = 4, lrs=LRS, **scheduler) -> None:
    """Members enqueued with ``lrs``; the last (worst) one with batch size 4, the others 8:
    an exploit takes the donor's batch size with its checkpoint."""
    space = dict(TINY_HPO["search_space"], epochs=epochs)
    fixed = {"batch_size": 8, "dropout": 0.1, "weight_decay": 1e-3, "warmup_ratio": 0.05}
    project.write_hpo(max_trials=len(lrs), search_space=space,
                      sampler={"type": "random", "seed": 3},
                      enqueue_trials=[dict(fixed, learning_rate=lr,
                                           batch_size=4 if i == len(lrs) - 1 else 8)
                                      for i, lr in enumerate(lrs)],
                      scheduler={"type": "pbt", "interval": 1, "quantile": 0.25,
                                 "perturb": ["learning_rate"], **scheduler})


def _sweep(project, monkeypatch, tracking=None):
    return scheduled_sweep(project, monkeypatch, tracking, SCORES)


def _trained(t) -> int:
    return _epochs(t) - int(t.user_attrs.get(RESUMED_FROM_EPOCH, 0))


def _check_the_scripted_population(study: optuna.Study, *, killed: int = 0,
                                   size: int = 4, top: int = 4) -> None:
    """What 100 x learning rate makes of the population: every member trains ``top`` epochs in
    one-epoch segments (the budget, exactly, whatever the kills); at each generation end the
    worst member (quantile 0.25: one of four) takes the best one's checkpoint and its rate
    times 1.25 or 0.8 (kept in range), and each member is decided once per generation."""
    everything = study.get_trials()
    dead = [t for t in everything if t.state == TrialState.FAIL]
    assert len(dead) == killed and all(t.user_attrs["interrupted"] for t in dead)
    done = [t for t in everything if t.state == TrialState.COMPLETE]
    assert len(done) + len(dead) == len(everything), [t.state for t in everything]
    members = {population.member_of(t) for t in everything}
    assert len(members) == size, "max_trials counts members"
    assert sum(_trained(t) for t in done) == size * top, "the budget in epochs is exact"
    by = {(population.member_of(t), int(t.user_attrs.get(PBT_GENERATION, 0))): t for t in done}
    assert set(by) == {(m, g) for m in members for g in range(top)}, "one segment each"
    for (m, g), t in by.items():
        if g < top - 1:
            assert t.user_attrs[PAUSED_AT] == g + 1 and _epochs(t) == g + 1
        else:
            assert PAUSED_AT not in t.user_attrs and _epochs(t) == top
        if g:
            assert t.user_attrs[CONTINUES_FROM_EPOCH] == g == t.user_attrs[RESUMED_FROM_EPOCH]
    for g in range(1, top):  # the generation that ended at epoch g
        ended = {m: by[(m, g - 1)] for m in members}
        scores = {m: t.user_attrs[RUNG_SCORES][str(g)] for m, t in ended.items()}
        ranking = sorted(scores, key=lambda m: (-scores[m], m))
        exploits = {m: by[(m, g)] for m in members if PBT_EXPLOITED in by[(m, g)].user_attrs}
        assert list(exploits) == [ranking[-1]], (g, scores)
        (nxt,) = exploits.values()
        donor = ranking[0]
        assert nxt.user_attrs[PBT_EXPLOITED] == donor
        assert nxt.user_attrs[CONTINUES] == ended[donor].number
        assert nxt.user_attrs[SEED_ROOT] == ended[donor].user_attrs.get("retry_root",
                                                                        ended[donor].number)
        lr, was = nxt.params["learning_rate"], ended[donor].params["learning_rate"]
        assert lr == pytest.approx(min(3e-3, was * 1.25)) or lr == pytest.approx(was * 0.8)
        assert nxt.params["batch_size"] == ended[donor].params["batch_size"] == 8
        for m in set(members) - set(exploits):
            assert by[(m, g)].user_attrs[CONTINUES] == ended[m].number
            assert by[(m, g)].params == ended[m].params, "a kept member keeps its params"
    assert study.best_value == pytest.approx(0.3)


@pytest.mark.slow
def test_pbt_exploits_and_explores_in_generations_and_keeps_the_budget(
        project, monkeypatch, caplog, capsys) -> None:
    from hpo_helpers.tracking.setup import setup_mlflow_from_config

    from .test_tracking import _runs

    _pbt(project)
    setup = setup_mlflow_from_config("pbt", project.config_dir, cwd=project.root)
    with caplog.at_level(logging.INFO, logger="hpo_helpers"):
        study = _sweep(project, monkeypatch, setup)
    _check_the_scripted_population(study)
    assert "PBT epoch 1: member 3 (F1 0.1500, rank 4 of 4) exploits member 0" in caplog.text
    assert "Sweep complete: 4/4 configurations started, 4 members trained 4 epochs" \
        in caplog.text
    trials_root = project.output_dir / "tiny" / "trials" / "hpo_tiny"
    assert not list(trials_root.glob("trial_*")), "no checkpoint is left once complete"
    # MLflow: each segment links the run it continues; exploits say whose
    _, _, children = _runs(f"sqlite:///{setup.local_db}", "pbt")
    by_trial = {int(r.data.tags["trial_number"]): r for r in children}
    for t in study.trials:
        tags = by_trial[t.number].data.tags
        if CONTINUES in t.user_attrs:
            assert tags["continues_run"] == by_trial[t.user_attrs[CONTINUES]].info.run_id
            assert tags["pbt_member"] == str(population.member_of(t))
            assert tags["pbt_generation"] == str(t.user_attrs[PBT_GENERATION])
        assert ("pbt_exploited_member" in tags) == (PBT_EXPLOITED in t.user_attrs)
    from hpo_helpers.frontends.cli import main

    assert main(["status", "--config", str(project.hpo), "--output-dir",
                 str(project.output_dir)]) == 0
    shown = capsys.readouterr().out
    assert "pbt: 4/4 members started, 4 done, 3 exploits" in shown
    assert "member 1: epoch 4, F1 0.2500, done, exploited 0x, learning_rate 0.0025" in shown
    from hpo_helpers import ResumePanel  # the panel says the same

    panel = ResumePanel(config_dir=project.config_dir, hpo_config=project.hpo,
                        output_dir=project.output_dir)
    assert panel.action.value == "<b>PBT complete: 4 of 4 members have trained their epochs</b>"
    assert panel.trials.description == "Trials 4/4"
    from hpo_helpers.results.inspection import trials_table
    from hpo_helpers.results.report import figures

    table = trials_table(study)
    assert table["epochs_trained"].sum() == 16
    assert set(table["pbt_member"]) == {0, 1, 2, 3}
    assert table["exploited"].notna().sum() == 3
    figs = figures({"s": study})
    (line,) = figs["s_anytime"].axes[0].get_lines()
    assert line.get_xdata()[-1] == 16 and line.get_ydata()[-1] == pytest.approx(0.3)
    lines = figs["s_schedules"].axes[0].get_lines()
    assert len(lines) == 4, "one learning-rate schedule per member"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hpo_helpers"):
        again = _sweep(project, monkeypatch)
    assert len(again.get_trials()) == len(study.get_trials())
    assert "All configurations already done (4/4)" in caplog.text


def _check_once(study: optuna.Study) -> None:
    """Each member trains each generation once (no segment decided or run twice)."""
    from collections import Counter

    seen = Counter((population.member_of(t), int(t.user_attrs.get(PBT_GENERATION, 0)))
                   for t in study.get_trials() if t.state != TrialState.FAIL)
    assert max(seen.values()) == 1, seen


def _driver_args(project, *, out, storage: str | None = None) -> list[str]:
    return scheduled_driver_args(project, out=out, scores=SCORES, storage=storage)


def _driver(project, env, *, out, fault: str | None = None, cwd=None):
    return scheduled_driver(project, env, out=out, fault=fault, cwd=cwd, scores=SCORES)


def _load(db) -> optuna.Study:
    return optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{db}")


@pytest.mark.slow
def test_sigkill_during_an_exploit_copy_copies_again_and_loses_nothing(project) -> None:
    """Killed inside the first exploit copy (member 3 taking member 0's checkpoint, before the
    copy's marker): the copy is not used, the donor's paused checkpoint is kept, and the next
    run retries the segment, copies again and finishes with the exact budget."""
    _pbt(project)
    dead = _driver(project, _env(), out=project.output_dir, fault="exploit_copy:1")
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    db = project.output_dir / "tiny" / "study.db"
    study = _load(db)
    (running,) = study.get_trials(states=(TrialState.RUNNING,))
    assert running.user_attrs[PBT_EXPLOITED] == 0
    folders = project.output_dir / "tiny" / "trials" / "hpo_tiny"
    assert latest_checkpoint(folders / f"trial_{running.number}") is None, \
        "a copy cut off has no marker"
    assert latest_checkpoint(folders / f"trial_{running.user_attrs[SEED_ROOT]}"), \
        "the donor's paused checkpoint is kept"
    res = _driver(project, _env(), out=project.output_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    study = _load(db)
    _check_the_scripted_population(study, killed=1)
    _check_once(study)
    assert not list(folders.glob("trial_*")), "no checkpoint is left once complete"


@pytest.mark.slow
def test_sigkill_between_two_decisions_of_a_generation_decides_each_member_once(
        project, capsys) -> None:
    """Killed after the first of generation 1's four decisions was queued: the next run makes
    the other three (the same ones: ranks and the exploit's random stream come from the
    study) and never decides the first again."""
    _pbt(project)
    dead = _driver(project, _env(), out=project.output_dir, fault="pbt_decision:1")
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    db = project.output_dir / "tiny" / "study.db"
    assert len(_load(db).get_trials(states=(TrialState.WAITING,))) == 1
    from hpo_helpers.frontends.cli import main

    assert main(["status", "--config", str(project.hpo), "--output-dir",
                 str(project.output_dir)]) == 0
    shown = capsys.readouterr().out
    assert "pbt: 4/4 members started, 0 done, 0 exploits" in shown
    assert "member 0: epoch 1, F1 0.3000, waiting, exploited 0x" in shown
    assert "member 3: epoch 1, F1 0.1500, paused, exploited 0x" in shown
    res = _driver(project, _env(), out=project.output_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    study = _load(db)
    _check_the_scripted_population(study)
    _check_once(study)


@pytest.mark.slow
def test_a_fresh_colab_vm_continues_an_exploit_from_the_drive_mirror(project,
                                                                    tmp_path) -> None:
    """Killed inside an exploit copy on simulated Colab, the VM's disk lost: the new VM
    restores the study from Drive, brings the donor's paused checkpoint back from the Drive
    mirror, copies it and finishes; no mirrored checkpoint is left."""
    _pbt(project)
    root, env = _colab(tmp_path)
    dead = _driver(project, env, out=None, fault="exploit_copy:1", cwd=root / "content")
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    mirror = root.joinpath(*DURABLE, "trials", "hpo_tiny")
    assert any(mirror.glob("trial_*/checkpoint-*/COMPLETE")), "paused checkpoints on Drive"
    shutil.rmtree(root / "content" / "resume-ner")  # the VM is gone; Drive survives
    res = _driver(project, env, out=None, cwd=root / "content")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Checkpoint restored from the durable mirror" in res.stderr
    study = _load(root.joinpath(*WORKING, "study.db"))
    _check_the_scripted_population(study, killed=1)
    _check_once(study)
    assert not any(mirror.glob("trial_*")), "the segments' mirrored checkpoints go"


@pytest.mark.slow
def test_two_workers_on_postgresql_decide_each_member_once_and_keep_the_budget(
        project, pg_url, tmp_path) -> None:
    """Two worker processes share a PBT study on PostgreSQL (checkpoints on a shared folder):
    four members, each generation decided once under the scheduling lock, every member trains
    exactly its epochs, the exploits are the same as one worker's, and both workers train."""
    shared = tmp_path / "shared-checkpoints"
    _pbt(project)
    import yaml

    raw = yaml.safe_load(project.hpo.read_text())
    project.hpo.write_text(yaml.safe_dump(dict(raw, heartbeat_interval=1, grace_period=4,
                                               shared_checkpoint_dir=str(shared))))
    procs = [subprocess.Popen(_driver_args(project, out=project.output_dir, storage=pg_url),
                              env=_env(), text=True, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for _ in range(2)]
    outs = [p.communicate(timeout=500)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n----\n".join(o[-3000:] for o in outs)
    study = optuna.load_study(study_name="hpo_tiny", storage=pg_url)
    _check_the_scripted_population(study)
    _check_once(study)
    assert len({t.user_attrs["worker"] for t in study.trials}) == 2, "the work was shared"
    assert not list((shared / "hpo_tiny" / "trials").glob("trial_*")), \
        "no checkpoint is left on the shared folder"


@pytest.mark.parametrize(("scheduler", "extra", "needle"), [
    ({"interval": 4}, {}, "'scheduler.interval' = 4 leaves no perturbation below epochs (4)"),
    ({"population": 3}, {}, "'scheduler.population' = 3 differs from max_trials (4)"),
    ({"perturb": ["batch_size"]}, {}, "PBT perturbs only learning_rate, dropout, "
                                      "weight_decay"),
    ({"quantile": 0.75}, {}, "scheduler.quantile"),
    ({"explore": "mutate"}, {}, "scheduler.explore"),
    ({}, {"k_folds": 3}, "'k_folds' cannot be used with scheduler.type pbt"),
    ({}, {"pruner": {"type": "hyperband"}}, "'pruner.type' = hyperband cannot be used with "
                                            "scheduler.type pbt"),
])
def test_pbt_config_problems_are_one_clear_error(project, scheduler, extra, needle) -> None:
    project.write_hpo(max_trials=4, search_space={**TINY_HPO["search_space"], "epochs": 4},
                      scheduler={"type": "pbt", "interval": 1, **scheduler}, **extra)
    with pytest.raises(ConfigError) as err:
        load_configs(project.config_dir, project.hpo)
    assert needle in str(err.value)
    assert str(project.hpo) in str(err.value)


def test_pbt_needs_something_to_perturb_and_a_fixed_epochs(project) -> None:
    space = {**TINY_HPO["search_space"], "learning_rate": 2e-3,
             "epochs": {"type": "int", "low": 2, "high": 4}}
    project.write_hpo(max_trials=4, search_space=space,
                      scheduler={"type": "pbt", "perturb": ["learning_rate"]})
    with pytest.raises(ConfigError) as err:
        load_configs(project.config_dir, project.hpo)
    assert "'search_space.epochs' must be one fixed value with scheduler.type pbt" in str(
        err.value)
    assert "names no hyperparameter the search space draws from a range" in str(err.value)


def _population(**kw) -> population.Population:
    from hpo_helpers.settings.config import ParamSpec

    spec = ParamSpec("learning_rate", "loguniform", low=1e-5, high=1e-3)
    drop = ParamSpec("dropout", "uniform", low=0.0, high=0.3)
    base = dict(size=4, interval=2, top=8, quantile=0.25, explore="perturb", factor=1.25,
                resample_probability=0.25, perturb=(spec, drop), seed=3)
    return population.Population(**{**base, **kw})


def test_explore_stays_in_range_and_is_reproducible() -> None:
    pop = _population()
    params = {"learning_rate": 1e-3, "dropout": 0.1, "batch_size": 8}
    out = [population.explore(pop, params, random.Random(f"s{i}")) for i in range(50)]
    assert all(1e-5 <= o["learning_rate"] <= 1e-3 and 0 <= o["dropout"] <= 0.3 for o in out)
    assert {round(o["learning_rate"], 9) for o in out} == {8e-4, 1e-3}, "x0.8 or x1.25, capped"
    assert all(o["batch_size"] == 8 for o in out), "only the perturbable ranges move"
    assert out[0] == population.explore(pop, params, random.Random("s0"))
    wide = _population(explore="resample", resample_probability=1.0)
    drawn = {population.explore(wide, params, random.Random(f"r{i}"))["learning_rate"]
             for i in range(20)}
    assert len(drawn) == 20 and all(1e-5 <= v <= 1e-3 for v in drawn)
    assert [_population().n_exploit(n) for n in (1, 2, 3, 4, 8, 9)] == [0, 1, 1, 1, 2, 2]


def test_a_generation_is_decided_once_all_members_paused_and_only_once(tmp_path) -> None:
    """On a real SQLite study: nothing is decided while a member still trains; once all four
    paused at epoch 2, the worst takes the best's checkpoint and explored params, the others
    continue their own; read again, nothing is decided twice; the folders still needed are
    kept (``spent``)."""
    study = optuna.create_study(study_name="s", direction="maximize",
                                storage=f"sqlite:///{tmp_path / 's.db'}")
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)}
    pop = _population()

    def paused(lr: float, score: float) -> None:
        study.add_trial(optuna.trial.create_trial(
            params={"learning_rate": lr}, distributions=dist, value=score,
            user_attrs={RUNG_SCORES: {"2": score}, PAUSED_AT: 2}))

    for lr, score in ((1e-4, 0.5), (2e-4, 0.7), (3e-4, 0.2)):
        paused(lr, score)
    study.enqueue_trial({"learning_rate": 4e-4})  # member 3 has not started
    assert population.decide_generation(study, pop) == []
    study.tell(study.ask(), state=TrialState.FAIL)  # it ran and failed for good: not waited for
    assert population.decide_generation(study, pop) == [0, 1, 2]
    queued = {t.user_attrs[population.PBT_MEMBER]: t
              for t in study.get_trials(states=(TrialState.WAITING,))}
    assert queued[2].user_attrs[PBT_EXPLOITED] == 1 and queued[2].user_attrs[CONTINUES] == 1
    assert queued[2].system_attrs["fixed_params"]["learning_rate"] in (
        pytest.approx(2e-4 * 1.25), pytest.approx(2e-4 * 0.8))
    assert [queued[m].user_attrs[CONTINUES] for m in (0, 1)] == [0, 1]
    assert population.decide_generation(study, pop) == [], "decided once"
    policy = population.PopulationPolicy(pop)
    assert policy.spent(study) == {2}, "member 2's own checkpoint is no longer needed"
    for _ in range(2):  # members 0 and 1 claim their next trials: the copies are still needed
        study.ask()
    assert policy.spent(study) == {2}
    for t in study.get_trials(states=(TrialState.RUNNING,)):
        study.tell(t.number, 0.9)
    assert policy.spent(study) == {0, 2}, "member 2's queued copy still needs member 1's"
    study.tell(study.ask(), 0.9)
    assert policy.spent(study) == {0, 1, 2}


def test_the_drift_guard_covers_pbt_settings(project) -> None:
    """A PBT study resumed under another interval or explore rule (its generations and
    exploits would mean something else) is refused; the change is named."""
    from hpo_helpers.study.store import fingerprint, fingerprint_change

    _pbt(project)
    before = fingerprint(load_configs(project.config_dir, project.hpo).hpo, "d")
    assert before["scheduler"]["type"] == "pbt" and before["scheduler"]["interval"] == 1
    assert fingerprint_change(before, before) is None
    for change in ({"interval": 2}, {"explore": "resample"}, {"perturb_factor": 1.5}):
        _pbt(project, **change)
        after = fingerprint(load_configs(project.config_dir, project.hpo).hpo, "d")
        assert "scheduler: {" in (fingerprint_change(before, after) or ""), change


@pytest.mark.slow
def test_a_damaged_exploit_copy_fails_its_member_clearly_and_the_others_finish(
        project, monkeypatch, caplog) -> None:
    """The first exploit copy is damaged on disk (its weights truncated after the copy): the
    member's trial sets it aside and fails with a clear error instead of training from epoch
    0 (which would spend epochs the budget does not have); the population goes on without it
    and the sweep completes."""
    from hpo_helpers.storage.checkpoints import MODEL_FILE
    from hpo_helpers.sweep import scheduled

    real = scheduled.seed_checkpoint
    damaged: list[int] = []

    def seed(source, trial_dir, params, seeded_from, *, fault="segment_copy"):
        made = real(source, trial_dir, params, seeded_from, fault=fault)
        if fault == "exploit_copy" and not damaged:
            (made / MODEL_FILE).write_bytes((made / MODEL_FILE).read_bytes()[:100])
            damaged.append(int(trial_dir.name.split("_")[1]))
        return made

    monkeypatch.setattr(scheduled, "seed_checkpoint", seed)
    _pbt(project)
    with caplog.at_level(logging.INFO, logger="hpo_helpers"):
        study = _sweep(project, monkeypatch)
    (failed,) = study.get_trials(states=(TrialState.FAIL,))
    assert failed.number == damaged[0] and failed.user_attrs[PBT_EXPLOITED] == 0
    assert "continues from epoch 1 but found no readable checkpoint" in failed.user_attrs[
        "error"]
    assert not failed.intermediate_values, "it trained nothing"
    lost = population.member_of(failed)
    done = [t for t in study.get_trials(states=(TrialState.COMPLETE,))
            if population.member_of(t) != lost]
    assert sum(_trained(t) for t in done) == 3 * 4, "the others train their epochs exactly"
    assert "Sweep complete: 4/4 configurations started, 3 members trained 4 epochs, 1 failed" \
        in caplog.text


def test_a_pbt_study_keeps_its_population(tmp_path) -> None:
    """Raising max_trials on a PBT study would add members that must be ranked against
    generations the others have left: refused, with the size that works."""
    study = optuna.create_study(study_name="s", direction="maximize",
                                storage=f"sqlite:///{tmp_path / 's.db'}")
    population.fix_size(study, _population(size=4))
    population.fix_size(study, _population(size=4))  # the same: fine
    with pytest.raises(ConfigError) as err:
        population.fix_size(study, _population(size=6))
    assert "a PBT population of 4 members; max_trials 6 would change it" in str(err.value)
    assert "max_trials: 4" in str(err.value)
