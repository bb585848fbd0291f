"""The exceptions raised by hpo_helpers.

Every error a user can cause derives from :class:`HpoHelpersError`, so a notebook or the CLI can
catch one type and print its message; the message alone says what, where and how to fix it::

    HpoHelpersError
    ├── ConfigError        a YAML file, key or value is wrong (names file, key, value, fix)
    ├── DataError          a dataset file cannot be read (names file and line)
    ├── BackboneError      a backbone cannot be loaded (names the offline alternatives)
    ├── BundleError        a study bundle is damaged, or cannot be imported here as asked
    ├── StudyError         the study cannot be opened or resumed as asked
    │   ├── StudyLockedError      another live process runs this study
    │   └── FingerprintMismatchError  search space / objective / dataset changed
    ├── CheckpointError    a trial checkpoint is unusable
    ├── DeviceError        a precision/compile setting this hardware cannot run
    ├── DurableStoreError  the durable store (a bucket) cannot be used at start
    ├── TrialOutOfMemoryError  a trial's batch did not fit in memory (ends the trial only)
    └── SweepFailedError   too many trials failed in a row; the sweep stopped
"""

from __future__ import annotations

__all__ = [
    "BackboneError",
    "BundleError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "DurableStoreError",
    "FingerprintMismatchError",
    "HpoHelpersError",
    "StudyError",
    "StudyLockedError",
    "SweepFailedError",
    "TrialOutOfMemoryError",
]


class HpoHelpersError(Exception):
    """Base of every error that hpo_helpers raises on purpose."""


class ConfigError(HpoHelpersError):
    """A configuration file, key or value is invalid."""


class DataError(HpoHelpersError):
    """A dataset file cannot be parsed or holds no usable documents."""


class BackboneError(HpoHelpersError):
    """A backbone model or tokenizer cannot be loaded."""


class BundleError(HpoHelpersError):
    """A study bundle (``bundle export``/``import``) is damaged (truncated, altered, unsafe
    member names), or importing it would mix searches or overwrite newer work. Nothing has
    been written when it is raised."""


class StudyError(HpoHelpersError):
    """The Optuna study cannot be opened or resumed."""


class StudyLockedError(StudyError):
    """Another live process holds the lock of this single-machine study."""


class FingerprintMismatchError(StudyError):
    """The study was created for another search space, objective or dataset."""


class CheckpointError(HpoHelpersError):
    """A trial checkpoint is missing pieces or does not belong to the trial."""


class DeviceError(HpoHelpersError):
    """An explicit ``precision`` or ``compile`` setting cannot run on this device."""


class DurableStoreError(HpoHelpersError):
    """The durable store of ``durable_url`` cannot be used: its library is missing, or it
    cannot be read when a run needs to know what it holds (the message names the store, never
    a credential). Trouble once a sweep runs only warns (``DurableWrites``)."""


class TrialOutOfMemoryError(HpoHelpersError):
    """A trial ran out of (GPU) memory; the message names the batch size.

    The sweep records the trial as FAIL with ``oom=True`` and goes on.
    """

    def __init__(self, message: str, *, batch_size: int) -> None:
        super().__init__(message)
        self.batch_size = batch_size


class SweepFailedError(HpoHelpersError):
    """The sweep stopped because too many trials failed."""
