"""Generators, their params, and identifiers (`[provider!]model[,key=value,...]`)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import typing as t

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    computed_field,
    field_validator,
    model_validator,
)

from pytest_rigging._concurrency import LoopLocal, Slot, bounded_map, in_force
from pytest_rigging._fast import construct
from pytest_rigging._secrets import is_secret_name, mask_identifier, redact, register_secret
from pytest_rigging.error import InvalidGeneratorError
from pytest_rigging.message import Message, MessageLike
from pytest_rigging.tools.calls import ToolChoice, ToolDefinition, ToolMode

if t.TYPE_CHECKING:
    from typing_extensions import Self

    from pytest_rigging.chat import ChatPipeline
    from pytest_rigging.completion import CompletionPipeline
    from pytest_rigging.prompt import Prompt

CallT = t.TypeVar("CallT", bound=t.Callable[..., t.Any])

DEFAULT_PROVIDER = "litellm"
DEFAULT_MAX_CONNECTIONS = 10


class GenerateParams(BaseModel):
    """Generation settings. Every field is optional; unset fields defer to lower layers.

    Layers merge as identifier < generator < pipeline `.with_()` < per-call params, each
    overriding only the fields it sets. `extra` passes provider-specific keys through.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    temperature: float | None = None
    max_tokens: int | None = None
    top_k: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    seed: int | None = None
    timeout: float | None = None
    api_base: str | None = None
    tools: list[ToolDefinition] | None = None
    """What `api` mode sends (`ChatPipeline.using` sets it)."""
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    tool_mode: ToolMode | None = None
    """How a pipeline's tools travel (over its `using(mode=)`), so a params set can vary
    it like any other setting; never sent to a provider."""
    extra: dict[str, t.Any] = Field(default_factory=dict)

    def model_post_init(self, context: t.Any) -> None:
        """Secrets passed through `extra` (`extra.auth_token=...`) are redacted from then on."""
        for key, value in self.extra.items():
            if is_secret_name(key) and isinstance(value, str):
                register_secret(value)

    @field_validator("stop", mode="before")
    @classmethod
    def _split_stop(cls, value: t.Any) -> t.Any:
        return value.split(";") if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _no_audio_params(cls, data: t.Any) -> t.Any:
        """rigging's audio params: params rigging saved (all unset) load; a value is
        refused by name, as audio output is not supported."""
        if not isinstance(data, dict) or not _UNSUPPORTED_PARAMS.intersection(data):
            return data
        data = dict(data)
        for name in _UNSUPPORTED_PARAMS.intersection(data):
            if data.pop(name) is not None:
                raise ValueError(
                    f"{name!r} is a rigging param for audio output, "
                    "which pytest-rigging does not support"
                )
        return data

    def __repr_args__(self) -> t.Iterable[tuple[str | None, t.Any]]:
        shown = self.set_values()
        if self.extra:
            shown["extra"] = {k: "***" if is_secret_name(k) else v for k, v in self.extra.items()}
        return shown.items()

    def merge_with(self, *others: GenerateParams | None) -> GenerateParams:
        """These params overridden by each of `others` in turn (only the fields they set)."""
        merged = dict(self.__dict__)
        extra = dict(self.extra)
        for other in others:
            if other is None:
                continue
            merged.update(other.set_values())
            extra.update(other.extra)
        merged["extra"] = extra
        return construct(GenerateParams, merged)

    def set_values(self) -> dict[str, t.Any]:
        """The fields that hold a value, `extra` left out."""
        return {k: v for k, v in self.__dict__.items() if v is not None and k != "extra"}

    def to_dict(self) -> dict[str, t.Any]:
        """Keyword arguments for a provider call: set fields (no `tool_mode`) plus `extra`
        flattened, as plain data (`tools` in OpenAI's shape), so a body or a cassette key
        takes them."""
        values = self.set_values()
        values.pop("tool_mode", None)
        if self.tools is not None:
            values["tools"] = [tool.model_dump(exclude_none=True) for tool in self.tools]
        return {**values, **self.extra}

    def clone(self) -> GenerateParams:
        """A deep copy."""
        return self.model_copy(deep=True)


