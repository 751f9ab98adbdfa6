"""The text tool modes: what is sent (tools in the system prompt, earlier calls and tool
replies as text), the calls read back out of replies, and the loop on scripted replies."""

from __future__ import annotations

import json
import time
import typing as t

import pytest
from pydantic import BaseModel

import pytest_rigging as rg
from pytest_rigging.error import ToolDefinitionError
from pytest_rigging.message import Message
from pytest_rigging.tools import text
from pytest_rigging.tools.base import INVALID_CALL, FunctionCall, ToolCall, ToolMode
from tests.conftest import replying

TEXT_MODES: list[ToolMode] = ["xml", "json", "json-in-xml", "json-with-tag", "pythonic"]


@rg.tool
def add(a: t.Annotated[int, "The first number"], b: int) -> int:
    """Add two numbers."""
    return a + b


@rg.tool
def shout(words: str) -> str:
    """Say it louder."""
    return words.upper()


@rg.tool
def total(numbers: list[int], label: str | None = None) -> int:
    """Sum a list."""
    return sum(numbers)


@rg.tool
def now() -> str:
    """The time."""
    return "noon"


DEFINITION = (
    '{"name":"add","description":"Add two numbers.","parameters":{"additionalProperties":false,'
    '"properties":{"a":{"type":"integer","description":"The first number"},"b":{"type":"integer"}},'
    '"required":["a","b"],"type":"object"}}'
)

# What each mode's system prompt must hold: the tools in its format, and how to call them.
PROMPT_MARKS: dict[ToolMode, list[str]] = {
    "xml": [
        '<tools>\n<rg-tool name="add" description="Add two numbers.">\n  <parameters>\n'
        '    <param name="a" type="int" description="The first number" required="true"/>\n'
        '    <param name="b" type="int" required="true"/>\n  </parameters>\n</rg-tool>\n</tools>',
        '<rg-tool-call name="$tool_name">\n<$param_name>argument one</$param_name>',
        "<numbers>\n    <item>1</item>",
        '<dict key1="value1" key2="123" />',
    ],
    "json": [
        f"<available-tools>\n{DEFINITION}\n</available-tools>",
        '```\n{"name": <function-name>, "arguments": <args-dict>}\n```',
    ],
    "json-in-xml": [
        f"<available-tools>\n{DEFINITION}\n</available-tools>",
        '<tool-call name="$tool_name">\n{"$param_name": "argument one", "$param_name": 123}\n'
        "</tool-call>",
    ],
    "json-with-tag": [
        f"<available-tools>\n{DEFINITION}\n</available-tools>",
        '<tool-call>\n{"name": <function-name>, "arguments": <args-dict>}\n</tool-call>',
    ],
    "pythonic": [
        f"<available-tools>\n{DEFINITION}\n</available-tools>",
        "[func_name1(params_name1=params_value1, params_name2=params_value2, ...), "
        "func_name2(params)]",
    ],
}

# A reply calling add(a=2, b=3) as each mode asks (xml's stops at its stop token).
CALLS: dict[ToolMode, str] = {
    "xml": 'Let me add.\n<rg-tool-call name="add">\n<a>2</a>\n<b>3</b>\n',
    "json": 'Let me add.\n```json\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n```',
    "json-in-xml": 'Let me add.\n<tool-call name="add">{"a": 2, "b": 3}</tool-call>',
    "json-with-tag": (
        'Let me add.\n<tool-call>\n{"name": "add", "arguments": {"a": 2, "b": 3}}\n</tool-call>'
    ),
    "pythonic": "Let me add.\n[add(a=2, b=3)]",
}

# That call as the next request shows it ({id}: its id).
REWRITTEN: dict[ToolMode, str] = {
    "xml": 'Let me add.\n<rg-tool-call id="{id}" name="add">\n<a>2</a>\n<b>3</b>\n</rg-tool-call>',
    "json": 'Let me add.\n{{"name": "add", "arguments": {{"a": 2, "b": 3}}}}',
    "json-in-xml": 'Let me add.\n<tool-call id="{id}" name="add">{{"a": 2, "b": 3}}</tool-call>',
    "json-with-tag": (
        'Let me add.\n<tool-call id="{id}">{{"name": "add", "arguments": {{"a": 2, "b": 3}}}}'
        "</tool-call>"
    ),
    "pythonic": "Let me add.\n[add(a=2, b=3)]",
}

