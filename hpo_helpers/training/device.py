"""The device policy: which precision, gradient scaling, TF32 and torch.compile a trial uses.

One pure function, :func:`choose_policy`, maps a description of the hardware
(:class:`DeviceCapability`) and the configured ``precision`` / ``compile`` to a frozen
:class:`DevicePolicy`; :func:`describe` reads that description from torch. The rules:

=========================  ===============  ==========  =====  ===============
hardware                   precision: auto  scaler      TF32   compile: auto
=========================  ===============  ==========  =====  ===============
CUDA, capability >= 8.0    bf16 autocast    no          yes    yes
CUDA, capability 7.x       fp16 autocast    GradScaler  no     yes
CUDA, capability < 7.0     fp32             no          no     no (no Triton)
CPU with AVX512-BF16/AMX   bf16 autocast    no          --     no
other CPU                  fp32             no          --     no
=========================  ===============  ==========  =====  ===============

``torch.cuda.is_bf16_supported()`` is never asked: it answers True on a T4 (7.5) through
emulation, many times slower than its fp16 tensor cores. An explicit ``precision: bf16`` on a
GPU below 8.0, or ``compile: true`` on a GPU below 7.0, is refused with a :class:`DeviceError`.
``fp16`` is honoured everywhere (also on CPU, where autocast and the scaler both run: that is how
the fp16 path and its checkpointed scaler state are tested without a GPU).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import DeviceError

__all__ = [
    "DeviceCapability",
    "DevicePolicy",
    "apply_global",
    "choose_policy",
    "default_device",
    "describe",
    "free_memory",
    "policy_for",
    "stored_devices",
    "using",
    "worker_devices",
]

logger = logging.getLogger(__name__)

BF16_MIN_CC = (8, 0)  # Ampere: bf16 tensor cores and TF32
FP16_AUTO_MIN_CC = (7, 0)  # Volta/Turing: fp16 tensor cores
COMPILE_MIN_CC = (7, 0)  # Triton's floor


@dataclass(frozen=True)
class DeviceCapability:
    """What the policy needs to know about a device; ``compute_capability`` for CUDA only."""

    type: str  # "cuda" or "cpu"
    name: str = ""
    compute_capability: tuple[int, int] | None = None
    cpu_bf16: bool = False  # the CPU multiplies bf16 natively (AVX512-BF16 or AMX)

    def __str__(self) -> str:
        if self.type == "cuda":
            cc = self.compute_capability or (0, 0)
            return f"{self.name or 'CUDA GPU'} (compute capability {cc[0]}.{cc[1]})"
        return f"CPU ({'native bf16' if self.cpu_bf16 else 'no native bf16'})"


@dataclass(frozen=True)
class DevicePolicy:
    """The settings one trial trains with; chosen once, before the model is built."""

    device_type: str
    precision: str  # "bf16", "fp16" or "fp32"
    grad_scaler: bool  # fp16: scale the loss so small gradients survive
    tf32: bool  # TF32 tensor-core matmuls for the fp32 parts
    compile: bool  # torch.compile the training forward
    pin_memory: bool  # pinned host batches and non-blocking copies (CUDA)
    reason: str = ""

    def autocast(self) -> Any:
        """The autocast context of this policy (a null context for fp32)."""
        import contextlib

        import torch

        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device_type, dtype=dtype)


def _cc(cap: DeviceCapability) -> tuple[int, int]:
    return cap.compute_capability or (0, 0)


def _choose_precision(cap: DeviceCapability, precision: str) -> tuple[str, str]:
    if cap.type == "cuda":
        cc = _cc(cap)
        if precision == "bf16" and cc < BF16_MIN_CC:
            raise DeviceError(
                f"precision: bf16 needs a GPU of compute capability >= 8.0 (A100, L4, H100); "
                f"this is a {cap}, which only emulates bf16, many times slower. Fix: set "
                "precision: auto (fp16 with gradient scaling on 7.x) or fp16 in train.yaml.")
        if precision != "auto":
            return precision, "configured"
        if cc >= BF16_MIN_CC:
            return "bf16", "capability >= 8.0: bf16 tensor cores"
        if cc >= FP16_AUTO_MIN_CC:
            return "fp16", "capability 7.x: fp16 tensor cores, no bf16"
        return "fp32", "capability < 7.0: no tensor cores"
    if precision != "auto":
        return precision, "configured"
    if cap.cpu_bf16:
        return "bf16", "CPU with native bf16 (measured faster than fp32)"
    return "fp32", "CPU without native bf16"


def _choose_compile(cap: DeviceCapability, compile_: str | bool) -> bool:
    forced = compile_ is True or compile_ in ("on", "true")
    if compile_ is False or compile_ in ("off", "false"):
        return False
    if cap.type == "cuda":
        supported = _cc(cap) >= COMPILE_MIN_CC
        if forced and not supported:
            raise DeviceError(
                f"compile: true needs a GPU of compute capability >= 7.0 (Triton); this is a "
                f"{cap}. Fix: set compile: auto or false in train.yaml.")
        return supported
    # CPU: a trial's compile start-up costs more than it saves (measured, see RESULTS.md).
    return forced


def choose_policy(cap: DeviceCapability, *, precision: str = "auto",
                  compile: str | bool = "auto") -> DevicePolicy:
    """The policy for ``cap`` under the configured ``precision`` and ``compile``.

    Raises :class:`DeviceError` when an explicit setting cannot run on this hardware.
    """
    if precision not in ("auto", "bf16", "fp16", "fp32"):
        raise DeviceError(f"precision: {precision!r} is unknown. Fix: use auto, bf16, fp16 or "
                          "fp32 in train.yaml.")
    chosen, why = _choose_precision(cap, precision)
    cuda = cap.type == "cuda"
    return DevicePolicy(
        device_type=cap.type, precision=chosen, grad_scaler=chosen == "fp16",
        tf32=cuda and _cc(cap) >= BF16_MIN_CC and precision != "fp32",
        compile=_choose_compile(cap, compile), pin_memory=cuda, reason=why)


@functools.lru_cache(maxsize=1)
def _cpu_has_bf16() -> bool:
    """Whether the CPU multiplies bf16 natively (AVX512-BF16 or AMX): autocast then pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def describe(device: Any) -> DeviceCapability:
    """The capability of a ``torch.device`` (read from torch, never from bf16 emulation)."""
    import torch

    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return DeviceCapability("cuda", torch.cuda.get_device_name(index),
                                (int(major), int(minor)))
    return DeviceCapability(device.type, cpu_bf16=device.type == "cpu" and _cpu_has_bf16())


