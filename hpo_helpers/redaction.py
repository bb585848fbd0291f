"""Masking secrets before anything reaches a log line, an MLflow param or tag, or status output.

Passwords in URLs (``scheme://user:secret@host``), and query parameters or ``key=value`` pairs
whose name says they are secret (password, token, secret, sig, key, credential), become ``***``.
"""

from __future__ import annotations

import re

__all__ = ["mask"]

_URL_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<pw>[^@\s/]+)@")
_SECRET_PAIR = re.compile(
    r"(?P<name>\b[\w.-]*(?:password|passwd|pwd|token|secret|sig|apikey|api_key|accountkey|"
    r"credential)[\w.-]*)(?P<sep>\s*[=:]\s*)(?P<value>[^\s&;,'\"]+)",
    re.IGNORECASE,
)


def mask(text: object) -> str:
    """``text`` as a string with passwords and secret values replaced by ``***``."""
    s = str(text)
    s = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:***@", s)
    return _SECRET_PAIR.sub(lambda m: f"{m.group('name')}{m.group('sep')}***", s)
