"""What chats and completions share: provenance, failure, cost, and metadata."""

from __future__ import annotations

import copy
import typing as t
import uuid as _uuid
from datetime import datetime, timezone

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PrivateAttr,
    ValidatorFunctionWrapHandler,
    computed_field,
    model_validator,
)

from pytest_rigging._fast import construct
from pytest_rigging.error import InvalidGeneratorError, error_kind
from pytest_rigging.generator.base import GenerateParams, Generator, Usage, get_generator

if t.TYPE_CHECKING:
    from typing_extensions import Self

ResultT = t.TypeVar("ResultT", bound="Result")

ErrorField = t.Annotated[
    BaseException | None,
    PlainSerializer(
        lambda e: None if e is None else str(e), return_type=str | None, when_used="json"
    ),
]
"""An error: its message in JSON (an exception can't be read back, so loading drops it)."""


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
    extra: dict[str, t.Any] = Field(default_factory=dict, repr=False)
    failed: bool = False
    error: ErrorField = None
    recovery_rounds: int = 0
    latency: float = 0.0

    _unbuilt: tuple[str, str] | None = PrivateAttr(default=None)
    """A loaded result's generator id that names no registered provider here, and why."""

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects decorators over @property
    @property
    def generator_id(self) -> str | None:
        """What this ran with, params included: `litellm!gpt-4o,temperature=0.6`.
        Serialized, so a result loaded from JSON gets its generator back."""
        if self.generator is None:
            unbuilt = (self.__pydantic_private__ or {}).get("_unbuilt")
            return unbuilt[0] if unbuilt else None
        return self.generator.to_identifier(self.params, with_config=False)

    @model_validator(mode="wrap")
    @classmethod
    def _generator_from_id(cls, data: t.Any, handler: ValidatorFunctionWrapHandler) -> t.Any:
        """A serialized result names its generator by id (one whose provider isn't
        registered here still loads, for reading; it can't run again until it is); an
        error arrives as text only."""
        unbuilt = None
        if isinstance(data, dict):
            data = dict(data)
            identifier = data.pop("generator_id", None)
            if identifier and data.get("generator") is None:
                try:
                    data["generator"] = get_generator(identifier)
                except InvalidGeneratorError as error:
                    unbuilt = (identifier, str(error))
            if isinstance(data.get("error"), str):
                del data["error"]
        result = handler(data)
        if unbuilt is not None:
            result._unbuilt = unbuilt
        return result

    def generator_for_more(self, generator: Generator | None = None) -> Generator:
        """The generator a follow-up pipeline runs on: `generator`, else this result's,
        else an error saying why there is none."""
        generator = generator or self.generator
        if generator is not None:
            return generator
        unbuilt = (self.__pydantic_private__ or {}).get("_unbuilt")
        if unbuilt is not None:
            raise ValueError(
                f"this result's generator {unbuilt[0]!r} can't be rebuilt here ({unbuilt[1]}): "
                "register its provider first, or pass a generator"
            )
        raise ValueError(
            "this result has no generator: pass one, or build it with one "
            "(a result loaded from JSON gets it back from its generator_id)"
        )

    def _copy_into(self, new: ResultT) -> ResultT:
        """`new` with (copies of) everything of this result but what the subclass holds."""
        new.metadata = copy.deepcopy(self.metadata)
        new.params = self.params.model_copy() if self.params is not None else None
        new.stop_reason, new.usage = self.stop_reason, self.usage
        new.extra = copy.deepcopy(self.extra)
        new.failed, new.error = self.failed, self.error
        new.recovery_rounds, new.latency = self.recovery_rounds, self.latency
        for name, value in (self.__pydantic_private__ or {}).items():
            setattr(new, name, value)  # a subclass's too (a chat's tools)
        return new

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
    params: GenerateParams | None,
    metadata: dict[str, t.Any],
    own: dict[str, t.Any],
    *,
    stop_reason: str | None = None,
    usage: Usage | None = None,
    latency: float = 0.0,
    extra: dict[str, t.Any] | None = None,
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
            "extra": extra if extra is not None else {},
            "failed": False,
            "error": None,
            "recovery_rounds": 0,
            "latency": latency,
            **own,
        },
    )