_UNSUPPORTED_PARAMS = frozenset(("modalities", "audio"))


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0

    @computed_field  # type: ignore[prop-decorator]  # mypy rejects decorators over @property
    @property
    def total_tokens(self) -> int:
        """Serialized too, as rigging writes and reads it."""
        return self.input_tokens + self.output_tokens

    def __str__(self) -> str:
        return f"in: {self.input_tokens} | out: {self.output_tokens} | total: {self.total_tokens}"

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class GeneratedMessage(BaseModel):
    """What one chat generation returned. `latency`: the seconds the provider spent on it
    (its attempts, not its waits), when it measured them; else the pipeline times the call.
    `extra`: anything else the provider reports, carried to the chat's `extra`."""

    message: Message
    stop_reason: str | None = None
    usage: Usage | None = None
    extra: dict[str, t.Any] = Field(default_factory=dict)
    latency: float | None = None

    def __str__(self) -> str:
        return str(self.message)

    @classmethod
    def from_text(cls, text: str, stop_reason: str | None = None) -> GeneratedMessage:
        """An assistant reply of `text`, exactly as given."""
        return cls(message=Message.of("assistant", text), stop_reason=stop_reason)


class GeneratedText(BaseModel):
    """What one text generation returned (`latency` and `extra` as for `GeneratedMessage`)."""

    text: str
    stop_reason: str | None = None
    usage: Usage | None = None
    extra: dict[str, t.Any] = Field(default_factory=dict)
    latency: float | None = None

    def __str__(self) -> str:
        return self.text

    @classmethod
    def from_text(cls, text: str, stop_reason: str | None = None) -> GeneratedText:
        return cls(text=text, stop_reason=stop_reason)

    def to_generated_message(self) -> GeneratedMessage:
        return GeneratedMessage(
            message=Message.of("assistant", self.text),
            stop_reason=self.stop_reason,
            usage=self.usage,
            extra=self.extra,
            latency=self.latency,
        )


class Interceptor(t.Protocol):
    """Stands between pipelines and generators while `calls_intercepted` is in force (the
    plugin's cassettes): each call comes with `call`, which makes it for real."""

    async def message(
        self,
        generator: Generator,
        messages: list[Message],
        params: GenerateParams,
        call: t.Callable[[], t.Awaitable[GeneratedMessage]],
    ) -> GeneratedMessage: ...

    async def text(
        self,
        generator: Generator,
        text: str,
        params: GenerateParams,
        call: t.Callable[[], t.Awaitable[GeneratedText]],
    ) -> GeneratedText: ...


_interceptor: contextvars.ContextVar[Interceptor | None] = contextvars.ContextVar(
    "pytest_rigging_interceptor", default=None
)
_pipeline_wrap: contextvars.ContextVar[t.Callable[[t.Any], t.Any] | None] = contextvars.ContextVar(
    "pytest_rigging_pipeline_wrap", default=None
)


def calls_wrapped(
    func: t.Callable[[t.Any], t.Any],
) -> contextlib.AbstractContextManager[t.Callable[[t.Any], t.Any] | None]:
    """Within this block, generator calls (each attempt, for providers that retry) go
    through `func` too: a pipeline's `wrap`, which leaves the generator itself, shared with
    other pipelines, as it is."""
    return in_force(_pipeline_wrap, func)


def calls_intercepted(
    interceptor: Interceptor,
) -> contextlib.AbstractContextManager[Interceptor | None]:
    """Within this block (and the tasks it starts), pipelines' generator calls go through
    `interceptor`."""
    return in_force(_interceptor, interceptor)


async def generate_message(
    generator: Generator,
    messages: list[Message],
    params: GenerateParams,
    wrap: t.Callable[[t.Any], t.Any] | None = None,
) -> GeneratedMessage:
    """How pipelines ask a generator for a message: through the interceptor in force, and
    the generator's and the pipeline's (`wrap`) decorators, around the call when the
    provider doesn't apply them to each of its attempts."""
    if wrap is not None:
        with calls_wrapped(wrap):
            return await generate_message(generator, messages, params)
    call = _attempted(generator, generator.generate_message)
    interceptor = _interceptor.get()
    if interceptor is None:
        return await call(messages, params)
    return await interceptor.message(generator, messages, params, lambda: call(messages, params))


