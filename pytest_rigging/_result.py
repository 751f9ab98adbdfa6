"""What chats and completions share: provenance, failure, cost, and metadata."""

from __future__ import annotations

import typing as t
import uuid as _uuid
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field

from pytest_rigging._fast import construct
from pytest_rigging.error import error_kind
from pytest_rigging.generator.base import GenerateParams, Generator, Usage

if t.TYPE_CHECKING:
    from typing_extensions import Self

ResultT = t.TypeVar("ResultT", bound="Result")


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Result(BaseModel):
    """A finished generation. A failed one (`on_failed="include"`) has `failed=True` and
    `error` set; `error_kind` says whether that was a parse failure or an infrastructure
    error. `recovery_rounds` counts the extra replies `until_parsed_as` needed; `usage`
    and `latency` (seconds spent generating, waiting for a concurrency slot excluded)
    cover all of them."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    uuid: _uuid.UUID = Field(default_factory=_uuid.uuid4)
    timestamp: datetime = Field(default_factory=_now)
    metadata: dict[str, t.Any] = Field(default_factory=dict)
    generator: Generator | None = Field(default=None, exclude=True, repr=False)
    params: GenerateParams | None = Field(default=None, repr=False)
    stop_reason: str | None = None
    usage: Usage | None = None
    failed: bool = False
    error: BaseException | None = Field(default=None, exclude=True)
    recovery_rounds: int = 0
    latency: float = 0.0

    @property
    def generator_id(self) -> str | None:
        """What this ran with, params included: `litellm!gpt-4o,temperature=0.6`."""
        if self.generator is None:
            return None
        return self.generator.to_identifier(self.params, with_config=False)

    @property
    def error_kind(self) -> str | None:
        return error_kind(self.error)

    def meta(self, **kwargs: t.Any) -> Self:
        """Add metadata (in place) and return this result, for chaining."""
        self.metadata.update(kwargs)
        return self


def build(
    cls: type[ResultT],
    generator: Generator,
    params: GenerateParams,
    metadata: dict[str, t.Any],
    own: dict[str, t.Any],
    *,
    stop_reason: str | None = None,
    usage: Usage | None = None,
    latency: float = 0.0,
) -> ResultT:
    """A result the pipeline built itself, `own` holding the subclass's fields (no
    validation: every part is already typed)."""
    return construct(
        cls,
        {
            "uuid": _uuid.uuid4(),
            "timestamp": _now(),
            "metadata": metadata,
            "generator": generator,
            "params": params,
            "stop_reason": stop_reason,
            "usage": usage,
            "failed": False,
            "error": None,
            "recovery_rounds": 0,
            "latency": latency,
            **own,
        },
    )
