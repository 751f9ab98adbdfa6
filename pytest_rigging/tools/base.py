"""Tools a model may call: their definitions, the calls a model makes, and running them.

A `Tool` wraps a function (sync or async). Its parameters' JSON schema comes from the
type hints (an `Annotated[T, "text"]` gives a parameter its description) and its
description from the docstring. A `ToolCall` is what a model asked for, with its
arguments as the JSON text the model wrote: parsing and checking them against the schema
happens when the call is handled, so a call that doesn't fit is answered with the error
(and counted as a tool-call parse failure by the plugin) rather than lost.
"""

from __future__ import annotations

import inspect
import json
import re
import typing as t

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    create_model,
)

from pytest_rigging.error import Stop, ToolDefinitionError
from pytest_rigging.tools.calls import INVALID_CALL as INVALID_CALL
from pytest_rigging.tools.calls import TOOL_MODES as TOOL_MODES
from pytest_rigging.tools.calls import FunctionCall as FunctionCall
from pytest_rigging.tools.calls import FunctionDefinition as FunctionDefinition
from pytest_rigging.tools.calls import ToolCall as ToolCall
from pytest_rigging.tools.calls import ToolCallCounts as ToolCallCounts
from pytest_rigging.tools.calls import ToolChoice as ToolChoice
from pytest_rigging.tools.calls import ToolDefinition as ToolDefinition
from pytest_rigging.tools.calls import ToolMode as ToolMode
from pytest_rigging.tools.calls import count_calls as count_calls
from pytest_rigging.tools.calls import json_object as json_object

if t.TYPE_CHECKING:
    from pytest_rigging.message import Message
    from pytest_rigging.model import Model

P = t.ParamSpec("P")
R = t.TypeVar("R")

STOP_TAG = "rg-stop"
"""The tag around the message of a `Stop` a tool raised, in the tool's reply."""

DEFAULT_CATCH: frozenset[type[Exception]] = frozenset({json.JSONDecodeError, ValidationError})


