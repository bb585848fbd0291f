"""The hyperband scheduler (successive halving with continuation) on real SQLite studies and the
tiny backbone: rungs, pauses, promotions that continue from the paused checkpoint, the budget,
the drift guard and config validation."""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo_helpers import ConfigError, FingerprintMismatchError, load_configs, run_sweep
from hpo_helpers.settings.schema import (
    CONTINUES,
    CONTINUES_FROM_EPOCH,
    PAUSED_AT,
    RESUMED_FROM_EPOCH,
    RUNG_SCORES,
    STOPPED_AT_RUNG,
)
from hpo_helpers.frontends.cli import main
from hpo_helpers.settings.schema import retry_root
from hpo_helpers.study import halving

from .conftest import REPO, TINY_HPO
from .scripted_scores import DRIVER
from .test_durability import DURABLE, WORKING, _colab
from .test_distributed import pg_url  # noqa: F401 - the fixture
from .test_kill_resume import _env


#: learning rate -> the F1 evaluation reports (tests.scripted_scores): configurations arrive
#: best first, so each later one pauses at rung 1 and the second is promoted once four are in
SCORES = {3e-3: 0.5, 2.5e-3: 0.4, 2e-3: 0.3, 1.5e-3: 0.2}


def _hyperband(project, *, epochs: int = 4, max_trials: int = 4, **scheduler) -> None:
    space = dict(TINY_HPO["search_space"], epochs=epochs)
    fixed = {"batch_size": 8, "dropout": 0.1, "weight_decay": 1e-3, "warmup_ratio": 0.05}
    project.write_hpo(max_trials=max_trials, search_space=space,
                      sampler={"type": "random", "seed": 3},
                      enqueue_trials=[dict(fixed, learning_rate=lr) for lr in SCORES],
                      scheduler={"type": "hyperband", "min_epochs": 1, "reduction_factor": 2,
                                 **scheduler})


def _sweep(project, monkeypatch, tracking=None, scores=None):
    from hpo_helpers.training import train

    from .scripted_scores import install

    monkeypatch.setattr(train, "evaluate", train.evaluate)  # restored after the test
    cfg = load_configs(project.config_dir, project.hpo)
    return run_sweep(cfg, output_dir=project.output_dir, fit=install(scores or SCORES),
                     tracking=tracking).study


def _epochs(t) -> int:
    return max(t.intermediate_values) + 1 if t.intermediate_values else 0


def _trained_epochs(study: optuna.Study) -> int:
    """Epochs trained across the study: each trial's history beyond where it resumed."""
    return sum(_epochs(t) - int(t.user_attrs.get(RESUMED_FROM_EPOCH, 0))
               for t in study.get_trials(states=(TrialState.COMPLETE,)))


def _check_the_scripted_sweep(study: optuna.Study, *, killed: int = 0) -> None:
    """What SCORES make of 4 configurations with rungs 1 and 2 below 4 epochs (factor 2):
    0 goes to the top (best at every rung); 1, 2, 3 pause at rung 1; with four there, the top
    two go on, so 1 is promoted, continues from its epoch-1 checkpoint and pauses at rung 2
    (second of two); 2, 3 and 1's continuation are stopped when the sweep is complete."""
    everything = study.get_trials()
    dead = [t for t in everything if t.state == TrialState.FAIL]
    assert len(dead) == killed and all(t.user_attrs["interrupted"] for t in dead)
    trials = [t for t in everything if t.state != TrialState.FAIL]
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert len({retry_root(t) for t in everything}) == 4, "max_trials counts configurations"
    by_lr = {round(t.params["learning_rate"], 6): t for t in trials if CONTINUES not in
             t.user_attrs}
    best, second = by_lr[3e-3], by_lr[2.5e-3]
    assert _epochs(best) == 4 and PAUSED_AT not in best.user_attrs and best.value == 0.5
    for lr in (2.5e-3, 2e-3, 1.5e-3):
        assert by_lr[lr].user_attrs[PAUSED_AT] == 1
    continuations = [t for t in trials if CONTINUES in t.user_attrs]
    assert len({t.user_attrs[CONTINUES] for t in continuations}) == len(continuations) == 1, \
        "one promotion, made once"
    (c,) = continuations
    assert c.user_attrs[CONTINUES] == second.number and c.params == second.params
    assert c.user_attrs[CONTINUES_FROM_EPOCH] == 1
    assert c.user_attrs[RESUMED_FROM_EPOCH] == 1, "continued from the paused checkpoint"
    assert c.user_attrs[PAUSED_AT] == 2 and _epochs(c) == 2
    assert sorted(study.user_attrs[STOPPED_AT_RUNG]) == sorted(
        [by_lr[2e-3].number, by_lr[1.5e-3].number, c.number])
    rows = {r["rung"]: r for r in halving.occupancy(study, halving.Rungs(1, 2, 1, 4))}
    assert rows[1] == {"bracket": 0, "rung": 1, "reached": 4, "paused": 0, "promoted": 1,
                       "stopped": 2}
    assert rows[2] == {"bracket": 0, "rung": 2, "reached": 2, "paused": 0, "promoted": 0,
                       "stopped": 1}
    assert c.user_attrs[RUNG_SCORES] == {"2": 0.4}


