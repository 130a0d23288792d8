"""Secrets never reach a log line or an error message: :func:`redact` masks them in text and
:class:`RedactFilter` in log records (message, arguments and traceback).

What is masked: the values of the token variables (``HF_TOKEN``, ``HUGGING_FACE_HUB_TOKEN``,
``HF_API_TOKEN``) and the token ``hf auth login`` saved, the password of
``DEPTHWEB_DATABASE_URL``, plus anything that looks like one: Hugging Face tokens (``hf_...``),
``Bearer <token>`` and the password of any ``scheme://user:password@host`` URL.

:func:`install_redaction` puts the filter on the root logger's handlers and on Python's
last-resort handler; the CLI calls it after configuring logging, the web app when it is built.
Nothing happens at import.
"""

from __future__ import annotations

import logging
import os
import re
from functools import lru_cache

MASK = "***"
TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN")
MIN_SECRET_LEN = 6
_PATTERNS = (
    (re.compile(r"\bhf_[A-Za-z0-9]{16,}"), "hf_" + MASK),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{6,}"), r"\1 " + MASK),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@"), r"\1" + MASK + "@"),
)


def _hub_login_token() -> str | None:
    try:
        from huggingface_hub import get_token
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return None
    try:
        return get_token()
    except (OSError, ValueError):
        return None


def _database_password() -> str | None:
    url = os.environ.get("DEPTHWEB_DATABASE_URL") or ""
    if "://" not in url:
        return None
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except (ArgumentError, ValueError):
        match = re.match(r"[^:]+://[^:/@]*:([^@]+)@", url)  # an unparsable URL: best effort
        return match.group(1) if match else None


_SOURCES = (*TOKEN_VARS, "DEPTHWEB_DATABASE_URL", "HF_TOKEN_PATH", "HF_HOME")


@lru_cache(maxsize=8)
def _secrets_for(_environment: tuple) -> tuple[str, ...]:
    found = [os.environ.get(v) for v in TOKEN_VARS]
    found += [_hub_login_token(), _database_password()]
    values = {str(s) for s in found if s and len(str(s)) >= MIN_SECRET_LEN}
    return tuple(sorted(values, key=len, reverse=True))


def known_secrets() -> list[str]:
    """The secret values configured in this process (longest first); recomputed when one of
    the variables they come from changes."""
    return list(_secrets_for(tuple(os.environ.get(v) for v in _SOURCES)))


def redact(text: object, secrets: list[str] | None = None) -> str:
    """``text`` with every known secret (``secrets``, default :func:`known_secrets`) and
    everything that looks like a token or a URL password replaced by ``***``."""
    out = str(text)
    for secret in known_secrets() if secrets is None else secrets:
        out = out.replace(secret, MASK)
    for pattern, repl in _PATTERNS:
        out = pattern.sub(repl, out)
    return out


class RedactFilter(logging.Filter):
    """A handler filter that masks secrets in the formatted message and the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = known_secrets()
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a broken format string: leave it to logging
            return True
        clean = redact(message, secrets)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        if record.stack_info:
            record.stack_info = redact(record.stack_info, secrets)
        return True


def install_redaction() -> None:
    """Add one :class:`RedactFilter` to every handler of the root logger and to
    ``logging.lastResort`` (idempotent)."""
    known_secrets()  # read the token file now, not inside the first log call
    handlers = list(logging.getLogger().handlers)
    if logging.lastResort is not None:
        handlers.append(logging.lastResort)
    for handler in handlers:
        if not any(isinstance(f, RedactFilter) for f in handler.filters):
            handler.addFilter(RedactFilter())