class _Arguments(BaseModel):
    """Base of the model each tool builds from its signature to check a call's arguments."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class Tool(BaseModel, t.Generic[P, R]):
    """A function a model may call, with what the model is told about it.

    `catch`: which exceptions the function may raise and have shown to the model as its
    reply (`True` all, `False` none, or a set of types; by default argument errors, JSON
    and validation, so a badly formed call is answered). `truncate`: the longest reply,
    in characters (its middle is dropped).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str
    description: str
    parameters_schema: dict[str, t.Any]
    fn: t.Callable[P, R] = Field(exclude=True)
    catch: bool | set[type[Exception]] = Field(default_factory=lambda: set(DEFAULT_CATCH))
    truncate: int | None = None

    _arguments: type[_Arguments] | None = PrivateAttr(default=None)
    _signature: inspect.Signature | None = PrivateAttr(default=None)
    _model: type[Model] | None = PrivateAttr(default=None)

    @classmethod
    def from_callable(
        cls,
        fn: t.Callable[P, R],
        *,
        name: str | None = None,
        description: str | None = None,
        catch: bool | t.Iterable[type[Exception]] | None = None,
        truncate: int | None = None,
    ) -> Tool[P, R]:
        """A tool from a function, a bound method, or a `Prompt` (which runs its pipeline
        when called)."""
        from pytest_rigging.prompt import Prompt

        described: t.Callable[..., t.Any] = fn
        if isinstance(fn, Prompt):
            described, fn = fn.func, t.cast("t.Callable[P, R]", fn.run)
        return cls._built(
            fn,
            described,
            _signature_of(described),
            name=name,
            description=description,
            catch=catch,
            truncate=truncate,
        )

    @classmethod
    def _built(
        cls,
        fn: t.Callable[P, R],
        described: t.Callable[..., t.Any],
        signature: inspect.Signature,
        *,
        name: str | None,
        description: str | None,
        catch: bool | t.Iterable[type[Exception]] | None,
        truncate: int | None,
    ) -> Tool[P, R]:
        """A tool calling `fn`, named and described from `described` (the function the
        user wrote), its parameters those of `signature`."""
        named = name or described.__name__
        arguments = _arguments_model(named, signature)
        tool = cls(
            name=named,
            description=_description(description or described.__doc__ or ""),
            parameters_schema=_schema_of(arguments, signature),
            fn=fn,
            catch=_catch_set(catch),
            truncate=truncate,
        )
        tool._arguments, tool._signature = arguments, signature
        return tool

    @property
    def definition(self) -> ToolDefinition:
        """What `api` mode sends for this tool."""
        return ToolDefinition(
            function=FunctionDefinition(
                name=self.name, description=self.description, parameters=self.parameters_schema
            )
        )

    @property
    def api_definition(self) -> ToolDefinition:
        """rigging's name for `definition`."""
        return self.definition

    @property
    def model(self) -> type[Model]:
        """The parameters as an XML model (the `xml` mode writes and reads calls with it)."""
        if self._model is None:
            from pytest_rigging.model import make_from_schema, make_from_signature

            try:
                self._model = (
                    make_from_signature(self._signature, "params")
                    if self._signature is not None
                    else make_from_schema(self.parameters_schema, "params")
                )
            except Exception as error:
                raise ToolDefinitionError(
                    f"tool {self.name!r} can't be written as XML ({error}): "
                    "use another tool mode, such as json-in-xml"
                ) from error
        return self._model

    def check_arguments(self, call: ToolCall) -> dict[str, t.Any]:
        """The call's arguments, parsed and checked against this tool's parameters.

        Raises `json.JSONDecodeError` or pydantic's `ValidationError`, whose messages say
        what is wrong, as the model will be shown."""
        raw = call.function.arguments.strip() or "{}"
        try:
            value = json.loads(raw)
        except RecursionError:  # as a bad call, not a crash of the loop
            raise json.JSONDecodeError("arguments nested too deeply", raw, 0) from None
        if not isinstance(value, dict):
            raise ValidationError.from_exception_data(
                f"{self.name} arguments",
                [{"type": "dict_type", "loc": (), "input": value}],
            )
        if self._arguments is None:
            return value
        checked = self._arguments.model_validate(value)
        return {name: getattr(checked, name) for name in type(checked).model_fields}

    async def handle_tool_call(self, tool_call: ToolCall) -> tuple[Message, bool]:
        """Run the call and give the `role="tool"` reply to send back, and whether a
        `Stop` was raised (the tool loop then ends)."""
        from pytest_rigging.model import ErrorModel

        stop = False
        invalid: str | None = None
        result: t.Any
        try:
            try:
                kwargs = self.check_arguments(tool_call)
            except (json.JSONDecodeError, ValidationError) as error:
                invalid = f"{type(error).__name__}: {_shown(error)}"
                raise
            result = await self._invoke(kwargs)
        except Stop as error:
            result, stop = f"<{STOP_TAG}>{error.message}</{STOP_TAG}>", True
        except Exception as error:
            if not self._catches(error):
                raise
            result = ErrorModel(type=type(error).__name__, content=_shown(error))
        reply = tool_reply(tool_call.id, result)
        if invalid is not None:
            reply.metadata[INVALID_CALL] = invalid
        if self.truncate:
            reply = reply.shorten(self.truncate)
        return reply, stop

    async def _invoke(self, kwargs: dict[str, t.Any]) -> t.Any:
        """The function's result, awaited if it is awaitable; a `Stop` it returns is
        raised, as one it raises is."""
        result = self.fn(**kwargs)  # type: ignore[call-arg]
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Stop):
            raise result
        return result

    def _catches(self, error: Exception) -> bool:
        if isinstance(self.catch, bool):
            return self.catch
        return isinstance(error, tuple(self.catch))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def clone(self) -> Tool[P, R]:
        """A copy to rename or reconfigure apart from this one (its argument and XML
        models shared: they are the same function's)."""
        catch = self.catch if isinstance(self.catch, bool) else set(self.catch)
        return self.model_copy(update={"catch": catch})

    def with_(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        catch: bool | t.Iterable[type[Exception]] | None = None,
        truncate: int | None = None,
    ) -> Tool[P, R]:
        """A copy with the given settings changed (None keeps this tool's)."""
        other = self.clone()
        other.name = name or self.name
        other.description = description or self.description
        if catch is not None:
            other.catch = catch if isinstance(catch, bool) else set(catch)
        if truncate is not None:
            other.truncate = truncate
        return other


