"""Chats (a conversation and what came back) and chat pipelines (how to produce them)."""

from __future__ import annotations

import asyncio
import time
import typing as t
from dataclasses import dataclass

from pydantic import Field, PrivateAttr

from pytest_rigging._pipeline import (
    DEFAULT_MAX_DEPTH,
    Job,
    Pipeline,
    PipelineStepContextManager,
    Tracker,
    add_usage,
)
from pytest_rigging._result import Result, build
from pytest_rigging.error import ToolDepthError
from pytest_rigging.generator.base import GenerateParams, Generator, generate_message
from pytest_rigging.message import (
    CONTENT_TYPES,
    Message,
    MessageDict,
    MessageLike,
    MessageSlice,
    SliceType,
    inject_system_content,
)
from pytest_rigging.tools.base import Tool, tools_of, unknown_tool_reply
from pytest_rigging.tools.calls import TOOL_MODES, ToolCall, ToolChoice, ToolMode

if t.TYPE_CHECKING:
    from pytest_rigging.model import Model
    from pytest_rigging.prompt import Prompt

__all__ = [
    "Chat",
    "ChatList",
    "ChatPipeline",
    "MapChatCallback",
    "PipelineStepContextManager",
    "ThenChatCallback",
    "WatchChatCallback",
]

Messages = list[Message]
BatchInput = MessageLike | t.Sequence[MessageLike]
MergeStrategy = t.Literal["none", "only-user-role", "all"]
"""How `ChatPipeline.add` treats incoming messages whose first has the role of the
last message already there: keep it apart (`none`), fold it into that message when both
are user messages (`only-user-role`), or whatever the role (`all`)."""

ThenChatCallback = t.Callable[["Chat"], t.Any]
"""What `then` takes: chat in; a chat, None, a pipeline or `pipeline.step()` out (or an
awaitable of one)."""
MapChatCallback = t.Callable[[list["Chat"]], t.Any]
"""What `map` takes: chats in, as many chats out (or an awaitable of them)."""
WatchChatCallback = t.Callable[[list["Chat"]], t.Any]
"""What `watch` takes: a run's chats in, nothing out."""


@dataclass(frozen=True)
class ToolUse:
    """The tool settings of the pipeline that made a chat: a pipeline made from the chat
    (`continue_`, `fork`, `restart`) answers the model's calls with them, as rigging's
    does, instead of ending on calls nobody answers."""

    tools: tuple[Tool[..., t.Any], ...]
    mode: ToolMode
    choice: ToolChoice | None
    max_depth: int
    add_stop_token: bool


