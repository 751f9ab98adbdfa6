"""Prompts: a hollow function whose signature says what goes in and what must come back.

```python
@rg.prompt(generator_id="gpt-4o-mini")
async def capital(country: str) -> Annotated[str, rg.Ctx(tag="city")]:
    "What is the capital of {{ country }}?"

city = await capital("France")
```

The docstring (a generic instruction when there is none) is a Jinja2 template over the
arguments; arguments it does not mention follow it as xml elements. The return annotation
says what to ask for and how to read the reply: `str`, `int`, `float` and `bool` come from an
element named after the type (or `Ctx(tag=...)`), a `Model` from its own element, `list[...]`
from every such element, a tuple or dataclass from one element per part, and `Chat` is the
chat itself, unparsed. A reply that does not parse is answered with what went wrong until it
does, at most `max_parsing_rounds` times.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import inspect
import re
import typing as t

from pydantic.alias_generators import to_snake

from pytest_rigging._pipeline import DEFAULT_MAX_DEPTH, FailMode, add_callbacks, as_params_list
from pytest_rigging.chat import Chat, ChatPipeline, WatchChatCallback
from pytest_rigging.generator.base import GenerateParams, Generator, get_generator
from pytest_rigging.model import Model, escape, is_model, make_primitive
from pytest_rigging.tools.base import Tool, tools_of

if t.TYPE_CHECKING:
    import jinja2

__all__ = ["DEFAULT_DOC", "DEFAULT_MAX_PARSE_ROUNDS", "Ctx", "Prompt", "prompt"]

P = t.ParamSpec("P")
R = t.TypeVar("R")

DEFAULT_DOC = "Turn the inputs below into the requested outputs ({name})."
"""The instruction a prompt without a docstring gets, so the model still knows its task."""

DEFAULT_MAX_PARSE_ROUNDS = 3
DEFAULT_MAX_TOOL_ROUNDS = DEFAULT_MAX_DEPTH

ThenCallback = t.Callable[[Chat], t.Awaitable[Chat | ChatPipeline | None]]
MapCallback = t.Callable[[list[Chat]], t.Awaitable[list[Chat]]]

_BASIC: tuple[type[t.Any], ...] = (str, int, float, bool)
_ASK_ONE = "Reply with the following output, in xml tags:"
_ASK_EACH = "Reply with the following output once for each item, in xml tags:"
_ASK_MANY = "Reply with the following outputs, in xml tags:"

# A run of spaces after a word (not starting a new line) reads as one space: docstrings
# hard-wrapped or aligned with extra spaces become prose, as rigging sends them.
_SPACE_RUN = re.compile(r"(?<=\w)(?![\r\n])\s+")


@dataclasses.dataclass(frozen=True)
class Ctx:
    """`Annotated[T, Ctx(...)]` on a prompt's parameter or return type: the xml tag to use,
    a line of text to put before the element, and (outputs only) an example of its content
    to show the model."""

    tag: str | None = None
    prefix: str | None = None
    example: str | Model | None = None


def _snake(text: str) -> str:
    return to_snake(text).replace("-", "_")


def _xml_tag(name: str) -> str:
    return _snake(name).replace("_", "-").strip("-")


def _prefixed(prefix: str | None, text: str) -> str:
    return f"{prefix}\n{text}" if prefix else text


def _split(annotation: t.Any) -> tuple[t.Any, Ctx | None]:
    """`Annotated[T, Ctx(...), ...]` -> (T, the Ctx); anything else -> (it, None)."""
    if t.get_origin(annotation) is t.Annotated:
        base, *extras = t.get_args(annotation)
        return base, next((e for e in extras if isinstance(e, Ctx)), None)
    return annotation, None


# Inputs

Formatter = t.Callable[[t.Any], str]


@dataclasses.dataclass(frozen=True)
class Input:
    """An argument the docstring does not mention, shown after it as an xml element."""

    name: str
    context: Ctx
    inner: Formatter
    """The value as the element's text (or, for a Model, as its own element)."""
    wraps: bool = True

    @property
    def tag(self) -> str:
        return self.context.tag or _xml_tag(self.name)

    @property
    def key(self) -> str:
        """The template variable the element is rendered into."""
        return _snake(self.tag)

    def to_xml(self, value: t.Any) -> str:
        text = self.inner(value)
        if self.wraps:
            if "\n" in text:
                text = f"\n{text}\n"
            text = f"<{self.tag}>{text}</{self.tag}>"
        return _prefixed(self.context.prefix, text)