async def generate_text(
    generator: Generator,
    text: str,
    params: GenerateParams,
    wrap: t.Callable[[t.Any], t.Any] | None = None,
) -> GeneratedText:
    """How pipelines ask a generator for text (as `generate_message`)."""
    if wrap is not None:
        with calls_wrapped(wrap):
            return await generate_text(generator, text, params)
    call = _attempted(generator, generator.generate_text)
    interceptor = _interceptor.get()
    if interceptor is None:
        return await call(text, params)
    return await interceptor.text(generator, text, params, lambda: call(text, params))


def _attempted(generator: Generator, call: CallT) -> CallT:
    """`call` as one attempt: under the decorators in force, unless the provider applies
    them to each of its own attempts."""
    return call if generator.wraps_attempts else generator.wrapped(call)


def _first(
    results: t.Sequence[ResultT | BaseException], generator: Generator, method: str
) -> ResultT:
    """The single result of a batch call of one (rigging's batch methods may return an
    error in place of a result)."""
    if len(results) != 1:
        raise TypeError(
            f"{type(generator).__name__}.{method} returned {len(results)} results for 1 input"
        )
    result = results[0]
    if isinstance(result, BaseException):
        raise result
    return result


ResultT = t.TypeVar("ResultT")


_CONFIG_FIELDS = ("model", "params", "api_key")


