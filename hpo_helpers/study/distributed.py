"""Several workers on several machines sharing one study through a database server.

SQLite is for one machine (its lock is a local file lock). With ``storage_url`` (PostgreSQL)
every worker runs the same command and shares ``hpo_{backbone}``:

* **Budget**: a worker starts a trial only while ``COMPLETE + RUNNING < max_trials``, checked
  and claimed (``study.ask()``) under a PostgreSQL advisory lock, so the study ends with exactly
  ``max_trials`` COMPLETE trials and no overshoot. Other databases get no such lock: the
  overshoot is then bounded by the number of workers minus one (logged once).
* **Dead workers**: each running trial records a heartbeat from a background thread every
  ``heartbeat_interval`` seconds, whatever the length of a training step; a trial whose
  heartbeat is older than ``grace_period`` is failed by Optuna's ``fail_stale_trials`` (one
  worker wins the update; on PostgreSQL under the budget lock, so its retry is queued before
  any worker counts the budget again), tagged ``interrupted`` and re-queued once with the same
  params. The retry resumes from the trial's checkpoint when ``shared_checkpoint_dir`` is
  storage every worker sees, else it starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.redaction import mask

__all__ = ["SharedStudy", "fail_stale_trials", "open_storage", "worker_id"]

logger = logging.getLogger(__name__)


def worker_id() -> str:
    """``host:pid`` of this worker."""
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna flags heartbeats as experimental and meant for ``optimize``; we drive them
    ourselves (ask/tell plus our heartbeat thread), so those warnings say nothing to users."""
    import warnings

    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
        yield


def fail_stale_trials(study: Any) -> None:
    """Optuna's stale-trial check (one worker wins each update; the callback re-queues)."""
    import optuna

    with _quiet_optuna():
        optuna.storages.fail_stale_trials(study)


def open_storage(url: str, *, heartbeat_interval: int, grace_period: int,
                 on_stale: Callable[[Any, Any], None]) -> Any:
    """An Optuna RDB storage with heartbeats; ``on_stale(study, frozen_trial)`` per dead trial."""
    import optuna

    from ..core.errors import StudyError

    last: Exception | None = None
    for attempt in range(4):
        try:
            with _quiet_optuna():
                return optuna.storages.RDBStorage(
                    url, engine_kwargs={"pool_pre_ping": True},
                    heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                    heartbeat_stale_trial_callback=on_stale)
        except ImportError as exc:
            last = exc
            break
        except Exception as exc:  # noqa: BLE001 - e.g. workers creating the tables at once
            last = exc
            time.sleep(0.5 + random.random() * (attempt + 1))
    raise StudyError(f"cannot open the shared study storage {mask(url)}: "
                     f"{mask(str(last)).splitlines()[0][:300]}. Fix: check that the server "
                     "is up and the URL, user and database are right (the driver is "
                     "psycopg: postgresql+psycopg://user@host/db).") from None


@dataclass
class SharedStudy:
    """The multi-worker side of a study on a database server."""

    storage: Any
    study_name: str
    poll_s: float = 2.0
    worker: str = field(default_factory=worker_id)
    _warned: bool = False

    @property
    def is_postgres(self) -> bool:
        return self.storage.engine.dialect.name == "postgresql"

    def _key(self, purpose: str) -> int:
        digest = hashlib.sha256(f"{self.study_name}:{purpose}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    @contextlib.contextmanager
    def exclusive(self, purpose: str) -> Iterator[None]:
        """Hold a PostgreSQL advisory lock shared by all workers of this study."""
        if not self.is_postgres:
            if not self._warned:
                logger.warning("No cross-worker lock on %s: the trial budget may be overshot by "
                               "up to (workers - 1) trials. Use PostgreSQL for exact budgets.",
                               self.storage.engine.dialect.name)
                self._warned = True
            yield
            return
        from sqlalchemy import text

        key = self._key(purpose)
        with self.storage.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()

    def reserve(self, study: Any, max_trials: int) -> Any | None:
        """``study.ask()`` unless COMPLETE + RUNNING trials cover the budget (then None);
        trials whose worker died are failed (and their retry queued) first."""
        from optuna.trial import TrialState

        from .queries import state_counts

        with self.exclusive("budget"):
            # A dead worker's trial is failed and its retry queued under the same lock, so no
            # worker counts the budget between the two and starts a new trial in its place.
            fail_stale_trials(study)
            counts = state_counts(study)
            taken = counts[TrialState.COMPLETE.name] + counts[TrialState.RUNNING.name]
            if taken >= max_trials:
                return None
            with _quiet_optuna():
                trial = study.ask()
            trial.set_user_attr("worker", self.worker)
            return trial

    @contextlib.contextmanager
    def heartbeat(self, trial: Any, interval: float) -> Iterator[None]:
        """Record heartbeats for ``trial`` from a thread until the block ends."""
        stop = threading.Event()
        trial_id = trial._trial_id

        def beat() -> None:
            while True:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception as exc:  # noqa: BLE001 - a missed beat is retried next time
                    logger.warning("Heartbeat of trial %d failed (%s)", trial.number,
                                   mask(str(exc))[:200])
                if stop.wait(interval):
                    return

        thread = threading.Thread(target=beat, name=f"heartbeat-{trial.number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(10)

    def workers(self) -> list[dict[str, Any]]:
        """Running trials with their worker and the age of their last heartbeat."""
        from sqlalchemy import text

        query = text(
            "SELECT t.number, h.heartbeat, a.value_json FROM trials t "
            "JOIN studies s ON s.study_id = t.study_id "
            "LEFT JOIN trial_heartbeats h ON h.trial_id = t.trial_id "
            "LEFT JOIN trial_user_attributes a ON a.trial_id = t.trial_id AND a.key = 'worker' "
            "WHERE s.study_name = :name AND t.state = 'RUNNING' ORDER BY t.number")
        now_q = text("SELECT CURRENT_TIMESTAMP")
        with self.storage.engine.connect() as conn:
            rows = conn.execute(query, {"name": self.study_name}).fetchall()
            now = conn.execute(now_q).scalar()
        out = []
        for number, beat, worker in rows:
            age = None
            if beat is not None and now is not None:
                age = (now.replace(tzinfo=None) - beat.replace(tzinfo=None)).total_seconds()
            out.append({"trial": number, "worker": (worker or "").strip('"') or None,
                        "heartbeat_age_s": None if age is None else round(age, 1)})
        return out
