"""Tool calls written in the reply's text (every mode but `api`).

Before each request `prepare` describes the tools in the system message, writes the
dialog's earlier calls back into their assistant messages as text, and sends tool replies
as user messages; after it `read` finds the calls in the reply's text and sets them as
`tool_calls`. Only what is sent is rewritten: the chat keeps the mode-blind dialog.

The tags and shapes are rigging's, so a model prompted by rigging meets what it knows:

- `xml`: `<rg-tool-call name="add"><a>2</a></rg-tool-call>`, the arguments as elements,
  written and read with the tool's XML model (`Tool.model`)
- `json-in-xml`: `<tool-call name="add">{"a": 2}</tool-call>`
- `json-with-tag`: `<tool-call>{"name": "add", "arguments": {"a": 2}}</tool-call>`
- `json`: `{"name": "add", "arguments": {"a": 2}}` anywhere in the text
- `pythonic`: `[add(a=2)]`, read with `ast` (never evaluated)

and every reply goes back as `<tool-response id="..." name="add">...</tool-response>`.

A call that can be recognised but not read (broken JSON or XML, bad syntax, no name) is
kept, with the text as written for its arguments: answering it shows the model the error.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import re
import textwrap
import types
import typing as t
from xml.etree import ElementTree

from pytest_rigging.error import MissingModelError
from pytest_rigging.message import ContentText, Message, inject_system_content
from pytest_rigging.model import Model, attr, escape, escape_attribute, is_model
from pytest_rigging.tools.base import FunctionCall, ToolCall, json_object

if t.TYPE_CHECKING:
    from pydantic.fields import FieldInfo

    from pytest_rigging.generator.base import GenerateParams
    from pytest_rigging.tools.base import Tool, ToolMode

XML_CALL_TAG = "rg-tool-call"
"""The element of one call in `xml` mode."""
CALL_TAG = "tool-call"
"""The element of one call in `json-in-xml` and `json-with-tag` modes."""
RESPONSE_TAG = "tool-response"
"""The element of one tool reply, sent to the model as user text."""

Tools = t.Sequence["Tool[..., t.Any]"]


class _TaggedCall(Model, tag=CALL_TAG):
    """A call in an element of its own: name and id as attributes, the rest as text."""

    id: str = attr(default="")
    name: str = attr(default="")
    body: str = ""


class _XmlCall(_TaggedCall, tag=XML_CALL_TAG):
    pass


@dataclasses.dataclass(frozen=True)
class _Found:
    """Calls read from `text[start:stop]` (a pythonic list holds several)."""

    start: int
    stop: int
    calls: list[FunctionCall]


class _NotAValue(Exception):
    """A pythonic argument that is not a literal."""


#
# What is sent
#


def prepare(
    messages: list[Message],
    params: GenerateParams,
    tools: Tools,
    mode: ToolMode,
    *,
    add_stop_token: bool,
) -> tuple[list[Message], GenerateParams]:
    """What is sent in a text mode: the tools described in the system message, earlier
    calls and their replies written as text, and no `tools` param.

    Raises `ToolDefinitionError` in `xml` mode for a tool that can't be written as XML."""
    prompt = _system_prompt(tools, mode)
    by_name = {tool.name: tool for tool in tools}
    names = {call.id: call.name for m in messages for call in m.tool_calls or []}
    sent: list[Message] = []
    replies: list[Message] = []
    for message in messages:
        if message.role == "tool":
            replies.append(message)
            continue
        if replies:
            sent.append(_responses(replies, names))
            replies = []
        if message.tool_calls:
            sent.append(_with_calls_written(message, mode, by_name))
        else:
            sent.append(message)
    if replies:
        sent.append(_responses(replies, names))
    changes: dict[str, t.Any] = {"tools": None, "tool_choice": None, "parallel_tool_calls": None}
    if mode == "xml" and add_stop_token:
        end = f"</{XML_CALL_TAG}>"
        stop = list(params.stop or [])
        changes["stop"] = stop if end in stop else [*stop, end]
    return inject_system_content(sent, prompt), params.model_copy(update=changes)


