"""Masking secrets: the one function every log line, MLflow value, status field, printed
command and process argument goes through before anyone can read it.

What becomes ``***``:

* the password of a URL (``scheme://user:PASSWORD@host``): everything between ``user:`` and
  the last ``@`` of the URL, so passwords holding ``/``, ``:``, ``@``, ``?`` or ``#`` (SQLAlchemy
  accepts them) are masked whole;
* values of ``name=value``, ``name: value``, ``'name': 'value'`` and ``"name": "value"`` pairs
  (quoted or not; query strings and connection strings too) whose name says secret: password,
  passwd, pwd, secret, token, credential, sig, signature, api/account/access/secret key;
* ``--password VALUE`` style command-line flags with such names;
* ``Bearer <token>`` and ``Basic <token>`` (HTTP authorization);
* any secret registered with :func:`register_secret` (the password of the storage URL in use),
  wherever it appears, also URL-quoted, JSON-escaped or ``repr``-escaped: a password in an error
  message without its URL is caught too.

Over-masking is preferred to a leak. :class:`MaskingFilter` applies :func:`mask` to every log
record that passes through a handler.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import urllib.parse

__all__ = ["MaskingFilter", "mask", "mask_log_handlers", "register_secret",
           "register_url_secret"]

# scheme://user:password@ -- the password runs to the last '@' before the next whitespace,
# quote or bracket that closes the URL.
_URL_PASSWORD = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*):(?P<pw>[^\s'\"<>]*)@(?=[^\s@'\"<>]*"
    r"(?:[\s'\"<>]|$))"
)
_SECRET_WORD = (r"(?:password|passwd|pwd|secret|token|credentials?|sig|signature|"
                r"(?:api|account|access|secret|private|shared_?access|subscription|storage|"
                r"master)[_-]?key)")
_SECRET_PAIR = re.compile(
    r"(?P<name>\b[\w.-]*?" + _SECRET_WORD + r")(?![A-Za-z0-9])"
    r"(?P<sep>['\"]?\s*[=:]\s*)"
    r"(?:(?P<q>['\"])(?P<quoted>(?:\\.|(?!(?P=q)).)*)(?P=q)|(?P<value>[^\s&;,'\"}\])]+))",
    re.IGNORECASE,
)
_FLAG = re.compile(r"(?P<name>--[\w-]*" + _SECRET_WORD + r")(?P<sep>\s+|=)(?P<value>\S+)",
                   re.IGNORECASE)
_AUTH = re.compile(r"\b(?P<kind>Bearer|Basic)\s+(?P<value>[A-Za-z0-9._~+/=\-]{4,})",
                   re.IGNORECASE)
_MIN_SECRET = 4  # shorter registered values would mask ordinary text

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears from now on (in this process)."""
    if not value or len(value) < _MIN_SECRET:
        return
    forms = {value, urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value),
             json.dumps(value)[1:-1], repr(value)[1:-1]}
    with _lock:
        _secrets.update(f for f in forms if len(f) >= _MIN_SECRET)


def register_url_secret(url: str | None) -> None:
    """Register the password of database/tracking URL ``url`` (raw and decoded forms)."""
    if not url:
        return
    try:  # SQLAlchemy's own reading of the URL: the password it will send
        from sqlalchemy.engine import make_url

        register_secret(make_url(url).password)
    except Exception:  # noqa: BLE001 - not a SQLAlchemy URL; the pattern below still applies
        pass
    m = _URL_PASSWORD.search(url)
    if m:
        register_secret(m.group("pw"))
        register_secret(urllib.parse.unquote(m.group("pw")))
    for pair in _SECRET_PAIR.finditer(url):
        register_secret(pair.group("quoted") or pair.group("value"))


def _pair(m: re.Match[str]) -> str:
    if m.group("q"):
        return f"{m.group('name')}{m.group('sep')}{m.group('q')}***{m.group('q')}"
    return f"{m.group('name')}{m.group('sep')}***"


def mask(text: object) -> str:
    """``text`` as a string with passwords and secret values replaced by ``***``."""
    s = str(text)
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:  # longest first: a quoted form may contain the raw one
        if secret in s:
            s = s.replace(secret, "***")
    s = _URL_PASSWORD.sub(lambda m: f"{m.group('head')}:***@", s)
    s = _SECRET_PAIR.sub(_pair, s)
    s = _FLAG.sub(lambda m: f"{m.group('name')}{m.group('sep')}***", s)
    return _AUTH.sub(lambda m: f"{m.group('kind')} ***", s)


class MaskingFilter(logging.Filter):
    """A handler filter that masks each record's final message (and its traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True


def mask_log_handlers() -> None:
    """Put a :class:`MaskingFilter` on every handler of the root logger (once each)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())
