"""Tool calling's core: tools from functions, `using()` and its loop in `api` mode, on an
in-process generator with function calling (`calling` in conftest)."""

from __future__ import annotations

import asyncio
import json
import typing as t

import pytest
from pydantic import BaseModel

import pytest_rigging as rg
from pytest_rigging.error import MaxDepthError, ToolDefinitionError, error_kind
from pytest_rigging.generator import GenerateParams
from pytest_rigging.message import Message
from pytest_rigging.model import Answer
from pytest_rigging.tools.base import INVALID_CALL, ToolCallCounts, count_calls, inline_refs

from .conftest import CallingGenerator, calling

CITIES = {"Paris": "France", "Lima": "Peru"}


@rg.tool
def lookup(city: t.Annotated[str, "A city's name, as written in English"]) -> str:
    """Find the country a city is in.

    Only capitals are known."""
    return CITIES[city]


@rg.tool(name="add", catch=True)
async def add_numbers(a: float, b: float = 0.0) -> float:
    """Add two numbers."""
    await asyncio.sleep(0)
    return a + b


@rg.tool(catch=True)
def explode(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"exploded: {reason}")


def sent_tools(generator: CallingGenerator, turn: int) -> list[str]:
    params = generator.calls[turn][1]
    return [tool.function.name for tool in params.tools or []]


def test_a_tools_schema_comes_from_its_hints_annotations_and_docstring() -> None:
    definition = lookup.definition.model_dump(exclude_none=True)
    assert definition == {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Find the country a city is in.\n\nOnly capitals are known.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {
                        "type": "string",
                        "description": "A city's name, as written in English",
                    }
                },
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
    assert add_numbers.name == "add"
    assert add_numbers.parameters_schema["properties"]["b"] == {"type": "number", "default": 0.0}
    assert add_numbers.parameters_schema["required"] == ["a"]


def test_a_tool_without_parameters_sends_no_schema() -> None:
    @rg.tool
    def now() -> str:
        return "noon"

    assert now.definition.function.parameters is None
    assert now() == "noon"  # a tool is still its function


class Point(BaseModel):
    x: int
    y: int


def test_nested_models_are_inlined_in_the_schema() -> None:
    @rg.tool
    def move(to: Point) -> str:
        return f"{to.x},{to.y}"

    schema = move.parameters_schema
    assert "$defs" not in schema
    assert schema["properties"]["to"]["properties"] == {
        "x": {"title": "X", "type": "integer"},
        "y": {"title": "Y", "type": "integer"},
    }
    assert inline_refs({"$defs": {"A": {"type": "string"}}, "items": {"$ref": "#/$defs/A"}}) == {
        "items": {"type": "string"}
    }


def test_a_tool_method_is_bound_to_each_instance() -> None:
    class Counter:
        def __init__(self, start: int) -> None:
            self.start = start

        @rg.tool_method(description="Count from the start.")
        def count(self, by: int) -> int:
            return self.start + by

    one, two = Counter(1).count, Counter(10).count
    assert isinstance(one, rg.Tool)
    assert one.name == "count" and one.description == "Count from the start."
    assert "self" not in one.parameters_schema["properties"]
    assert (one(by=1), two(by=1)) == (2, 11)


def test_a_function_that_cant_be_a_tool_says_why() -> None:
    def spread(*names: str) -> str:
        return ""

    with pytest.raises(ToolDefinitionError, match=r"tool 'spread': \*names can't be a tool"):
        rg.tool(spread)

    class Local(BaseModel):
        x: int

    def uses_local(value: Local) -> int:
        return value.x

    with pytest.raises(ToolDefinitionError) as raised:
        rg.tool(uses_local)
    assert str(raised.value) == (
        "can't read the signature of 'uses_local': name 'Local' is not defined (the types "
        "a tool's hints name must be importable from its module)"
    )


async def test_the_loop_answers_calls_and_asks_again() -> None:
    generator = calling([("lookup", '{"city": "Paris"}')], "Paris is in France.")
    chat = await generator.chat("Where is Paris?").using(lookup).run()

    assert chat.last.content == "Paris is in France."
    assert [m.role for m in chat.all] == ["user", "assistant", "tool", "assistant"]
    call, reply = chat.all[1].tool_calls, chat.all[2]
    assert call is not None and call[0].name == "lookup"
    assert (reply.content, reply.tool_call_id) == ("France", call[0].id)
    assert sent_tools(generator, 0) == sent_tools(generator, 1) == ["lookup"]
    # the second request carries the call and its reply as OpenAI's API takes them
    second = [m.to_openai() for m in generator.calls[1][0]]
    assert second[1]["tool_calls"][0]["function"] == {
        "name": "lookup",
        "arguments": '{"city": "Paris"}',
    }
    assert second[2] == {"role": "tool", "content": "France", "tool_call_id": "call-0-0"}
    # what the rounds cost is the chat's
    assert chat.usage is not None and chat.usage.total_tokens == 4
    assert chat.params is not None and chat.params.tools is None  # kept out of the chat