CONVERSATION = [{"role": "system", "content": "Be brief."}, "What is 2 + 3?"]


def sent(messages: list[Message]) -> list[tuple[str, str, list[ToolCall] | None, str | None]]:
    return [(m.role, m.content, m.tool_calls, m.tool_call_id) for m in messages]


@pytest.mark.parametrize("mode", TEXT_MODES)
async def test_the_tools_are_described_in_the_system_prompt_and_not_sent_as_params(
    mode: ToolMode,
) -> None:
    generator = replying("It is 5.")
    await generator.chat(CONVERSATION).using(add, mode=mode, choice="required").run()
    [(messages, params)] = generator.calls
    assert [m.role for m in messages] == ["system", "user"]
    system = messages[0].content
    assert system.startswith("Be brief.\n\n# Tools\n\n")
    for mark in PROMPT_MARKS[mode]:
        assert mark in system
    assert (params.tools, params.tool_choice, params.parallel_tool_calls) == (None, None, None)
    assert params.stop == (["</rg-tool-call>"] if mode == "xml" else None)


@pytest.mark.parametrize("mode", TEXT_MODES)
async def test_a_call_in_the_text_is_answered_and_the_model_asked_again(mode: ToolMode) -> None:
    generator = replying(CALLS[mode], "It is 5.")
    chat = await generator.chat(CONVERSATION).using(add, mode=mode).run()

    [call] = chat.all[2].tool_calls or []
    assert call.name == "add" and json.loads(call.arguments) == {"a": 2, "b": 3}
    (first, _), (second, params) = generator.calls
    assert second[0].content == first[0].content
    assert sent(second)[1:] == [
        ("user", "What is 2 + 3?", None, None),
        ("assistant", REWRITTEN[mode].format(id=call.id), None, None),
        ("user", f'<tool-response id="{call.id}" name="add">5</tool-response>', None, None),
    ]
    assert params.tools is None
    assert chat.last.content == "It is 5."


@pytest.mark.parametrize("mode", TEXT_MODES)
async def test_the_chat_keeps_the_dialog_as_api_mode_would(mode: ToolMode) -> None:
    chat = await replying(CALLS[mode], "It is 5.").chat(CONVERSATION).using(add, mode=mode).run()
    [call] = chat.all[2].tool_calls or []
    assert sent(chat.all) == [
        ("system", "Be brief.", None, None),
        ("user", "What is 2 + 3?", None, None),
        ("assistant", "Let me add.", [call], None),
        ("tool", "5", None, call.id),
        ("assistant", "It is 5.", None, None),
    ]
    assert chat.all[2].to_openai()["tool_calls"] == [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": "add", "arguments": call.arguments},
        }
    ]


# Two calls of one reply, in each mode's format (json's and json-with-tag's second one
# with `parameters` and with its arguments as a JSON string, as some models write them).
SEVERAL: dict[ToolMode, str] = {
    "xml": (
        '<rg-tool-call name="add"><a>1</a><b>2</b></rg-tool-call>\n'
        '<RG-TOOL-CALL name="shout">\n  <words>a &amp; b</words>\n</RG-TOOL-CALL>'
    ),
    "json": (
        '{"name": "add", "arguments": {"a": 1, "b": 2}}\n'
        '{"name": "shout", "parameters": {"words": "a & b"}}'
    ),
    "json-in-xml": (
        '<tool-call name="add">{"a": 1, "b": 2}</tool-call>\n'
        '<tool-call name="shout">\n```json\n{"words": "a & b"}\n```\n</tool-call>'
    ),
    "json-with-tag": (
        '<tool-call>{"name": "add", "arguments": {"a": 1, "b": 2}}</tool-call>\n'
        '<tool-call>{"name": "shout", "arguments": "{\\"words\\": \\"a & b\\"}"}</tool-call>'
    ),
    "pythonic": "[add(a=1, b=2), shout(words='a & b')]",
}