def tool_reply(call_id: str, result: t.Any) -> Message:
    """The `role="tool"` message answering call `call_id` with `result`: messages and
    content parts as they are, a model as its XML, text and numbers as text, anything
    else as JSON."""
    from pytest_rigging.message import CONTENT_TYPES, ContentText, Message
    from pytest_rigging.model import ErrorModel, Model

    if isinstance(result, ErrorModel):
        return Message.from_model(result, role="tool", tool_call_id=call_id)
    parts: list[t.Any]
    if isinstance(result, Message):
        parts = list(result.content_parts)
    elif isinstance(result, CONTENT_TYPES):
        parts = [result]
    elif isinstance(result, list) and result and all(isinstance(r, CONTENT_TYPES) for r in result):
        parts = list(result)
    elif isinstance(result, Model):
        parts = [ContentText(text=result.to_pretty_xml())]
    elif isinstance(result, str | int | float | bool):
        parts = [ContentText(text=str(result))]
    else:
        try:
            text = TypeAdapter(t.Any).dump_json(result).decode(errors="replace")
        except Exception:  # what JSON can't hold is shown as Python shows it
            text = str(result)
        parts = [ContentText(text=text)]
    return Message("tool", content_parts=parts, tool_call_id=call_id)


def unknown_tool_reply(call: ToolCall, known: t.Sequence[str]) -> Message:
    """The reply to a call of a tool that doesn't exist. Unlike rigging (a user message
    that leaves the call unanswered), it answers the call, so providers that require
    every call to be answered accept the next request."""
    from pytest_rigging.model import SystemErrorModel

    names = ", ".join(known) or "none"
    reason = f"Tool {call.name!r} not found. The tools are: {names}."
    reply = tool_reply(call.id, SystemErrorModel(content=reason))
    reply.metadata[INVALID_CALL] = reason
    return reply


SHOWN_INPUT = 200
"""The longest a bad value is quoted back to the model, in characters (its middle cut)."""


def _shown(error: Exception) -> str:
    """An error as the model is shown it: a validation error as one line per field,
    without pydantic's links, each bad value quoted at most `SHOWN_INPUT` long."""
    if not isinstance(error, ValidationError):
        return str(error)
    from pytest_rigging.message import shorten

    lines = []
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"]) or "arguments"
        quoted = shorten(repr(problem["input"]), SHOWN_INPUT)
        got = "" if problem["type"] == "missing" else f" (got {quoted})"
        lines.append(f"{where}: {problem['msg']}{got}")
    return "\n".join(lines)


def _signature_of(fn: t.Callable[..., t.Any]) -> inspect.Signature:
    try:
        return inspect.signature(fn, eval_str=True)
    except (NameError, TypeError) as error:
        raise ToolDefinitionError(
            f"can't read the signature of {getattr(fn, '__name__', fn)!r}: {error} (the "
            "types a tool's hints name must be importable from its module)"
        ) from error


def _arguments_model(name: str, signature: inspect.Signature) -> type[_Arguments]:
    fields: dict[str, t.Any] = {}
    for param_name, param in signature.parameters.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ToolDefinitionError(
                f"tool {name!r}: *{param_name} can't be a tool parameter (a model calls "
                "tools with named arguments only)"
            )
        annotation = t.Any if param.annotation is inspect.Parameter.empty else param.annotation
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param_name] = (annotation, default)
    try:
        model: type[_Arguments] = create_model(f"{name}_arguments", __base__=_Arguments, **fields)
    except Exception as error:
        raise ToolDefinitionError(
            f"tool {name!r}: its parameters have no schema ({error})"
        ) from error
    return model


def _schema_of(arguments: type[_Arguments], signature: inspect.Signature) -> dict[str, t.Any]:
    """The JSON schema of the arguments with every `$ref` inlined (some providers reject
    `$defs`), titles dropped, and `Annotated[T, "text"]` texts as descriptions."""
    schema = inline_refs(arguments.model_json_schema())
    schema.pop("title", None)
    properties: dict[str, dict[str, t.Any]] = schema.get("properties", {})
    for name, prop in properties.items():
        prop.pop("title", None)
        annotation = signature.parameters[name].annotation
        if t.get_origin(annotation) is t.Annotated:
            text = next((a for a in t.get_args(annotation)[1:] if isinstance(a, str)), None)
            if text is not None:
                prop["description"] = text
    return schema


def inline_refs(schema: dict[str, t.Any]) -> dict[str, t.Any]:
    """`schema` with its local `$ref`s replaced by what they point to and `$defs` dropped
    (a recursive reference is left as it is)."""
    definitions: dict[str, t.Any] = schema.get("$defs", {})

    def walk(node: t.Any, seen: frozenset[str]) -> t.Any:
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            key = ref.removeprefix("#/$defs/")
            if key in definitions and key not in seen:
                rest = {k: v for k, v in node.items() if k != "$ref"}
                return {**walk(definitions[key], seen | {key}), **walk(rest, seen)}
        return {k: walk(v, seen) for k, v in node.items() if k != "$defs"}

    result: dict[str, t.Any] = walk(schema, frozenset())
    return result


