"""`anthropic!MODEL`: Anthropic's messages API natively over HTTP; `api_base=` in the
identifier, else `ANTHROPIC_BASE_URL`. Requests and replies map as litellm's
`anthropic/MODEL` route maps them (system messages apart, stop sequences, the default
`max_tokens`, stop reasons in OpenAI's words, cached input counted as input), without
litellm. Tools go as Anthropic defines them (`input_schema`, its own `tool_choice`), calls
as `tool_use` blocks and tools' replies as a user's `tool_result` blocks; calls read back
are `ToolCall`s in OpenAI's shape, as every route gives them."""

from __future__ import annotations

import json
import os
import typing as t

from pytest_rigging.generator._http import HTTPGenerator, request_params
from pytest_rigging.generator._litellm_data import model_data
from pytest_rigging.generator._retry import UnusableReply
from pytest_rigging.generator.base import GeneratedMessage, GeneratedText, GenerateParams, Usage
from pytest_rigging.message import ContentImageUrl, ContentText, Message
from pytest_rigging.tools.calls import FunctionCall, ToolCall, ToolChoice, ToolDefinition

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 128000
"""litellm's default `max_tokens` for a model its bundled data doesn't know."""
_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "length",
    "compaction": "length",
    "model_context_window_exceeded": "length",
}
"""Anthropic's stop reasons in OpenAI's words, as litellm reports them (others: `stop`)."""
_UNSUPPORTED = (
    "presence_penalty",
    "frequency_penalty",
    "seed",
    "logit_bias",
    "logprobs",
    "top_logprobs",
)
"""OpenAI params the messages API doesn't take: dropped, as litellm drops them. Other
`extra.*` keys go into the body as they are (litellm translates some, such as `user`)."""


class AnthropicGenerator(HTTPGenerator):
    """Anthropic's messages API (`/v1/messages`); the key from `api_key=` or
    `ANTHROPIC_API_KEY`. Text completion sends the text as one user message."""

    announces_sends: t.ClassVar[bool] = True  # through the session's trace
    api: t.ClassVar[str] = "anthropic"
    key_variable: t.ClassVar[str] = "ANTHROPIC_API_KEY"
    base_variables: t.ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL")
    default_base: t.ClassVar[str] = "https://api.anthropic.com"

    def headers(self, key: str | None) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "application/json",
            "anthropic-version": API_VERSION,
        }
        if key:
            headers["x-api-key"] = key
        return headers

    def messages_url(self, params: GenerateParams) -> str:
        base = self.base_url(params)
        if base.endswith("/v1/messages"):
            return base
        return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"

    async def generate_message(
        self, messages: t.Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        __tracebackhide__ = True  # its body may hold secret `extra.*` params
        body = self.body(messages, params)
        return await self.post(self.messages_url(params), body, params, _read_message)

    async def generate_text(self, text: str, params: GenerateParams) -> GeneratedText:
        __tracebackhide__ = True  # its body may hold secret `extra.*` params
        body = self.body([Message.of("user", text)], params)
        reply = await self.post(self.messages_url(params), body, params, _read_message)
        return GeneratedText(
            text=reply.message.content, stop_reason=reply.stop_reason, usage=reply.usage
        )

    def body(self, messages: t.Sequence[Message], params: GenerateParams) -> dict[str, t.Any]:
        """System messages go apart, as text blocks; the others alternate, so consecutive
        messages of one role are merged into one message of several blocks (a tool's
        reply is a user's `tool_result` block: the replies to one message's calls, and
        any user text after them, make one user message, as the API requires)."""
        system = [_block(m.content) for m in messages if m.role == "system"]
        turns: list[dict[str, t.Any]] = []
        for message in messages:
            if message.role == "system":
                continue
            role = "user" if message.role == "tool" else message.role
            if turns and turns[-1]["role"] == role:
                turns[-1]["content"].extend(_blocks(message))
            else:
                turns.append({"role": role, "content": _blocks(message)})
        sent = request_params(params, dropped=_UNSUPPORTED)
        if "stop" in sent:
            sent["stop_sequences"] = sent.pop("stop")
        sent.setdefault("max_tokens", default_max_tokens(self.model))
        _put_tool_params(sent, params)
        body: dict[str, t.Any] = {"model": self.sent_model, "messages": turns}
        if system:
            body["system"] = system
        return {**body, **sent}

    async def supports_function_calling(self) -> bool | None:
        """The messages API takes `tools`; whether this model uses them is the server's."""
        return True


def _block(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def _blocks(message: Message) -> list[dict[str, t.Any]]:
    """A message as Anthropic's content blocks: a tool's reply as one `tool_result`, an
    assistant's calls as `tool_use` blocks after its text (empty text blocks, which the
    API refuses, left out of both)."""
    if message.role == "tool":
        result: dict[str, t.Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id}
        content = _non_empty(_parts(message))
        if content:
            result["content"] = content
        return [result]
    if not message.tool_calls:
        return _parts(message)
    return [*_non_empty(_parts(message)), *(_tool_use(call) for call in message.tool_calls)]


def _non_empty(blocks: list[dict[str, t.Any]]) -> list[dict[str, t.Any]]:
    return [b for b in blocks if b.get("type") != "text" or b.get("text")]


def _tool_use(call: ToolCall) -> dict[str, t.Any]:
    """A call as a `tool_use` block, whose input must be an object: arguments that aren't
    a JSON object (a model's malformed call, already answered as such) are sent empty."""
    return {
        "type": "tool_use",
        "id": call.id,
        "name": call.function.name,
        "input": call.parsed_arguments() or {},
    }


def _parts(message: Message) -> list[dict[str, t.Any]]:
    """A message's parts as Anthropic's content blocks: text, and images (embedded or
    by URL). Anthropic's messages API takes no audio."""
    blocks: list[dict[str, t.Any]] = []
    for part in message.content_parts:
        if isinstance(part, ContentText):
            blocks.append(_block(part.text))
        elif isinstance(part, ContentImageUrl):
            url = part.image_url.url
            if url.startswith("data:"):
                media, _, data = url[len("data:") :].partition(";base64,")
                source = {"type": "base64", "media_type": media, "data": data}
            else:
                source = {"type": "url", "url": url}
            blocks.append({"type": "image", "source": source})
        else:
            raise ValueError(
                f"anthropic! cannot send a {part.type} part: its messages API takes text and images"
            )
    return blocks


def _read_message(data: dict[str, t.Any]) -> GeneratedMessage:
    blocks = data.get("content")
    if not isinstance(blocks, list):
        raise UnusableReply("the reply has no content")
    text = "".join(
        b["text"]
        for b in blocks
        if isinstance(b, dict)
        and b.get("type", "text") == "text"
        and isinstance(b.get("text"), str)
    )
    calls = [_tool_call(b) for b in blocks if isinstance(b, dict) and b.get("type") == "tool_use"]
    if not text and not calls:  # litellm's route reads no text, or only empty text, as null
        raise UnusableReply("the reply's message has no text (content is null)")
    message = Message.of("assistant", text)
    message.tool_calls = calls or None
    return GeneratedMessage(
        message=message,
        stop_reason=_STOP_REASONS.get(str(data.get("stop_reason")), "stop"),
        usage=_usage(data),
    )


def _tool_call(block: dict[str, t.Any]) -> ToolCall:
    name, call_id = block.get("name"), block.get("id")
    if not isinstance(name, str) or not name or not isinstance(call_id, str):
        raise UnusableReply(f"the reply's tool_use block lacks a name or an id: {block!r:.200}")
    arguments = json.dumps(block.get("input") or {})
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments))