@pytest.mark.parametrize("mode", TEXT_MODES)
def test_read_sets_the_calls_in_order_and_removes_their_text(mode: ToolMode) -> None:
    reply = Message("assistant", f"Two calls.\n{SEVERAL[mode]}")
    answered = text.read(reply, [add, shout], mode)
    calls = answered.tool_calls or []
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("add", {"a": 1, "b": 2}),
        ("shout", {"words": "a & b"}),
    ]
    assert answered.content == "Two calls."
    assert reply.content == f"Two calls.\n{SEVERAL[mode]}" and reply.tool_calls is None
    assert len({c.id for c in calls}) == 2
    assert [c.id for c in text.read(reply, [add, shout], mode).tool_calls or []] == [
        c.id for c in calls
    ]


@pytest.mark.parametrize(
    ("mode", "content"),
    [
        ("xml", "The tag would be <rg-tool-call>, but I need no tool."),
        ("json", 'Settings: {"name": "x", "size": 2} and {"arguments": 1}.'),
        ("json-in-xml", "I could write a <tool-call> here. I won't."),
        ("json-with-tag", "It is 5."),
        ("pythonic", "Lists: [1, 2], [f(x) for x in y], [print(3)]."),
    ],
)
def test_a_reply_without_a_call_is_left_as_it_is(mode: ToolMode, content: str) -> None:
    reply = Message("assistant", content)
    answered = text.read(reply, [add], mode)
    assert answered.tool_calls is None
    assert answered.content == content


@pytest.mark.parametrize(
    ("mode", "written", "name", "arguments"),
    [
        ("xml", '<rg-tool-call name="add"><a>2</b></rg-tool-call>', "add", "<a>2</b>"),
        ("xml", "<rg-tool-call><a>2</a></rg-tool-call>", "", "<a>2</a>"),
        ("json-in-xml", '<tool-call name="add">{"a": 2,</tool-call>', "add", '{"a": 2,'),
        ("json-in-xml", '<tool-call name="add">[2, 3]</tool-call>', "add", "[2, 3]"),
        ("json-in-xml", '<tool-call>{"a": 2}</tool-call>', "", '{"a": 2}'),
        (
            "json-with-tag",
            '<tool-call>{"name": "add", "arguments": {"a": 2</tool-call>',
            "add",
            '{"name": "add", "arguments": {"a": 2',
        ),
        (
            "json-with-tag",
            '<tool-call>{"name": "add", "arguments": "{"a": 2, "b": 3}"}</tool-call>',
            "add",
            '{"name": "add", "arguments": "{"a": 2, "b": 3}"}',
        ),
        (
            "json-with-tag",
            '<tool-call>{"name": "add", "arguments": [2, 3]}</tool-call>',
            "add",
            '{"name": "add", "arguments": [2, 3]}',
        ),
        (
            "json-with-tag",
            '<tool-call>{"arguments": {"a": 2}}</tool-call>',
            "",
            '{"arguments": {"a": 2}}',
        ),
        (
            "json",
            '{"name": "add", "arguments": {"a": 2,}}',
            "add",
            '{"name": "add", "arguments": {"a": 2,}}',
        ),
        ("pythonic", "[add(a=2, b=)]", "add", "[add(a=2, b=)]"),
        ("pythonic", "[add(2, 3)]", "add", "[add(2, 3)]"),
        ("pythonic", "[add(a=1 + x, b=3)]", "add", "[add(a=1 + x, b=3)]"),
    ],
)
def test_a_call_that_cant_be_read_is_kept_as_written(
    mode: ToolMode, written: str, name: str, arguments: str
) -> None:
    answered = text.read(Message("assistant", f"Oops.\n{written}"), [add], mode)
    [call] = answered.tool_calls or []
    assert (call.name, call.arguments) == (name, arguments)
    assert answered.content == "Oops."


# A first reply whose call can't be read, and how the next request shows it ({id}).
MALFORMED: dict[ToolMode, tuple[str, str]] = {
    "xml": (
        '<rg-tool-call name="add"><a>2</b></rg-tool-call>',
        '<rg-tool-call id="{id}" name="add">\n<a>2</b>\n</rg-tool-call>',
    ),
    "json-in-xml": (
        '<tool-call name="add">{"a": 2,</tool-call>',
        '<tool-call id="{id}" name="add">{{"a": 2,</tool-call>',
    ),
    "json-with-tag": (
        '<tool-call>{"name": "add", "arguments": {"a": 2</tool-call>',
        '<tool-call id="{id}">{{"name": "add", "arguments": {{"a": 2</tool-call>',
    ),
    "json": (
        '{"name": "add", "arguments": {"a": 2,}}',
        '{{"name": "add", "arguments": {{"a": 2,}}}}',
    ),
    "pythonic": ("[add(a=2, b=)]", "[add(a=2, b=)]"),
}


