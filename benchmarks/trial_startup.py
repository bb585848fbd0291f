"""Per-trial start-up: seconds from ``fit`` called to its first optimizer step, per trial.

Several short trials run one after another in one process, as a sweep runs them, first eager
then with ``torch.compile`` (after one untimed warm-up trial that pays CUDA's own start-up).
The first compiled trial pays the compilation; later ones show what torch reuses across trials
(its in-process and on-disk graph caches) although each trial builds a fresh model.

    python benchmarks/trial_startup.py --model tiny --docs 8 --trials 2     # CPU smoke
    python benchmarks/trial_startup.py --model base --device cuda --trials 3 --results
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def _trial(bb, ds, windows, args, compile_: str) -> dict:
    from hpo_helpers.settings.config import load_train_config
    from hpo_helpers.training.train import fit

    cfg = load_train_config({"max_length": args.max_length, "stride": args.stride,
                             "precision": args.precision, "compile": compile_})
    params = {"learning_rate": 5e-5, "batch_size": args.batch_size, "dropout": 0.1,
              "weight_decay": 0.01, "warmup_ratio": 0.0, "epochs": 1}
    marks: list[float] = []
    start = time.perf_counter()
    res = fit(backbone=bb, labels=ds.labels, train_windows=windows, eval_docs=[],
              eval_windows=[], params=params, cfg=cfg, seed=args.seed, checkpoint_dir=None,
              on_step=lambda d, t: marks.append(time.perf_counter()))
    _sync()
    end = time.perf_counter()
    return {"first_step_s": round(marks[0] - start, 3), "trial_s": round(end - start, 3),
            "compiled": res.policy.compile if res.policy else False}


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="tiny", help="minilm | tiny | base (66M, random)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--docs", type=int, default=16)
    p.add_argument("--steps", type=int, default=8, help="optimizer steps per trial")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--stride", type=int, default=64)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--modes", default="off,on",
                   help="compile settings to time, in order (off,on; a CPU compile takes minutes)")
    p.add_argument("--results", action="store_true", help="write into benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    if args.device == "cpu":
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    from train_throughput import _windows

    bb, ds, windows = _windows(args.model, args.docs, args.max_length, args.stride)
    windows = windows[: args.steps * args.batch_size]
    _trial(bb, ds, windows, args, "off")  # warm-up: CUDA context, kernels, allocator
    report: dict = {"model": args.model, "windows": len(windows), "batch_size": args.batch_size,
                    "steps_per_trial": -(-len(windows) // args.batch_size)}
    for mode in args.modes.split(","):
        runs = [_trial(bb, ds, windows, args, mode) for _ in range(args.trials)]
        report[f"compile_{mode}"] = runs
        report[f"compile_{mode}_first_step_s_later_trials"] = round(
            statistics.median(r["first_step_s"] for r in runs[1:]), 3) if len(runs) > 1 \
            else None
    import torch

    import hpo_helpers.training.train as train

    report["compile_failed"] = train._compile_broken  # then the "on" trials ran eagerly
    report["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    print(json.dumps(report, sort_keys=True))
    if args.results:
        from _results import record

        record(f"trial_startup ({args.model}, {'cuda' if torch.cuda.is_available() else 'cpu'})",
               report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
