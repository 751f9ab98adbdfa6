"""The default provider: any model string litellm understands.

litellm costs seconds and ~190 MB to import, so it is imported on the first generation,
never before. Retries are ours, not litellm's or the OpenAI SDK's: bounded, with
exponential backoff, honouring `Retry-After`, and every failure that survives them
becomes a `GenerationError` (an infrastructure error, never a parse failure).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import importlib
import inspect
import os
import typing as t
import warnings
from pathlib import Path

from pytest_rigging._secrets import guard_loggers
from pytest_rigging.error import InvalidGeneratorError
from pytest_rigging.generator._litellm_data import (
    model_data,
    provider_names,
    routes,
    token_prices,
)
from pytest_rigging.generator._retry import (
    DEFAULT_TIMEOUT,
    Fault,
    ResultT,
    RetryingGenerator,
    UnusableReply,
    retry_after,
)
from pytest_rigging.generator.base import (
    GeneratedMessage,
    GeneratedText,
    GenerateParams,
    Usage,
)
from pytest_rigging.generator.openai_ import read_tool_calls
from pytest_rigging.message import Message
from pytest_rigging.tools.calls import ToolCall

_LOGGERS = (
    "LiteLLM",
    "LiteLLM Router",
    "LiteLLM Proxy",
    "httpx",
    "openai._base_client",
    "anthropic._base_client",
)
"""Loggers that may see request details: each gets a filter that redacts secrets (a
filter applies to records of its own logger only, so children are named one by one)."""

_litellm_module: t.Any = None

_READ_ONLY_NOTICE = r"Items? .* (is|are) using the .ReadOnly. qualifier"
"""pydantic's notice about litellm's own TypedDicts: litellm's business, not the user's."""
_NOTICE_MODULES = ("litellm.llms.github_copilot.per_user_auth",)
"""A module litellm imports on every call, whose import raises that notice."""
_NOTICE_MODELS = (
    "litellm.types.router:GenericLiteLLMParams",
    "litellm.types.utils:Message",
    "litellm.types.utils:Delta",
)
"""Models whose schemas litellm defers to the first chat or text call, where building them
raises that notice; built up front instead (a few ms). A name litellm no longer has is
skipped."""


def _litellm() -> t.Any:
    """Import and configure litellm once, on first use, leaving no process-wide trace:
    the environment is restored after the import, and warning filters are scoped to it."""
    global _litellm_module
    if _litellm_module is None:
        with _local_cost_map(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_READ_ONLY_NOTICE, category=UserWarning)
            import litellm

            for name in _NOTICE_MODULES:
                with contextlib.suppress(ImportError):
                    importlib.import_module(name)
            for name in _NOTICE_MODELS:
                module, _, model = name.partition(":")
                with contextlib.suppress(Exception):
                    getattr(importlib.import_module(module), model).model_rebuild()
        litellm.suppress_debug_info = True
        litellm.telemetry = False
        guard_loggers(*_LOGGERS)
        _litellm_module = litellm
    return _litellm_module


@contextlib.contextmanager
def _local_cost_map() -> t.Iterator[None]:
    """litellm reads its price map at import, from the network unless told otherwise, which
    stalls offline; it reads the setting only then, so it is set for the import alone
    (unless the user set it) and the environment is left as it was."""
    name = "LITELLM_LOCAL_MODEL_COST_MAP"
    if name in os.environ:
        yield
        return
    os.environ[name] = "True"
    try:
        yield
    finally:
        os.environ.pop(name, None)


def litellm_model(model: str) -> str:
    """The model string to hand litellm.

    Bare `claude-*` ids go to Anthropic: litellm no longer recognises retired ones such as
    `claude-3-haiku-20240307` ("LLM Provider NOT provided"), which the seed uses.
    """
    if "/" not in model and model.startswith("claude"):
        return f"anthropic/{model}"
    return model


def _retry_after(error: BaseException) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None) or getattr(error, "litellm_response_headers", None)
    return retry_after(headers)


_CONNECTION = ("ConnectError", "APIConnectionError", "ConnectionRefusedError", "ConnectionError")


def _chain(error: BaseException) -> t.Iterator[BaseException]:
    """The error and what caused it: litellm re-wraps SDK and transport errors, sometimes
    as a generic 500, so the cause tells a refused connection from a real server error."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = (
            getattr(current, "original_exception", None) or current.__cause__ or current.__context__
        )


