"""The one validator for every name that becomes part of a path.

Study names, backbone names and archive suffixes end up as folder or file names under the output
folder. Each goes through :func:`check_name`: letters, digits and ``._-``, no leading dot, at
most 100 characters, so no name can climb out of its folder (``../x``, ``/abs``) or hide itself.
A local model folder used as a backbone gets the safe name
``local-<folder basename>-<8 hex of its absolute path>`` (:func:`backbone_path_name`).
"""

from __future__ import annotations

import hashlib
import re
import reprlib
from pathlib import Path

from .errors import ConfigError

__all__ = ["MAX_NAME", "backbone_path_name", "check_name", "is_local_model", "path_component",
           "short"]

MAX_NAME = 100
# \Z, not $: "$" also matches before a trailing newline, and "ok\n" must not pass (issue 23)
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*\Z")


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxdict, _REPR.maxtuple = 3, 6, 6, 6
_REPR.maxstring = _REPR.maxother = 80


def short(value: object, limit: int = 80) -> str:
    """A ``repr`` of ``value`` cut to about ``limit`` characters (``...`` marks the cut).

    Bounded in depth and length before it is built: a YAML alias bomb (nested aliases that
    repeat one list billions of times) costs no more to quote than a short list."""
    text = _REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_name(value: object, *, key: str, fix: str) -> str:
    """Return ``value`` when it is safe as one path component, else a one-line ConfigError."""
    if not isinstance(value, str) or not _NAME.fullmatch(value) or len(value) > MAX_NAME:
        raise ConfigError(
            f"{key.replace('_', ' ').removesuffix(' name')} name {short(value)} cannot be used "
            f"in a path: it must be 1 to {MAX_NAME} "
            "letters, digits, '_', '-' or '.', not start with '.', and contain no '/'. "
            f"Fix: {fix}"
        )
    return value


def _slug(text: str, fallback: str) -> str:
    """``text`` with every character but letters, digits and ``._-`` as ``_``, no leading dot,
    at most 60 characters (``fallback`` when nothing is left)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")[:60] or fallback


def path_component(text: str) -> str:
    """A folder name for free text that names something (an MLflow experiment): ``text``
    itself when it passes :func:`check_name`, else its safe characters and 8 hex of its
    SHA-256, so ``../../../x`` becomes one folder, never a way out (issue 23)."""
    if _NAME.fullmatch(text) and len(text) <= MAX_NAME:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{_slug(text, 'x')}-{digest}"


def is_local_model(backbone: str) -> bool:
    """True when ``backbone`` names a local Hugging Face model folder (it has a config.json)."""
    try:
        return (Path(backbone) / "config.json").is_file()
    except (OSError, ValueError):
        return False


def backbone_path_name(backbone: str) -> str:
    """The name that stands for ``backbone`` in paths and study names.

    A registry name is checked and returned as is; a local model folder becomes
    ``local-<basename>-<8 hex of its absolute path>`` (its basename made safe first).
    """
    if is_local_model(backbone):
        folder = Path(backbone).absolute()
        base = _slug(folder.name, "model")
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:8]
        return f"local-{base}-{digest}"
    return check_name(backbone, key="backbone",
                      fix="use a registry name such as 'minilm' or 'tiny', or a local model "
                      "folder (one with a config.json)")