@pytest.mark.slow
def test_hyperband_pauses_promotes_from_the_checkpoint_and_keeps_the_budget(
        project, monkeypatch, caplog, capsys) -> None:
    from hpo_helpers.tracking.setup import setup_mlflow_from_config

    from .test_tracking import _runs

    _hyperband(project)
    setup = setup_mlflow_from_config("hb", project.config_dir, cwd=project.root)
    with caplog.at_level(logging.INFO, logger="hpo_helpers"):
        study = _sweep(project, monkeypatch, setup)
    _check_the_scripted_sweep(study)
    # MLflow: paused runs say where, the continuation links its parent's run
    _, _, children = _runs(f"sqlite:///{setup.local_db}", "hb")
    by_trial = {int(r.data.tags["trial_number"]): r for r in children}
    assert {n for n, r in by_trial.items() if "paused_at_rung" in r.data.tags} == {
        t.number for t in study.trials if PAUSED_AT in t.user_attrs}
    (cont,) = [r for r in children if "continues_trial" in r.data.tags]
    assert cont.data.tags["continues_trial"] == "1"
    assert cont.data.tags["continues_from_epoch"] == "1"
    assert cont.data.tags["continues_run"] == by_trial[1].info.run_id
    assert _trained_epochs(study) == 4 + 1 + 1 + 1 + 1 < 4 * 4, "a promotion retrains nothing"
    # notebook 03's table and the report's anytime figure count the same epochs
    from hpo_helpers.results.inspection import trials_table
    from hpo_helpers.results.report import figures

    table = trials_table(study)
    assert table["epochs_trained"].sum() == 8
    assert table["paused_at"].notna().sum() == 4 and table["continues"].notna().sum() == 1
    (line,) = figures({"s": study})["s_anytime"].axes[0].get_lines()
    assert line.get_xdata()[-1] == 8 and line.get_ydata()[-1] == 0.5
    assert "Trial 1 promoted from rung 1 epochs" in caplog.text
    assert "continues trial 1 from its rung of 1 epochs" in caplog.text
    trials_root = project.output_dir / "tiny" / "trials" / "hpo_tiny"
    assert not list(trials_root.glob("trial_*")), "no checkpoint is left once complete"
    assert "Sweep complete: 4/4 configurations started, every promotion made (3 stopped at " \
           "their rungs)" in caplog.text
    assert main(["status", "--config", str(project.hpo), "--output-dir",
                 str(project.output_dir)]) == 0
    shown = capsys.readouterr().out
    assert "hyperband: 4/4 configurations started" in shown
    assert "rung 1 epochs: reached by 4, waiting there 0, promoted 1, stopped 2" in shown
    assert "rung 2 epochs: reached by 2, waiting there 0, promoted 0, stopped 1" in shown
    from hpo_helpers import ResumePanel  # the panel says the same

    panel = ResumePanel(config_dir=project.config_dir, hpo_config=project.hpo,
                        output_dir=project.output_dir)
    assert panel.action.value == ("<b>Resume: 4 of 4 configurations started; rung 1: 4 "
                                  "reached, 0 waiting, 1 promoted; rung 2: 2 reached, 0 "
                                  "waiting, 0 promoted</b>")
    assert panel.trials.description == "Trials 4/4"
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="hpo_helpers"):
        again = _sweep(project, monkeypatch)
    assert len(again.get_trials()) == len(study.get_trials())
    assert "All configurations already done (4/4)" in caplog.text


