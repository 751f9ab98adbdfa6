"""The plain data of tool calling: the calls a model makes, the definitions sent in `api`
mode, and the tool modes. Apart from `tools.base` (tools themselves, and answering calls),
so that messages and params, which every run imports, carry calls without building what
only a pipeline with tools needs."""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass

from pydantic import BaseModel, field_validator

if t.TYPE_CHECKING:
    from pytest_rigging.message import Message

ToolMode = t.Literal["auto", "api", "xml", "json", "json-in-xml", "json-with-tag", "pythonic"]
"""How calls travel. `api`: the provider's function calling (definitions sent as `tools`,
calls read from its reply). `xml`, `json`, `json-in-xml`, `json-with-tag`, `pythonic`: the
tools are described in the system prompt and calls are read out of the reply's text.
`auto`: `api` where the generator supports function calling, else `json-in-xml`."""

TOOL_MODES: tuple[ToolMode, ...] = t.get_args(ToolMode)

ToolChoice: t.TypeAlias = str | dict[str, t.Any]
"""The `tool_choice` sent in `api` mode: `"auto"`, `"none"`, `"required"`, or a provider's
own shape such as `{"type": "function", "function": {"name": "lookup"}}`."""


class FunctionDefinition(BaseModel):
    """A function as OpenAI's API describes it. A schema with no properties is sent as no
    parameters at all, which every provider reads as a function without arguments."""

    name: str
    description: str | None = None
    parameters: dict[str, t.Any] | None = None

    @field_validator("parameters", mode="before")
    @classmethod
    def _no_empty_object(cls, value: t.Any) -> t.Any:
        if (
            isinstance(value, dict)
            and value.get("type") == "object"
            and not value.get("properties")
        ):
            return None
        return value


class ToolDefinition(BaseModel):
    """One entry of `GenerateParams.tools`."""

    type: t.Literal["function"] = "function"
    function: FunctionDefinition


class FunctionCall(BaseModel):
    """The function a model called, `arguments` being the JSON text it wrote."""

    name: str
    arguments: str


class ToolCall(BaseModel):
    """One call a model made. Calls read out of text (the text modes) are the same
    objects as the provider's own, so code reading `message.tool_calls` is mode-blind."""

    id: str
    type: t.Literal["function"] = "function"
    function: FunctionCall

    def __str__(self) -> str:
        arguments = self.function.arguments
        shown = arguments if len(arguments) <= 50 else arguments[:47] + "..."
        return f"ToolCall({self.function.name}({shown}), id={self.id!r})"

    @property
    def name(self) -> str:
        return self.function.name

    @property
    def arguments(self) -> str:
        return self.function.arguments

    def parsed_arguments(self) -> dict[str, t.Any] | None:
        """The arguments as an object, or None when they aren't a JSON object."""
        return json_object(self.function.arguments)


def json_object(text: str) -> dict[str, t.Any] | None:
    """`text` as a JSON object (empty text: no arguments); None when it isn't one, or is
    nested past the decoder's depth."""
    try:
        value = json.loads(text or "{}")
    except (json.JSONDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


INVALID_CALL = "invalid_tool_call"
"""Metadata key on a tool's reply whose call could not be run as asked (arguments that
aren't JSON or don't fit the schema, or an unknown tool): the reason. The plugin counts
these as tool-call parse failures."""


@dataclass(frozen=True)
class ToolCallCounts:
    """The calls a dialog's tools answered, and how many of them couldn't run as asked
    (arguments that aren't JSON or don't fit the tool's schema, or an unknown tool): what
    the plugin's tool-call parse rate counts. A call left unanswered (the loop stopped at
    `max_depth`) isn't counted: whether it would have run is unknown."""

    total: int = 0
    invalid: int = 0

    @property
    def valid(self) -> int:
        return self.total - self.invalid

    def __add__(self, other: ToolCallCounts) -> ToolCallCounts:
        return ToolCallCounts(self.total + other.total, self.invalid + other.invalid)


def count_calls(messages: t.Iterable[Message]) -> ToolCallCounts:
    """The tools' replies, and those marked `INVALID_CALL`."""
    total = invalid = 0
    for message in messages:
        if message.role == "tool":
            total += 1
            invalid += INVALID_CALL in message.metadata
    return ToolCallCounts(total, invalid)
