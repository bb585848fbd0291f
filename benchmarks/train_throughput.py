"""Trial training throughput: our loop against transformers.Trainer, same model, data and seed.

Both train the same token classifier on the same windows (demo data) with the same batch size,
epochs, learning rate and seed, in one process, one after the other. Printed: real (non-pad)
tokens per second for both, their ratio, the share of padding in the batches each one built,
and on CUDA the model FLOPs utilisation (6 x params x real tokens / time / peak).

    python benchmarks/train_throughput.py                      # CPU: minilm, demo data
    python benchmarks/train_throughput.py --model base --device cuda --docs 240   # GPU check
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "T4": 65e12}


def _windows(model: str, docs: int, max_length: int, stride: int):
    from hpo_helpers.data.dataset import load_dataset
    from hpo_helpers.settings.config import load_data_config
    from hpo_helpers.training.backbones import load_backbone
    from hpo_helpers.training.encoding import encode_documents

    data = load_data_config(REPO / "config" / "data" / "demo.yaml")
    import dataclasses

    data = dataclasses.replace(data, max_train_documents=docs)
    ds = load_dataset(REPO / "dataset", data)
    name = "minilm" if model in ("minilm", "base") else model
    bb = load_backbone(name, REPO / "config", texts=[" ".join(d.words) for d in ds.train],
                       cache_dir=Path(tempfile.mkdtemp()))
    if model == "base":  # DistilBERT-base-sized, random init (offline): 66M parameters
        from transformers import DistilBertConfig, DistilBertForTokenClassification

        def build(labels, dropout, seed):
            import torch

            torch.manual_seed(seed)
            cfg = DistilBertConfig(vocab_size=len(bb.tokenizer), num_labels=len(labels),
                                   dropout=dropout, pad_token_id=bb.tokenizer.pad_token_id)
            return DistilBertForTokenClassification(cfg)

        bb.build_model = lambda labels, dropout, seed: build(labels, dropout, seed)
        bb.kind = "base"
    l2i = {lab: i for i, lab in enumerate(ds.labels)}
    return bb, ds, encode_documents(ds.train, bb.tokenizer, l2i, max_length=max_length,
                                    stride=stride)


def _padding_share(lengths_per_batch: list[list[int]], multiple: int = 1) -> float:
    real = sum(sum(b) for b in lengths_per_batch)
    padded = sum((-(-max(b) // multiple) * multiple) * len(b) for b in lengths_per_batch)
    return 1 - real / padded


def _synthetic(n: int, low: int, high: int, vocab: int, n_labels: int, seed: int) -> list:
    """``n`` random windows of ``low``..``high`` tokens (the GPU check's 96-512-token windows)."""
    from hpo_helpers.training.encoding import IGNORE, Window

    rng = random.Random(seed)
    out = []
    for i in range(n):
        k = rng.randint(low, high)
        ids = tuple([1] + [rng.randrange(5, vocab) for _ in range(k - 2)] + [2])
        labels = tuple([IGNORE] + [rng.randrange(n_labels) for _ in range(k - 2)] + [IGNORE])
        out.append(Window(doc=i, input_ids=ids, labels=labels, word_ids=tuple(range(k))))
    return out


def ours(bb, ds, windows, args, device: str) -> dict:
    import torch

    from hpo_helpers.settings.config import load_train_config
    from hpo_helpers.training.train import _batch_plan, fit

    cfg = load_train_config({"max_length": args.max_length, "stride": args.stride,
                             "precision": args.precision, "compile": args.compile})
    params = {"learning_rate": 5e-5, "batch_size": args.batch_size, "dropout": 0.1,
              "weight_decay": 0.01, "warmup_ratio": 0.0, "epochs": args.epochs}
    steps: list[float] = []
    start = time.perf_counter()
    fit(backbone=bb, labels=ds.labels, train_windows=windows, eval_docs=[], eval_windows=[],
        params=params, cfg=cfg, seed=args.seed, checkpoint_dir=None,
        on_step=lambda d, t: steps.append(time.perf_counter()))
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    plan = [b for e in range(args.epochs)
            for b in _batch_plan(windows, args.batch_size, args.seed, e, True)]
    lengths = [[len(windows[i]) for i in b] for b in plan]
    out = {"seconds": wall, "padding_share": _padding_share(lengths, cfg.pad_to_multiple_of)}
    per_epoch = len(plan) // args.epochs
    if args.epochs > 1:  # the last epoch alone: steady state, without compile and warm-up
        out["last_epoch_seconds"] = start + wall - steps[len(plan) - per_epoch - 1]
    return out


def trainer(bb, ds, windows, args, device: str) -> dict:
    import torch
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    model = bb.build_model(ds.labels, dropout=0.1, seed=args.seed)
    rows = [{"input_ids": list(w.input_ids), "labels": list(w.labels)} for w in windows]
    targs = TrainingArguments(
        output_dir=tempfile.mkdtemp(), per_device_train_batch_size=args.batch_size,
        num_train_epochs=args.epochs, learning_rate=5e-5, weight_decay=0.01, seed=args.seed,
        logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[],
        disable_tqdm=True, dataloader_num_workers=0, use_cpu=device == "cpu",
        bf16=args.trainer_bf16,
        train_sampling_strategy="group_by_length" if args.trainer_group_by_length else "random",
        torch_compile=args.trainer_compile)
    collator = DataCollatorForTokenClassification(bb.tokenizer)
    t = Trainer(model=model, args=targs, train_dataset=rows, data_collator=collator)
    start = time.perf_counter()
    t.train()
    if device == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    rng = random.Random(args.seed)  # the default sampler: random order, no length grouping
    lengths = []
    for _ in range(args.epochs):
        order = list(range(len(windows)))
        rng.shuffle(order)
        lengths += [[len(windows[i]) for i in order[j:j + args.batch_size]]
                    for j in range(0, len(order), args.batch_size)]
    # With group_by_length the Trainer's batches are not the random ones counted here.
    return {"seconds": wall, "padding_share": None if args.trainer_group_by_length
            else _padding_share(lengths)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="minilm", help="minilm | tiny | base (66M, random)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--docs", type=int, default=120)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--stride", type=int, default=32)
    p.add_argument("--min-length", type=int, default=0,
                   help="drop windows shorter than this (e.g. 96 for 96-512-token windows)")
    p.add_argument("--synthetic", type=int, default=0,
                   help="train on N random windows of min-length..max-length tokens instead")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="torch.compile our loop (auto: see hpo_helpers.training.device)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"],
                   help="our loop's precision (auto: see hpo_helpers.training.device)")
    p.add_argument("--trainer-bf16", action="store_true",
                   help="give the Trainer bf16 too (its default is fp32)")
    p.add_argument("--trainer-compile", action="store_true", help="give the Trainer compile")
    p.add_argument("--skip-trainer", action="store_true", help="time our loop only")
    p.add_argument("--trainer-group-by-length", action="store_true",
                   help="give the Trainer length grouping (train_sampling_strategy="
                   "group_by_length)")
    p.add_argument("--results", action="store_true", help="write into benchmarks/RESULTS.md")
    args = p.parse_args(argv)
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else args.device
    if device == "cpu":
        import os

        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    bb, ds, windows = _windows(args.model, args.docs, args.max_length, args.stride)
    windows = [w for w in windows if len(w) >= args.min_length]
    if args.synthetic:
        windows = _synthetic(args.synthetic, max(args.min_length, 8), args.max_length,
                             len(bb.tokenizer), len(ds.labels), args.seed)
    real_tokens = sum(sum(1 for x in w.input_ids) for w in windows) * args.epochs
    # Trainer first, then ours: any warm-up (page cache, allocator) favours the baseline.
    base = None if args.skip_trainer else trainer(bb, ds, windows, args, device)
    mine = ours(bb, ds, windows, args, device)
    n_params = sum(p.numel() for p in bb.build_model(ds.labels, dropout=0.1,
                                                     seed=0).parameters())
    from hpo_helpers.training.device import choose_policy, describe

    policy = choose_policy(describe(torch.device(device)), precision=args.precision,
                           compile=args.compile)
    report = {
        "ours_precision": policy.precision, "ours_compile": policy.compile,
        "model": args.model, "params_m": round(n_params / 1e6, 1), "device": device,
        "windows": len(windows), "real_tokens": real_tokens, "epochs": args.epochs,
        "batch_size": args.batch_size,
        "ours_tokens_per_s": round(real_tokens / mine["seconds"], 1),
        "ours_padding_share": round(mine["padding_share"], 3),
    }
    if "last_epoch_seconds" in mine:
        report["ours_tokens_per_s_last_epoch"] = round(
            real_tokens / args.epochs / mine["last_epoch_seconds"], 1)
    if base is not None:
        report.update({
            "trainer_bf16": args.trainer_bf16,
            "trainer_group_by_length": args.trainer_group_by_length,
            "trainer_tokens_per_s": round(real_tokens / base["seconds"], 1),
            "ratio": round(base["seconds"] / mine["seconds"], 3),
            "trainer_padding_share": None if base["padding_share"] is None
            else round(base["padding_share"], 3),
        })
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        peak = next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)
        if peak:
            for who, res in (("ours", mine), ("trainer", base)):
                if res is not None:
                    report[f"{who}_mfu"] = round(
                        6 * n_params * real_tokens / res["seconds"] / peak, 4)
            if "ours_tokens_per_s_last_epoch" in report:
                report["ours_mfu_last_epoch"] = round(
                    6 * n_params * report["ours_tokens_per_s_last_epoch"] / peak, 4)
        report["gpu"] = name
    print(json.dumps(report, sort_keys=True))
    if args.results:
        from _results import record

        record(f"train_throughput ({args.model}, {device}"
               f"{', ours only' if args.skip_trainer else ''}"
               f"{', ours ' + args.precision if args.precision != 'auto' else ''}"
               f"{', trainer bf16' if args.trainer_bf16 else ''}"
               f"{', trainer group_by_length' if args.trainer_group_by_length else ''})", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