def _system_prompt(tools: Tools, mode: ToolMode) -> str:
    if mode == "xml":
        return _XML_PROMPT.format(tools="\n".join(_xml_definition(tool) for tool in tools))
    definitions = "\n".join(
        tool.definition.function.model_dump_json(exclude_none=True) for tool in tools
    )
    head = _JSON_PROMPT_HEAD.format(tools=definitions)
    if mode == "pythonic":
        return head + _PYTHONIC_FORMAT
    if mode == "json-in-xml":
        return head + _JSON_IN_XML_FORMAT
    if mode == "json-with-tag":
        return head + _JSON_FORMAT.format(call=f"<{CALL_TAG}>\n{_JSON_CALL}\n</{CALL_TAG}>")
    if mode == "json":
        return head + _JSON_FORMAT.format(call=_JSON_CALL)
    raise ValueError(f"{mode!r} is not a text tool mode")


_JSON_PROMPT_HEAD = """\
# Tools

You can call the functions below to help with the user's request. Only pass argument \
values you know: don't make them up.

<available-tools>
{tools}
</available-tools>

"""
_JSON_CALL = '{"name": <function-name>, "arguments": <args-dict>}'
_JSON_FORMAT = """\
To call one or more of them, reply in this format, once per call:

```
{call}
```
"""
_JSON_IN_XML_FORMAT = f"""\
To call one or more of them, reply in this format, once per call:

```
<{CALL_TAG} name="$tool_name">
{{"$param_name": "argument one", "$param_name": 123}}
</{CALL_TAG}>
```

Between the tags goes one valid JSON object holding the arguments.\
"""
_PYTHONIC_FORMAT = """\
To call one or more of them, reply with a list of calls in Python syntax, with keyword \
arguments:

```
[func_name1(params_name1=params_value1, params_name2=params_value2, ...), func_name2(params)]
```

Put every call in that one list.\
"""
_XML_PROMPT = f"""\
# Tools

You can call the functions below to help with the user's request. Only pass argument \
values you know: don't make them up.

<tools>
{{tools}}
</tools>

To call a tool, reply in this format:

<{XML_CALL_TAG} name="$tool_name">
<$param_name>argument one</$param_name>
<$param_name>123</$param_name>
</{XML_CALL_TAG}>

A list of simple values has one child element per item:
<numbers>
    <item>1</item>
    <item>2</item>
</numbers>

A list of objects has one named child element per object:
<things>
    <thing>
        <foo>bar</foo>
    </thing>
    <thing>
        <foo>baz</foo>
    </thing>
</things>

A dictionary has its keys and values as attributes:
<dict key1="value1" key2="123" />\
"""


def _quoted(text: str) -> str:
    return f'"{escape_attribute(text)}"'


def _xml_definition(tool: Tool[..., t.Any]) -> str:
    """A tool as `xml` mode describes it: one `<param>` per field of its XML model."""
    fields = tool.model.model_fields if tool.parameters_schema.get("properties") else {}
    params = [f"    {_xml_parameter(name, info)}" for name, info in fields.items()]
    listed = "\n".join(["  <parameters>", *params, "  </parameters>"]) if params else ""
    return (
        f"<rg-tool name={_quoted(tool.name)} description={_quoted(tool.description)}>\n"
        f"{listed or '  <parameters></parameters>'}\n</rg-tool>"
    )


def _xml_parameter(name: str, info: FieldInfo) -> str:
    described = f" description={_quoted(info.description)}" if info.description else ""
    opening = (
        f"<param name={_quoted(name)} type={_quoted(_type_name(info.annotation))}{described} "
        f'required="{str(info.is_required()).lower()}"'
    )
    example = _nested_example(info.annotation)
    return f"{opening}>{example}</param>" if example else f"{opening}/>"


