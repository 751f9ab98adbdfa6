"""Chats (a conversation and what came back) and chat pipelines (how to produce them)."""

from __future__ import annotations

import time
import typing as t

from pydantic import Field

from pytest_rigging._pipeline import Job, Pipeline
from pytest_rigging._result import Result, build
from pytest_rigging.generator.base import GenerateParams, Generator, generate_message
from pytest_rigging.message import Message, MessageLike

if t.TYPE_CHECKING:
    from pytest_rigging.prompt import Prompt

Messages = list[Message]
BatchInput = MessageLike | t.Sequence[MessageLike]


class Chat(Result):
    """A finished conversation: `messages` were sent, `generated` came back."""

    messages: list[Message]
    generated: list[Message] = Field(default_factory=list)

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

    def __len__(self) -> int:
        return len(self.messages) + len(self.generated)

    def __str__(self) -> str:
        return self.conversation

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
    **cost: t.Any,
) -> Chat:
    """A chat the pipeline built itself (no validation: every part is already typed)."""
    own = {"messages": messages, "generated": generated if generated is not None else []}
    return build(Chat, generator, params, metadata, own, **cost)


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
            generated = await generate_message(
                generator, messages + dialog if dialog else messages, params
            )
            latency = time.perf_counter() - started
        if generated.latency is not None:  # the provider's own count: its attempts only
            latency = generated.latency
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