@pytest.mark.parametrize("mode", list(MALFORMED))
async def test_a_call_that_cant_be_read_is_answered_with_the_error_and_asked_again(
    mode: ToolMode,
) -> None:
    broken, rewritten = MALFORMED[mode]
    generator = replying(broken, CALLS[mode], "It is 5.")
    chat = await generator.chat(CONVERSATION).using(add, mode=mode).run()

    [bad] = chat.all[2].tool_calls or []
    error = chat.all[3]
    assert error.role == "tool" and error.tool_call_id == bad.id
    assert error.metadata[INVALID_CALL].startswith("JSONDecodeError: Expecting ")
    assert '<error type="JSONDecodeError">' in error.content
    [(_, _), (second, _), (third, _)] = generator.calls
    assert sent(second)[2:] == [
        ("assistant", rewritten.format(id=bad.id), None, None),
        (
            "user",
            f'<tool-response id="{bad.id}" name="add">{error.content}</tool-response>',
            None,
            None,
        ),
    ]
    assert len(third) == 6
    assert INVALID_CALL not in chat.all[5].metadata and chat.all[5].content == "5"
    assert chat.last.content == "It is 5."


async def test_a_call_without_a_name_is_answered_as_an_unknown_tool() -> None:
    generator = replying('<tool-call>{"a": 2}</tool-call>', "Sorry.")
    chat = await generator.chat("2 + 3?").using(add, mode="json-in-xml").run()
    reply = chat.all[2]
    assert reply.role == "tool"
    assert reply.metadata[INVALID_CALL] == "Tool '' not found. The tools are: add."
    assert chat.last.content == "Sorry."


async def test_xml_arguments_that_dont_fit_the_parameters_get_the_tools_own_error() -> None:
    generator = replying('<rg-tool-call name="add"><a>two</a><b>3</b></rg-tool-call>', "Hm.")
    chat = await generator.chat("2 + 3?").using(add, mode="xml").run()
    [call] = chat.all[1].tool_calls or []
    assert json.loads(call.arguments) == {"a": "two", "b": "3"}
    assert chat.all[2].metadata[INVALID_CALL] == (
        "ValidationError: a: Input should be a valid integer, unable to parse string as an "
        "integer (got 'two')"
    )


async def test_xml_lists_and_tools_without_parameters() -> None:
    generator = replying(
        '<rg-tool-call name="total"><numbers><item>1</item><item>2</item></numbers>'
        '</rg-tool-call><rg-tool-call name="now"></rg-tool-call>',
        "Done.",
    )
    chat = await generator.chat("Sum 1 and 2.").using(total, now, mode="xml").run()
    calls = chat.all[1].tool_calls or []
    assert [(c.name, c.arguments) for c in calls] == [
        ("total", '{"numbers": [1, 2]}'),
        ("now", "{}"),
    ]
    (first, _), (second, _) = generator.calls
    assert (
        '    <param name="numbers" type="list[int]" required="true"/>\n'
        '    <param name="label" type="str | None" required="false"/>\n'
    ) in first[0].content
    assert (
        '<rg-tool name="now" description="The time.">\n  <parameters></parameters>\n</rg-tool>'
        in first[0].content
    )
    assert second[2].content == (
        f'<rg-tool-call id="{calls[0].id}" name="total">\n<numbers>\n  <item>1</item>\n'
        f'  <item>2</item>\n</numbers>\n</rg-tool-call>\n<rg-tool-call id="{calls[1].id}" '
        'name="now"></rg-tool-call>'
    )
    assert second[3].content == (
        f'<tool-response id="{calls[0].id}" name="total">3</tool-response>\n'
        f'<tool-response id="{calls[1].id}" name="now">noon</tool-response>'
    )