def _type_name(annotation: t.Any) -> str:
    """A type as a short Python-like name: `int`, `list[str]`, `str | None`."""
    arguments = t.get_args(annotation)
    origin = t.get_origin(annotation)
    if annotation is None or annotation is type(None):
        return "None"
    if origin is t.Annotated:
        return _type_name(arguments[0])
    if origin is t.Literal:
        return f"literal[{', '.join(repr(a) for a in arguments)}]"
    if origin is t.Union or isinstance(annotation, types.UnionType):
        return " | ".join(_type_name(a) for a in arguments)
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in arguments)
        base = _type_name(origin)
        return f"{base}[{inner}]" if inner else base
    if isinstance(annotation, type):
        return annotation.__name__.lower()
    return str(annotation).removeprefix("typing.").lower()


def _nested_example(annotation: t.Any) -> str:
    """The XML example of a model parameter (or of a list's or dict's model items)."""
    for candidate in (annotation, *t.get_args(annotation)):
        if is_model(candidate):
            return candidate.xml_example()
    return ""


def _with_calls_written(
    message: Message, mode: ToolMode, by_name: dict[str, Tool[..., t.Any]]
) -> Message:
    """An assistant message with its calls written after its text, as the mode asks the
    model to write them."""
    calls = message.tool_calls or []
    if mode == "pythonic":
        written = _python_list(calls)
    else:
        written = [_written_call(call, mode, by_name.get(call.name)) for call in calls]
    rewritten = message.clone()
    rewritten.tool_calls = None
    text = message.content.strip()
    rewritten.content = "\n".join([text, *written] if text else written)
    return rewritten


def _written_call(call: ToolCall, mode: ToolMode, tool: Tool[..., t.Any] | None) -> str:
    arguments = call.parsed_arguments()
    identified = f"id={_quoted(call.id)} name={_quoted(call.name)}"
    if mode == "xml":
        body = call.arguments if arguments is None else _xml_body(arguments, tool)
        opening, closing = f"<{XML_CALL_TAG} {identified}>", f"</{XML_CALL_TAG}>"
        return f"{opening}\n{body}\n{closing}" if body.strip() else opening + closing
    if mode == "json-in-xml":
        body = call.arguments if arguments is None else _dumps(arguments)
        return f"<{CALL_TAG} {identified}>{body}</{CALL_TAG}>"
    if arguments is None or not call.name or _is_whole_call(arguments, call.name):
        named = call.arguments  # a call that couldn't be read: the text the model wrote
    else:
        named = _dumps({"name": call.name, "arguments": arguments})
    if mode == "json-with-tag":
        return f"<{CALL_TAG} id={_quoted(call.id)}>{named}</{CALL_TAG}>"
    return named


def _is_whole_call(arguments: dict[str, t.Any], name: str) -> bool:
    """Whether a call's arguments are the whole call as written (kept so because it
    couldn't be read, such as one with arguments that aren't an object)."""
    return arguments.get("name") == name and ("arguments" in arguments or "parameters" in arguments)


def _python_list(calls: list[ToolCall]) -> list[str]:
    """The calls as one pythonic list, then any that can't be written so as written."""
    listed: list[str] = []
    raw: list[str] = []
    for call in calls:
        arguments = call.parsed_arguments()
        if arguments is None or not call.name.isidentifier():
            raw.append(call.arguments)
        elif all(key.isidentifier() for key in arguments):
            shown = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
            listed.append(f"{call.name}({shown})")
        else:
            raw.append(call.arguments)
    return ([f"[{', '.join(listed)}]"] if listed else []) + raw


def _xml_body(arguments: dict[str, t.Any], tool: Tool[..., t.Any] | None) -> str:
    """Arguments as the child elements of a call: with the tool's XML model where they
    fit it, else key by key."""
    if tool is not None and arguments and tool.parameters_schema.get("properties"):
        model = tool.model
        try:
            xml = model.model_validate(arguments).to_pretty_xml(exclude_unset=True)
        except ValueError:  # pydantic's ValidationError: written key by key below
            pass
        else:
            lines = xml.splitlines()
            return textwrap.dedent("\n".join(lines[1:-1])) if len(lines) > 2 else ""
    return "\n".join(_xml_element(key, value) for key, value in arguments.items())