@pytest.mark.slow
def test_changing_the_scheduler_is_refused_by_the_drift_guard(project) -> None:
    """A study made with tpe_median is not resumed under hyperband (its trials were never
    ranked at rungs): the one-line refusal names the scheduler change."""
    project.write_hpo(max_trials=1, search_space=dict(TINY_HPO["search_space"], epochs=4))
    run_sweep(load_configs(project.config_dir, project.hpo), output_dir=project.output_dir)
    _hyperband(project)
    with pytest.raises(FingerprintMismatchError) as err:
        run_sweep(load_configs(project.config_dir, project.hpo), output_dir=project.output_dir)
    assert "scheduler: tpe_median -> {" in str(err.value)
    assert "'type': 'hyperband'" in str(err.value)


@pytest.mark.parametrize(("space", "extra", "needle"), [
    ({"epochs": {"type": "int", "low": 2, "high": 8}}, {}, "'search_space.epochs' must be one "
                                                          "fixed value"),
    ({"epochs": 2}, {}, "leaves no rung below epochs (2)"),
    ({}, {"k_folds": 3}, "'k_folds' cannot be used with scheduler.type hyperband"),
    ({}, {"pruner": {"type": "hyperband"}}, "'pruner.type' = hyperband cannot be used"),
])
def test_hyperband_config_problems_are_one_clear_error(project, space, extra, needle) -> None:
    project.write_hpo(search_space={**TINY_HPO["search_space"], "epochs": 9, **space},
                      scheduler={"type": "hyperband", "min_epochs": 1, "reduction_factor": 3},
                      **extra)
    with pytest.raises(ConfigError) as err:
        load_configs(project.config_dir, project.hpo)
    assert needle in str(err.value)
    assert str(project.hpo) in str(err.value)


def test_an_unknown_scheduler_is_refused(project) -> None:
    project.write_hpo(scheduler={"type": "asha"})
    with pytest.raises(ConfigError, match="scheduler.type"):
        load_configs(project.config_dir, project.hpo)


def test_rungs_of_brackets() -> None:
    r = halving.Rungs(min_epochs=1, factor=3, brackets=2, top=27)
    assert r.of_bracket(0) == [1, 3, 9] and r.of_bracket(1) == [3, 9]
    assert [r.bracket(n) for n in range(4)] == [0, 1, 0, 1]
    assert [r.top_k(n) for n in (1, 2, 3, 7)] == [1, 1, 1, 2]


def _driver_args(project, *, out: Path | None, scores: dict[float, float] = SCORES,
                 storage: str | None = None) -> list[str]:
    code = DRIVER.format(repo=str(REPO), scores=scores, config_dir=str(project.config_dir),
                         hpo=str(project.hpo), out=None if out is None else str(out),
                         storage=storage)
    return [sys.executable, "-c", code]


def _driver(project, env: dict[str, str], *, out: Path | None, fault: str | None = None,
            cwd: Path | None = None, scores=SCORES) -> subprocess.CompletedProcess:
    """The scripted sweep in its own process (``fault``: it SIGKILLs itself there)."""
    env = dict(env, **({"HPO_FAULT_KILL_AT": fault} if fault else {}))
    return subprocess.run(_driver_args(project, out=out, scores=scores), env=env,
                          cwd=cwd or project.root, capture_output=True, text=True, timeout=400)


