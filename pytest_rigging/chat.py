"""Chats (a conversation and what came back) and chat pipelines (how to produce them)."""

from __future__ import annotations

import time
import typing as t
import uuid as _uuid
from datetime import datetime, timezone

from pydantic import BaseModel, ConfigDict, Field

from pytest_rigging._fast import construct
from pytest_rigging._pipeline import Job, Pipeline
from pytest_rigging.error import error_kind
from pytest_rigging.generator.base import GenerateParams, Generator, Usage
from pytest_rigging.message import Message, MessageLike

if t.TYPE_CHECKING:
    from pytest_rigging.prompt import Prompt

Messages = list[Message]
BatchInput = MessageLike | t.Sequence[MessageLike]


def _now() -> datetime:
    return datetime.now(timezone.utc)


class Chat(BaseModel):
    """A finished conversation: `messages` were sent, `generated` came back.

    A failed chat (`on_failed="include"`) has `failed=True` and `error` set; `error_kind`
    says whether that was a parse failure or an infrastructure error. `recovery_rounds`
    counts the extra replies `until_parsed_as` needed; `usage` and `latency` (seconds
    spent generating, waiting for a concurrency slot excluded) cover all of them.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    uuid: _uuid.UUID = Field(default_factory=_uuid.uuid4)
    timestamp: datetime = Field(default_factory=_now)
    messages: list[Message]
    generated: list[Message] = Field(default_factory=list)
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
    def all(self) -> list[Message]:
        return self.messages + self.generated

    @property
    def last(self) -> Message:
        """The last message: the reply, once there is one."""
        return (self.generated or self.messages)[-1]

    @property
    def prev(self) -> list[Message]:
        return self.all[:-1]

    @property
    def conversation(self) -> str:
        """`[role]: content` per message, blank-line separated; `[error]: ...` if failed."""
        text = "\n\n".join(str(m) for m in self.all)
        if self.failed and self.error is not None:
            text += f"\n\n[error]: {self.error}"
        return text

    @property
    def generator_id(self) -> str | None:
        """The identifier this chat ran with, params included: `litellm!gpt-4o,temperature=0.6`."""
        if self.generator is None:
            return None
        return self.generator.to_identifier(self.params, with_config=False)

    @property
    def error_kind(self) -> str | None:
        return error_kind(self.error)

    def __len__(self) -> int:
        return len(self.messages) + len(self.generated)

    def __str__(self) -> str:
        return self.conversation

    def meta(self, **kwargs: t.Any) -> Chat:
        """Add metadata (in place) and return this chat, for chaining."""
        self.metadata.update(kwargs)
        return self

    def _pipeline(self, messages: list[Message], generator: Generator | None) -> ChatPipeline:
        generator = generator or self.generator
        if generator is None:
            raise ValueError("this chat has no generator: pass one")
        return ChatPipeline(generator, messages, params=self.params, metadata=self.metadata)

    def continue_(self, messages: BatchInput | None = None) -> ChatPipeline:
        """A pipeline holding this whole conversation plus `messages`."""
        return self._pipeline(self.all + Message.fit_as_list(messages), None)

    def fork(
        self, messages: BatchInput | None = None, *, include_all: bool = False
    ) -> ChatPipeline:
        """A pipeline from the messages sent (or all, with `include_all`) plus `messages`."""
        base = self.all if include_all else self.messages
        return self._pipeline(list(base) + Message.fit_as_list(messages), None)

    def restart(
        self, *, generator: Generator | None = None, include_all: bool = False
    ) -> ChatPipeline:
        """A pipeline that sends this chat's messages again, optionally to another generator."""
        return self._pipeline(list(self.all if include_all else self.messages), generator)