def _basic_text(where: str) -> Formatter:
    def text(value: t.Any) -> str:
        if not isinstance(value, _BASIC):
            raise TypeError(f"{where} takes a str, int, float or bool, got {type(value).__name__}")
        return escape(str(value))

    return text


def _model_text(model: type[Model], where: str) -> Formatter:
    def text(value: t.Any) -> str:
        if not isinstance(value, model):
            raise TypeError(f"{where} takes a {model.__name__}, got {type(value).__name__}")
        return value.to_pretty_xml()

    return text


def _item_text(annotation: t.Any, where: str) -> Formatter:
    """How one item of a list or dict argument reads: a basic value or a Model."""
    if annotation in _BASIC:
        return _basic_text(where)
    if is_model(annotation):
        return _model_text(annotation, where)
    if t.get_origin(annotation) in (list, dict):
        raise TypeError(f"{where}: lists and dicts inside lists or dicts are not supported")
    raise TypeError(
        f"{where}: unsupported item type {annotation!r}: use str, int, float, bool or a Model"
    )


def _input(param: inspect.Parameter, prompt_name: str) -> Input:
    where = f"prompt {prompt_name!r}, parameter {param.name!r}"
    if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
        raise TypeError(f"{where}: only parameters passable by keyword can be prompt inputs")
    if param.annotation is param.empty:
        raise TypeError(f"{where} needs a type annotation (or a mention in the docstring)")
    annotation, context = _split(param.annotation)
    context = context or Ctx()
    if annotation in _BASIC:
        return Input(param.name, context, _basic_text(where))
    if is_model(annotation):
        return Input(param.name, context, _model_text(annotation, where), wraps=False)
    origin, args = t.get_origin(annotation) or annotation, t.get_args(annotation)
    if origin is list:
        if not args:
            raise TypeError(f"{where}: name the item type, as in list[str]")
        item, item_context = _split(args[0])
        each = _item_text(item, where)

        def items(value: t.Any) -> str:
            if not isinstance(value, list | tuple):
                raise TypeError(f"{where} takes a list, got {type(value).__name__}")
            return "\n\n".join(each(v) for v in value)

        return Input(param.name, item_context or context, items)
    if origin is dict:
        if len(args) != 2 or args[0] is not str:
            raise TypeError(f"{where}: use dict[str, T], keys are the element tags")
        each = _item_text(args[1], where)

        def entries(value: t.Any) -> str:
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise TypeError(f"{where} takes a dict with str keys")
            return "\n".join(f"<{k}>{each(v)}</{k}>" for k, v in value.items())

        return Input(param.name, context, entries)
    raise TypeError(
        f"{where}: unsupported type {annotation!r}: use str, int, float, bool, a Model, "
        "or a list or dict[str, ...] of them"
    )


# Outputs


class Output(abc.ABC):
    """What the reply must hold: how it is asked for, checked while generating, and read."""

    tag: str
    prefix: str | None = None
    models: tuple[type[Model], ...] = ()
    """What must parse from the reply; nothing for a Chat."""

    def guidance(self) -> str:
        return _ASK_ONE

    @abc.abstractmethod
    def format(self) -> str:
        """The shape of the output, as the prompt shows it to the model."""

    @abc.abstractmethod
    def read(self, chat: Chat) -> t.Any:
        """The output, from the chat whose reply parsed."""


class ChatOutput(Output):
    def __init__(self, tag: str) -> None:
        self.tag = tag

    def format(self) -> str:
        return ""  # a chat is returned as it is: nothing to ask for

    def read(self, chat: Chat) -> Chat:
        return chat


class ValueOutput(Output):
    """A str, int, float or bool (or a list of them) from elements of one tag."""

    def __init__(self, type_: type[t.Any], context: Ctx, *, many: bool, where: str) -> None:
        if isinstance(context.example, Model):
            raise TypeError(f"{where}: the Ctx example of a {type_.__name__} must be a string")
        self.tag = context.tag or _xml_tag(type_.__name__)
        self.prefix = context.prefix
        self.example = context.example or ""
        self.many = many
        self.model = make_primitive(f"{type_.__name__.capitalize()}Output", type_, tag=self.tag)
        self.models = (self.model,)

    def guidance(self) -> str:
        return _ASK_EACH if self.many else _ASK_ONE

    def format(self) -> str:
        return _prefixed(self.prefix, f"<{self.tag}>{escape(self.example)}</{self.tag}>")

    def read(self, chat: Chat) -> t.Any:
        if self.many:
            return [m.content for m, _ in self.model.from_text(chat.last.content)]
        return self.model.one_from_text(chat.last.content)[0].content


