"""Errors raised by the pipeline library.

Two families matter to anyone reading results: *parse* failures (the model answered, but
not in the shape asked for) and *infrastructure* failures (no usable answer came back:
rate limits, timeouts, 5xx, refused connections, malformed bodies). `error_kind` tells
them apart so that reports never count one as the other.
"""

from __future__ import annotations

import typing as t

ErrorKind = t.Literal["parse", "infrastructure", "other"]


class InvalidGeneratorError(ValueError):
    """An identifier or its params could not be turned into a generator."""


class InvalidModelSpecifiedError(ValueError):
    """A parsing model was declared in a way the parser cannot use."""


class MissingModelError(ValueError):
    """The text holds no element of the requested model."""


class ExhaustedMaxRoundsError(Exception):
    """A parse requirement was still unmet after the allowed number of replies (the
    seed's name; what the library raises is its subclass `MaxDepthError`)."""

    def __init__(self, max_rounds: int, message: str = "", *, nesting: bool = False) -> None:
        self.max_rounds = max_rounds
        self.detail = message
        self.nesting = nesting
        detail = f": {message}" if message else ""
        if nesting:
            summary = f"Exceeded max depth ({self.max_depth}) of nested pipeline runs{detail}"
        else:
            summary = f"Exhausted max rounds ({max_rounds}) while parsing{detail}"
        super().__init__(summary)

    @property
    def max_depth(self) -> int:
        """Recoveries allowed after the first reply (rigging 3 counts those): one less
        than the replies; for nested runs, how deep they may go."""
        return self.max_rounds - 1

    def __reduce__(self) -> tuple[t.Any, ...]:
        """Pickled with its own arguments (the default would pass the formatted message
        back in as `max_rounds`): chats carrying it cross processes under xdist."""
        return (_rebuild, (type(self), self.max_rounds, self.detail, self.nesting))


class MaxDepthError(ExhaustedMaxRoundsError):
    """rigging 3's name for exhaustion, raised both when parsing ran out of replies and
    when `then`/`map` callbacks nested pipeline runs deeper than their `max_depth`.
    A subclass of the seed's `ExhaustedMaxRoundsError`, so either `except` catches it.

    Also takes rigging's own arguments, `MaxDepthError(max_depth, step, reference)`, for
    code that raises it itself; `step` is then kept as `.step`."""

    def __init__(
        self,
        max_rounds: int,
        message: t.Any = "",
        reference: str | None = None,
        *,
        nesting: bool = False,
    ) -> None:
        self.step: t.Any = None
        if reference is None:
            super().__init__(max_rounds, message, nesting=nesting)
            return
        super().__init__(max_rounds + 1, reference, nesting=True)
        self.step = message
        self.args = (f"Exceeded max depth ({max_rounds}) while generating ('{reference}')",)

    @classmethod
    def of_depth(cls, max_depth: int, message: str = "") -> MaxDepthError:
        """Nested runs beyond `max_depth`."""
        return cls(max_depth + 1, message, nesting=True)


def _rebuild(
    cls: type[ExhaustedMaxRoundsError], max_rounds: int, detail: str, nesting: bool
) -> ExhaustedMaxRoundsError:
    return cls(max_rounds, detail, nesting=nesting)


class GenerationError(Exception):
    """A generator call failed for reasons outside the model's answer.

    `reason` is one of `rate_limit`, `timeout`, `server`, `connection`, `bad_response`,
    `client` (a 4xx other than 429), or `lost` (the pytest plugin: a call whose answer died
    with its xdist worker), so reports can group failures by cause. `latency` is the
    time the attempts took: a failed chat keeps it.
    """

    def __init__(
        self, message: str, *, reason: str = "server", attempts: int = 1, latency: float = 0.0
    ) -> None:
        self.reason = reason
        self.attempts = attempts
        self.latency = latency
        super().__init__(message)


class Unscored(Exception):
    """Raised on reading `passed` or `score` of a verdict the judge never gave (its reply
    had none that could be read): an unscored sample is neither a pass nor a fail, and must
    not silently become either. The pytest plugin counts it apart."""


class JudgeError(GenerationError):
    """A judge call failed for infrastructure reasons (its API errored, timed out, was rate
    limited): the output was never judged, so it is an error, not a fail."""


class ToolDepthError(MaxDepthError):
    """A model still asked for tools after `using(max_depth=...)` rounds of them. The chat
    keeps the whole dialog; like running out of parse rounds, it is the model's failure
    (a fail, its kind `parse`), not the infrastructure's.
    `max_rounds` and `max_depth` are both the rounds of tool calls allowed."""

    def __init__(self, max_rounds: int, message: str = "", *, nesting: bool = False) -> None:
        super().__init__(max_rounds, message, nesting=nesting)
        self.args = (f"Exceeded max depth ({max_rounds}) of tool calls: {message}",)

    @property
    def max_depth(self) -> int:
        return self.max_rounds


class ToolDefinitionError(ValueError):
    """A function can't be made a tool (its parameters have no schema, or can't be written
    in the tool mode asked for)."""


class ToolServerError(GenerationError):
    """The MCP server a tool lives on can't be reached (its process died, or it closed the
    connection): the call never ran, so the chat fails for infrastructure reasons, not
    the model's. Unlike an error the tool itself reports, which the model is shown."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="connection")


class Stop(Exception):
    """Raised (or returned) by a tool to end the tool loop: `message` is the tool's reply,
    and the chat ends with it, with no further model call."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ProcessingError(Exception):
    """A pipeline callback broke the pipeline's own contract (for example a map callback
    that returned a different number of chats)."""


def error_kind(error: BaseException | None) -> ErrorKind | None:
    """Classify a chat's or completion's error for statistics; None when there is none."""
    if error is None:
        return None
    if isinstance(error, GenerationError):
        return "infrastructure"
    if isinstance(error, ExhaustedMaxRoundsError | MissingModelError):
        return "parse"
    from pydantic import ValidationError

    if isinstance(error, ValidationError):
        return "parse"
    return "other"