def _description(text: str) -> str:
    """A docstring as one paragraph per blank-line-separated block."""
    return re.sub(r"(?<!\n)\n(?!\n)\s*", " ", inspect.cleandoc(text)).strip()


def _catch_set(catch: bool | t.Iterable[type[Exception]] | None) -> bool | set[type[Exception]]:
    if catch is None:
        return set(DEFAULT_CATCH)
    return catch if isinstance(catch, bool) else set(catch)


@t.overload
def tool(
    func: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    catch: bool | t.Iterable[type[Exception]] | None = None,
    truncate: int | None = None,
) -> t.Callable[[t.Callable[P, R]], Tool[P, R]]: ...


@t.overload
def tool(func: t.Callable[P, R], /) -> Tool[P, R]: ...


def tool(
    func: t.Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    catch: bool | t.Iterable[type[Exception]] | None = None,
    truncate: int | None = None,
) -> t.Callable[[t.Callable[P, R]], Tool[P, R]] | Tool[P, R]:
    """Make a function a `Tool`: `@rg.tool` or `@rg.tool(name=..., catch=True)`."""

    def make(fn: t.Callable[P, R]) -> Tool[P, R]:
        return Tool.from_callable(
            fn, name=name, description=description, catch=catch, truncate=truncate
        )

    return make(func) if func is not None else make


class ToolMethod(property, t.Generic[P, R]):
    """`@tool_method` on a method: reading it from an instance gives a `Tool` bound to
    that instance (from the class, an unbound one). A `property`, so pydantic models may
    carry tool methods without taking them for fields."""

    def __init__(
        self,
        method: t.Callable[..., t.Any],
        *,
        name: str | None,
        description: str | None,
        catch: bool | t.Iterable[type[Exception]] | None,
        truncate: int | None,
    ) -> None:
        super().__init__(method)
        signature = _signature_of(method)
        without_self = [p for n, p in signature.parameters.items() if n != "self"]
        self._template: Tool[P, R] = Tool._built(
            t.cast("t.Callable[P, R]", method),
            method,
            signature.replace(parameters=without_self),
            name=name,
            description=description,
            catch=catch,
            truncate=truncate,
        )

    def __get__(self, instance: object | None, owner: type | None = None) -> Tool[P, R]:  # type: ignore[override]
        assert self.fget is not None
        bound = self._template.clone()
        if instance is not None:
            bound.fn = self.fget.__get__(instance, owner)
        return bound


@t.overload
def tool_method(
    func: None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    catch: bool | t.Iterable[type[Exception]] | None = None,
    truncate: int | None = None,
) -> t.Callable[[t.Callable[t.Concatenate[t.Any, P], R]], ToolMethod[P, R]]: ...


@t.overload
def tool_method(func: t.Callable[t.Concatenate[t.Any, P], R], /) -> ToolMethod[P, R]: ...


def tool_method(
    func: t.Callable[t.Concatenate[t.Any, P], R] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    catch: bool | t.Iterable[type[Exception]] | None = None,
    truncate: int | None = None,
) -> t.Callable[[t.Callable[t.Concatenate[t.Any, P], R]], ToolMethod[P, R]] | ToolMethod[P, R]:
    """Make a method a tool of each instance (`self` is not a parameter the model sees)."""

    def make(method: t.Callable[t.Concatenate[t.Any, P], R]) -> ToolMethod[P, R]:
        return ToolMethod(
            method, name=name, description=description, catch=catch, truncate=truncate
        )

    return make(func) if func is not None else make


def tools_of(value: t.Any) -> list[Tool[..., t.Any]]:
    """The tools `using()` takes from one argument: a tool, a function (made a tool), an
    object with `@tool_method`s, or a list of these."""
    if isinstance(value, Tool):
        return [value]
    if isinstance(value, list | tuple):
        return [found for item in value for found in tools_of(item)]
    if not isinstance(value, type):
        names = dict.fromkeys(
            name
            for cls in type(value).__mro__
            for name, attr in vars(cls).items()
            if isinstance(attr, ToolMethod)
        )
        methods = [getattr(value, name) for name in names]
        if methods:
            return methods
    if callable(value):
        return [Tool.from_callable(value)]
    raise TypeError(
        "using() takes tools, functions, objects with @tool_method methods, or lists of "
        f"these; got {type(value).__name__}"
    )
