"""Memory across trials: 10 trials in one process; peak RSS of each trial (and CUDA memory).

The peak resident set of each trial is read from ``VmHWM`` after resetting it at the trial's
start (``/proc/self/clear_refs``), so every trial gets its own peak. Goal: trial 10 within 5 % of
trial 2 (trial 1 pays one-off start-up costs).

    python benchmarks/memory.py                       # minilm, small data, 1 epoch per trial
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from _project import scratch_config  # noqa: E402 - a sibling module of this script


def _hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_hwm() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="minilm")
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--docs", type=int, default=16)
    p.add_argument("--results", action="store_true")
    args = p.parse_args(argv)
    import logging

    import torch
    import yaml

    from hpo_helpers import SweepEvents, load_configs, run_sweep

    logging.disable(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="hpo-memory-"))
    try:
        config = scratch_config(work, "mem", docs=args.docs, eval_docs=8)
        smoke = yaml.safe_load((config / "hpo" / "smoke.yaml").read_text())
        smoke.update(backbone=args.backbone, max_trials=args.trials, data_config="data/mem.yaml",
                     pruner={"type": "none"})
        # Same shapes every trial: the batch size drives activation memory, and a sampled one
        # would make trials differ for reasons that are not leaks.
        smoke["search_space"]["epochs"] = 1
        smoke["search_space"]["batch_size"] = 16
        (config / "hpo" / "mem.yaml").write_text(yaml.safe_dump(smoke))
        cfg = load_configs(config, config / "hpo" / "mem.yaml")
        cfg = dataclasses.replace(cfg, hpo=dataclasses.replace(cfg.hpo, max_trials=args.trials))
        peaks: list[float] = []
        cuda: list[float] = []

        class Events(SweepEvents):
            def trial_started(self, number, params, retry_of):
                _reset_hwm()
                if torch.cuda.is_available():
                    torch.cuda.reset_peak_memory_stats()

            def trial_finished(self, *a, **k):
                peaks.append(_hwm_mb())
                if torch.cuda.is_available():
                    cuda.append(torch.cuda.max_memory_allocated() / 2**20)

        run_sweep(cfg, output_dir=work / "out", events=Events())
        report = {"backbone": args.backbone, "trials": len(peaks),
                  "peak_rss_mb_per_trial": [round(x, 1) for x in peaks],
                  "trial_last_vs_trial_2": round(peaks[-1] / peaks[1], 4)}
        if cuda:
            report["cuda_peak_mb_per_trial"] = [round(x, 1) for x in cuda]
            report["cuda_last_vs_trial_2"] = round(cuda[-1] / cuda[1], 4)
        report["within_5_percent"] = abs(report["trial_last_vs_trial_2"] - 1) <= 0.05
        if len(peaks) >= 7:  # a trend, less sensitive to one trial's allocator noise
            import statistics

            report["median_last3_vs_trials_2_to_4"] = round(
                statistics.median(peaks[-3:]) / statistics.median(peaks[1:4]), 4)
        print(json.dumps(report, sort_keys=True))
        if args.results:
            from _results import record

            record(f"memory ({args.backbone})", report)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