def _xml_element(tag: str, value: t.Any) -> str:
    if isinstance(value, dict):
        inner = "\n".join(_xml_element(key, item) for key, item in value.items())
    elif isinstance(value, list):
        inner = "\n".join(_xml_element("item", item) for item in value)
    else:
        text = "" if value is None else json.dumps(value) if isinstance(value, bool) else value
        return f"<{tag}>{escape(str(text))}</{tag}>"
    return f"<{tag}>\n{textwrap.indent(inner, '  ')}\n</{tag}>" if inner else f"<{tag}></{tag}>"


def _responses(replies: list[Message], names: dict[str, str]) -> Message:
    """Consecutive tool replies as one user message, each in its own element naming the
    call it answers (images and audio follow the text)."""
    texts: list[str] = []
    media: list[t.Any] = []
    for reply in replies:
        call_id = reply.tool_call_id
        attributes = f" id={_quoted(call_id)}" if call_id is not None else ""
        name = names.get(call_id or "")
        attributes += f" name={_quoted(name)}" if name else ""
        texts.append(f"<{RESPONSE_TAG}{attributes}>{reply.content}</{RESPONSE_TAG}>")
        media.extend(p for p in reply.content_parts if not isinstance(p, ContentText))
    return Message("user", content_parts=[ContentText(text="\n".join(texts)), *media])


#
# What came back
#


def read(message: Message, tools: Tools, mode: ToolMode) -> Message:
    """The reply with the calls written in its text as `tool_calls` and their text
    removed (the reply itself if it calls nothing). Each call's id is derived from the
    reply's text and the call's place in it, so replaying a reply gives the same ids."""
    text = message.content
    if mode in ("xml", "json-in-xml", "json-with-tag"):
        found = _read_tagged(text, tools, mode)
    elif mode == "json":
        found = _read_json(text)
    elif mode == "pythonic":
        found = _read_pythonic(text, tools)
    else:
        raise ValueError(f"{mode!r} is not a text tool mode")
    if not found:
        return message
    calls = [call for part in found for call in part.calls]
    answered = message.clone()
    answered.content = _without(text, found)
    keyed = _text_key(text)
    answered.tool_calls = [
        *(message.tool_calls or []),
        *(
            ToolCall(id=_call_id(keyed, index, call), function=call)
            for index, call in enumerate(calls)
        ),
    ]
    return answered


def _text_key(text: str) -> hashlib._Hash:
    """The hash of the reply's text, taken once per reply: hashing it again for each
    call made reading a reply of many calls quadratic."""
    return hashlib.sha256(("[" + json.dumps(text) + ", ").encode())


def _call_id(keyed: hashlib._Hash, index: int, call: FunctionCall) -> str:
    """The id of the reply's `index`th call: the hash of the reply's text, the index and
    the call (the same ids as hashing them in one JSON list)."""
    key = keyed.copy()
    key.update(json.dumps([index, call.name, call.arguments])[1:].encode())
    return "rg-" + key.hexdigest()[:12]


_EMPTY_FENCE = re.compile(r"```[\w-]*\s*```")


def _without(text: str, found: list[_Found]) -> str:
    """The text with the calls cut out (and code fences they leave empty)."""
    kept: list[str] = []
    position = 0
    for part in found:
        kept.append(text[position : part.start])
        position = part.stop
    kept.append(text[position:])
    return _EMPTY_FENCE.sub("", "".join(kept)).strip()


