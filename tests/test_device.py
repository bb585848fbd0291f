"""The device policy (issue 13): one table of capabilities, the refusals, the config keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hpo_helpers.core.errors import ConfigError, DeviceError
from hpo_helpers.settings.config import load_train_config
from hpo_helpers.training.device import (
    DeviceCapability,
    choose_policy,
    describe,
    policy_for,
)

P100 = DeviceCapability("cuda", "Tesla P100-PCIE-16GB", (6, 0))
T4 = DeviceCapability("cuda", "Tesla T4", (7, 5))
A100 = DeviceCapability("cuda", "NVIDIA A100-SXM4-40GB", (8, 0))
H100 = DeviceCapability("cuda", "NVIDIA H100 80GB HBM3", (9, 0))
CPU = DeviceCapability("cpu", cpu_bf16=False)
CPU_AMX = DeviceCapability("cpu", cpu_bf16=True)


@pytest.mark.parametrize("cap,precision,scaler,tf32,compiled,pinned", [
    (P100, "fp32", False, False, False, True),
    (T4, "fp16", True, False, True, True),
    (A100, "bf16", False, True, True, True),
    (H100, "bf16", False, True, True, True),
    (CPU, "fp32", False, False, False, False),
    (CPU_AMX, "bf16", False, False, False, False),
], ids=["6.0", "7.5", "8.0", "9.0", "cpu", "cpu-amx"])
def test_auto_policy_per_capability(cap, precision, scaler, tf32, compiled, pinned) -> None:
    p = choose_policy(cap)
    assert (p.precision, p.grad_scaler, p.tf32, p.compile, p.pin_memory) == (
        precision, scaler, tf32, compiled, pinned)
    assert p.device_type == cap.type and p.reason


@pytest.mark.parametrize("cap", [P100, T4, A100, H100, CPU, CPU_AMX],
                         ids=["6.0", "7.5", "8.0", "9.0", "cpu", "cpu-amx"])
def test_explicit_fp16_and_fp32_are_honoured_everywhere(cap) -> None:
    fp16 = choose_policy(cap, precision="fp16")
    assert fp16.precision == "fp16" and fp16.grad_scaler
    fp32 = choose_policy(cap, precision="fp32")
    assert fp32.precision == "fp32" and not fp32.grad_scaler and not fp32.tf32


@pytest.mark.parametrize("cap", [P100, T4], ids=["6.0", "7.5"])
def test_bf16_below_8_0_is_refused_not_emulated(cap) -> None:
    with pytest.raises(DeviceError, match=r"precision: bf16 needs a GPU of compute capability "
                                          r">= 8\.0.*only emulates bf16.*Fix: set precision"):
        choose_policy(cap, precision="bf16")


def test_bf16_is_honoured_on_8_0_and_on_cpu() -> None:
    assert choose_policy(A100, precision="bf16").precision == "bf16"
    assert choose_policy(CPU, precision="bf16").precision == "bf16"


def test_compile_settings() -> None:
    for off in (False, "off"):
        assert not choose_policy(H100, compile=off).compile
    for on in (True, "on"):
        assert choose_policy(T4, compile=on).compile
        assert choose_policy(CPU, compile=on).compile  # asked for: honoured on CPU too
    assert not choose_policy(CPU).compile  # auto keeps the CPU eager, as measured
    assert not choose_policy(P100).compile  # auto on < 7.0: no Triton, eager


@pytest.mark.parametrize("on", [True, "on"])
def test_compile_forced_below_7_0_is_refused(on) -> None:
    with pytest.raises(DeviceError, match=r"compile: true needs a GPU of compute capability "
                                          r">= 7\.0.*P100.*Fix: set compile: auto or false"):
        choose_policy(P100, compile=on)


def test_unknown_precision_is_refused() -> None:
    with pytest.raises(DeviceError, match=r"precision: 'fp8' is unknown"):
        choose_policy(CPU, precision="fp8")


def test_tf32_off_when_fp32_is_asked_for() -> None:
    assert choose_policy(A100).tf32 and not choose_policy(A100, precision="fp32").tf32


def test_policy_is_frozen() -> None:
    p = choose_policy(T4)
    with pytest.raises(AttributeError):
        p.precision = "bf16"  # type: ignore[misc]


def test_describe_reads_the_cpu(monkeypatch) -> None:
    import torch

    import hpo_helpers.training.device as device

    monkeypatch.setattr(device, "_cpu_has_bf16", lambda: True)
    assert describe(torch.device("cpu")) == CPU_AMX
    monkeypatch.setattr(device, "_cpu_has_bf16", lambda: False)
    assert describe(torch.device("cpu")) == CPU
    assert str(T4) == "Tesla T4 (compute capability 7.5)"


def test_train_yaml_keys(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("precision: fp16\ncompile: true\noom_retry: true\n")
    cfg = load_train_config(path)
    assert (cfg.precision, cfg.compile, cfg.oom_retry) == ("fp16", True, True)
    path.write_text("compile: false\n")
    assert load_train_config(path).compile is False
    defaults = load_train_config({})
    assert (defaults.precision, defaults.compile, defaults.oom_retry) == ("auto", "auto", False)
    p = policy_for(load_train_config({"precision": "fp16", "compile": False}))
    assert p.precision == "fp16" and p.grad_scaler and not p.compile


@pytest.mark.parametrize("raw,pattern", [
    ({"compile": "maybe"}, r"'compile' = 'maybe' is not one of"),
    ({"compile": 1}, r"'compile' = 1 must be a string"),
    ({"oom_retry": "yes"}, r"'oom_retry' = 'yes' must be true or false"),
])
def test_bad_device_keys(tmp_path: Path, raw, pattern) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=pattern):
        load_train_config(path)


def test_gpu_check_script_parses_and_startup_benchmark_runs() -> None:
    import json
    import subprocess
    import sys

    from .conftest import REPO

    assert subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_check.sh")]).returncode == 0
    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "trial_startup.py"),
                          "--model", "tiny", "--docs", "8", "--trials", "2", "--modes", "off",
                          "--device", "cpu"], capture_output=True, text=True, timeout=300,
                         cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert len(report["compile_off"]) == 2 and report["compile_off"][0]["first_step_s"] > 0


def test_sweep_refuses_bf16_on_a_t4_before_opening_the_study(project, monkeypatch) -> None:
    import hpo_helpers.training.device as device
    from hpo_helpers import run_local_hpo_sweep

    monkeypatch.setattr(device, "describe", lambda dev: T4)
    train = project.config_dir / "train.yaml"
    train.write_text(train.read_text().replace("precision: auto", "precision: bf16"))
    with pytest.raises(DeviceError, match=r"precision: bf16 needs .*Tesla T4 \(compute "
                                          r"capability 7\.5\)"):
        run_local_hpo_sweep(None, project.config_dir, None, project.hpo, None,
                            project.output_dir)
    assert not (project.output_dir / "tiny" / "study.db").exists()
