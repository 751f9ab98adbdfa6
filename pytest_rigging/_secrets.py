"""Keeping API keys out of everything we print, log or store.

Secrets come from two places: `api_key=` values given to generators and params whose name
says secret (registered when they are built), and the environment's `*_API_KEY`/`*_TOKEN`/
`*_SECRET`/... variables. Names are judged by their whole name or its last word, never by a
substring of it: `max_tokens` is no secret.
"""

from __future__ import annotations

import logging
import os
import typing as t

_SECRET_NAMES = frozenset({"api_key", "apikey", "token", "password", "secret"})
"""Setting names whose values are secrets (any case), matched whole."""
_SECRET_SUFFIXES = ("_token", "_secret", "_password", "_key", "_apikey")
"""A setting whose name ends in one of these (`custom_token`, `extra.auth_token`,
`x-api-key`) holds a secret; one that merely contains it (`max_tokens`) does not."""
_SECRET_ENV_SUFFIXES = (
    "_API_KEY",
    "_APIKEY",
    "_TOKEN",
    "_SECRET",
    "_PASSWORD",
    "_ACCESS_KEY",
    "_SECRET_KEY",
    "_PRIVATE_KEY",
)
"""Environment variables whose values are secrets (`OPENAI_API_KEY`, `HF_TOKEN`, ...): the
settings' rule, but of the `*_KEY` names only those that say which key. The environment
holds many `*_KEY` settings that are not secrets, and a secret's value is hidden wherever it
appears: `MY_SORT_KEY=assistant` is not one, so `[assistant]` stays as it is."""
_MIN_SECRET_LEN = 8
_registered: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret so that `redact` hides it from then on."""
    if value and len(value) >= _MIN_SECRET_LEN:
        _registered.add(value)


_known: tuple[int, dict[t.Any, t.Any], tuple[str, ...]] = (-1, {}, ())
"""The last answer of `known_secrets`: the count of registered secrets and the raw
environment it was computed from, and the secrets."""


def known_secrets() -> tuple[str, ...]:
    """Every secret that must never be shown, longest first (so a key containing another
    is replaced whole).

    Asked for every chat recorded, so the answer is kept until a secret is registered or
    the environment changes: comparing the environment's raw store costs microseconds,
    decoding every variable tens of them. The store is read whole, in one step: reading
    `os.environ` name by name meets names another thread deletes meanwhile (pytest's
    `PYTEST_CURRENT_TEST`, between the engine's loop thread and pytest's: `KeyError`)."""
    global _known
    raw: dict[t.Any, t.Any] = os.environ._data  # type: ignore[attr-defined]  # not in typeshed
    count, seen, secrets = _known
    if count == len(_registered) and seen == raw:
        return secrets
    # What this answer is computed from, taken first: a key registered or set by another
    # thread meanwhile makes the next call compute again instead of being missed.
    count, seen = len(_registered), dict(raw)
    values = set(_registered)
    values.update(
        value
        for name, value in _environment(seen)
        if _is_secret_variable(name) and len(value) >= _MIN_SECRET_LEN
    )
    secrets = tuple(sorted(values, key=len, reverse=True))
    _known = (count, seen, secrets)
    return secrets


def _environment(raw: dict[t.Any, t.Any]) -> list[tuple[str, str]]:
    """The environment's variables, decoded from `raw`, a copy of its store."""
    decode_key, decode_value = os.environ.decodekey, os.environ.decodevalue
    return [(decode_key(name), decode_value(value)) for name, value in raw.items()]


def _is_secret_variable(name: str) -> bool:
    return name.lower() in _SECRET_NAMES or name.upper().endswith(_SECRET_ENV_SUFFIXES)


def redact(text: str, secrets: t.Sequence[str] | None = None) -> str:
    """`text` with every known secret replaced by `***` (`secrets`: `known_secrets()`
    taken once by a caller redacting many texts; reading the environment costs)."""
    for secret in known_secrets() if secrets is None else secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def is_secret_name(name: str) -> bool:
    """Whether a setting called `name` (`api_key`, `extra.custom_token`, `x-api-key`) holds a
    secret; `max_tokens` does not."""
    key = name.strip().lower().removeprefix("extra.").replace("-", "_")
    return key in _SECRET_NAMES or key.endswith(_SECRET_SUFFIXES)


def mask_identifier(identifier: str, secrets: t.Sequence[str] | None = None) -> str:
    """An identifier (or params text) as it may be shown: the value of every part whose
    key names a secret (`api_key=`, `API_KEY=`, `extra.auth_token=`, ...) and every known
    secret (or each of `secrets`) hidden."""
    parts = identifier.split(",")
    for index, part in enumerate(parts):
        key, eq, _ = part.partition("=")
        if eq and is_secret_name(key):
            parts[index] = f"{key}=***"
    return redact(",".join(parts), secrets)


class RedactingFilter(logging.Filter):
    """Rewrites log records so that no known secret reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_guarded: set[str] = set()


def guard_loggers(*names: str) -> None:
    """Give each logger (that may see request details) a `RedactingFilter`, once; a filter
    applies to its own logger's records only, so children are named one by one."""
    for name in names:
        if name not in _guarded:
            logging.getLogger(name).addFilter(RedactingFilter())
            _guarded.add(name)
