"""Keeping API keys out of everything we print, log or store.

Secrets come from two places: `api_key=` values given to generators (registered when the
generator is built) and the environment's `*_API_KEY`/`*_TOKEN`/`*_SECRET` variables.
"""

from __future__ import annotations

import logging
import os
import re

_SECRET_SUFFIXES = ("_KEY", "_TOKEN", "_SECRET")
_MIN_SECRET_LEN = 8
_SECRET_KEY_NAME = re.compile(r"(key|token|secret|password)", re.IGNORECASE)
_KEY_IN_IDENTIFIER = re.compile(
    r"((?:^|,)\s*[\w.\-]*(?:key|token|secret|password)[\w.\-]*\s*=)[^,]*", re.IGNORECASE
)
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that `redact` hides it from then on."""
    if value and len(value) >= _MIN_SECRET_LEN:
        _registered.add(value)


def known_secrets() -> list[str]:
    """Every secret that must never be shown, longest first (so a key containing another
    is replaced whole)."""
    values = set(_registered)
    values.update(
        value
        for name, value in os.environ.items()
        if name.upper().endswith(_SECRET_SUFFIXES) and len(value) >= _MIN_SECRET_LEN
    )
    return sorted(values, key=len, reverse=True)


def redact(text: str) -> str:
    """`text` with every known secret replaced by `***`."""
    for secret in known_secrets():
        if secret in text:
            text = text.replace(secret, "***")
    return text


def is_secret_name(name: str) -> bool:
    """Whether a setting called `name` (`api_key`, `extra.auth_token`, ...) holds a secret."""
    return bool(_SECRET_KEY_NAME.search(name))


def mask_identifier(identifier: str) -> str:
    """An identifier as it may be shown: the value of any key that names a secret
    (`api_key=`, `API_KEY=`, `extra.auth_token=`, ...) and known secrets hidden."""
    return redact(_KEY_IN_IDENTIFIER.sub(r"\1***", identifier))


class RedactingFilter(logging.Filter):
    """Rewrites log records so that no known secret reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True
