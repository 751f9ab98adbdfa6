"""Offline providers: test pipeline logic, and run example suites, with no model at all.

- `echo!name`: answers with the last user message (or the text, for completions).
- `scripted!path/to/rules.toml`: answers from a rules file, where each rule matches a
  pattern on the conversation and gives one or more replies, cycled or drawn with a seed.

Both take `latency=<seconds>` in the identifier to simulate a slow model.

A rules file (TOML, or the same keys in JSON)::

    mode = "cycle"            # or "random" (drawn with params.seed)
    function_calling = true   # false: no function calling (tools then travel in text)
    default = "I do not know."  # a reply, or a list of them; no default: no match raises

    [[rules]]
    match = "(?i)capital of france"  # a regex, searched in...
    on = "last_user"                 # ...the last user message (or "conversation": all of
                                     # it; "tool_result": the replies to the latest calls)
    replies = ["Paris", "<answer>Paris</answer>"]  # or `reply = "..."`

A reply may call tools (`using()` runs them in `api` mode, since the model supports
function calling unless the file says `function_calling = false`): a reply is a string or
a table with `content` and `tool_calls`, each call a `name` and `arguments` (a table, or a
string sent as it is: a malformed call).
`tool_calls` on the rule itself make its first reply, with `reply` as that reply's text::

    [[rules]]                         # first: after the tools answer, this one matches
    on = "tool_result"                # the tools' replies (only when the conversation
    match = "France"                  # ends with them)
    reply = "Paris is the capital of France."

    [[rules]]
    match = "capital of France"
    tool_calls = [{ name = "lookup", arguments = { city = "Paris" } }]

    [[rules]]
    match = "weather"
    replies = [{ content = "Let me look.", tool_calls = [{ name = "weather" }] }, "Sunny."]

Rules are tried in order: a `last_user` rule still sees the user's question after the
tools answer, so `tool_result` rules go before the rules that call. Call ids are
`call_<n>`, numbered through the conversation (deterministic, unique within it).
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import itertools
import json
import random
import re
import sys
import typing as t
from dataclasses import dataclass
from pathlib import Path

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from pytest_rigging.error import InvalidGeneratorError
from pytest_rigging.generator.base import (
    GeneratedMessage,
    GeneratedText,
    GenerateParams,
    Generator,
    Usage,
)
from pytest_rigging.message import Message
from pytest_rigging.tools.calls import FunctionCall, ToolCall


def _usage(prompt: str, reply: str) -> Usage:
    return Usage(input_tokens=len(prompt.split()), output_tokens=len(reply.split()))


def _last_user(messages: t.Sequence[Message]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


def _tool_results(messages: t.Sequence[Message]) -> str | None:
    """The text of the tool replies the conversation ends with (one per line), or None
    when it doesn't end with any."""
    trailing = list(itertools.takewhile(lambda m: m.role == "tool", reversed(messages)))
    return "\n".join(m.content for m in reversed(trailing)) if trailing else None


class ScriptedCall(BaseModel):
    """A tool call a scripted reply makes; `arguments` given as a string go as they are
    (a malformed call, for testing how tools answer one)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    arguments: dict[str, t.Any] | str = Field(default_factory=dict)

    def to_call(self, call_id: str) -> ToolCall:
        arguments = (
            self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)
        )
        return ToolCall(id=call_id, function=FunctionCall(name=self.name, arguments=arguments))


class ScriptedReply(BaseModel):
    """One reply of a rule: text, and the tools it calls. A string is a reply of text."""

    model_config = ConfigDict(extra="forbid")

    content: str = ""
    tool_calls: list[ScriptedCall] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _text(cls, value: t.Any) -> t.Any:
        return {"content": value} if isinstance(value, str) else value


@dataclass(frozen=True)
class _Asked:
    """What a reply answers: the last user message (or the text to complete), the whole
    conversation as text, the tool replies it ends with, and the calls made so far."""

    prompt: str
    conversation: str
    tool_results: str | None = None
    calls_made: int = 0


class _OfflineGenerator(Generator):
    latency: float = Field(default=0.0, ge=0)

    @abc.abstractmethod
    async def _reply(self, asked: _Asked, params: GenerateParams) -> ScriptedReply:
        """The reply to what was `asked`."""

    async def generate_message(
        self, messages: t.Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        asked = _Asked(
            prompt=_last_user(messages),
            conversation="\n\n".join(str(m) for m in messages),
            tool_results=_tool_results(messages),
            calls_made=sum(len(m.tool_calls or ()) for m in messages),
        )
        reply = await self._reply(asked, params)
        message = Message.of("assistant", reply.content)
        if reply.tool_calls:
            message.tool_calls = [
                call.to_call(f"call_{asked.calls_made + index}")
                for index, call in enumerate(reply.tool_calls)
            ]
        return GeneratedMessage(
            message=message,
            stop_reason="tool_calls" if reply.tool_calls else "stop",
            usage=_usage(asked.conversation, reply.content),
            latency=self._delay(),
        )

    async def generate_text(self, text: str, params: GenerateParams) -> GeneratedText:
        """The reply's text (a completion calls no tools)."""
        reply = await self._reply(_Asked(prompt=text, conversation=text), params)
        return GeneratedText(
            text=reply.content,
            stop_reason="stop",
            usage=_usage(text, reply.content),
            latency=self._delay(),
        )

    def _delay(self) -> float:
        """The simulated model's time per reply: its latency, reported as its own count
        (so a recorded run's latency doesn't depend on how busy the machine was)."""
        return self.latency