@pytest.mark.slow
def test_sigkill_right_after_a_promotion_is_queued_continues_it_once(project) -> None:
    """Killed between queueing trial 1's continuation and claiming it: the next run claims
    the queued continuation (no second promotion) and it starts from the paused checkpoint."""
    _hyperband(project)
    dead = _driver(project, _env(), out=project.output_dir, fault="promotion:1")
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    db = project.output_dir / "tiny" / "study.db"
    study = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{db}")
    waiting = study.get_trials(states=(TrialState.WAITING,))
    assert [t.user_attrs[CONTINUES] for t in waiting] == [1]
    assert (project.output_dir / "tiny" / "trials" / "hpo_tiny" / "trial_1").is_dir(), \
        "the paused trial's checkpoint is kept"
    res = _driver(project, _env(), out=project.output_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    _check_the_scripted_sweep(optuna.load_study(study_name="hpo_tiny",
                                                storage=f"sqlite:///{db}"))


@pytest.mark.slow
def test_sigkill_inside_a_rung_decision_decides_again_from_the_rung_checkpoint(project) -> None:
    """Killed after trial 1 recorded its score at rung 1 (the third decision: trial 0 made
    two), before acting on it: the retry
    resumes from the rung's checkpoint (no epoch trained twice) and decides again; the chain
    is counted once."""
    _hyperband(project)
    dead = _driver(project, _env(), out=project.output_dir, fault="rung_decision:3")
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    res = _driver(project, _env(), out=project.output_dir)
    assert res.returncode == 0, res.stderr[-3000:]
    db = project.output_dir / "tiny" / "study.db"
    study = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{db}")
    trials = study.get_trials()
    (killed,) = [t for t in trials if t.state == TrialState.FAIL]
    assert killed.number == 1 and killed.user_attrs["interrupted"]
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == 1]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs[RESUMED_FROM_EPOCH] == 1
    assert len({retry_root(t) for t in trials}) == 4
    # by the retry's turn four chains had reached rung 1: chain 1 is second, so it goes on
    # at once (no pause, no continuation), and pauses at rung 2 behind chain 0
    assert retry.user_attrs[PAUSED_AT] == 2 and not any(CONTINUES in t.user_attrs
                                                         for t in trials)
    rows = {r["rung"]: r for r in halving.occupancy(study, halving.Rungs(1, 2, 1, 4))}
    assert rows[1]["reached"] == 4 and rows[2]["reached"] == 2
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)


@pytest.mark.slow
def test_a_fresh_colab_vm_continues_a_promotion_from_the_drive_mirror(project,
                                                                     tmp_path) -> None:
    """Killed right after a promotion on simulated Colab, the VM's disk lost: the new VM
    restores the study from Drive and the continuation starts from the paused trial's
    checkpoint mirrored there."""
    _hyperband(project)
    root, env = _colab(tmp_path)
    dead = _driver(project, env, out=None, fault="promotion:1", cwd=root / "content")
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    mirror = root.joinpath(*DURABLE, "trials", "hpo_tiny", "trial_1")
    assert any(mirror.glob("checkpoint-*/COMPLETE")), "the paused checkpoint is on Drive"
    shutil.rmtree(root / "content" / "resume-ner")  # the VM is gone; Drive survives
    res = _driver(project, env, out=None, cwd=root / "content")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Checkpoint restored from the durable mirror" in res.stderr
    db = root.joinpath(*WORKING, "study.db")
    _check_the_scripted_sweep(optuna.load_study(study_name="hpo_tiny",
                                                storage=f"sqlite:///{db}"))
    assert not any(root.joinpath(*DURABLE, "trials").glob("hpo_tiny/trial_*")), \
        "the stopped trials' mirrored checkpoints go once the sweep is complete"