async def test_the_replies_to_one_reply_s_calls_go_back_as_one_user_message() -> None:
    generator = replying(
        '<tool-call name="add">{"a": 1, "b": 2}</tool-call>'
        '<tool-call name="shout">{"words": "hi"}</tool-call>',
        "Done.",
    )
    chat = await generator.chat("Go.").using(add, shout, mode="json-in-xml").run()
    first, second = chat.all[1].tool_calls or []
    [(_, _), (messages, _)] = generator.calls
    assert sent(messages)[3:] == [
        (
            "user",
            f'<tool-response id="{first.id}" name="add">3</tool-response>\n'
            f'<tool-response id="{second.id}" name="shout">HI</tool-response>',
            None,
            None,
        )
    ]


@pytest.mark.parametrize("mode", TEXT_MODES)
async def test_two_identical_runs_send_identical_requests(mode: ToolMode) -> None:
    requests = []
    for _ in range(2):
        generator = replying(CALLS[mode], CALLS[mode], "It is 5.")
        await generator.chat(CONVERSATION).using(add, mode=mode).run()
        requests.append(
            [
                ([m.to_openai() for m in messages], params.model_dump())
                for messages, params in generator.calls
            ]
        )
    assert len(requests[0]) == 3
    assert requests[0] == requests[1]


async def test_auto_mode_writes_calls_as_json_in_xml_where_the_generator_cant_call_tools() -> None:
    generator = replying(CALLS["json-in-xml"], "It is 5.")
    assert await generator.supports_function_calling() is None
    chat = await generator.chat(CONVERSATION).using(add).run()
    [(first, params), _] = generator.calls
    for mark in PROMPT_MARKS["json-in-xml"]:
        assert mark in first[0].content
    assert params.tools is None
    [call] = chat.all[2].tool_calls or []
    assert json.loads(call.arguments) == {"a": 2, "b": 3}
    assert chat.last.content == "It is 5."


@pytest.mark.parametrize("mode", TEXT_MODES)
def test_prepare_changes_neither_the_messages_nor_the_params(mode: ToolMode) -> None:
    call = ToolCall(id="c1", function=FunctionCall(name="add", arguments='{"a": 2, "b": 3}'))
    messages = [
        Message("system", "Be brief."),
        Message("user", "2 + 3?"),
        Message("assistant", "Adding.", tool_calls=[call]),
        Message("tool", "5", tool_call_id="c1"),
    ]
    params = rg.GenerateParams(
        tools=[add.definition], tool_choice="auto", parallel_tool_calls=True, stop=["END"]
    )
    before = ([m.model_dump() for m in messages], params.model_dump())
    prepared, prepared_params = text.prepare(messages, params, [add], mode, add_stop_token=True)
    assert ([m.model_dump() for m in messages], params.model_dump()) == before
    assert [m.role for m in prepared] == ["system", "user", "assistant", "user"]
    assert prepared[3].content == '<tool-response id="c1" name="add">5</tool-response>'
    assert prepared_params.tools is None and prepared_params.tool_choice is None
    assert prepared_params.parallel_tool_calls is None
    assert prepared_params.stop == (["END", "</rg-tool-call>"] if mode == "xml" else ["END"])


def test_xml_mode_adds_its_stop_token_once_and_only_when_asked() -> None:
    messages = [Message("user", "hi")]
    stop = rg.GenerateParams(stop=["</rg-tool-call>", "END"])
    _, again = text.prepare(messages, stop, [add], "xml", add_stop_token=True)
    assert again.stop == ["</rg-tool-call>", "END"]
    _, without = text.prepare(messages, rg.GenerateParams(), [add], "xml", add_stop_token=False)
    assert without.stop is None


def test_a_system_message_is_added_first_when_there_is_none() -> None:
    prepared, _ = text.prepare(
        [Message("user", "hi")], rg.GenerateParams(), [add], "json", add_stop_token=True
    )
    assert [m.role for m in prepared] == ["system", "user"]
    assert prepared[0].content.startswith("# Tools\n\n")


class Point(BaseModel):
    x: int


def plot(point: Point) -> str:
    """Plot a point."""
    return "plotted"


async def test_a_tool_that_cant_be_written_as_xml_fails_in_xml_mode_with_the_reason() -> None:
    with pytest.raises(ToolDefinitionError) as raised:
        await replying("hi").chat("Plot.").using(plot, mode="xml").run()
    assert str(raised.value) == (
        "tool 'plot' can't be written as XML (parameter 'point' of params: pydantic models "
        "must inherit from BaseXmlModel (use Model)): use another tool mode, such as json-in-xml"
    )
    chat = (
        await replying('<tool-call name="plot">{"point": {"x": 1}}</tool-call>', "Done.")
        .chat("Plot.")
        .using(plot, mode="json-in-xml")
        .run()
    )
    assert chat.all[2].content == "plotted"