async def test_calls_of_one_reply_run_concurrently_and_reply_in_order() -> None:
    started: list[str] = []

    @rg.tool
    async def slow(name: str) -> str:
        started.append(name)
        await asyncio.sleep(0.05 if name == "first" else 0)
        return name.upper()

    generator = calling([("slow", '{"name": "first"}'), ("slow", '{"name": "second"}')], "done")
    chat = await generator.chat("go").using(slow).run()
    assert started == ["first", "second"]
    assert [(m.content, m.tool_call_id) for m in chat.all[2:4]] == [
        ("FIRST", "call-0-0"),
        ("SECOND", "call-0-1"),
    ]


async def test_bad_calls_are_answered_with_the_error_and_marked() -> None:
    generator = calling(
        [
            ("add", '{"a": 1, "b": "x"}'),
            ("add", "{not json"),
            ("nope", "{}"),
            ("explode", '{"reason": "on purpose"}'),
            ("add", '{"a": 1, "b": 2}'),
        ],
        "ok",
    )
    chat = await generator.chat("go").using(add_numbers, explode).run()
    replies = chat.all[2:7]
    assert [r.role for r in replies] == ["tool"] * 5
    assert replies[0].content == (
        '<error type="ValidationError">b: Input should be a valid number, unable to parse '
        "string as a number (got 'x')</error>\n"
    )
    assert replies[0].metadata[INVALID_CALL].startswith("ValidationError: b: Input should be")
    assert replies[1].metadata[INVALID_CALL].startswith("JSONDecodeError: Expecting property")
    assert replies[2].content == (
        "<system-error type=\"Exception\">Tool 'nope' not found. The tools are: add, "
        "explode.</system-error>\n"
    )
    assert replies[2].tool_call_id == "call-0-2"  # answered, unlike rigging
    # a tool that raised ran as asked: shown to the model, not a parse failure
    assert replies[3].content == '<error type="RuntimeError">exploded: on purpose</error>\n'
    assert INVALID_CALL not in replies[3].metadata
    assert replies[4].content == "3.0"
    assert count_calls(chat.all) == ToolCallCounts(total=5, invalid=3)


async def test_an_uncaught_tool_error_fails_the_chat() -> None:
    @rg.tool
    def strict(value: int) -> int:
        raise KeyError(value)

    generator = calling([("strict", '{"value": 1}')], "never")
    with pytest.raises(KeyError):
        await generator.chat("go").using(strict).run()
    generator = calling([("strict", '{"value": 1}')], "never")
    chat = await generator.chat("go").using(strict).catch(KeyError).run(allow_failed=True)
    assert chat.failed and isinstance(chat.error, KeyError)
    assert chat.last.tool_calls is not None  # the dialog up to the call is kept


async def test_catch_given_to_using_overrides_each_tools_own() -> None:
    generator = calling([("lookup", '{"city": "Atlantis"}')], "unknown")
    chat = await generator.chat("go").using(lookup, catch=True).run()
    assert chat.all[2].content == "<error type=\"KeyError\">'Atlantis'</error>\n"
    generator = calling([("lookup", '{"city": "Atlantis"}')], "unknown")
    with pytest.raises(KeyError):
        await generator.chat("go").using(lookup, catch=False).run()


async def test_max_depth_bounds_the_rounds_and_keeps_the_dialog() -> None:
    generator = calling([("lookup", '{"city": "Paris"}')])  # calls forever
    chat = await generator.chat("go").using(lookup, max_depth=2).run(allow_failed=True)
    assert len(generator.calls) == 3  # two rounds answered, the third call refused
    assert chat.failed and isinstance(chat.error, rg.ToolDepthError)
    assert isinstance(chat.error, MaxDepthError)
    assert str(chat.error) == (
        "Exceeded max depth (2) of tool calls: the model still called tools (lookup) after "
        "2 rounds of tool calls (using(max_depth=2))"
    )
    assert error_kind(chat.error) == "parse"  # the model's failure, not the infrastructure's
    assert [m.role for m in chat.all] == ["user", "assistant", "tool"] * 1 + [
        "assistant",
        "tool",
        "assistant",
    ]
    assert chat.last.tool_calls is not None  # the unanswered call is kept


async def test_a_tool_raising_stop_ends_the_loop_with_its_reply() -> None:
    @rg.tool
    def finish(summary: str) -> str:
        raise rg.Stop(f"finished: {summary}")

    generator = calling([("finish", '{"summary": "all done"}')], "never asked")
    chat = await generator.chat("go").using(finish).run()
    assert len(generator.calls) == 1
    assert chat.last.role == "tool"
    assert chat.last.content == "<rg-stop>finished: all done</rg-stop>"


