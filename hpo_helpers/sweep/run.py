"""Running a sweep: :func:`run_sweep` (the API the CLI, the panel and tests use) and the
seed's :func:`run_local_hpo_sweep`."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

from ..core.runtime import Runtime
from ..core.stopping import StopRequest
from ..data.dataset import load_data
from ..settings.config import Configs, load_configs
from ..settings.schema import study_name
from ..study.inputs import RunInputs, stored_inputs
from ..study.status import storage_url_for
from ..tracking.setup import TrackingSetup, setup_mlflow_from_config
from ..training.device import stored_devices
from .events import SweepEvents, SweepOutcome
from .plan import SweepPlan
from .session import Fit, SweepSession
from .transfer import take_earlier_output

__all__ = ["run_local_hpo_sweep", "run_sweep"]


def run_sweep(cfg: Configs, *, backbone: str | None = None, dataset_path: Path | str | None = None,
              output_dir: Path | str | None = None, runtime: Runtime | None = None,
              stop: StopRequest | None = None, tracking: TrackingSetup | None = None,
              events: SweepEvents | None = None, stop_after_trial: threading.Event | None = None,
              storage_url: str | None = None, split_files: dict[str, Any] | None = None,
              devices: str | None = None, fit: Fit | None = None,
              durable_url: str | None = None, resume_from: Path | str | None = None,
              ) -> SweepOutcome:
    """Run (or resume) the sweep described by ``cfg``; see the module docstring.

    ``split_files`` (``--train/--validation/--test``) name split files explicitly;
    ``devices`` (``--devices``) overrides ``train.yaml``'s ``devices``. Both, and
    ``dataset_path``, are stored on the study, and a later call that does not give them uses
    the stored ones (:mod:`~hpo_helpers.study.inputs`). ``stop_after_trial`` (the panel's
    button) ends the sweep once the running trial is done; ``events`` receives progress.
    ``storage_url`` (or ``HPO_STORAGE_URL``, or the config's): one worker of a shared study
    (``distributed``). ``fit`` replaces :func:`~hpo_helpers.training.train.fit` (tests).
    ``durable_url`` (or ``HPO_DURABLE_URL``, or the config's): a bucket that holds the
    durable copy (``storage.bucket``). ``resume_from`` (or the config's; on Kaggle, an
    attached output): an earlier run's output to continue from (``sweep.transfer``).
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    given = RunInputs.given(dataset=dataset_path, split_files=split_files, devices=devices)
    inputs, devices = _inputs(cfg, given, backbone=backbone, output_dir=output_dir,
                              runtime=runtime, storage_url=storage_url, durable_url=durable_url,
                              earlier=(resume_from, tracking is None))
    if devices:
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, devices=devices))
    plan = SweepPlan.make(cfg, backbone=backbone, runtime=runtime, storage_url=storage_url,
                          output_dir=output_dir, durable_url=durable_url)
    dataset = load_data(cfg, inputs.dataset, inputs.split_files())
    with SweepSession.open(plan, dataset, tracking=tracking, events=events or SweepEvents(),
                           stop=stop or StopRequest(), stop_after_trial=stop_after_trial,
                           fit=fit, inputs=inputs) as session:
        session.run()
    session.outcome.inputs = dataclasses.replace(inputs, devices=devices)  # what ran
    return session.outcome


def _inputs(cfg: Configs, given: RunInputs, *, backbone: str | None,
            output_dir: Path | str | None, runtime: Runtime | None, storage_url: str | None,
            durable_url: str | None, earlier: tuple[Path | str | None, bool],
            ) -> tuple[RunInputs, str | None]:
    """``given``, completed with what the study stored, and the devices to run on (stored
    devices only where this machine has them; they stay stored either way). An earlier
    run's output (``earlier``: the folder, and whether MLflow's store may be written) is
    copied in first, so its stored inputs count."""
    if not (cfg.hpo.checkpoint.enabled or storage_url_for(cfg.hpo, storage_url)):
        return given, given.devices  # an in-memory study stores nothing
    if not storage_url_for(cfg.hpo, storage_url):
        take_earlier_output(cfg, earlier[0], backbone=backbone, output_dir=output_dir,
                            runtime=runtime, durable_url=durable_url, mlflow=earlier[1])
    name = study_name(backbone or cfg.hpo.backbone, cfg.hpo.study_name)
    inputs = given.over(stored_inputs(cfg, backbone=backbone, output_dir=output_dir,
                                      runtime=runtime, storage_url=storage_url), name)
    if "devices" in inputs.reused and stored_devices(inputs.devices, name) is None:
        return inputs, None
    return inputs, inputs.devices


def run_local_hpo_sweep(dataset_path: Path | str | None, config_dir: Path | str,
                        backbone: str | None, hpo_config: Any, train_config: Any = None,
                        output_dir: Path | str | None = None,
                        mlflow_experiment_name: str | None = None, *, data_config: Any = None,
                        max_trials: int | None = None, storage_url: str | None = None) -> Any:
    """Run or resume an HPO sweep and return the Optuna study (the seed's signature).

    ``hpo_config``/``train_config``/``data_config`` may be paths (absolute, relative to the
    current folder, or relative to ``config_dir``), mappings or loaded config objects.
    ``mlflow_experiment_name`` turns on MLflow tracking through ``config/mlflow.yaml``
    (:func:`~hpo_helpers.tracking.setup.setup_mlflow_from_config`); tracking problems warn
    and never stop the search.
    """
    cfg = load_configs(config_dir, hpo_config, train_config, data_config)
    if max_trials is not None:
        cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=max_trials))
    from ..study.status import durable_url_for

    tracking = setup_mlflow_from_config(mlflow_experiment_name, config_dir,
                                        durable_url=durable_url_for(cfg.hpo)) \
        if mlflow_experiment_name else None
    return run_sweep(cfg, backbone=backbone, dataset_path=dataset_path, output_dir=output_dir,
                     tracking=tracking, storage_url=storage_url).study