class EchoGenerator(_OfflineGenerator):
    """Answers with the last user message: the smallest model that shows a pipeline works."""

    async def _reply(self, asked: _Asked, params: GenerateParams) -> ScriptedReply:
        if self.latency:
            await asyncio.sleep(self.latency)
        return ScriptedReply(content=asked.prompt)


class Rule(BaseModel):
    """One rule: where `match` (a regex) is found, answer with `replies` in turn; `reply`
    and `tool_calls` make the first of them."""

    model_config = ConfigDict(extra="forbid")

    match: str
    on: t.Literal["last_user", "conversation", "tool_result"] = "last_user"
    replies: list[ScriptedReply] = Field(default_factory=list)
    reply: str | None = None
    tool_calls: list[ScriptedCall] | None = None

    @model_validator(mode="after")
    def _has_replies(self) -> Rule:
        if self.reply is not None or self.tool_calls:
            first = ScriptedReply(content=self.reply or "", tool_calls=self.tool_calls or [])
            self.replies = [first, *self.replies]
        if not self.replies:
            raise ValueError(f"rule {self.match!r} has no 'reply', 'replies' or 'tool_calls'")
        try:
            re.compile(self.match)
        except re.error as error:
            raise ValueError(f"rule {self.match!r} is not a valid regex: {error}") from None
        return self


class Script(BaseModel):
    """The contents of a rules file (TOML or JSON)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)
    default: list[ScriptedReply] | ScriptedReply | None = None
    mode: t.Literal["cycle", "random"] = "cycle"
    latency: float = Field(default=0.0, ge=0)
    function_calling: bool = True
    """False: a model without function calling, so `using(mode="auto")` writes calls in
    text (`json-in-xml`); its rules then answer the text modes' prompts."""

    @field_validator("default")
    @classmethod
    def _default_has_replies(
        cls, value: list[ScriptedReply] | ScriptedReply | None
    ) -> list[ScriptedReply] | ScriptedReply | None:
        if isinstance(value, list) and not value:
            raise ValueError("an empty list gives no reply: leave 'default' out instead")
        return value

    @classmethod
    def load(cls, path: Path) -> Script:
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise InvalidGeneratorError(
                f"cannot read rules file '{path}': {error.strerror}"
            ) from None
        try:
            if path.suffix == ".json":
                data = json.loads(raw)
            else:
                if sys.version_info >= (3, 11):
                    import tomllib
                else:  # pragma: no cover - exercised on Python 3.10 only
                    import tomli as tomllib
                data = tomllib.loads(raw.decode())
        except ValueError as error:
            raise InvalidGeneratorError(f"rules file '{path}' is malformed: {error}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidGeneratorError(
                f"rules file '{path}' is invalid at {where or 'top level'}: {first['msg']}"
            ) from None


class ScriptedGenerator(_OfflineGenerator):
    """Answers from a rules file named by `model` (`scripted!rules.toml`), or from `script`.

    The n-th time a rule sees the same conversation it gives reply n (mode `cycle`), or a
    reply drawn from a random stream seeded by (params.seed, conversation, n) (mode
    `random`): answers depend only on what was asked and how often, never on the order
    concurrent calls happen to arrive in. With no matching rule, `default` answers.
    """

    script: Script | None = Field(default=None, exclude=True)

    _compiled: list[tuple[re.Pattern[str], Rule]] = PrivateAttr()
    _seen: dict[tuple[int, str], int] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: t.Any) -> None:
        super().model_post_init(context)
        if self.script is None:
            path = Path(self.model)
            if not path.suffix and not path.exists():
                path = next(
                    (
                        p
                        for p in (path.with_suffix(".toml"), path.with_suffix(".json"))
                        if p.exists()
                    ),
                    path,
                )
            self.script = Script.load(path)
        self._compiled = [(re.compile(r.match, re.DOTALL), r) for r in self.script.rules]

    async def supports_function_calling(self) -> bool | None:
        """Its replies carry tool calls as a provider's API does, unless its rules file
        says `function_calling = false`."""
        assert self.script is not None
        return self.script.function_calling

    def _pick(self, asked: _Asked, params: GenerateParams) -> ScriptedReply:
        assert self.script is not None
        for index, (pattern, rule) in enumerate(self._compiled):
            if rule.on == "tool_result":
                text = asked.tool_results
            else:
                text = asked.conversation if rule.on == "conversation" else asked.prompt
            if text is not None and pattern.search(text):
                return self._choose(index, rule.replies, asked.conversation, params)
        default = self.script.default
        if default is None:
            raise LookupError(
                f"no rule of scripted model '{self.model}' matches {asked.prompt[:80]!r}"
                " and the script sets no default"
            )
        return self._choose(
            -1, default if isinstance(default, list) else [default], asked.conversation, params
        )

    def _choose(
        self, index: int, replies: list[ScriptedReply], conversation: str, params: GenerateParams
    ) -> ScriptedReply:
        key = hashlib.sha1(conversation.encode("utf-8", "surrogatepass")).hexdigest()
        count = self._seen.get((index, key), 0)
        self._seen[(index, key)] = count + 1
        assert self.script is not None
        if self.script.mode == "cycle":
            return replies[count % len(replies)]
        return random.Random(f"{params.seed or 0}|{key}|{count}").choice(replies)

    def _delay(self) -> float:
        assert self.script is not None
        return self.latency or self.script.latency

    async def _reply(self, asked: _Asked, params: GenerateParams) -> ScriptedReply:
        delay = self._delay()
        if delay:
            await asyncio.sleep(delay)
        return self._pick(asked, params)