class Generator(BaseModel):
    """A model behind one async contract.

    A provider implements either rigging's batch methods, `generate_messages(messages,
    params)` and `generate_texts(texts, params)` (so a rigging custom generator works
    unchanged), or the per-call `generate_message` / `generate_text`; each side has a
    default built on the other. Pipelines call one conversation at a time, concurrently,
    under this generator's `max_connections`. `api_key` is write-only: it is never dumped,
    printed or put in an identifier.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    model: str
    params: GenerateParams = Field(default_factory=GenerateParams)
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    max_connections: int = Field(default=DEFAULT_MAX_CONNECTIONS, ge=1)

    _slots: LoopLocal[asyncio.Semaphore] = PrivateAttr()
    _watchers: list[t.Callable[[list[t.Any]], t.Any]] = PrivateAttr(default_factory=list)
    _wrap: t.Callable[[t.Any], t.Any] | None = PrivateAttr(default=None)

    announces_sends: t.ClassVar[bool] = False
    """Whether the provider calls `_concurrency.call_sent` as each request goes out (a
    journal then knows which calls left before a crash); otherwise a call counts as sent
    once it takes its slot."""
    wraps_attempts: t.ClassVar[bool] = False
    """Whether the provider applies `wrap` to each of its own attempts (so the user's
    decorator sees the provider's raw errors); otherwise pipelines wrap each call."""

    def model_post_init(self, context: t.Any) -> None:
        self._slots = LoopLocal(lambda: asyncio.Semaphore(self.max_connections))
        register_secret(self.secret())

    @property
    def watchers(self) -> list[t.Callable[[list[t.Any]], t.Any]]:
        """The `watch` callbacks every pipeline built on this generator starts with."""
        watchers: list[t.Callable[[list[t.Any]], t.Any]] = _private(self)["_watchers"]
        return watchers

    def watch(
        self, *callbacks: t.Callable[[list[t.Any]], t.Any], allow_duplicates: bool = False
    ) -> Self:
        """Give every pipeline created from now on from this generator these `watch`
        callbacks (see `ChatPipeline.watch`)."""
        for callback in callbacks:
            if allow_duplicates or callback not in self.watchers:
                self.watchers.append(callback)
        return self

    def wrap(self, func: t.Callable[[t.Any], t.Any] | None) -> Self:
        """Wrap each call this generator makes in `func`, a decorator of async functions
        (a backoff or rate limit of your own); None removes it. Providers with their own
        retries (litellm, `openai!`, `anthropic!`) wrap each attempt, so `func` sees
        their raw errors; others wrap each call."""
        if func is not None and not callable(func):
            raise TypeError(f"wrap takes a decorator (a callable), got {type(func).__name__}")
        self._wrap = func
        return self

    def wrapped(self, call: CallT) -> CallT:
        """`call` under the decorator given to `wrap`, and the running pipeline's, if any."""
        wrap = _private(self)["_wrap"]
        if wrap is not None:
            call = wrap(call)
        outer = _pipeline_wrap.get()
        return call if outer is None else outer(call)

    def load(self) -> Self:
        """Prepare the model (rigging's hook for local models); remote APIs need nothing."""
        return self

    def unload(self) -> Self:
        """Release what `load` prepared."""
        return self

    @property
    def provider(self) -> str:
        return provider_name(type(self))

    def slots(self) -> Slot:
        """What one call must hold: a slot of this generator's `max_connections` on the
        running loop, and of the shared limit when one is in force."""
        return Slot(_private(self)["_slots"].get(), id(self), self.announces_sends)

    async def generate_message(
        self, messages: t.Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        """The next assistant message for `messages`: by default, a batch of one through
        `generate_messages`."""
        self._implements("generate_message", "generate_messages")
        return _first(await self.generate_messages([messages], [params]), self, "generate_messages")

    async def generate_text(self, text: str, params: GenerateParams) -> GeneratedText:
        """A continuation of `text`: by default, a batch of one through `generate_texts`."""
        self._implements("generate_text", "generate_texts")
        return _first(await self.generate_texts([text], [params]), self, "generate_texts")

    def _implements(self, single: str, batch: str) -> None:
        """Each of the two methods has a default built on the other: one of them must be
        the provider's own."""
        if all(getattr(type(self), name) is getattr(Generator, name) for name in (single, batch)):
            what = "messages" if single == "generate_message" else "text"
            raise NotImplementedError(
                f"provider '{self.provider}' does not generate {what}: "
                f"implement {batch} (or {single})"
            )

    async def supports_function_calling(self) -> bool | None:
        """Whether this model takes tool definitions and returns tool calls through its
        API (`using(mode="auto")` then uses `api`); None when unknown, read as no."""
        return None

    def prices(self) -> tuple[float, float] | None:
        """The USD price of an input and of an output token, where known (the plugin's
        cost figures); None: no price, shown as `-`."""
        return None

    def check(self) -> str | None:
        """Whether this generator can work, asked once before a run spends any call.

        Raise `InvalidGeneratorError` when it never can (its provider cannot route the
        model); return a one-line note when it looks wrong but may work (a model the
        provider doesn't list). Must not touch the network.
        """
        return None

    async def aclose(self) -> None:
        """Release what this generator holds on the running loop (pooled clients, workers).

        Whoever runs a generator on a loop it will close calls this first, on that loop;
        providers that keep nothing per loop need not implement it."""

    async def generate_messages(
        self,
        messages: t.Sequence[t.Sequence[Message]],
        params: t.Sequence[GenerateParams],
    ) -> t.Sequence[GeneratedMessage | BaseException]:
        """A reply to each conversation, with the matching params over this generator's
        (rigging's batch contract; by default `generate_message` on each, concurrently)."""
        self._implements("generate_message", "generate_messages")
        pairs = list(zip(messages, params, strict=True))
        return await bounded_map(
            lambda pair: self.generate_message(pair[0], self.params.merge_with(pair[1])),
            pairs,
            self.max_connections,
        )

    async def generate_texts(
        self, texts: t.Sequence[str], params: t.Sequence[GenerateParams]
    ) -> t.Sequence[GeneratedText | BaseException]:
        """A continuation of each text (rigging's batch contract; by default
        `generate_text` on each, concurrently)."""
        self._implements("generate_text", "generate_texts")
        pairs = list(zip(texts, params, strict=True))
        return await bounded_map(
            lambda pair: self.generate_text(pair[0], self.params.merge_with(pair[1])),
            pairs,
            self.max_connections,
        )

    def to_identifier(
        self,
        params: GenerateParams | None = None,
        *,
        short: bool = False,
        with_config: bool = True,
    ) -> str:
        """`provider!model[,key=value,...]`, re-creating this generator (no secrets).

        `params`, when given, replace this generator's own params in the identifier (a
        chat passes the merged params it actually ran with). `with_config=False` leaves
        out settings that are not params (`max_connections`, `max_retries`, ...), giving
        the identity of what was generated rather than how it was called; `short` gives
        `provider!model` alone. Settings that an identifier cannot spell (objects,
        functions) are left out.
        """
        parts = [f"{self.provider}!{self.model}"]
        if short:
            return parts[0]
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if (
                with_config
                and name not in _CONFIG_FIELDS
                and not info.exclude
                and isinstance(value, str | int | float)
                and value != info.get_default(call_default_factory=True)
            ):
                parts.append(f"{name}={_format_value(value)}")
        shown = params if params is not None else self.params
        parts.extend(f"{k}={_format_value(v)}" for k, v in shown.set_values().items())
        parts.extend(
            f"extra.{k}={'***' if is_secret_name(k) else _format_value(v)}"
            for k, v in shown.extra.items()
        )
        return ",".join(parts)

    def secret(self) -> str | None:
        return self.api_key.get_secret_value() if self.api_key else None

    def chat(
        self,
        messages: MessageLike | t.Sequence[MessageLike] | None = None,
        params: GenerateParams | None = None,
    ) -> ChatPipeline:
        """A chat pipeline on this generator, starting with `messages`."""
        from pytest_rigging.chat import ChatPipeline

        return ChatPipeline(self, messages, params=params)

    def complete(self, text: str = "", params: GenerateParams | None = None) -> CompletionPipeline:
        """A text-completion pipeline on this generator."""
        from pytest_rigging.completion import CompletionPipeline

        return CompletionPipeline(self, text, params=params)

    def prompt(self, func: t.Callable[..., t.Any]) -> Prompt[t.Any, t.Any]:
        """Turn `func` into a Prompt bound to this generator."""
        from pytest_rigging.prompt import Prompt

        return Prompt(func, generator=self)


def _private(generator: Generator) -> dict[str, t.Any]:
    """pydantic's store of private attributes, read directly: `generator._slots` goes
    through `BaseModel.__getattr__`, which costs a raised AttributeError on every call."""
    private = generator.__pydantic_private__
    assert private is not None  # a model with private attributes always has the store
    return private


def get_identifier(
    generator: Generator, params: GenerateParams | None = None, *, short: bool = False
) -> str:
    """The identifier that re-creates `generator`, with `params` merged over its own
    (rigging's module function; `Generator.to_identifier` is the method)."""
    return generator.to_identifier(generator.params.merge_with(params), short=short)


def chat(
    generator: Generator,
    messages: MessageLike | t.Sequence[MessageLike] | None = None,
    params: GenerateParams | None = None,
) -> ChatPipeline:
    """`generator.chat(messages, params)`, as rigging's module function `rg.chat`."""
    return generator.chat(messages, params)


def complete(
    generator: Generator, text: str = "", params: GenerateParams | None = None
) -> CompletionPipeline:
    """`generator.complete(text, params)`, as rigging's module function `rg.complete`."""
    return generator.complete(text, params)


def _format_value(value: t.Any) -> str:
    if isinstance(value, list):
        return ";".join(str(v) for v in value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


_REGISTRY: dict[str, type[Generator] | str] = {
    "litellm": "pytest_rigging.generator.litellm_:LiteLLMGenerator",
    "openai": "pytest_rigging.generator.openai_:OpenAIGenerator",
    "anthropic": "pytest_rigging.generator.anthropic_:AnthropicGenerator",
    "echo": "pytest_rigging.generator.offline:EchoGenerator",
    "scripted": "pytest_rigging.generator.offline:ScriptedGenerator",
}


def register_generator(provider: str, generator_cls: type[Generator] | str) -> None:
    """Make `provider!model` identifiers build `generator_cls` (a class or `module:Class`)."""
    if not provider or any(c in provider for c in "!,="):
        raise InvalidGeneratorError(f"invalid provider name {provider!r}")
    _REGISTRY[provider] = generator_cls


def _resolve(provider: str) -> type[Generator]:
    entry = _REGISTRY[provider]
    if isinstance(entry, str):
        import importlib

        module, _, name = entry.partition(":")
        entry = _REGISTRY[provider] = getattr(importlib.import_module(module), name)
    return entry


def provider_name(cls: type[Generator]) -> str:
    """The name `cls` is registered under (its class name when it isn't registered)."""
    for name, entry in reversed(_REGISTRY.items()):
        if entry is cls or (isinstance(entry, str) and entry.endswith(f":{cls.__name__}")):
            return name
    return cls.__name__.lower()


def get_generator(
    identifier: str, *, params: GenerateParams | dict[str, t.Any] | None = None
) -> Generator:
    """Build a generator from `[provider!]model[,key=value,...]`.

    Keys the generator's class declares (`api_key`, `max_connections`, ...) configure it;
    GenerateParams fields become its params (`stop=a;b` is a list, `extra.key=value`
    goes to `extra`); `params` are merged over the identifier's. Any malformed part
    raises `InvalidGeneratorError` naming it.
    """
    if not isinstance(identifier, str):
        raise InvalidGeneratorError(
            f"generator identifier must be a str, got {type(identifier).__name__}"
        )
    shown = mask_identifier(identifier)
    head, comma, tail = identifier.strip().partition(",")
    if not head:
        raise InvalidGeneratorError(f"empty generator identifier {shown!r}")
    if head.count("!") > 1:
        raise InvalidGeneratorError(f"identifier {shown!r} has more than one '!'")
    provider, _, model = head.rpartition("!")
    provider = provider or DEFAULT_PROVIDER
    if not model:
        raise InvalidGeneratorError(f"identifier {shown!r} names no model")
    if provider not in _REGISTRY:
        raise InvalidGeneratorError(
            f"unknown provider {provider!r} in {shown!r}; known providers: "
            + ", ".join(sorted(_REGISTRY))
        )
    if isinstance(params, dict):
        params = GenerateParams.model_validate(params)
    generator_cls = _resolve(provider)
    settable = set(generator_cls.model_fields) - {"model", "params"}
    config, param_values, extra = _split_pairs(tail, settable, shown) if comma else ({}, {}, {})
    try:
        id_params = GenerateParams.model_validate({**param_values, "extra": extra})
    except ValidationError as error:
        raise InvalidGeneratorError(_describe(error, shown, param_values)) from None
    settings: dict[str, t.Any] = config  # strings: pydantic converts each to its field's type
    try:
        return generator_cls(model=model, params=id_params.merge_with(params), **settings)
    except ValidationError as error:
        cause = error.errors()[0].get("ctx", {}).get("error")
        if isinstance(cause, InvalidGeneratorError):  # raised by the provider itself
            raise cause from None
        raise InvalidGeneratorError(_describe(error, shown, config)) from None


def parse_params(text: str) -> GenerateParams:
    """GenerateParams from `key=value,...` (the params part of an identifier)."""
    shown = mask_identifier(text)
    _, values, extra = _split_pairs(text, set(), shown) if text.strip() else ({}, {}, {})
    try:
        return GenerateParams.model_validate({**values, "extra": extra})
    except ValidationError as error:
        raise InvalidGeneratorError(_describe(error, shown, values)) from None


def _split_pairs(
    tail: str, settable: set[str], shown: str
) -> tuple[dict[str, str], dict[str, str], dict[str, t.Any]]:
    """Split `key=value,...` into generator config, params and `extra.` keys."""
    config: dict[str, str] = {}
    param_values: dict[str, str] = {}
    extra: dict[str, t.Any] = {}
    seen: set[str] = set()
    for part in tail.split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq or not key:
            raise InvalidGeneratorError(
                f"malformed part {redact(part)!r} in {shown!r}: expected key=value"
            )
        if key in seen:
            raise InvalidGeneratorError(f"{key!r} is given twice in {shown!r}")
        seen.add(key)
        if key in settable:
            config[key] = value
        elif key in GenerateParams.model_fields and key != "extra":
            param_values[key] = value
        elif key.startswith("extra.") and len(key) > len("extra."):
            extra[key[len("extra.") :]] = _json_or_str(value)
        else:
            known = sorted(settable | set(GenerateParams.model_fields) - {"extra"})
            raise InvalidGeneratorError(
                f"unknown param {key!r} in {shown!r}; known: {', '.join(known)}, extra.<name>"
            )
    return config, param_values, extra


def _json_or_str(value: str) -> t.Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _describe(error: ValidationError, shown: str, values: dict[str, str]) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    given = redact(str(values.get(field, "")))
    if field == "api_key":
        given = "***"
    return f"invalid value {given!r} for {field!r} in {shown!r}: {first['msg']}"
