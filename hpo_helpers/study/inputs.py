"""What ``run`` was given besides its config files, remembered by the study (issue 21, item 5).

``--dataset``, ``--train``, ``--validation``, ``--test`` (as absolute paths: a relative one is
taken against the folder the command ran in) and ``--devices`` are stored on the study as the
user attribute ``run_inputs``. A later ``run`` (the printed resume command names them too),
``evaluate``, ``refit`` and ``predict --model best`` use the stored values unless given again,
and say in the log which ones they reused; an explicit value always wins.

The four data flags count as one group: giving any of them replaces all stored ones (``--train``
alone already replaces ``--dataset``, and a mix of one run's files with another's would be
neither run's data). ``--devices`` stands on its own.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..settings.schema import RUN_INPUTS

if TYPE_CHECKING:
    import optuna

    from ..core.runtime import Runtime
    from ..settings.config import Configs

__all__ = ["DATA_KEYS", "RunInputs", "stored_inputs"]

logger = logging.getLogger(__name__)

DATA_KEYS = ("dataset", "train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """The data files (absolute paths) and devices of a run; None where not given."""

    dataset: str | None = None
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    devices: str | None = None
    reused: tuple[str, ...] = ()  # the keys taken from the study, not given this time

    @classmethod
    def given(cls, *, dataset: Path | str | None = None,
              split_files: Mapping[str, Path | str | None] | None = None,
              devices: str | None = None, cwd: Path | str | None = None) -> RunInputs:
        """What this command was given, paths made absolute against ``cwd`` (default: the
        current folder)."""
        base = Path(cwd) if cwd is not None else Path.cwd()

        def absolute(value: Path | str | None) -> str | None:
            return None if value is None else os.path.abspath(base / Path(value))

        files = split_files or {}
        return cls(dataset=absolute(dataset), train=absolute(files.get("train")),
                   validation=absolute(files.get("validation")),
                   test=absolute(files.get("test")), devices=str(devices) if devices else None)

    @classmethod
    def from_attr(cls, stored: Mapping[str, Any] | None) -> RunInputs:
        """The stored attribute (``run_inputs``) read back; unknown keys are ignored."""
        stored = stored or {}
        value = {k: str(stored[k]) if stored.get(k) else None for k in (*DATA_KEYS, "devices")}
        return cls(dataset=value["dataset"], train=value["train"],
                   validation=value["validation"], test=value["test"],
                   devices=value["devices"])

    def as_attr(self) -> dict[str, str]:
        """The attribute to store: the keys that are set."""
        return {k: v for k in (*DATA_KEYS, "devices") if (v := getattr(self, k)) is not None}

    @property
    def has_data(self) -> bool:
        return any(getattr(self, k) is not None for k in DATA_KEYS)

    def split_files(self) -> dict[str, str | None]:
        """``--train/--validation/--test`` as ``load_data`` takes them."""
        return {k: getattr(self, k) for k in DATA_KEYS[1:]}

    def flags(self) -> list[tuple[str, str]]:
        """``(flag, value)`` of each set value, in the order the CLI lists them."""
        return [(f"--{k}", v) for k, v in self.as_attr().items()]

    def over(self, stored: RunInputs, study_name: str) -> RunInputs:
        """These inputs, completed with the ``stored`` ones that were not given again (data
        as one group, devices alone); logs what was reused."""
        take_data = not self.has_data and stored.has_data
        take_devices = self.devices is None and stored.devices is not None
        reused = tuple(k for k in DATA_KEYS if take_data and getattr(stored, k) is not None) \
            + (("devices",) if take_devices else ())
        if not reused:
            return self
        out = dataclasses.replace(
            self, **({k: getattr(stored, k) for k in DATA_KEYS} if take_data else {}),
            devices=stored.devices if take_devices else self.devices, reused=reused)
        logger.info("Study %s: reusing %s (given to an earlier run and stored on the study; "
                    "pass the flag to change it)", study_name,
                    ", ".join(f"--{k} {getattr(out, k)}" for k in reused))
        return out

    def remember(self, study: optuna.Study) -> None:
        """Store these inputs on ``study`` (nothing is written when they are unchanged)."""
        value = self.as_attr()
        if value and study.user_attrs.get(RUN_INPUTS) != value:
            study.set_user_attr(RUN_INPUTS, value)


def stored_inputs(cfg: Configs, *, backbone: str | None = None,
                  output_dir: Path | str | None = None, runtime: Runtime | None = None,
                  storage_url: str | None = None) -> RunInputs:
    """The inputs stored on the study, read without its lock (empty when there is no study,
    or none that can be read: the sweep's own open sets a damaged file aside and says so)."""
    from ..core.errors import StudyError
    from .status import status

    try:
        info = status(cfg, backbone=backbone, output_dir=output_dir, runtime=runtime,
                      storage_url=storage_url)
    except StudyError as exc:
        logger.debug("No stored run inputs: %s", exc)
        return RunInputs()
    return RunInputs.from_attr(info.get("run_inputs"))