def new_chat(
    messages: list[Message],
    generator: Generator,
    params: GenerateParams,
    metadata: dict[str, t.Any],
    *,
    generated: list[Message] | None = None,
    stop_reason: str | None = None,
    usage: Usage | None = None,
    latency: float = 0.0,
) -> Chat:
    """A chat the pipeline built itself (no validation: every part is already typed)."""
    return construct(
        Chat,
        {
            "uuid": _uuid.uuid4(),
            "timestamp": _now(),
            "messages": messages,
            "generated": generated if generated is not None else [],
            "metadata": metadata,
            "generator": generator,
            "params": params,
            "stop_reason": stop_reason,
            "usage": usage,
            "failed": False,
            "error": None,
            "recovery_rounds": 0,
            "latency": latency,
        },
    )


class ChatPipeline(Pipeline[Chat, Messages]):
    """Messages, a generator, and the steps that turn replies into finished chats.

    `run` gives one chat, `run_many(n)` n chats from the same messages, `run_batch` one
    per input/params pair, `run_over` one per generator. All of them run concurrently
    under the generators' `max_connections` and return chats in input order; `on_failed`
    is `raise` (default), `skip` (drop failed chats) or `include` (keep them, marked).
    """

    def __init__(
        self,
        generator: Generator,
        messages: BatchInput | None = None,
        *,
        params: GenerateParams | None = None,
        metadata: dict[str, t.Any] | None = None,
    ) -> None:
        super().__init__(generator, params=params, metadata=metadata)
        self.messages: list[Message] = Message.fit_as_list(messages)
        self._blank: Messages = []

    def __repr__(self) -> str:
        return (
            f"ChatPipeline(generator={self.generator.to_identifier()!r}, "
            f"messages={len(self.messages)}, steps={len(self.steps)})"
        )

    def clone(self) -> ChatPipeline:
        other = ChatPipeline(
            self.generator, list(self.messages), params=self.params, metadata=self.metadata
        )
        self._copy_into(other)
        return other

    def add(self, messages: BatchInput) -> ChatPipeline:
        """Append `messages` to this pipeline's conversation."""
        self.messages.extend(Message.fit_as_list(messages))
        return self

    def fork(self, messages: BatchInput) -> ChatPipeline:
        """A copy of this pipeline with `messages` appended."""
        return self.clone().add(messages)

    def prompt(self, func: t.Callable[..., t.Any]) -> Prompt[t.Any, t.Any]:
        """Turn `func` into a Prompt that runs on (a copy of) this pipeline."""
        from pytest_rigging.prompt import Prompt

        return Prompt(func, pipeline=self)

    # The engine's hooks

    async def _generate(self, job: Job[Messages]) -> Chat:
        messages = self.messages + job.input
        return await self._complete_chat(job.generator, messages, job.params, dict(self.metadata))

    async def _regenerate(self, result: Chat, dialog: list[Message]) -> Chat:
        assert result.generator is not None and result.params is not None
        regenerated = await self._complete_chat(
            result.generator, result.messages, result.params, result.metadata, dialog
        )
        return regenerated

    async def _complete_chat(
        self,
        generator: Generator,
        messages: list[Message],
        params: GenerateParams,
        metadata: dict[str, t.Any],
        dialog: list[Message] | None = None,
    ) -> Chat:
        async with generator.slots():
            started = time.perf_counter()
            generated = await generator.generate_message(
                messages + dialog if dialog else messages, params
            )
            latency = time.perf_counter() - started
        return new_chat(
            messages,
            generator,
            params,
            metadata,
            generated=[generated.message],
            stop_reason=generated.stop_reason,
            usage=generated.usage,
            latency=latency,
        )

    def _parse_text(self, result: Chat) -> str:
        return result.last.content

    def _recovery_dialog(self, result: Chat, message: str) -> list[Message]:
        return [result.last, Message(role="user", content=message)]

    def _failed(self, job: Job[Messages], result: Chat | None, error: BaseException) -> Chat:
        if result is None:
            result = new_chat(
                self.messages + job.input, job.generator, job.params, dict(self.metadata)
            )
        result.failed = True
        result.error = error
        return result

    def _fit_inputs(self, many: t.Any) -> list[Messages]:
        inputs = [many] if isinstance(many, str | dict | Message) else list(many)
        return [Message.fit_as_list(i) for i in inputs]
