"""Offline providers: test pipeline logic, and run example suites, with no model at all.

- `echo!name`: answers with the last user message (or the text, for completions).
- `scripted!path/to/rules.toml`: answers from a rules file, where each rule matches a
  pattern on the conversation and gives one or more replies, cycled or drawn with a seed.

Both take `latency=<seconds>` in the identifier to simulate a slow model.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import json
import random
import re
import sys
import typing as t
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


def _usage(prompt: str, reply: str) -> Usage:
    return Usage(input_tokens=len(prompt.split()), output_tokens=len(reply.split()))


def _last_user(messages: t.Sequence[Message]) -> str:
    return next((m.content for m in reversed(messages) if m.role == "user"), "")


class _OfflineGenerator(Generator):
    latency: float = Field(default=0.0, ge=0)

    @abc.abstractmethod
    async def _reply(self, prompt: str, conversation: str, params: GenerateParams) -> str:
        """The reply to `prompt` (the last user message, or the text to complete) within
        `conversation` (all of it, as text)."""

    async def generate_message(
        self, messages: t.Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        prompt = _last_user(messages)
        conversation = "\n\n".join(str(m) for m in messages)
        reply = await self._reply(prompt, conversation, params)
        return GeneratedMessage(
            message=Message.of("assistant", reply),
            stop_reason="stop",
            usage=_usage(conversation, reply),
            latency=self._delay(),
        )

    async def generate_text(self, text: str, params: GenerateParams) -> GeneratedText:
        reply = await self._reply(text, text, params)
        return GeneratedText(
            text=reply, stop_reason="stop", usage=_usage(text, reply), latency=self._delay()
        )

    def _delay(self) -> float:
        """The simulated model's time per reply: its latency, reported as its own count
        (so a recorded run's latency doesn't depend on how busy the machine was)."""
        return self.latency


class EchoGenerator(_OfflineGenerator):
    """Answers with the last user message: the smallest model that shows a pipeline works."""

    async def _reply(self, prompt: str, conversation: str, params: GenerateParams) -> str:
        if self.latency:
            await asyncio.sleep(self.latency)
        return prompt


class Rule(BaseModel):
    """One rule: where `match` (a regex) is found, answer with `replies` in turn."""

    model_config = ConfigDict(extra="forbid")

    match: str
    on: t.Literal["last_user", "conversation"] = "last_user"
    replies: list[str] = Field(default_factory=list)
    reply: str | None = None

    @model_validator(mode="after")
    def _has_replies(self) -> Rule:
        if self.reply is not None:
            self.replies = [self.reply, *self.replies]
        if not self.replies:
            raise ValueError(f"rule {self.match!r} has no 'reply' or 'replies'")
        try:
            re.compile(self.match)
        except re.error as error:
            raise ValueError(f"rule {self.match!r} is not a valid regex: {error}") from None
        return self


class Script(BaseModel):
    """The contents of a rules file (TOML or JSON)."""

    model_config = ConfigDict(extra="forbid")

    rules: list[Rule] = Field(default_factory=list)
    default: str | list[str] | None = None
    mode: t.Literal["cycle", "random"] = "cycle"
    latency: float = Field(default=0.0, ge=0)

    @field_validator("default")
    @classmethod
    def _default_has_replies(cls, value: str | list[str] | None) -> str | list[str] | None:
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

    def _pick(self, prompt: str, conversation: str, params: GenerateParams) -> str:
        assert self.script is not None
        for index, (pattern, rule) in enumerate(self._compiled):
            if pattern.search(conversation if rule.on == "conversation" else prompt):
                return self._choose(index, rule.replies, conversation, params)
        default = self.script.default
        if default is None:
            raise LookupError(
                f"no rule of scripted model '{self.model}' matches {prompt[:80]!r}"
                " and the script sets no default"
            )
        return self._choose(
            -1, [default] if isinstance(default, str) else default, conversation, params
        )

    def _choose(
        self, index: int, replies: list[str], conversation: str, params: GenerateParams
    ) -> str:
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

    async def _reply(self, prompt: str, conversation: str, params: GenerateParams) -> str:
        delay = self._delay()
        if delay:
            await asyncio.sleep(delay)
        return self._pick(prompt, conversation, params)
