"""A plain ``transformers.Trainer`` on the same data: the baseline of the quality benchmark.

What a user who does not tune would write: ``AutoModelForTokenClassification`` from the same
backbone folder, the Trainer's defaults (learning rate 5e-5, linear decay, no warmup, batch 8,
fp32 on a CPU), inputs truncated to the model's 512 tokens in overlapping windows so that long
resumes are not cut (the same windows and first-sub-token labels as ours: the comparison is
the training, not the data), trained for the same CPU time as our run, then scored
on the test split with the same seqeval metric (predictions merged per word).

The package's internals this imports (dataset reading, windows, the metric) are what makes the
comparison fair: the same words, labels and scoring as ours.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any


def trainer_baseline(cfg: Any, *, backbone: str, split_files: dict[str, str], work: Path,
                     budget_cpu_s: float, max_length: int = 512, stride: int = 64,
                     seed: int = 42) -> dict[str, Any]:
    """Train with the Trainer's defaults until this process has used ``budget_cpu_s`` CPU
    seconds (set-up included, as ours includes its own); test scores and curve."""
    import torch
    from transformers import (
        DataCollatorForTokenClassification,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from hpo_helpers.data.dataset import load_data
    from hpo_helpers.training.backbones import load_backbone
    from hpo_helpers.training.encoding import encode_documents, merge_predictions
    from hpo_helpers.training.metrics import entity_scores

    start, cpu0 = time.monotonic(), time.process_time()

    def spent() -> float:
        return time.process_time() - cpu0

    ds = load_data(cfg, None, split_files)
    bb = load_backbone(backbone, cfg.config_dir, texts=[" ".join(d.words) for d in ds.train],
                       cache_dir=work / "trainer-tokenizer")
    labels = list(ds.labels)
    label2id = {lab: i for i, lab in enumerate(labels)}

    def windows(docs: Any) -> list[Any]:
        return encode_documents(docs, bb.tokenizer, label2id, max_length=max_length,
                                stride=stride)

    train_w, val_w, test_w = windows(ds.train), windows(ds.validation), windows(ds.test)
    model = bb.build_model(labels, dropout=0.1, seed=seed)  # the backbone's own defaults

    class Windows(torch.utils.data.Dataset):
        def __init__(self, ws: list[Any]) -> None:
            self.ws = ws

        def __len__(self) -> int:
            return len(self.ws)

        def __getitem__(self, i: int) -> dict[str, list[int]]:
            w = self.ws[i]
            return {"input_ids": list(w.input_ids), "labels": list(w.labels),
                    "attention_mask": [1] * len(w)}

    def score(trainer: Any, docs: Any, ws: list[Any]) -> dict[str, Any]:
        out = trainer.predict(Windows(ws))
        rows = [list(out.predictions[i].argmax(-1)[:len(w)]) for i, w in enumerate(ws)]
        return entity_scores([d.tags for d in docs],
                             merge_predictions(docs, ws, rows, dict(enumerate(labels))))

    curve: list[dict[str, Any]] = []

    class Budget(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            if spent() >= budget_cpu_s:
                control.should_training_stop = True
            return control

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> Any:
            val = score(trainer, ds.validation, val_w)
            curve.append({"epoch": round(state.epoch, 2), "val_f1": round(val["f1"], 4),
                          "cpu_minutes": round(spent() / 60, 1)})
            if spent() >= budget_cpu_s:
                control.should_training_stop = True
            return control

    args = TrainingArguments(output_dir=str(work / "trainer-out"),
                             num_train_epochs=1000, per_device_train_batch_size=8,
                             per_device_eval_batch_size=32, save_strategy="no",
                             eval_strategy="no", report_to=[], seed=seed, use_cpu=not
                             torch.cuda.is_available(), logging_strategy="no",
                             dataloader_num_workers=0)
    trainer = Trainer(model=model, args=args, train_dataset=Windows(train_w),
                      data_collator=DataCollatorForTokenClassification(bb.tokenizer,
                                                                       pad_to_multiple_of=8),
                      callbacks=[Budget()])
    trainer.train()
    test = score(trainer, ds.test, test_w)
    return {"test_micro_f1": round(test["f1"], 4), "test_macro_f1": round(test["macro_f1"], 4),
            "test_per_type_f1": {k: round(v["f1"], 4) for k, v in
                                 sorted(test["per_type"].items())},
            "epochs_trained": round(float(trainer.state.epoch or 0), 2), "curve": curve,
            "minutes": round((time.monotonic() - start) / 60, 1),
            "cpu_minutes": round(spent() / 60, 1),
            "train_windows": len(train_w)}