class ModelOutput(Output):
    """A Model (or a list of them) from its own elements."""

    def __init__(self, model: type[Model], context: Ctx, *, many: bool) -> None:
        self.tag = getattr(model, "__xml_tag__", None) or _xml_tag(model.__name__)
        self.prefix = context.prefix
        self.example = context.example
        self.many = many
        self.model = model
        self.models = (model,)

    def guidance(self) -> str:
        return _ASK_EACH if self.many else _ASK_ONE

    def format(self) -> str:
        if isinstance(self.example, Model):
            shape = self.example.to_pretty_xml()
        else:
            shape = self.example or self.model.xml_example()
        return _prefixed(self.prefix, shape)

    def read(self, chat: Chat) -> t.Any:
        return chat.last.parse_set(self.model) if self.many else chat.last.parse(self.model)


class GroupOutput(Output):
    """A tuple or dataclass: one part per element, Chat parts filled with the chat."""

    def __init__(
        self,
        tag: str,
        context: Ctx,
        parts: list[Output],
        build: t.Callable[[list[t.Any]], t.Any],
        where: str,
    ) -> None:
        tags = [part.tag for part in parts]
        if len(set(tags)) != len(tags):
            raise TypeError(
                f"{where}: its parts share xml tags ({', '.join(tags)}): give them distinct "
                "ones with Annotated[..., Ctx(tag=...)]"
            )
        self.tag = context.tag or tag
        self.prefix = context.prefix
        self.parts = parts
        self.build = build
        self.asked = [part for part in parts if part.models]
        self.models = tuple(m for part in parts for m in part.models)

    def guidance(self) -> str:
        return self.asked[0].guidance() if len(self.asked) == 1 else _ASK_MANY

    def format(self) -> str:
        return _prefixed(self.prefix, "\n\n".join(part.format() for part in self.asked))

    def read(self, chat: Chat) -> t.Any:
        return self.build([part.read(chat) for part in self.parts])


def _output(annotation: t.Any, where: str, *, nested: bool = False) -> Output:
    if annotation in (None, inspect.Parameter.empty):
        raise TypeError(f"{where} needs a return annotation: what the reply should hold")
    base, context = _split(annotation)
    context = context or Ctx()
    if base is Chat:
        return ChatOutput(context.tag or "chat")
    if base in _BASIC:
        return ValueOutput(base, context, many=False, where=where)
    origin, args = t.get_origin(base) or base, t.get_args(base)
    if origin is list:
        if nested:
            raise TypeError(f"{where}: a list cannot be part of a tuple or dataclass output")
        if not args:
            raise TypeError(f"{where}: name the item type, as in list[str]")
        item, item_context = _split(args[0])
        context = item_context or context
        if item in _BASIC:
            return ValueOutput(item, context, many=True, where=where)
        if is_model(item):
            return ModelOutput(item, context, many=True)
        raise TypeError(
            f"{where}: unsupported list item {item!r}: use str, int, float, bool or a Model"
        )
    if origin is tuple:
        if nested:
            raise TypeError(f"{where}: a tuple cannot be part of a tuple or dataclass output")
        if not args or Ellipsis in args:
            raise TypeError(f"{where}: name every element type, as in tuple[str, int]")
        parts = [_output(arg, where, nested=True) for arg in args]
        return GroupOutput("tuple", context, parts, tuple, where)
    if dataclasses.is_dataclass(base) and isinstance(base, type):
        return _dataclass_output(base, context, where)
    if is_model(base):
        return ModelOutput(base, context, many=False)
    raise TypeError(
        f"{where}: unsupported return type {base!r}: use str, int, float, bool, Chat, a Model, "
        "a dataclass, or a list or tuple of them"
    )


