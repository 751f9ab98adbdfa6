"""Keeping API keys out of everything we print, log or store."""

from __future__ import annotations

import os
import re

_SECRET_ENV = re.compile(r"(API_KEY|_KEY|_TOKEN|_SECRET)$")
_MIN_SECRET_LEN = 8
_KEY_IN_IDENTIFIER = re.compile(r"(api_key=)[^,]*")


def known_secrets(*extra: str | None) -> list[str]:
    """Secret values that must never be shown: `extra` plus the environment's keys."""
    values = {v for v in extra if v}
    values.update(
        value for name, value in os.environ.items() if _SECRET_ENV.search(name.upper()) and value
    )
    # Longest first, so a key that contains another is replaced whole.
    return sorted((v for v in values if len(v) >= _MIN_SECRET_LEN), key=len, reverse=True)


def redact(text: str, *extra: str | None) -> str:
    """`text` with every known secret replaced by `***`."""
    for secret in known_secrets(*extra):
        if secret in text:
            text = text.replace(secret, "***")
    return text


def mask_identifier(identifier: str) -> str:
    """An identifier as it may be shown: its `api_key=` value and known secrets hidden."""
    return redact(_KEY_IN_IDENTIFIER.sub(r"\1***", identifier))
