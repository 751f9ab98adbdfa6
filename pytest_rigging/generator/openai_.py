"""`openai!MODEL`: chat and text completions on any OpenAI-compatible server (OpenAI,
vLLM, llama.cpp, Ollama, gateways), natively over HTTP; `api_base=` in the identifier,
else `OPENAI_BASE_URL`. Requests and replies map as litellm's `openai/MODEL` route maps
them, without litellm (tool calls included: the same body)."""

from __future__ import annotations

import json
import typing as t

from pytest_rigging.generator._http import HTTPGenerator, request_params
from pytest_rigging.generator._retry import UnusableReply
from pytest_rigging.generator.base import GeneratedMessage, GeneratedText, GenerateParams, Usage
from pytest_rigging.message import Message
from pytest_rigging.tools.calls import FunctionCall, ToolCall


class OpenAIGenerator(HTTPGenerator):
    """OpenAI's chat completions (`/chat/completions`) and text completions
    (`/completions`); the key from `api_key=` or `OPENAI_API_KEY` (none is sent without)."""

    announces_sends: t.ClassVar[bool] = True  # through the session's trace
    api: t.ClassVar[str] = "openai"
    key_variable: t.ClassVar[str] = "OPENAI_API_KEY"
    base_variables: t.ClassVar[tuple[str, ...]] = ("OPENAI_BASE_URL", "OPENAI_API_BASE")
    default_base: t.ClassVar[str] = "https://api.openai.com/v1"

    def headers(self, key: str | None) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if key:
            headers["authorization"] = f"Bearer {key}"
        return headers

    async def generate_message(
        self, messages: t.Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        __tracebackhide__ = True  # its body may hold secret `extra.*` params
        body = {
            "model": self.sent_model,
            "messages": [m.to_dict() for m in messages],
            **request_params(params),
        }
        return await self.post(
            f"{self.base_url(params)}/chat/completions", body, params, _read_message
        )

    async def supports_function_calling(self) -> bool | None:
        """Chat completions take `tools`; whether this model uses them is the server's."""
        return True

    async def generate_text(self, text: str, params: GenerateParams) -> GeneratedText:
        __tracebackhide__ = True  # its body may hold secret `extra.*` params
        body = {"model": self.sent_model, "prompt": text, **request_params(params)}
        return await self.post(f"{self.base_url(params)}/completions", body, params, _read_text)


def _choice(data: dict[str, t.Any]) -> dict[str, t.Any]:
    choices = data.get("choices")
    if not choices or not isinstance(choices, list) or not isinstance(choices[0], dict):
        raise UnusableReply("the reply has no choices")
    return choices[0]


def _read_message(data: dict[str, t.Any]) -> GeneratedMessage:
    choice = _choice(data)
    message = choice.get("message")
    if not isinstance(message, dict):
        raise UnusableReply("the reply's choice has no message")
    content = message.get("content")
    if isinstance(content, list):  # content parts: their text, in order
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict)) or None
    calls = read_tool_calls(message.get("tool_calls"))
    if content is None and not calls:
        raise UnusableReply("the reply's message has no text (content is null)")
    reply = Message.of("assistant", "" if content is None else str(content))
    reply.tool_calls = calls or None
    return GeneratedMessage(message=reply, stop_reason=_stop_reason(choice), usage=_usage(data))


def read_tool_calls(raw: t.Any) -> list[ToolCall]:
    """The calls of a reply's message in OpenAI's shape. A server that omits a call's id
    gets one numbered by position; arguments sent as an object (some compatible servers)
    are read as their JSON text."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise UnusableReply(f"the reply's tool_calls is not a list: {raw!r:.200}")
    calls = []
    for index, item in enumerate(raw):
        function = item.get("function") if isinstance(item, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise UnusableReply(f"the reply's tool call {index} names no function: {item!r:.200}")
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments if arguments is not None else {})
        call_id = item.get("id") or f"call_{index}"
        calls.append(
            ToolCall(id=str(call_id), function=FunctionCall(name=name, arguments=arguments))
        )
    return calls


def _read_text(data: dict[str, t.Any]) -> GeneratedText:
    choice = _choice(data)
    text = choice.get("text")
    if text is None:
        raise UnusableReply("the reply's choice has no text")
    return GeneratedText(text=str(text), stop_reason=_stop_reason(choice), usage=_usage(data))


_STOP_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "function_call",
    "content_filter": "content_filter",
    "eos": "stop",
    "eos_token": "stop",
    "max_tokens": "length",
    "abort": "stop",
}
"""Finish reasons as litellm reports them: OpenAI's own, and compatible servers' words for
them (vLLM, TGI, llama.cpp); anything else reads as `stop`."""


def _stop_reason(choice: dict[str, t.Any]) -> str:
    return _STOP_REASONS.get(str(choice.get("finish_reason") or "stop"), "stop")


def _usage(data: dict[str, t.Any]) -> Usage:
    """Token counts; zeros when the server sent none (as litellm's route reads them)."""
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return Usage()
    return Usage(
        input_tokens=usage.get("prompt_tokens") or 0,
        output_tokens=usage.get("completion_tokens") or 0,
    )