async def test_tool_choice_is_sent_on_the_first_call_only() -> None:
    generator = calling([("lookup", '{"city": "Lima"}')], "Peru")
    await generator.chat("go").using(lookup, choice="required").run()
    assert generator.calls[0][1].tool_choice == "required"
    assert generator.calls[1][1].tool_choice is None


async def test_truncate_shortens_a_long_reply() -> None:
    @rg.tool(truncate=20)
    def long() -> str:
        return "a" * 50 + "z" * 50

    chat = await calling([("long", "{}")], "ok").chat("go").using(long).run()
    reply = chat.all[2].content
    assert len(reply) == 20 and reply.startswith("aaaa") and reply.endswith("zzz")


async def test_results_are_sent_as_text_models_as_xml_and_the_rest_as_json() -> None:
    @rg.tool
    def shapes(kind: str) -> t.Any:
        return {"model": Answer(content="42"), "dict": {"a": [1, 2]}, "number": 7}[kind]

    generator = calling(
        [
            ("shapes", '{"kind": "model"}'),
            ("shapes", '{"kind": "dict"}'),
            ("shapes", '{"kind": "number"}'),
        ],
        "ok",
    )
    chat = await generator.chat("go").using(shapes).run()
    assert [m.content for m in chat.all[2:5]] == ["<answer>42</answer>", '{"a":[1,2]}', "7"]


async def test_tools_and_functions_and_objects_may_be_given_to_using() -> None:
    class Toolbox:
        @rg.tool_method
        def first(self) -> str:
            return "1"

        @rg.tool_method
        def second(self) -> str:
            return "2"

    def plain(text: str) -> str:
        """Echo."""
        return text

    pipeline = calling("ok").chat("go").using(lookup, [Toolbox(), plain])
    assert [tool.name for tool in pipeline.tools] == ["lookup", "first", "second", "plain"]
    # a tool given again by name replaces the earlier one, and clones keep the tools
    pipeline.using(lookup.with_(description="Another description."))
    assert [tool.name for tool in pipeline.tools][-1] == "lookup"
    assert pipeline.clone().tools == pipeline.tools


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda p: p.using(), "using() needs at least one tool"),
        (
            lambda p: p.using(lookup, mode="yaml"),
            "unknown tool mode 'yaml': choose one of auto, api, xml, json, json-in-xml, "
            "json-with-tag, pythonic",
        ),
        (
            lambda p: p.using(lookup, max_depth=0),
            "max_depth must be at least 1 (rounds of tools), got 0",
        ),
        (
            lambda p: p.using(42),
            "using() takes tools, functions, objects with @tool_method methods, or lists of "
            "these; got int",
        ),
    ],
)
def test_using_refuses_what_it_cant_take(call: t.Callable[[t.Any], t.Any], message: str) -> None:
    pipeline = calling("ok").chat("go")
    with pytest.raises((ValueError, TypeError)) as raised:
        call(pipeline)
    assert str(raised.value) == message


async def test_auto_uses_api_where_the_generator_calls_functions() -> None:
    generator = calling([("lookup", '{"city": "Paris"}')], "France")
    await generator.chat("go").using(lookup).run()
    assert sent_tools(generator, 0) == ["lookup"]


async def test_params_pick_the_mode_over_the_pipelines() -> None:
    generator = calling("ok")
    pipeline = generator.chat("go").using(lookup, mode="api")
    params = [GenerateParams(tool_mode="api"), GenerateParams(temperature=0.5)]
    await pipeline.run_batch(["a", "b"], params)
    assert all(sent_tools(generator, i) == ["lookup"] for i in range(2))
    # never sent to a provider
    assert "tool_mode" not in GenerateParams(tool_mode="xml", temperature=0).to_dict()


def test_tool_calls_round_trip_through_json_and_print_as_rigging_prints_them() -> None:
    message = Message(
        "assistant",
        "Looking it up.",
        tool_calls=[{"id": "c1", "function": {"name": "lookup", "arguments": '{"city": "Paris"}'}}],
    )
    again = Message.model_validate_json(message.model_dump_json())
    assert again.tool_calls == message.tool_calls
    assert str(message) == (
        '[assistant]: Looking it up.\n |- ToolCall(lookup({"city": "Paris"}), id=\'c1\')'
    )
    reply = Message("tool", "France", tool_call_id="c1")
    assert str(reply) == "[tool:c1]: France"
    assert reply.clone().tool_call_id == "c1"
    assert json.loads(json.dumps(message.to_openai()))["tool_calls"][0]["type"] == "function"