class Chat(Result):
    """A finished conversation: `messages` were sent, `generated` came back.

    After a parse recovery, `messages` also holds the failed replies and the requests to
    rewrite them, so `all` is the whole exchange and `generated` the reply that parsed.
    """

    messages: list[Message]
    generated: list[Message] = Field(default_factory=list)
    _tool_use: ToolUse | None = PrivateAttr(default=None)

    def __init__(
        self,
        messages: BatchInput | None = None,
        generated: BatchInput | None = None,
        generator: Generator | None = None,
        **kwargs: t.Any,
    ) -> None:
        # a type checker knows only `Result`'s fields: pydantic validates this class's too
        own: dict[str, t.Any] = {
            "messages": Message.fit_as_list(messages),
            "generated": Message.fit_as_list(generated),
        }
        super().__init__(generator=generator, **own, **kwargs)

    @property
    def all(self) -> list[Message]:
        return self.messages + self.generated

    @property
    def last(self) -> Message:
        """The last message: the reply, once there is one."""
        return (self.generated or self.messages)[-1]

    @property
    def prev(self) -> list[Message]:
        """What was sent (rigging's alias of `messages`)."""
        return self.messages

    @property
    def next(self) -> list[Message]:
        """What came back (rigging's alias of `generated`)."""
        return self.generated

    @property
    def message_dicts(self) -> list[MessageDict]:
        """The whole conversation as OpenAI's API takes it."""
        return [m.to_openai() for m in self.all]

    @property
    def message_metadata(self) -> dict[str, t.Any]:
        """Every message's metadata merged, later messages winning."""
        merged: dict[str, t.Any] = {}
        for message in self.all:
            merged.update(message.metadata)
        return merged

    def message_slices(
        self,
        slice_type: SliceType | None = None,
        filter_fn: t.Callable[[MessageSlice], bool] | None = None,
        *,
        reverse: bool = False,
    ) -> list[MessageSlice]:
        """Every message's slices (of a type, accepted by `filter_fn`), message by message."""
        messages = reversed(self.all) if reverse else self.all
        return [
            part
            for message in messages
            for part in message.find_slices(slice_type, filter_fn, reverse=reverse)
        ]

    def to_openai(self) -> list[MessageDict]:
        return self.message_dicts

    def to_df(self) -> t.Any:
        """This chat as a pandas DataFrame, one row per message (`rg.data.chats_to_df`)."""
        from pytest_rigging.data import chats_to_df

        return chats_to_df([self])

    def clone(self, *, only_messages: bool = False) -> Chat:
        """A deep copy of the messages, and (unless `only_messages`) of everything else;
        the generator is shared."""
        new = Chat(
            [m.clone() for m in self.messages],
            [m.clone() for m in self.generated],
            self.generator,
        )
        if only_messages:
            return new
        return self._copy_into(new)

    def apply(self, **kwargs: t.Any) -> Chat:
        """Fill `$name` placeholders in the last message (in place; returns the chat)."""
        if self.generated:
            self.generated[-1] = self.generated[-1].apply(**kwargs)
        elif self.messages:
            self.messages[-1] = self.messages[-1].apply(**kwargs)
        return self

    def apply_to_all(self, **kwargs: t.Any) -> Chat:
        """Fill `$name` placeholders in every message (in place; returns the chat)."""
        self.messages = Message.apply_to_list(self.messages, **kwargs)
        self.generated = Message.apply_to_list(self.generated, **kwargs)
        return self

    def strip(self, model_type: type[Model], fail_on_missing: bool = False) -> Chat:
        """A copy with every element of `model_type` cut out of every message's text.
        With `fail_on_missing`, a chat holding none raises `MissingModelError`."""
        new = self.clone()
        removed = 0
        for message in new.all:
            message.try_parse_set(model_type)
            removed += len(message.strip(model_type))
        if fail_on_missing and not removed:
            from pytest_rigging.error import MissingModelError

            raise MissingModelError(f"Failed to find '{model_type.xml_tags()}' in the chat")
        return new

    def inject_system_content(self, content: str) -> Chat:
        """Add `content` to the system message, creating one first if there is none."""
        self.messages = inject_system_content(self.messages, content)
        return self

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

    @property
    def tool_use(self) -> ToolUse | None:
        """The tools this chat's pipeline let the model call (None: none, or a chat
        loaded from JSON, whose tools are code)."""
        return self._tool_use

    def _pipeline(self, messages: list[Message], generator: Generator | None) -> ChatPipeline:
        pipeline = ChatPipeline(
            self.generator_for_more(generator), messages, params=self.params, metadata=self.metadata
        )
        if (use := self.tool_use) is not None:
            pipeline.tools = list(use.tools)
            pipeline.tool_mode, pipeline.tool_choice = use.mode, use.choice
            pipeline.tool_max_depth = use.max_depth
            pipeline.add_tool_stop_token = use.add_stop_token
        return pipeline

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


class ChatList(list[Chat]):
    """What a chat pipeline's runs return: a list of chats that also exports itself."""

    def to_json(self) -> list[dict[str, t.Any]]:
        """Every chat as JSON-ready data (`Chat.model_validate` reads each back)."""
        return [chat.model_dump(mode="json") for chat in self]

    def to_openai(self) -> list[list[MessageDict]]:
        return [chat.to_openai() for chat in self]

    def to_df(self) -> t.Any:
        """One DataFrame row per message (`rg.data.chats_to_df`; needs pandas)."""
        from pytest_rigging.data import chats_to_df

        return chats_to_df(self)


def new_chat(
    messages: list[Message],
    generator: Generator,
    params: GenerateParams | None,
    metadata: dict[str, t.Any],
    *,
    generated: list[Message] | None = None,
    **cost: t.Any,
) -> Chat:
    """A chat the pipeline built itself (no validation: every part is already typed)."""
    own = {"messages": messages, "generated": generated if generated is not None else []}
    return build(Chat, generator, params, metadata, own, **cost)


