"""Messages: one turn of a conversation, and the parsing helpers that read models from it."""

from __future__ import annotations

import typing as t

from pydantic import BaseModel, ConfigDict

from pytest_rigging.error import MissingModelError
from pytest_rigging.model import Model, ModelT

Role = t.Literal["system", "user", "assistant", "tool"]


class MessageDict(t.TypedDict):
    role: Role
    content: str


MessageLike = t.Union["Message", MessageDict, str]
"""What pipelines accept as one message: a Message, a `{"role", "content"}` dict, or a
string (a user message)."""


class Message(BaseModel):
    """One turn: `str(message)` is `[role]: content`, as conversations print."""

    model_config = ConfigDict(frozen=False)

    role: Role
    content: str

    def __str__(self) -> str:
        return f"[{self.role}]: {self.content}"

    def to_dict(self) -> MessageDict:
        return {"role": self.role, "content": self.content}

    @classmethod
    def fit(cls, value: MessageLike) -> Message:
        """One message from anything a pipeline accepts as a message."""
        if isinstance(value, Message):
            return value
        if isinstance(value, str):
            return cls(role="user", content=value)
        if isinstance(value, dict):
            return cls.model_validate(value)
        raise TypeError(
            f"expected a Message, a {{'role', 'content'}} dict or a str, got {type(value).__name__}"
        )

    @classmethod
    def fit_as_list(cls, value: MessageLike | t.Sequence[MessageLike] | None) -> list[Message]:
        """A conversation from one message-like value or a sequence of them."""
        if value is None:
            return []
        if isinstance(value, Message | str | dict):
            return [cls.fit(value)]
        return [cls.fit(v) for v in value]

    def parse(self, model: type[ModelT]) -> ModelT:
        """The first valid element of `model` in this message, by position."""
        return model.one_from_text(self.content)[0]

    def try_parse(self, model: type[ModelT]) -> ModelT | None:
        """Like `parse`, but None instead of an error when nothing valid is there."""
        try:
            return self.parse(model)
        except Exception:
            return None

    def parse_set(self, model: type[ModelT], minimum: int | None = None) -> list[ModelT]:
        """Every valid element of `model`; at least `minimum` of them."""
        found = [m for m, _ in model.from_text(self.content)]
        if minimum is not None and len(found) < minimum:
            raise MissingModelError(
                f"Expected at least {minimum} {model.xml_tags()} elements, found {len(found)}"
            )
        return found

    def try_parse_set(self, model: type[ModelT], minimum: int | None = None) -> list[ModelT]:
        try:
            return self.parse_set(model, minimum)
        except Exception:
            return []

    def parse_many(self, *models: type[Model]) -> list[Model]:
        """Every element of any of `models`, in order of position; each must appear."""
        found: list[tuple[int, Model]] = []
        for model in models:
            found.extend((span.start, m) for m, span in model.from_text(self.content))
        found.sort(key=lambda pair: pair[0])
        return [m for _, m in found]

    def try_parse_many(self, *models: type[Model]) -> list[Model]:
        try:
            return self.parse_many(*models)
        except Exception:
            return []
