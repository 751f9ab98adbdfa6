"""What every network provider shares (`RetryingGenerator`): bounded retries,
`Retry-After`, a timeout per attempt, and one `GenerationError` for whatever survives them.

Retries are the provider's own, never a client library's: bounded by `max_retries`, with
exponential backoff (jittered) or the server's `Retry-After`, and the concurrency slot
given back while waiting, so a failing model can't hold places that others could use.
"""

from __future__ import annotations

import asyncio
import random
import time
import typing as t
from dataclasses import dataclass

from pydantic import Field

from pytest_rigging._concurrency import slot_released
from pytest_rigging._secrets import redact
from pytest_rigging.error import GenerationError
from pytest_rigging.generator.base import GeneratedMessage, GeneratedText, Generator

DEFAULT_TIMEOUT = 60.0
MAX_RETRY_AFTER = 60.0

ResultT = t.TypeVar("ResultT", GeneratedMessage, GeneratedText)


@dataclass(frozen=True)
class Fault:
    """How an attempt failed: the `reason` a `GenerationError` reports, and whether
    another attempt may go better."""

    reason: str
    retryable: bool


Classify = t.Callable[[BaseException], Fault]
"""Reads the exception an attempt raised."""


class UnusableReply(Exception):
    """A reply arrived but holds nothing to use: no choices, no message, no text, or a body
    that isn't JSON or UTF-8 (retried like any transient fault: reason `bad_response`)."""


def retry_after(headers: t.Mapping[str, str] | None) -> float | None:
    """The server's `Retry-After` in seconds (bounded), if it sent a number."""
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER) if value is not None else None
    except ValueError:
        return None


class RetryingGenerator(Generator):
    """A provider over the network. `max_retries` bounds the retries of 429, 5xx,
    timeouts, refused connections and malformed bodies; `backoff` is the first wait in
    seconds, doubled per retry (a `Retry-After` header takes its place). `timeout` (a
    param) bounds each attempt."""

    max_retries: int = Field(default=3, ge=0)
    backoff: float = Field(default=0.5, ge=0)

    wraps_attempts: t.ClassVar[bool] = True

    async def retrying(
        self,
        attempt: t.Callable[[], t.Awaitable[ResultT]],
        *,
        classify: Classify,
        wait_hint: t.Callable[[BaseException], float | None],
        timeout: float,
    ) -> ResultT:
        """`await attempt()` until it succeeds, a fault isn't retryable, or `max_retries`
        are spent; the result's `latency` is the time the attempts took (backoff left out).

        `classify` reads a fault; `wait_hint` gives a server-requested delay. Each attempt
        is bounded by `timeout` plus a margin, whatever the transport does.
        """
        __tracebackhide__ = True  # the attempt's closure holds the API key
        attempt = self.wrapped(attempt)
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
                fault = classify(error)
                if not fault.retryable or tries > self.max_retries:
                    detail = redact(str(error) or type(error).__name__)[:500]
                    raise GenerationError(
                        f"{fault.reason} error from {self.provider}!{self.model} after {tries} "
                        f"attempt{'s' if tries > 1 else ''}: {detail}",
                        reason=fault.reason,
                        attempts=tries,
                        latency=spent,
                    ) from None
                delay = wait_hint(error)
                if delay is None:
                    delay = self.backoff * 2 ** (tries - 1) * random.uniform(0.8, 1.2)
                async with slot_released():  # others may call while this one waits
                    await asyncio.sleep(delay)