def _merges(strategy: MergeStrategy, last: Message, first: Message) -> bool:
    if strategy == "none" or last.role != first.role:
        return False
    return strategy == "all" or last.role == "user"


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
        self.tools: list[Tool[..., t.Any]] = []
        self.tool_mode: ToolMode = "auto"
        self.tool_choice: ToolChoice | None = None
        self.tool_max_depth = DEFAULT_MAX_DEPTH
        self.add_tool_stop_token = True

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
        other.tools = list(self.tools)
        other.tool_mode, other.tool_choice = self.tool_mode, self.tool_choice
        other.tool_max_depth = self.tool_max_depth
        other.add_tool_stop_token = self.add_tool_stop_token
        return other

    def using(
        self,
        *tools: t.Any,
        mode: ToolMode | None = None,
        choice: ToolChoice | None = None,
        max_depth: int = DEFAULT_MAX_DEPTH,
        add_stop_token: bool | None = None,
        catch: bool | t.Iterable[type[Exception]] | None = None,
    ) -> ChatPipeline:
        """Let the model call `tools` (tools, functions, objects with `@tool_method`s, or
        lists of them); a tool given again by name replaces the earlier one.

        Every reply that calls tools is answered, the calls of one reply run concurrently,
        and the model is asked again, until it answers without calling one. `mode`: how
        calls travel (`ToolMode`, default `auto`). `choice`: `api` mode's `tool_choice`,
        sent on the first call only, so a forced call can't loop. `max_depth`: the rounds
        of tool calls answered; a reply that still calls tools after that many raises
        `ToolDepthError` (a `MaxDepthError`), the chat keeping the dialog. `add_stop_token`:
        in `xml` mode, stop generating at the end of the first call. `catch` overrides each
        tool's own (which exceptions become the tool's reply instead of failing the chat).
        """
        if not tools:
            raise ValueError("using() needs at least one tool")
        if mode is not None and mode not in TOOL_MODES:
            raise ValueError(f"unknown tool mode {mode!r}: choose one of {', '.join(TOOL_MODES)}")
        if max_depth < 1:
            raise ValueError(f"max_depth must be at least 1 (rounds of tools), got {max_depth}")
        added = tools_of(list(tools))
        if catch is not None:
            added = [tool.with_(catch=catch) for tool in added]
        names = {tool.name for tool in added}
        self.tools = [tool for tool in self.tools if tool.name not in names] + added
        self.tool_mode = mode or self.tool_mode
        self.tool_choice = choice if choice is not None else self.tool_choice
        self.tool_max_depth = max_depth
        if add_stop_token is not None:
            self.add_tool_stop_token = add_stop_token
        return self

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def chat(self) -> Chat:
        """The conversation so far as a chat with this pipeline's generator, params and
        metadata, for code written against rigging, where the pipeline keeps one.
        Its `messages` is this pipeline's list (nothing generated yet), so changes made
        through it stay on the pipeline."""
        return new_chat(self.messages, self.generator, self.params, self.metadata)

    @chat.setter
    def chat(self, chat: Chat) -> None:
        self.messages = list(chat.all)

    def add(self, messages: BatchInput, *, merge_strategy: MergeStrategy = "none") -> ChatPipeline:
        """Append `messages` to this pipeline's conversation.

        Some providers refuse two consecutive messages of one role: `merge_strategy`
        (see `MergeStrategy`) can fold the first incoming message's parts into the last
        one instead, which reads as its text on a new line. The merged message is a
        copy, so pipelines cloned from this one keep theirs."""
        incoming = Message.fit_as_list(messages)
        if merge_strategy not in t.get_args(MergeStrategy):
            raise ValueError(
                f"merge_strategy must be one of {', '.join(t.get_args(MergeStrategy))}, "
                f"got {merge_strategy!r}"
            )
        if incoming and self.messages and _merges(merge_strategy, self.messages[-1], incoming[0]):
            merged = self.messages[-1].clone()
            merged.content_parts.extend(p.model_copy(deep=True) for p in incoming[0].content_parts)
            self.messages[-1] = merged
            incoming = incoming[1:]
        self.messages.extend(incoming)
        return self

    def fork(self, messages: BatchInput) -> ChatPipeline:
        """A copy of this pipeline with `messages` appended."""
        return self.clone().add(messages)

    def apply(self, **kwargs: t.Any) -> ChatPipeline:
        """A copy whose last message has its `$name` placeholders filled."""
        new = self.clone()
        if new.messages:
            new.messages[-1] = new.messages[-1].apply(**kwargs)
        return new

    def apply_to_all(self, **kwargs: t.Any) -> ChatPipeline:
        """A copy whose messages all have their `$name` placeholders filled."""
        new = self.clone()
        new.messages = Message.apply_to_list(new.messages, **kwargs)
        return new

    def inject_system_content(self, content: str) -> ChatPipeline:
        """Add `content` to this pipeline's system message (creating one if needed)."""
        self.messages = inject_system_content(self.messages, content)
        return self

    def prompt(self, func: t.Callable[..., t.Any]) -> Prompt[t.Any, t.Any]:
        """Turn `func` into a Prompt that runs on (a copy of) this pipeline."""
        from pytest_rigging.prompt import Prompt

        return Prompt(func, pipeline=self)

    def _listed(self, results: list[Chat]) -> ChatList:
        return ChatList(results)

    # The engine's hooks

    async def _generate(self, job: Job[Messages]) -> Chat:
        messages = self.messages + job.input
        return await self._complete_chat(job.generator, messages, job.params, dict(self.metadata))

    async def _regenerate(self, result: Chat, dialog: list[Message]) -> Chat:
        assert result.generator is not None and result.params is not None
        regenerated = await self._complete_chat(
            result.generator, result.messages, result.params, result.metadata, dialog, first=False
        )
        return regenerated

    async def _complete_chat(
        self,
        generator: Generator,
        messages: list[Message],
        params: GenerateParams,
        metadata: dict[str, t.Any],
        dialog: list[Message] | None = None,
        *,
        first: bool = True,
    ) -> Chat:
        conversation = messages + dialog if dialog else messages
        sent, sent_params = conversation, params
        mode = await self._resolved_mode(generator, params) if self.tools else None
        if mode == "api":
            sent_params = params.merge_with(
                GenerateParams(
                    tools=[tool.definition for tool in self.tools],
                    tool_choice=self.tool_choice if first else None,
                )
            )
        elif mode is not None:
            from pytest_rigging.tools import text

            sent, sent_params = text.prepare(
                sent, params, self.tools, mode, add_stop_token=self.add_tool_stop_token
            )
        async with generator.slots():
            started = time.perf_counter()
            generated = await generate_message(generator, sent, sent_params, self.wrapper)
            latency = time.perf_counter() - started
        if generated.latency is not None:  # the provider's own count: its attempts only
            latency = generated.latency
        if mode is not None and mode != "api":
            from pytest_rigging.tools import text

            generated.message = text.read(generated.message, self.tools, mode)
        made = new_chat(
            conversation,
            generator,
            params,
            metadata,
            generated=[generated.message],
            stop_reason=generated.stop_reason,
            usage=generated.usage,
            latency=latency,
            extra=generated.extra,
        )
        made._tool_use = self._tool_use()
        return made

    def _tool_use(self) -> ToolUse | None:
        if not self.tools:
            return None
        return ToolUse(
            tuple(self.tools),
            self.tool_mode,
            self.tool_choice,
            self.tool_max_depth,
            self.add_tool_stop_token,
        )

    async def _resolved_mode(self, generator: Generator, params: GenerateParams) -> ToolMode:
        mode = params.tool_mode or self.tool_mode
        if mode != "auto":
            return mode
        return "api" if await generator.supports_function_calling() else "json-in-xml"

    async def _follow_up(self, tracker: Tracker[Chat]) -> Chat:
        """Answer the reply's tool calls and ask again, until a reply calls none (or a
        tool raises `Stop`: the chat then ends with the tools' replies). Each round's
        chat is the tracker's, so a failure keeps the dialog so far; its cost and time
        are the rounds' sum."""
        chat = tracker.current
        assert chat is not None
        generator, params = chat.generator, chat.params
        assert generator is not None and params is not None
        rounds, latency, usage = 0, chat.latency, chat.usage
        while self.tools and chat.last.role == "assistant" and chat.last.tool_calls:
            if rounds >= self.tool_max_depth:
                raise ToolDepthError(
                    self.tool_max_depth,
                    f"the model still called tools ({_names(chat.last.tool_calls)}) after "
                    f"{rounds} rounds of tool calls (using(max_depth={self.tool_max_depth}))",
                )
            replies, stop = await self._answer(chat.last.tool_calls)
            rounds += 1
            if stop:
                chat = new_chat(chat.all + replies, generator, params, chat.metadata)
                chat._tool_use = self._tool_use()
            else:
                chat = await self._complete_chat(
                    generator, chat.all + replies, params, chat.metadata, first=False
                )
                latency += chat.latency
                usage = add_usage(usage, chat.usage)
            chat.latency, chat.usage = latency, usage
            tracker.current = chat
            if stop:
                break
        return chat

    async def _answer(self, calls: list[ToolCall]) -> tuple[list[Message], bool]:
        """The replies to one message's calls, in the calls' order, and whether a tool
        asked to stop."""
        by_name = {tool.name: tool for tool in self.tools}

        async def answer(call: ToolCall) -> tuple[Message, bool]:
            tool = by_name.get(call.name)
            if tool is None:
                return unknown_tool_reply(call, list(by_name)), False
            return await tool.handle_tool_call(call)

        answered = await asyncio.gather(*(answer(call) for call in calls))
        return [reply for reply, _ in answered], any(stop for _, stop in answered)

    def _parse_text(self, result: Chat) -> str:
        return result.last.content

    def _recovery_dialog(self, result: Chat, message: str) -> list[Message]:
        return [result.last, Message.of("user", message)]

    def _failed(self, job: Job[Messages], result: Chat | None, error: BaseException) -> Chat:
        if result is None:
            result = new_chat(
                self.messages + job.input, job.generator, job.params, dict(self.metadata)
            )
        result.failed = True
        result.error = error
        return result

    def _fit_inputs(self, many: t.Any) -> list[Messages]:
        one = isinstance(many, (str, dict, Message, *CONTENT_TYPES))
        inputs = [many] if one else list(many)
        return [Message.fit_as_list(i) for i in inputs]


def _names(calls: list[ToolCall]) -> str:
    return ", ".join(call.name for call in calls)
