"""What a sweep will run, decided before its study is opened."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.runtime import Runtime, detect
from ..data.dataset import Dataset
from ..settings.config import Configs
from ..settings.schema import study_name
from ..storage.bucket import BucketSync, NoSync, Store, open_store, restore, study_sync_plan
from ..storage.durable import DurableWrites
from ..storage.layout import BACKBONE_CACHE, StudyLayout
from ..storage.mirror import CheckpointMirror
from ..storage.paths import StudyPaths, resolve
from ..study.opening import adopt_seed_study
from ..study.status import durable_url_for, storage_url_for
from ..training.backbones import load_backbone
from ..training.device import policy_for, worker_devices
from ..training.trial import Prepared, prepare

__all__ = ["SweepPlan"]


@dataclasses.dataclass(frozen=True)
class SweepPlan:
    """What a sweep will run, decided before anything is opened: the backbone, the runtime,
    the shared storage URL (or None), the local paths (None: in-memory study) and the devices.
    ``store``: the bucket that holds the durable copy (``durable_url``), already restored
    from on a fresh machine.
    """

    cfg: Configs
    backbone: str
    runtime: Runtime
    url: str | None
    local: StudyPaths | None
    devices: list[Any]
    store: Store | None = None

    @classmethod
    def make(cls, cfg: Configs, *, backbone: str | None, runtime: Runtime | None,
             storage_url: str | None, output_dir: Path | str | None,
             durable_url: str | None = None) -> SweepPlan:
        """Resolve paths and devices; refuses what a device cannot run before any work. With a
        bucket, the study is restored from it first where this machine lacks it."""
        hpo = cfg.hpo
        name = backbone or hpo.backbone
        runtime = runtime or detect()
        url = storage_url_for(hpo, storage_url)
        bucket = durable_url_for(hpo, durable_url) if hpo.checkpoint.enabled else None
        if bucket and url:
            raise ConfigError("durable_url cannot be used with a shared study (storage_url: its "
                              "checkpoints live in shared_checkpoint_dir). Fix: drop one of them.")
        if hpo.scheduler.type != "tpe_median":
            _check_checkpoints_for_scheduler(hpo, url)
        devices = worker_devices(cfg.train.devices, cfg.train.source)
        for device in devices:
            policy_for(cfg.train, device)
        local = resolve(runtime, backbone=name, storage_path=hpo.checkpoint.storage_path,
                        output_dir=output_dir, durable_url=bucket) \
            if hpo.checkpoint.enabled or url else None
        store = None
        if local is not None and bucket:
            store = open_store(bucket)
            restore(store, cls.sync_plan(local), local_exists=local.working_db.exists())
        if local is not None and not url:
            adopt_seed_study(local, runtime, name, study_name(name, hpo.study_name),
                             output_dir_given=output_dir is not None, config=hpo.source)
        return cls(cfg, name, runtime, url, local, devices, store)

    @staticmethod
    def sync_plan(paths: StudyPaths, mlflow_db: Path | None = None) -> Any:
        """What the bucket copy of this study holds (``bucket.SyncPlan``)."""
        return study_sync_plan(paths.durable_dir, paths.durable_db, cache_folder=BACKBONE_CACHE,
                               mlflow_db=mlflow_db)

    def bucket_sync(self, paths: StudyPaths | None, writes: DurableWrites,
                    mlflow_db: Path | None) -> BucketSync | NoSync:
        """The background sender of the study's files to the bucket (a no-op without one)."""
        if self.store is None or paths is None:
            return NoSync()
        return BucketSync(self.store, self.sync_plan(paths, mlflow_db), writes)

    def durable_writes(self, paths: StudyPaths | None) -> DurableWrites:
        """The policy for every copy to the durable side (a bucket, Drive, none)."""
        if self.store is not None:
            return DurableWrites(None, name=f"The durable store {self.store.url}")
        return DurableWrites.for_folder(
            paths.durable_dir if paths and paths.snapshots_needed else None)

    def prepare(self, dataset: Dataset, layout: StudyLayout) -> Prepared:
        """Load the backbone's tokenizer and encode every fold once."""
        cache = layout.tokenizer_cache(self.backbone, dataset.fingerprint)
        if cache is None:  # an in-memory study keeps nothing
            import tempfile

            cache = Path(tempfile.mkdtemp(prefix="hpo-tiny-"))
        bb = load_backbone(self.backbone, self.cfg.config_dir,
                           texts=[" ".join(d.words) for d in dataset.train], cache_dir=cache)
        return prepare(self.cfg, dataset, bb, self.cfg.train.seed)

    def mirror(self, paths: StudyPaths | None, layout: StudyLayout,
               writes: DurableWrites) -> CheckpointMirror | None:
        """The background copier of trial checkpoints, where the config (or, by default, a
        working folder that dies with the VM: Colab with Drive) asks for one."""
        on = self.cfg.hpo.mirror_trial_checkpoints
        if self.store is not None:  # the bucket sync sends the checkpoints themselves
            return None
        if on is None:
            on = paths is not None and paths.snapshots_needed
        if on and paths is not None and layout.mirror_root is not None:
            return CheckpointMirror(layout, writes)
        return None


def _check_checkpoints_for_scheduler(hpo: Any, url: str | None) -> None:
    """A promotion (a PBT generation) continues from the paused trial's checkpoint: refuse a
    run that keeps none, or (a shared study) keeps them where another worker cannot read
    them."""
    kind = hpo.scheduler.type
    if url and not hpo.shared_checkpoint_dir:
        raise ConfigError(f"{hpo.source}: scheduler.type {kind} on a shared study needs "
                          "shared_checkpoint_dir (a promotion may continue on any worker, from "
                          "the paused trial's checkpoint). Fix: set shared_checkpoint_dir to a "
                          "folder every worker sees.")
    if not url and not hpo.checkpoint.enabled:
        raise ConfigError(f"{hpo.source}: scheduler.type {kind} needs checkpoint.enabled: "
                          "true (paused trials wait with their checkpoint). Fix: enable it.")