def test_read_and_prepare_refuse_a_mode_that_isnt_a_text_mode() -> None:
    with pytest.raises(ValueError, match=r"^'api' is not a text tool mode$"):
        text.read(Message("assistant", "hi"), [add], "api")
    with pytest.raises(ValueError, match=r"^'auto' is not a text tool mode$"):
        text.prepare(
            [Message("user", "hi")], rg.GenerateParams(), [add], "auto", add_stop_token=True
        )


def test_json_mode_reads_calls_among_prose_braces_and_other_json() -> None:
    reply = Message(
        "assistant",
        'Use {curly} and {"a": {"b": 1}}, then {"name": "shout", "arguments": {"words": "}"}}',
    )
    answered = text.read(reply, [shout], "json")
    assert [(c.name, c.arguments) for c in answered.tool_calls or []] == [
        ("shout", '{"words": "}"}')
    ]
    assert answered.content == 'Use {curly} and {"a": {"b": 1}}, then'
    # Only objects opening with a call's key are decoded: nesting costs no rescans.
    assert text.read(Message("assistant", '{"a":' * 50_000), [shout], "json").tool_calls is None


def _timed_read(content: str, mode: ToolMode) -> tuple[Message, float]:
    started = time.perf_counter()
    answered = text.read(Message("assistant", content), [add], mode)
    return answered, time.perf_counter() - started


def test_a_call_s_id_is_the_hash_of_the_reply_its_place_and_the_call() -> None:
    # Pinned: cassettes replay text-mode dialogs whose requests carry these ids.
    answered = text.read(Message("assistant", CALLS["json-in-xml"]), [add], "json-in-xml")
    assert [c.id for c in answered.tool_calls or []] == ["rg-7f9176d44990"]


@pytest.mark.parametrize(
    ("mode", "call"),
    [
        ("json", '{"name": "add", "arguments": {"a": 1, "b": 2}}\n'),
        ("json-in-xml", '<tool-call name="add">{"a": 1, "b": 2}</tool-call>\n'),
        ("xml", '<rg-tool-call name="add"><a>1</a><b>2</b></rg-tool-call>\n'),
        ("pythonic", ""),
    ],
)
def test_a_reply_of_thousands_of_calls_is_read_in_linear_time(mode: ToolMode, call: str) -> None:
    content = call * 4000 if call else "[" + ", ".join(["add(a=1, b=2)"] * 4000) + "]"
    answered, took = _timed_read(content, mode)
    calls = answered.tool_calls or []
    assert len(calls) == 4000 and len({c.id for c in calls}) == 4000
    assert took < 2, f"{took:.1f}s"  # hashing the text per call took ~10s


@pytest.mark.parametrize(
    ("mode", "content", "expected"),
    [
        # JSON objects nested nearly to the decoder's limit, each broken at its end.
        ("json", ('{"arguments":' * 900 + "x") * 40, 0),
        # Call lists that never close, each of which was scanned and parsed to the end.
        ("pythonic", "[a(" * 60_000, 0),
        ("pythonic", "[a('" * 40_000, 0),
        ("pythonic", "[a(" * 30_000 + "[add(a=1, b=2)]", 1),
    ],
)
def test_replies_built_to_be_rescanned_are_read_in_linear_time(
    mode: ToolMode, content: str, expected: int
) -> None:
    answered, took = _timed_read(content, mode)
    assert len(answered.tool_calls or []) == expected
    assert took < 2, f"{took:.1f}s"


def test_pythonic_lists_are_matched_as_before_around_strings_and_unclosed_lists() -> None:
    content = "[x('a]', [add(a=1, b=2)]) and [add(a=3, b=4)] [y('"
    answered = text.read(Message("assistant", content), [add], "pythonic")
    assert [c.arguments for c in answered.tool_calls or []] == ['{"a": 3, "b": 4}']
    assert answered.content == "[x('a]', [add(a=1, b=2)]) and  [y('"