_worker = threading.local()  # the device of this thread's sweep worker (see :func:`using`)


def default_device() -> Any:
    """The device trials train on: this worker's (:func:`using`), else the first CUDA GPU,
    else the CPU."""
    import torch

    chosen = getattr(_worker, "device", None)
    if chosen is not None:
        return chosen
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextlib.contextmanager
def using(device: Any) -> Iterator[None]:
    """Make ``device`` (None: the default) this thread's :func:`default_device`."""
    old = getattr(_worker, "device", None)
    _worker.device = device
    try:
        if device is not None and device.type == "cuda":
            import torch

            torch.cuda.set_device(device)  # caches and streams of this worker's GPU
        yield
    finally:
        _worker.device = old


def worker_devices(spec: str, source: Path | str = "train.yaml") -> list[Any]:
    """The devices of a sweep's concurrent trial workers, from ``devices``.

    ``auto``: one worker per CUDA GPU when there are several, else one on the default device
    (``[None]``). ``0,1``: CUDA GPUs 0 and 1. ``cpu,cpu``: two CPU workers (tests). Entries may
    also be ``cuda:N``. Refused with a :class:`~hpo_helpers.core.errors.ConfigError` when a
    GPU is not there or an entry is not understood.
    """
    import torch

    from ..core.errors import ConfigError

    spec = str(spec).strip()
    if spec == "auto":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return [torch.device("cuda", i) for i in range(n)] if n > 1 else [None]
    devices = []
    for part in (p.strip() for p in spec.split(",")):
        index = part.removeprefix("cuda:")
        if part == "cpu":
            devices.append(torch.device("cpu"))
        elif index.isdigit() and int(index) < (torch.cuda.device_count()
                                               if torch.cuda.is_available() else 0):
            devices.append(torch.device("cuda", int(index)))
        else:
            n = torch.cuda.device_count() if torch.cuda.is_available() else 0
            raise ConfigError(
                f"{source}: key 'devices' = {spec!r}: {part!r} is not a device here ({n} CUDA "
                f"GPU{'s' if n != 1 else ''}). Fix: use auto, GPU numbers below {n} "
                "(e.g. 0,1), or cpu entries (e.g. cpu,cpu).")
    return devices


def stored_devices(spec: str | None, study_name: str) -> list[Any] | None:
    """The devices of ``--devices`` stored on a study by an earlier run (``study.inputs``), or
    None when none were stored or one of them is not on this machine (a study moved from a
    GPU machine to a CPU one): then a warning says so and the default device is used."""
    from ..core.errors import ConfigError

    if not spec:
        return None
    try:
        return worker_devices(spec, f"study {study_name}'s stored --devices")
    except ConfigError as exc:
        logger.warning("%s Using the default devices instead.", exc)
        return None


def policy_for(cfg: Any, device: Any = None) -> DevicePolicy:
    """The policy of train config ``cfg`` on ``device`` (default: :func:`default_device`)."""
    return choose_policy(describe(device if device is not None else default_device()),
                         precision=cfg.precision, compile=cfg.compile)


def apply_global(policy: DevicePolicy) -> None:
    """Process-wide switches of the policy (TF32 matmuls)."""
    import torch

    if policy.device_type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = policy.tf32
        torch.backends.cudnn.allow_tf32 = policy.tf32


def free_memory() -> None:
    """Release a finished (or out-of-memory) trial's model and optimizer before the next one.

    Besides the collector and CUDA's cache, glibc is asked to return freed heap pages to the
    system: without it the resident size of a long sweep creeps up trial after trial.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    libc = ctypes.util.find_library("c")
    if libc:
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