async def test_a_scripted_model_without_function_calling_gets_its_tools_in_text(
    tmp_path: t.Any,
) -> None:
    rules = tmp_path / "plain.toml"
    rules.write_text(
        "function_calling = false\n"
        "[[rules]]\non = 'conversation'\nmatch = '(?s)tool-response.*France'\nreply = 'France.'\n"
        "[[rules]]\non = 'conversation'\nmatch = '(?s)<available-tools>.*Paris'\n"
        """reply = '<tool-call name="lookup">{"city": "Paris"}</tool-call>'\n"""
    )
    generator = rg.get_generator(f"scripted!{rules}")
    assert await generator.supports_function_calling() is False
    chat = await generator.chat("Where is Paris?").using(lookup).run()
    assert chat.last.content == "France."
    call = chat.all[1].tool_calls
    assert call is not None and (call[0].name, call[0].arguments) == ("lookup", '{"city": "Paris"}')


async def test_a_prompt_calls_its_tools_and_may_be_a_tool_itself() -> None:
    generator = calling([("lookup", '{"city": "Lima"}')], "Peru")

    @rg.prompt(generator=generator, tools=[lookup], max_tool_rounds=2)
    async def country_of(city: str) -> rg.Chat:
        """Which country is {{ city }} in?"""

    chat = await country_of("Lima")
    assert [m.role for m in chat.all] == ["user", "assistant", "tool", "assistant"]
    assert chat.all[2].content == "Peru" and chat.last.content == "Peru"
    assert country_of.clone().tools == country_of.tools
    with pytest.raises(ValueError) as raised:
        country_of.set_(max_tool_rounds=0)
    assert str(raised.value) == "max_tool_rounds must be at least 1, got 0"
    # a prompt is a tool too: its parameters are the function's
    as_tool = rg.Tool.from_callable(country_of)
    assert as_tool.name == "country_of"
    assert list(as_tool.parameters_schema["properties"]) == ["city"]


async def test_arguments_nested_past_the_decoder_s_depth_are_a_bad_call() -> None:
    nested = '{"a": ' * 5000 + "1" + "}" * 5000
    generator = calling([("add", nested)], "ok")
    chat = await generator.chat("go").using(add_numbers).run()
    assert not chat.failed
    reply = chat.all[2]
    assert reply.content == (
        '<error type="JSONDecodeError">arguments nested too deeply: line 1 column 1 (char 0)'
        "</error>\n"
    )
    assert reply.metadata[INVALID_CALL] == (
        "JSONDecodeError: arguments nested too deeply: line 1 column 1 (char 0)"
    )
    assert chat.all[1].tool_calls is not None
    assert chat.all[1].tool_calls[0].parsed_arguments() is None


@pytest.mark.parametrize("how", ["continue_", "fork", "restart", "clone"])
async def test_pipelines_made_from_a_chat_keep_its_tools_as_rigging_s_do(how: str) -> None:
    generator = calling([("lookup", '{"city": "Paris"}')], "France.", [("lookup", "{}")], "Done.")
    pipeline = generator.chat("Where is Paris?").using(lookup, mode="api", max_depth=2)
    chat = await pipeline.run()
    made = {
        "continue_": lambda: chat.continue_("And Lima?"),
        "fork": lambda: chat.fork("And Lima?"),
        "restart": lambda: chat.restart(),
        "clone": lambda: chat.clone().continue_("And Lima?"),
    }[how]()
    assert [tool.name for tool in made.tools] == ["lookup"]
    assert (made.tool_mode, made.tool_max_depth) == ("api", 2)
    again = await made.run()
    # The model's next call is answered (with the tool's error), not left hanging.
    assert again.last.content == "Done."
    assert [m.role for m in again.all[-3:]] == ["assistant", "tool", "assistant"]


async def test_a_chat_loaded_from_json_has_no_tools() -> None:
    chat = await calling("Hi.").chat("hi").using(lookup).run()
    assert chat.tool_use is not None and chat.tool_use.tools == (lookup,)
    assert rg.Chat.model_validate(chat.model_dump(mode="json")).tool_use is None
    assert (await calling("Hi.").chat("hi").run()).tool_use is None


async def test_a_long_bad_value_is_quoted_back_cut() -> None:
    long = "x" * 1000
    generator = calling([("add", json.dumps({"a": long}))], "ok")
    chat = await generator.chat("go").using(add_numbers).run()
    shown = chat.all[2].content
    quoted = shown.split("(got ", 1)[1].split(")</error>", 1)[0]
    assert len(quoted) == 200 and quoted.startswith("'xxx") and "..." in quoted


async def test_tool_choice_is_not_sent_again_on_a_parse_recovery() -> None:
    generator = calling("no tags here", "<answer>France</answer>")
    pipeline = generator.chat("go").using(lookup, choice="required").until_parsed_as(Answer)
    chat = await pipeline.run()
    assert chat.last.content == "<answer>France</answer>"
    assert [params.tool_choice for _, params in generator.calls] == ["required", None]
