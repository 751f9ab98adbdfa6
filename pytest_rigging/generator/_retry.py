"""What every network provider shares: bounded retries, `Retry-After`, a timeout per
attempt, and one `GenerationError` for whatever survives them.

Retries are the provider's own, never a client library's: bounded by `max_retries`, with
exponential backoff (jittered) or the server's `Retry-After`, and the concurrency slot
given back while waiting, so a failing model can't hold places that others could use.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import typing as t

from pytest_rigging._concurrency import slot_released
from pytest_rigging._secrets import RedactingFilter, redact
from pytest_rigging.error import GenerationError
from pytest_rigging.generator.base import GeneratedMessage, GeneratedText

DEFAULT_TIMEOUT = 60.0
MAX_RETRY_AFTER = 60.0

ResultT = t.TypeVar("ResultT", GeneratedMessage, GeneratedText)
Classify = t.Callable[[BaseException], tuple[str, bool]]
"""(reason, retryable) for an exception an attempt raised."""

_guarded: set[str] = set()


def guard_loggers(*names: str) -> None:
    """Give each logger (that may see request details) a filter that redacts secrets, once;
    a filter applies to its own logger's records only, so children are named one by one."""
    for name in names:
        if name not in _guarded:
            logging.getLogger(name).addFilter(RedactingFilter())
            _guarded.add(name)


def retry_after(headers: t.Mapping[str, str] | None) -> float | None:
    """The server's `Retry-After` in seconds (bounded), if it sent a number."""
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER) if value is not None else None
    except ValueError:
        return None


async def retrying(
    attempt: t.Callable[[], t.Awaitable[ResultT]],
    *,
    name: str,
    classify: Classify,
    wait_hint: t.Callable[[BaseException], float | None],
    max_retries: int,
    backoff: float,
    timeout: float,
) -> ResultT:
    """`await attempt()` until it succeeds, a fault isn't retryable, or `max_retries` are
    spent; the result's `latency` is the time the attempts took (backoff left out).

    `name` (`provider!model`) heads the error; `wait_hint` gives a server-requested delay.
    Each attempt is bounded by `timeout` plus a margin, whatever the transport does.
    """
    __tracebackhide__ = True  # the attempt's closure holds the API key
    tries, spent = 0, 0.0
    while True:
        tries += 1
        started = time.perf_counter()
        try:
            try:
                result = await asyncio.wait_for(attempt(), timeout + 5.0)
            finally:
                spent += time.perf_counter() - started
            result.latency = spent
            return result
        except asyncio.CancelledError:
            raise
        except Exception as error:
            reason, retryable = classify(error)
            if not retryable or tries > max_retries:
                detail = redact(str(error) or type(error).__name__)[:500]
                raise GenerationError(
                    f"{reason} error from {name} after {tries} "
                    f"attempt{'s' if tries > 1 else ''}: {detail}",
                    reason=reason,
                    attempts=tries,
                    latency=spent,
                ) from None
            delay = wait_hint(error)
            if delay is None:
                delay = backoff * 2 ** (tries - 1) * random.uniform(0.8, 1.2)
            async with slot_released():  # others may call while this one waits
                await asyncio.sleep(delay)