def _read_tagged(text: str, tools: Tools, mode: ToolMode) -> list[_Found]:
    element = _XmlCall if mode == "xml" else _TaggedCall
    tag = element.__xml_tag__
    if f"<{tag}" not in text.lower():
        return []
    closed = text
    if mode == "xml":
        # The stop token ends generation before the closing tag: a named call left open
        # at the end is read as if closed there.
        opened = list(_XML_OPENING.finditer(text))
        if (
            opened
            and "name=" in opened[-1].group()
            and text.lower().rfind(f"</{tag}") < opened[-1].start()
        ):
            closed += f"</{tag}>"
    by_name = {tool.name: tool for tool in tools}
    found: list[_Found] = []
    try:
        elements = element.from_text(closed, return_errors=True)
    except MissingModelError:
        return []
    for parsed, where in elements:
        stop = min(where.stop, len(text))
        if not isinstance(parsed, _TaggedCall):  # not expected of text fields: kept as written
            found.append(_Found(where.start, stop, [FunctionCall(name="", arguments=text[where])]))
            continue
        name, body = parsed.name.strip(), parsed.body
        if mode == "xml":
            written = _xml_arguments(body, by_name.get(name)) if name else body
            call = FunctionCall(name=name, arguments=written)
        elif name:  # json-in-xml's shape; json-with-tag's models write it too
            arguments = json_object(_unfenced(body))
            call = FunctionCall(
                name=name, arguments=body if arguments is None else _dumps(arguments)
            )
        else:  # json-with-tag's shape, which json-in-xml's models write too
            call = _named_call(_unfenced(body))
        found.append(_Found(where.start, stop, [call]))
    return found


_XML_OPENING = re.compile(rf"<{XML_CALL_TAG}(?:\s[^<>]*)?>", re.IGNORECASE)
_FENCED = re.compile(r"^```[\w-]*\s*(.*?)\s*```$", re.DOTALL)
_NAME = re.compile(r'"name"\s*:\s*"((?:[^"\\]|\\.)*)"')
_JSON_CALL_START = re.compile(r'\{\s*"(name|arguments|parameters)"\s*:')


def _unfenced(text: str) -> str:
    match = _FENCED.match(text.strip())
    return match.group(1) if match else text.strip()