def _put_tool_params(sent: dict[str, t.Any], params: GenerateParams) -> None:
    """`tools`, `tool_choice` and `parallel_tool_calls` in `sent` put in the messages API's
    words: each tool's schema as its `input_schema`, OpenAI's choices as Anthropic's, and
    no parallel calls as the choice's `disable_parallel_tool_use`."""
    if params.tools is not None:
        sent["tools"] = [_tool(tool) for tool in params.tools]
    choice = _tool_choice(sent.pop("tool_choice")) if params.tool_choice is not None else None
    if params.parallel_tool_calls is not None:
        sent.pop("parallel_tool_calls", None)
        if not params.parallel_tool_calls:
            choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if choice is not None:
        sent["tool_choice"] = choice


def _tool(tool: ToolDefinition) -> dict[str, t.Any]:
    function = tool.function
    shaped: dict[str, t.Any] = {"name": function.name}
    if function.description:
        shaped["description"] = function.description
    shaped["input_schema"] = function.parameters or {"type": "object", "properties": {}}
    return shaped


_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


def _tool_choice(choice: ToolChoice) -> dict[str, t.Any]:
    """OpenAI's `tool_choice` as Anthropic's: `auto`, `required` (Anthropic's `any`),
    `none`, or one function; a choice already in Anthropic's shape goes as it is."""
    if isinstance(choice, str) and choice in _CHOICES:
        return dict(_CHOICES[choice])
    if isinstance(choice, dict):
        function = choice.get("function")
        if choice.get("type") == "function" and isinstance(function, dict):
            if isinstance(function.get("name"), str):
                return {"type": "tool", "name": function["name"]}
        elif choice.get("type") in ("auto", "any", "none", "tool"):
            return dict(choice)
    raise ValueError(
        "anthropic! takes tool_choice 'auto', 'required', 'none' or "
        f'{{"type": "function", "function": {{"name": ...}}}}, not {choice!r}'
    )


def _usage(data: dict[str, t.Any]) -> Usage:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return Usage()
    cached = (usage.get("cache_creation_input_tokens") or 0) + (
        usage.get("cache_read_input_tokens") or 0
    )
    return Usage(
        input_tokens=(usage.get("input_tokens") or 0) + cached,
        output_tokens=usage.get("output_tokens") or 0,
    )


def default_max_tokens(model: str) -> int:
    """The messages API requires `max_tokens`: when unset, the model's maximum output from
    the model data bundled with litellm (read as a file, litellm not imported), else
    litellm's own default, as litellm's route sends."""
    entry = model_data().get(model) or model_data().get(f"anthropic/{model}") or {}
    found = entry.get("max_output_tokens") or entry.get("max_tokens")
    if isinstance(found, int):
        return found
    return int(os.environ.get("DEFAULT_ANTHROPIC_CHAT_MAX_TOKENS", DEFAULT_MAX_TOKENS))