@pytest.mark.slow
def test_two_workers_on_postgresql_promote_each_paused_trial_once(project, pg_url,
                                                                  tmp_path) -> None:
    """Two worker processes share a hyperband study on PostgreSQL (checkpoints on a shared
    folder): every configuration starts once, no paused trial is continued twice, each
    continuation starts from its parent's rung, and the best configuration reaches the top."""
    scores = {3e-3: 0.5, 2.7e-3: 0.45, 2.4e-3: 0.4, 2.1e-3: 0.35, 1.8e-3: 0.3, 1.5e-3: 0.25}
    shared = tmp_path / "shared-checkpoints"
    space = dict(TINY_HPO["search_space"], epochs=4)
    fixed = {"batch_size": 8, "dropout": 0.1, "weight_decay": 1e-3, "warmup_ratio": 0.05}
    project.write_hpo(max_trials=6, search_space=space, heartbeat_interval=1, grace_period=4,
                      shared_checkpoint_dir=str(shared), sampler={"type": "random", "seed": 3},
                      enqueue_trials=[dict(fixed, learning_rate=lr) for lr in scores],
                      scheduler={"type": "hyperband", "min_epochs": 1, "reduction_factor": 2})
    procs = [subprocess.Popen(_driver_args(project, out=project.output_dir, scores=scores,
                                           storage=pg_url), env=_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for _ in range(2)]
    outs = [p.communicate(timeout=500)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n----\n".join(o[-3000:] for o in outs)
    study = optuna.load_study(study_name="hpo_tiny", storage=pg_url)
    trials = study.get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    assert len({retry_root(t) for t in trials}) == 6, "six configurations, each started once"
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "the work was shared"
    parents = [t.user_attrs[CONTINUES] for t in trials if CONTINUES in t.user_attrs]
    # chain 2 (third best) reaches rung 1 among at most four chains, behind 0 and 1: it
    # pauses, and is promoted once all six are there (the top three go on)
    assert 2 in parents, parents
    assert len(parents) == len(set(parents)), "a paused trial was continued twice"
    by_number = {t.number: t for t in trials}
    for t in trials:
        if CONTINUES in t.user_attrs:
            rung = by_number[t.user_attrs[CONTINUES]].user_attrs[PAUSED_AT]
            assert t.user_attrs[RESUMED_FROM_EPOCH] == rung == t.user_attrs[CONTINUES_FROM_EPOCH]
    best = max(trials, key=lambda t: t.value)
    assert best.value == 0.5 and _epochs(best) == 4
    assert not list((shared / "hpo_tiny" / "trials").glob("trial_*")), \
        "the stopped chains' checkpoints are removed from the shared folder"
    paused = {t.number for t in trials if PAUSED_AT in t.user_attrs}
    stopped = set(study.user_attrs.get(STOPPED_AT_RUNG) or ())
    assert paused == set(parents) | stopped and not set(parents) & stopped


def test_brackets_compete_apart_and_a_promotion_is_queued_once(tmp_path: Path) -> None:
    """On a real SQLite study (factor 2, top 8): chains 0 and 2 are bracket 0 (rungs 1, 2, 4),
    1 and 3 bracket 1 (rungs 2, 4). A paused trial is promoted once: the queued continuation
    is what says so, whoever reads the study next; top-k counts a chain once."""
    study = optuna.create_study(study_name="s", direction="maximize",
                                storage=f"sqlite:///{tmp_path / 's.db'}")
    dist = {"learning_rate": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)}

    def paused(lr: float, rungs: dict[str, float], at: int) -> None:
        study.add_trial(optuna.trial.create_trial(
            params={"learning_rate": lr}, distributions=dist, value=max(rungs.values()),
            user_attrs={RUNG_SCORES: rungs, PAUSED_AT: at}))

    rungs = halving.Rungs(min_epochs=1, factor=2, brackets=2, top=8)
    assert rungs.of_bracket(0) == [1, 2, 4] and rungs.of_bracket(1) == [2, 4]
    paused(1e-3, {"1": 0.2}, 1)   # 0: bracket 0
    paused(2e-3, {"2": 0.9}, 2)   # 1: bracket 1, alone at its rung 2: it goes on
    paused(3e-3, {"1": 0.6}, 1)   # 2: bracket 0, better than 0
    paused(4e-3, {"2": 0.1}, 2)   # 3: bracket 1, below 1
    v = halving.view(study, rungs)
    assert v.scores == {(0, 1): {0: 0.2, 2: 0.6}, (1, 2): {1: 0.9, 3: 0.1}}
    assert [v.goes_on(r, at) for r, at in ((0, 1), (1, 2), (2, 1), (3, 2))] == [
        False, True, True, False]
    assert halving.promote_one(study, rungs) == 1  # the highest rung first
    assert halving.promote_one(study, rungs) == 2
    assert halving.promote_one(study, rungs) is None, "each paused trial is promoted once"
    queued = study.get_trials(states=(TrialState.WAITING,))
    assert [(t.user_attrs[CONTINUES], t.user_attrs[CONTINUES_FROM_EPOCH],
             t.user_attrs["retry_root"]) for t in queued] == [(1, 2, 1), (2, 1, 2)]
    assert [t.system_attrs["fixed_params"] for t in queued] == [{"learning_rate": 2e-3},
                                                                {"learning_rate": 3e-3}]
    from hpo_helpers.study.queries import paused_chain_roots

    assert paused_chain_roots(study) == {0, 3}, "promoted chains are no longer paused"
    assert halving.finish(study, rungs) == [0, 3]
    assert paused_chain_roots(study) == set()
    rows = {(r["bracket"], r["rung"]): r for r in halving.occupancy(study, rungs)}
    assert rows[(0, 1)] == {"bracket": 0, "rung": 1, "reached": 2, "paused": 0,
                            "promoted": 1, "stopped": 1}
    # chain 1's continuation ends level with it (no better epoch): one chain, one top-k place
    from hpo_helpers.study.queries import top_complete

    cont = study.ask()
    study.tell(cont, 0.9)
    assert cont.user_attrs[CONTINUES] == 1
    assert top_complete(study, 2) == [(1, 0.9), (2, 0.6)]


@pytest.mark.slow
def test_a_retry_does_not_decide_again_a_rung_its_chain_passed(project) -> None:
    """Configurations arrive worst first (scores rising): trial 0, alone, passes rung 1 and is
    SIGKILLed inside its rung-2 decision. Its retry runs last, after three better chains went
    through both rungs: replaying epoch 1 it does not decide rung 1 again (4th of 4 there, it
    would be sent back and its epoch 2 thrown away); it decides rung 2, never acted on, and
    pauses there with the checkpoint of that epoch."""
    rising = {3e-3: 0.2, 2.5e-3: 0.3, 2e-3: 0.4, 1.5e-3: 0.5}
    _hyperband(project)
    code = _driver_args(project, out=project.output_dir, scores=rising)
    dead = subprocess.run(code, env=dict(_env(), HPO_FAULT_KILL_AT="rung_decision:2"),
                          capture_output=True, text=True, timeout=400)
    assert dead.returncode == -signal.SIGKILL, dead.stderr[-3000:]
    res = subprocess.run(code, env=_env(), capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    db = project.output_dir / "tiny" / "study.db"
    study = optuna.load_study(study_name="hpo_tiny", storage=f"sqlite:///{db}")
    (retry,) = [t for t in study.trials if t.user_attrs.get("retry_of") == 0]
    assert retry.number == 4, "the retry ran after the three queued configurations"
    assert retry.user_attrs[RESUMED_FROM_EPOCH] == 2
    assert "1" not in retry.user_attrs[RUNG_SCORES], "rung 1 decided again"
    assert retry.user_attrs[PAUSED_AT] == 2 and retry.value == 0.2


@pytest.mark.parametrize("setting", ["no checkpoints", "shared without a shared folder"])
def test_hyperband_refuses_a_run_whose_checkpoints_a_promotion_could_not_reach(
        project, setting) -> None:
    _hyperband(project)
    cfg = load_configs(project.config_dir, project.hpo)
    import dataclasses

    if setting == "no checkpoints":
        hpo = dataclasses.replace(cfg.hpo, checkpoint=dataclasses.replace(
            cfg.hpo.checkpoint, enabled=False))
        needle, url = "needs checkpoint.enabled: true", None
    else:
        hpo, needle = cfg.hpo, "needs shared_checkpoint_dir"
        url = "postgresql+psycopg://u@127.0.0.1:1/none"  # refused before any connection
    with pytest.raises(ConfigError, match=needle):
        run_sweep(dataclasses.replace(cfg, hpo=hpo), output_dir=project.output_dir,
                  storage_url=url)