def _dumps(value: t.Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _named_call(text: str) -> FunctionCall:
    """A `{"name": ..., "arguments": {...}}` call (`parameters` is read too, and
    arguments given as a JSON string); what doesn't fit is kept as written."""
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        value = None
    if isinstance(value, dict):
        name = value.get("name")
        arguments = value.get("arguments", value.get("parameters", {}))
        if isinstance(arguments, str):
            arguments = json_object(arguments)
        if isinstance(name, str) and name.strip() and isinstance(arguments, dict):
            return FunctionCall(name=name.strip(), arguments=_dumps(arguments))
        return FunctionCall(name=name.strip() if isinstance(name, str) else "", arguments=text)
    match = _NAME.search(text)
    return FunctionCall(name=match.group(1).strip() if match else "", arguments=text)


def _read_json(text: str) -> list[_Found]:
    """Every `{"name": ..., "arguments": ...}` object in the text; one that starts so
    but isn't valid JSON is a call that couldn't be read. Only objects opening with one
    of those keys are tried, so prose and other JSON cost one regex scan."""
    decoder = json.JSONDecoder()
    found: list[_Found] = []
    position = 0
    broken_until = 0  # objects opened before this are inside one that broke there
    while (candidate := _JSON_CALL_START.search(text, position)) is not None:
        start = candidate.start()
        if candidate.group(1) != "name" and start < broken_until:
            # Inside an object that broke: it breaks there too or is a part of it (a call
            # only if "name" opens it). Decoding each of a deep nest again was quadratic.
            position = start + 1
            continue
        try:
            value, stop = decoder.raw_decode(text, start)
        except (json.JSONDecodeError, RecursionError) as error:
            if candidate.group(1) != "name":
                broken_until = (
                    error.pos
                    if isinstance(error, json.JSONDecodeError)
                    else _bracket_ends(text, [start], "{}", '"')[start] or len(text)
                )
                position = start + 1
                continue
            stop = _bracket_ends(text, [start], "{}", '"')[start] or len(text)
            found.append(_Found(start, stop, [_named_call(text[start:stop])]))
        else:
            if (
                isinstance(value, dict)
                and "name" in value
                and ("arguments" in value or "parameters" in value)
            ):
                found.append(_Found(start, stop, [_named_call(text[start:stop])]))
        position = stop
    return found


_PYTHON_CALL_START = re.compile(r"\[\s*([A-Za-z_]\w*)\s*\(")


def _read_pythonic(text: str, tools: Tools) -> list[_Found]:
    """The last list of calls in the text, as rigging reads it. A list starting with a
    call of a known tool that can't be read is a call kept as written; other brackets are
    prose."""
    names = {tool.name for tool in tools}
    starts = {match.start(): match.group(1) for match in _PYTHON_CALL_START.finditer(text)}
    ends = _bracket_ends(text, sorted(starts), "[]", "'\"")
    last: _Found | None = None
    position = 0
    for start in sorted(starts):
        if start < position:
            continue
        end = ends[start]
        if end is None and starts[start] not in names:
            continue  # never closed: prose (parsing the rest of the text for each is quadratic)
        stop = end or len(text)
        calls = _python_calls(text[start:stop])
        if calls is None and starts[start] not in names:
            continue
        if calls is None:
            calls = [FunctionCall(name=starts[start], arguments=text[start:stop])]
        last = _Found(start, stop, calls)
        position = stop
    return [last] if last is not None else []


def _bracket_ends(
    text: str, starts: list[int], brackets: str, quotes: str
) -> dict[int, int | None]:
    """Where each bracket opened at `starts` closes (None: never), brackets inside
    `quotes` strings not counted, in linear time: the brackets are matched last first,
    and a scan reaching a later one's opening outside a string jumps to its end."""
    opener, closer = brackets[0], brackets[1]
    ends: dict[int, int | None] = {}
    for start in reversed(starts):
        depth, quote, index, end = 0, "", start, None
        while index < len(text):
            char = text[index]
            if quote:
                if char == "\\":
                    index += 1
                elif char == quote:
                    quote = ""
            elif char in quotes:
                quote = char
            elif index != start and index in ends:
                inner = ends[index]
                if inner is None:
                    break
                index = inner
                continue
            elif char == opener:
                depth += 1
            elif char == closer:
                depth -= 1
                if depth == 0:
                    end = index + 1
                    break
            index += 1
        ends[start] = end
    return ends


def _python_calls(source: str) -> list[FunctionCall] | None:
    """The calls of a `[name(key=literal, ...), ...]` list, or None if it isn't one."""
    try:
        tree = ast.parse(source, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(tree.body, ast.List) or not tree.body.elts:
        return None
    calls: list[FunctionCall] = []
    for node in tree.body.elts:
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name) or node.args:
            return None
        try:
            arguments = {
                _keyword_name(keyword): _python_value(keyword.value) for keyword in node.keywords
            }
            written = _dumps(arguments)
        except (_NotAValue, TypeError, ValueError):
            return None
        calls.append(FunctionCall(name=node.func.id, arguments=written))
    return calls


def _keyword_name(keyword: ast.keyword) -> str:
    if keyword.arg is None:
        raise _NotAValue("**arguments")
    return keyword.arg


def _python_value(node: ast.expr) -> t.Any:
    """A literal's value; a bare name or dotted name stands for itself as a string (as
    rigging reads it), anything else is refused."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return ast.unparse(node)
        raise _NotAValue(ast.unparse(node)) from None


def _xml_arguments(body: str, tool: Tool[..., t.Any] | None) -> str:
    """An XML call's arguments as JSON text: read with the tool's XML model, else element
    by element as text (so the tool's own check says what is wrong), else, when it isn't
    XML at all, the text as written."""
    if not body.strip():
        return "{}"
    if tool is not None and tool.parameters_schema.get("properties"):
        model = tool.model
        try:
            parsed = model.from_text(model.xml_start_tag() + body + model.xml_end_tag())
            return _dumps(parsed[0][0].model_dump(mode="json", exclude_unset=True))
        except ValueError:  # pydantic's ValidationError, MissingModelError: read below
            pass
    try:
        root = ElementTree.fromstring(f"<arguments>{body}</arguments>")
    except ElementTree.ParseError:
        return body
    return _dumps({child.tag: _element_value(child) for child in root})


def _element_value(element: ElementTree.Element) -> t.Any:
    children = list(element)
    text = (element.text or "").strip()
    if not children:
        return dict(element.attrib) if element.attrib and not text else text
    tags = {child.tag for child in children}
    if len(tags) == 1 and (len(children) > 1 or "item" in tags):
        return [_element_value(child) for child in children]
    return {child.tag: _element_value(child) for child in children}