def _dataclass_output(cls: type[t.Any], context: Ctx, where: str) -> GroupOutput:
    try:  # the hints, not `field.type`: that is a string under `from __future__ import ...`
        hints = t.get_type_hints(cls, include_extras=True)
    except NameError as error:
        raise TypeError(
            f"{where}: cannot resolve the annotations of {cls.__name__} ({error})"
        ) from None
    fields = [f for f in dataclasses.fields(cls) if f.init]
    parts = []
    for field in fields:
        base, field_context = _split(hints[field.name])
        field_context = field_context or Ctx()
        if field_context.tag is None:  # each field asks for an element named after it
            field_context = dataclasses.replace(field_context, tag=_xml_tag(field.name))
        field_where = f"{where}, field {field.name!r}"
        parts.append(_output(t.Annotated[base, field_context], field_where, nested=True))
    names = [field.name for field in fields]
    return GroupOutput(
        _xml_tag(cls.__name__),
        context,
        parts,
        lambda values: cls(**dict(zip(names, values, strict=True))),
        where,
    )


# The prompt


class Prompt(t.Generic[P, R]):
    """A hollow function turned into a chat: its arguments render the user message, its
    return annotation is asked for and parsed from the reply. Bound to a generator or
    pipeline, it runs when called; otherwise `bind` one."""

    def __init__(
        self,
        func: t.Callable[P, t.Awaitable[R]] | t.Callable[P, R],
        *,
        pipeline: ChatPipeline | None = None,
        generator: Generator | None = None,
        generator_id: str | None = None,
        params: GenerateParams | None = None,
        system_prompt: str | None = None,
        max_parsing_rounds: int = DEFAULT_MAX_PARSE_ROUNDS,
        tools: t.Sequence[t.Any] | None = None,
        max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    ) -> None:
        self.func = func
        self.params = params
        self.system_prompt = system_prompt
        self.max_parsing_rounds = _check_rounds(max_parsing_rounds)
        self.tools: list[Tool[..., t.Any]] = tools_of(list(tools or []))
        """Tools the model may call while answering (`ChatPipeline.using`)."""
        self.max_tool_rounds = _check_tool_rounds(max_tool_rounds)
        self.watch_callbacks: list[WatchChatCallback] = []
        self.then_callbacks: list[ThenCallback] = []
        self.map_callbacks: list[MapCallback] = []
        self._pipeline = pipeline
        self._generator = generator
        self._generator_id = generator_id

        name = func.__name__
        try:
            self.signature = inspect.signature(func, eval_str=True)
        except NameError as error:
            raise TypeError(
                f"prompt {name!r}: cannot resolve its annotations ({error}); "
                "define the types it names at module level"
            ) from None
        docstring = inspect.cleandoc(func.__doc__ or DEFAULT_DOC.format(name=name))
        self.docstring = _SPACE_RUN.sub(" ", docstring)
        mentioned = _template_variables(self.docstring)
        self.inputs = [
            _input(param, name)
            for param in self.signature.parameters.values()
            if param.name not in mentioned
        ]
        tags = [i.tag for i in self.inputs]
        if len(set(tags)) != len(tags):
            raise TypeError(
                f"prompt {name!r}: its inputs share xml tags ({', '.join(tags)}): give them "
                "distinct ones with Annotated[..., Ctx(tag=...)]"
            )
        self.output = _output(self.signature.return_annotation, f"prompt {name!r}")
        self.__name__ = name
        self.__doc__ = self.docstring
        self.__signature__ = self.signature

    def __repr__(self) -> str:
        return f"Prompt({self.__name__!r}, output={type(self.output).__name__})"

    # What is sent

    @property
    def template(self) -> str:
        """The Jinja2 template of the user message: the docstring, the inputs it does not
        mention, then the output asked for."""
        text = f"{self.docstring}\n"
        for item in self.inputs:
            text += "\n{{ " + item.key + " }}\n"
        if self.output.models:
            text += f"\n{self.output.guidance()}\n\n{self.output.format()}\n"
        return text

    @functools.cached_property
    def _compiled(self) -> jinja2.Template:
        import jinja2

        environment = jinja2.Environment(
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
        )
        return environment.from_string(self.template)

    def render(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The user message these arguments produce."""
        return self._render(args, kwargs)

    def _render(self, args: t.Sequence[t.Any], kwargs: t.Mapping[str, t.Any]) -> str:
        """`render` for arguments known only at run time (`run_batch`'s)."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"prompt {self.__name__!r}: {error}") from None
        bound.apply_defaults()
        values = dict(bound.arguments)
        for item in self.inputs:
            values[item.key] = item.to_xml(values[item.name])
        return self._compiled.render(**values)

    def process(self, chat: Chat) -> R:
        """The output read from the chat's last message."""
        return t.cast(R, self.output.read(chat))

    # Configuring

    @property
    def pipeline(self) -> ChatPipeline | None:
        """The pipeline calls run on, built on first use from the generator (or its id)."""
        if self._pipeline is None:
            if self._generator is None and self._generator_id is not None:
                self._generator = get_generator(self._generator_id)
            if self._generator is not None:
                self._pipeline = self._generator.chat()
        return self._pipeline

    def clone(self, *, include_callbacks: bool = True) -> Prompt[P, R]:
        """A copy to configure separately (callbacks too, unless `include_callbacks=False`)."""
        other = Prompt(
            self.func,
            pipeline=self._pipeline,
            generator=self._generator,
            generator_id=self._generator_id,
            params=self.params.model_copy() if self.params is not None else None,
            system_prompt=self.system_prompt,
            max_parsing_rounds=self.max_parsing_rounds,
            tools=self.tools,
            max_tool_rounds=self.max_tool_rounds,
        )
        if include_callbacks:
            other.watch_callbacks = list(self.watch_callbacks)
            other.then_callbacks = list(self.then_callbacks)
            other.map_callbacks = list(self.map_callbacks)
        return other

    def with_(self, params: GenerateParams | None = None, **kwargs: t.Any) -> Prompt[P, R]:
        """Generation params for this prompt's runs (replacing any set before)."""
        self.params = params if params is not None else GenerateParams(**kwargs)
        return self

    def set_(
        self, max_parsing_rounds: int | None = None, max_tool_rounds: int | None = None
    ) -> Prompt[P, R]:
        """Change how many times an unparsable reply is answered with a recovery message,
        and how many rounds of tool calls are answered."""
        if max_parsing_rounds is not None:
            self.max_parsing_rounds = _check_rounds(max_parsing_rounds)
        if max_tool_rounds is not None:
            self.max_tool_rounds = _check_tool_rounds(max_tool_rounds)
        return self

    def watch(self, *callbacks: WatchChatCallback, allow_duplicates: bool = False) -> Prompt[P, R]:
        """Callbacks given every list of chats this prompt's runs produce."""
        add_callbacks(
            self.watch_callbacks, callbacks, allow_duplicates=allow_duplicates, kind="watch"
        )
        return self

    def then(self, *callbacks: ThenCallback, allow_duplicates: bool = False) -> Prompt[P, R]:
        """Async callbacks run on each chat once its output parsed (`ChatPipeline.then`)."""
        add_callbacks(
            self.then_callbacks,
            callbacks,
            allow_duplicates=allow_duplicates,
            kind="then",
            need_async=True,
        )
        return self

    def map(self, *callbacks: MapCallback, allow_duplicates: bool = False) -> Prompt[P, R]:
        """Async callbacks run over all chats of a run at once (`ChatPipeline.map`)."""
        add_callbacks(
            self.map_callbacks,
            callbacks,
            allow_duplicates=allow_duplicates,
            kind="map",
            need_async=True,
        )
        return self

    # Running

    def _resolve(self, other: ChatPipeline | Generator | Chat | str) -> ChatPipeline:
        if isinstance(other, ChatPipeline):
            return other
        if isinstance(other, Generator):
            return other.chat()
        if isinstance(other, Chat):
            return other.restart(include_all=True)
        if isinstance(other, str):
            return get_generator(other).chat()
        raise ValueError(
            f"cannot bind prompt {self.__name__!r} to {type(other).__name__}: "
            "use a ChatPipeline, a Generator, a Chat or a generator id"
        )

    def _require_pipeline(self) -> ChatPipeline:
        pipeline = self.pipeline
        if pipeline is None:
            raise RuntimeError(
                f"prompt {self.__name__!r} has no generator: pass generator_id=, generator= "
                "or pipeline= to @prompt, or bind() it"
            )
        return pipeline

    def _check_fail_mode(self, mode: FailMode, *, single: bool) -> None:
        if single and mode == "skip":
            raise NotImplementedError(
                f"prompt {self.__name__!r} returns one output per call: "
                "on_failed='skip' has nothing to return"
            )
        if mode == "include" and not isinstance(self.output, ChatOutput):
            raise NotImplementedError(
                f"prompt {self.__name__!r} parses its output: on_failed='include' needs a "
                "prompt that returns Chat"
            )

    def _assemble(self, pipeline: ChatPipeline, content: str | None) -> ChatPipeline:
        """The pipeline of one call: the message, then parsing, this prompt's steps and
        params, and its system prompt."""
        run = pipeline.clone()
        if content is not None:
            run.add(content)
        if self.tools:
            run.using(*self.tools, max_depth=self.max_tool_rounds)
        if self.output.models:
            run = run.until_parsed_as(*self.output.models, max_depth=self.max_parsing_rounds)
        # The prompt has already refused duplicates it was not told to allow.
        if self.then_callbacks:
            run = run.then(*self.then_callbacks, allow_duplicates=True)
        if self.map_callbacks:
            run = run.map(*self.map_callbacks, allow_duplicates=True)
        if self.watch_callbacks:
            run = run.watch(*self.watch_callbacks, allow_duplicates=True)
        if self.params is not None:
            run = run.with_(self.params)
        if self.system_prompt:
            run.inject_system_content(self.system_prompt)  # edits a copy of a system message
        return run

    def _named(self, function: t.Callable[..., t.Any]) -> None:
        function.__name__ = self.__name__
        function.__doc__ = self.__doc__

    def bind(
        self, other: ChatPipeline | Generator | Chat | str
    ) -> t.Callable[P, t.Coroutine[t.Any, t.Any, R]]:
        """A function that runs this prompt on `other` (a pipeline, generator, generator id,
        or a chat to continue)."""
        pipeline = self._resolve(other)
        self._check_fail_mode(pipeline.on_failed, single=True)

        async def run(*args: P.args, **kwargs: P.kwargs) -> R:
            chat = await self._assemble(pipeline, self.render(*args, **kwargs)).run()
            return self.process(chat)

        self._named(run)
        return run

    def bind_many(
        self, other: ChatPipeline | Generator | Chat | str
    ) -> t.Callable[t.Concatenate[int, P], t.Coroutine[t.Any, t.Any, list[R]]]:
        """Like `bind`, for a function that runs `count` times on the same arguments."""
        pipeline = self._resolve(other)
        self._check_fail_mode(pipeline.on_failed, single=False)

        async def run_many(count: int, /, *args: P.args, **kwargs: P.kwargs) -> list[R]:
            chats = await self._assemble(pipeline, self.render(*args, **kwargs)).run_many(count)
            return [self.process(chat) for chat in chats]

        self._named(run_many)
        return run_many

    def bind_over(
        self, other: ChatPipeline | Generator | Chat | str | None = None
    ) -> t.Callable[
        t.Concatenate[t.Sequence[Generator | str], P], t.Coroutine[t.Any, t.Any, list[R]]
    ]:
        """Like `bind`, for a function that runs once per generator it is given, then once
        on `other`. Without `other`, only those generators run, and failed chats are
        dropped."""
        pipeline = self._resolve(other) if other is not None else None
        if pipeline is not None:
            self._check_fail_mode(pipeline.on_failed, single=False)

        async def run_over(
            generators: t.Sequence[Generator | str], /, *args: P.args, **kwargs: P.kwargs
        ) -> list[R]:
            resolved = [g if isinstance(g, Generator) else get_generator(g) for g in generators]
            base = pipeline
            if base is None:
                if not resolved:
                    raise ValueError(
                        f"prompt {self.__name__!r}: run_over needs at least one generator"
                    )
                base = resolved[0].chat().catch(on_failed="skip")
            chats = await self._assemble(base, self.render(*args, **kwargs)).run_over(
                *resolved, include_original=pipeline is not None
            )
            return [self.process(chat) for chat in chats]

        self._named(run_over)
        return run_over

    async def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Render, generate, and return the parsed output."""
        return await self.bind(self._require_pipeline())(*args, **kwargs)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self.run(*args, **kwargs)

    async def run_many(self, count: int, /, *args: P.args, **kwargs: P.kwargs) -> list[R]:
        """`count` outputs for the same arguments."""
        return await self.bind_many(self._require_pipeline())(count, *args, **kwargs)

    async def run_over(
        self, generators: t.Sequence[Generator | str], /, *args: P.args, **kwargs: P.kwargs
    ) -> list[R]:
        """One output per generator, then (if the prompt has one) its own pipeline's."""
        return await self.bind_over(self.pipeline)(generators, *args, **kwargs)

    async def run_batch(
        self,
        many: t.Sequence[t.Any],
        params: GenerateParams | t.Sequence[GenerateParams | None] | None = None,
        *,
        on_failed: FailMode | None = None,
    ) -> list[R]:
        """One output per argument set: a dict (keyword arguments), a tuple (positional
        arguments) or a single value (the only argument); a bare string or dict is one
        set. Params broadcast as in `ChatPipeline.run_batch`. Not in rigging."""
        pipeline = self._require_pipeline()
        self._check_fail_mode(on_failed or pipeline.on_failed, single=False)
        if isinstance(many, str | dict):
            many = [many]  # one argument set, not a sequence of them
        rendered = [self._render_item(item) for item in many]
        chats = await self._assemble(pipeline, None).run_batch(
            rendered, as_params_list(params), on_failed=on_failed
        )
        return [self.process(chat) for chat in chats]

    def _render_item(self, item: t.Any) -> str:
        if isinstance(item, dict):
            return self._render((), item)
        if isinstance(item, tuple):
            return self._render(item, {})
        return self._render((item,), {})


def _template_variables(template: str) -> set[str]:
    import jinja2
    import jinja2.meta

    return jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(template))


def _check_rounds(rounds: int) -> int:
    if rounds < 0:
        raise ValueError(f"max_parsing_rounds must be at least 0, got {rounds}")
    return rounds


def _check_tool_rounds(rounds: int) -> int:
    if rounds < 1:
        raise ValueError(f"max_tool_rounds must be at least 1, got {rounds}")
    return rounds


# The decorator


@t.overload
def prompt(
    func: None = None,
    /,
    *,
    pipeline: ChatPipeline | None = None,
    generator: Generator | None = None,
    generator_id: str | None = None,
    params: GenerateParams | None = None,
    system_prompt: str | None = None,
    max_parsing_rounds: int = DEFAULT_MAX_PARSE_ROUNDS,
    tools: t.Sequence[t.Any] | None = None,
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
) -> t.Callable[[t.Callable[P, t.Awaitable[R]] | t.Callable[P, R]], Prompt[P, R]]: ...


@t.overload
def prompt(
    func: t.Callable[P, t.Awaitable[R]],
    /,
    *,
    pipeline: ChatPipeline | None = None,
    generator: Generator | None = None,
    generator_id: str | None = None,
    params: GenerateParams | None = None,
    system_prompt: str | None = None,
    max_parsing_rounds: int = DEFAULT_MAX_PARSE_ROUNDS,
    tools: t.Sequence[t.Any] | None = None,
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
) -> Prompt[P, R]: ...


@t.overload
def prompt(
    func: t.Callable[P, R],
    /,
    *,
    pipeline: ChatPipeline | None = None,
    generator: Generator | None = None,
    generator_id: str | None = None,
    params: GenerateParams | None = None,
    system_prompt: str | None = None,
    max_parsing_rounds: int = DEFAULT_MAX_PARSE_ROUNDS,
    tools: t.Sequence[t.Any] | None = None,
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
) -> Prompt[P, R]: ...


def prompt(
    func: t.Callable[..., t.Any] | None = None,
    /,
    *,
    pipeline: ChatPipeline | None = None,
    generator: Generator | None = None,
    generator_id: str | None = None,
    params: GenerateParams | None = None,
    system_prompt: str | None = None,
    max_parsing_rounds: int = DEFAULT_MAX_PARSE_ROUNDS,
    tools: t.Sequence[t.Any] | None = None,
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
) -> t.Any:
    """`@prompt`, or `@prompt(generator_id=...)` to make it runnable by calling it."""
    if sum(x is not None for x in (pipeline, generator, generator_id)) > 1:
        raise ValueError("give @prompt at most one of pipeline, generator and generator_id")

    def make(f: t.Callable[..., t.Any]) -> Prompt[t.Any, t.Any]:
        return Prompt(
            f,
            pipeline=pipeline,
            generator=generator,
            generator_id=generator_id,
            params=params,
            system_prompt=system_prompt,
            max_parsing_rounds=max_parsing_rounds,
            tools=tools,
            max_tool_rounds=max_tool_rounds,
        )

    return make(func) if func is not None else make