_UNREADABLE = ("JSONDecodeError", "UnicodeDecodeError", "UnusableReply")


def _classify(error: BaseException) -> Fault:
    """Reads an exception raised by a litellm call."""
    chain = list(_chain(error))
    names = [type(e).__name__ for e in chain]
    # litellm reports a 200 whose body it can't convert as a 500 "Invalid response object"
    if any(name in _UNREADABLE for name in names) or any(
        str(e).startswith("Invalid response object") for e in chain
    ):
        return Fault("bad_response", retryable=True)
    if any("Timeout" in name for name in names):
        return Fault("timeout", retryable=True)
    status = getattr(error, "status_code", None)
    if "RateLimitError" in names or status == 429:
        return Fault("rate_limit", retryable=True)
    if any(name in _CONNECTION for name in names) or "Connection error" in str(error):
        return Fault("connection", retryable=True)
    if isinstance(status, int) and status >= 500:
        return Fault("server", retryable=True)
    if isinstance(status, int) and 400 <= status < 500:
        return Fault("client", retryable=False)
    return Fault("bad_response", retryable=True)


class LiteLLMGenerator(RetryingGenerator):
    """Generates through litellm (`gpt-4o-mini`, `anthropic/...`, `openai/x,api_base=...`),
    with the retries, backoff and timeouts of `RetryingGenerator`, never litellm's."""

    async def generate_message(
        self, messages: t.Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        return await self._call(
            "acompletion", params, _message_of, messages=[m.to_dict() for m in messages]
        )

    async def generate_text(self, text: str, params: GenerateParams) -> GeneratedText:
        return await self._call("atext_completion", params, _text_of, prompt=text)

    async def supports_function_calling(self) -> bool | None:
        """As litellm's model data says (a model it knows without the flag: no); None for
        a model it doesn't know, such as one behind an `api_base`."""
        try:
            info = _litellm().get_model_info(model=litellm_model(self.model))
        except Exception:  # litellm raises for a model missing from its data
            return None
        return bool(info.get("supports_function_calling"))

    def prices(self) -> tuple[float, float] | None:
        """From litellm's bundled prices, read from its files."""
        return token_prices(litellm_model(self.model))

    def check(self) -> str | None:
        """An unknown provider prefix (`notaprovider/x`) is an error, and so is a name with
        no prefix that litellm can't route (`gtp-4o-mini`), naming the closest it knows; a
        model of a known provider that litellm's bundled data doesn't list
        (`openai/gtp-4o-mini`) is a note naming them. Models behind an `api_base` are the
        server's business and pass unexamined. litellm's data is read from its files:
        checking imports nothing, unless a name without a prefix is missing from them
        (`routes`)."""
        model = litellm_model(self.model)
        prefix, slash, name = model.partition("/")
        providers = provider_names()
        known = model_data()
        if slash and prefix not in providers and model not in known:
            close = difflib.get_close_matches(prefix, sorted(providers), n=3)
            hint = f" (closest: {', '.join(close)})" if close else ""
            raise InvalidGeneratorError(
                f"litellm has no provider {prefix!r} for model {self.model!r}{hint}"
            )
        if self.params.api_base or model in known or name in known:
            return None
        # Near misses among the same provider's models, or among unprefixed ids.
        candidates = [
            key
            for key, data in known.items()
            if (data.get("litellm_provider") == prefix if slash else "/" not in key)
        ]
        close = difflib.get_close_matches(name if slash else model, candidates, n=3, cutoff=0.75)
        hint = f"; closest known: {', '.join(close)}" if close else ""
        if not slash and not routes(model):
            raise InvalidGeneratorError(
                f"litellm cannot route the model {self.model!r}: it names no provider "
                f"('provider/model') and litellm knows no model of that name{hint}"
            )
        return f"litellm does not know the model {self.model!r} (a typo?){hint}"

    async def aclose(self) -> None:
        """litellm pools clients per event loop and never closes them: release the running
        loop's, so that closing the loop leaves no socket or task behind."""
        await release_loop()

    async def _call(
        self,
        function: str,
        params: GenerateParams,
        read: t.Callable[[t.Any], ResultT],
        **request: t.Any,
    ) -> ResultT:
        """`litellm.<function>(**request)`, its reply read by `read`, retried as a whole: a
        reply that arrives but can't be used is a transient fault like any other."""
        __tracebackhide__ = True  # its locals hold the API key: keep them out of tracebacks
        litellm = _litellm()
        call = getattr(litellm, function)
        kwargs = params.to_dict()
        timeout = float(kwargs.pop("timeout", DEFAULT_TIMEOUT))
        kwargs.update(
            request,
            model=litellm_model(self.model),
            timeout=timeout,
            num_retries=0,
            max_retries=0,
            drop_params=True,
        )
        if self.api_key is not None:
            kwargs["api_key"] = self.api_key.get_secret_value()
        if kwargs.get("tools") and _reads_mcp_flag():
            kwargs["_skip_mcp_handler"] = True

        async def attempt() -> ResultT:
            __tracebackhide__ = True
            return read(await call(**kwargs))

        return await self.retrying(
            attempt, classify=_classify, wait_hint=_retry_after, timeout=timeout
        )


@functools.cache
def _reads_mcp_flag() -> bool:
    """Whether litellm's `completion` reads `_skip_mcp_handler`. Releases that do look for
    their MCP gateway in a request's `tools`, and some (1.105, 1.106) import the gateway
    for any tools, which needs an `mcp` package of their own choosing: without it, or
    with an older one, every call with tools fails. Plain functions never need the
    gateway, so it is skipped; a release without the flag has no gateway, and is not
    sent a key it would pass on to the server."""
    try:
        main = importlib.import_module("litellm.main")
        source = Path(str(main.__file__)).read_text(encoding="utf-8")
    except (ImportError, OSError):
        return False
    return "_skip_mcp_handler" in source


def _choice(response: t.Any) -> t.Any:
    choices = getattr(response, "choices", None)
    if not choices:
        raise UnusableReply("the reply has no choices")
    return choices[0]


def _message_of(response: t.Any) -> GeneratedMessage:
    choice = _choice(response)
    message = getattr(choice, "message", None)
    if message is None:
        raise UnusableReply("the reply's choice has no message")
    content = message.content
    calls = _tool_calls_of(getattr(message, "tool_calls", None))
    if content is None and not calls:
        raise UnusableReply("the reply's message has no text (content is null)")
    text = "" if content is None else content if isinstance(content, str) else str(content)
    reply = Message.of("assistant", text)
    reply.tool_calls = calls or None
    return GeneratedMessage(message=reply, stop_reason=choice.finish_reason, usage=_usage(response))


def _tool_calls_of(raw: t.Any) -> list[ToolCall]:
    """litellm's tool calls (its objects) read as the native OpenAI route reads them."""
    if not raw:
        return []
    return read_tool_calls(
        [call.model_dump() if hasattr(call, "model_dump") else call for call in raw]
    )


def _text_of(response: t.Any) -> GeneratedText:
    choice = _choice(response)
    text = getattr(choice, "text", None)
    if text is None:
        raise UnusableReply("the reply's choice has no text")
    return GeneratedText(text=text, stop_reason=choice.finish_reason, usage=_usage(response))


def _usage(response: t.Any) -> Usage | None:
    usage = getattr(response, "usage", None)
    if usage is None:
        return None
    return Usage(
        input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        output_tokens=getattr(usage, "completion_tokens", 0) or 0,
    )


async def release_loop() -> None:
    """Stop litellm's logging worker and close its pooled clients on the running loop.

    litellm keeps both per event loop and never lets go of them; call this before closing
    a loop that made litellm calls, or its sockets and tasks outlive the loop.
    """
    litellm = _litellm_module
    if litellm is None:
        return
    with contextlib.suppress(Exception):
        from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER

        await GLOBAL_LOGGING_WORKER.flush()
        await GLOBAL_LOGGING_WORKER.stop()
    with contextlib.suppress(Exception):
        cache = litellm.in_memory_llm_clients_cache
        # litellm suffixes each pooled client's key with a token for its loop: its own
        # method says which (older versions used the loop's id).
        scoped = getattr(cache, "update_cache_key_with_event_loop", None)
        suffix = scoped("") if scoped else f"-{id(asyncio.get_running_loop())}"
        for key in [k for k in list(cache.cache_dict) if str(k).endswith(suffix)]:
            client = cache.cache_dict.pop(key)
            cache.ttl_dict.pop(key, None)
            closing = (getattr(client, "aclose", None) or client.close)()
            if inspect.isawaitable(closing):
                await closing
