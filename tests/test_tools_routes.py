"""Tool calls must hold on every route: the same agent (a lookup, a calculator, a tool that
raises) on `openai!`, `anthropic!`, litellm's `openai/` route and the scripted model makes
the same calls, sends the same results back (each in its API's own shape on the wire) and
ends with the same answer; API faults mid-dialog are infrastructure errors, retried."""

from __future__ import annotations

import importlib
import json
import sys
import typing as t
from pathlib import Path

import pytest

import pytest_rigging as rg
from pytest_rigging.generator.anthropic_ import AnthropicGenerator
from pytest_rigging.generator.litellm_ import LiteLLMGenerator, _litellm
from pytest_rigging.generator.offline import ScriptedGenerator
from pytest_rigging.message import Message
from pytest_rigging.tools.base import INVALID_CALL
from tests.llm_server import Call, LLMServer, RecordedRequest, Reply, ToolResult

pytestmark = pytest.mark.usefixtures("release_litellm")

FAST = "max_retries=2,backoff=0.01"
QUESTION = "Which country is Paris the capital of, and what is 6 times 7?"
ANSWER = "Paris is the capital of France, and 6 times 7 is 42."

CAPITALS = {"Paris": "France", "Tokyo": "Japan"}


@rg.tool
def lookup(city: t.Annotated[str, "A capital city"]) -> str:
    """The country a capital city belongs to."""
    return CAPITALS[city]


@rg.tool
def calculate(a: float, b: float, op: t.Literal["+", "-", "*", "/"]) -> float:
    """Apply an arithmetic operator to two numbers."""
    match op:
        case "+":
            return a + b
        case "-":
            return a - b
        case "*":
            return a * b
        case _:
            return a / b


@rg.tool(catch=True)
async def explode(reason: str) -> str:
    """A tool that always fails."""
    raise RuntimeError(f"kaboom: {reason}")


AGENT = [lookup, calculate, explode]

FIRST = Reply(
    content="Let me check.",
    tool_calls=[
        Call("lookup", {"city": "Paris"}, id="call_0"),
        Call("explode", {"reason": "testing"}, id="call_1"),
    ],
)
SECOND = Reply(tool_calls=[Call("calculate", {"a": 6, "b": 7, "op": "*"}, id="call_2")])
FINAL = Reply(content=ANSWER)

RULES = f"""
[[rules]]
on = "tool_result"
match = "^42"
reply = "{ANSWER}"

[[rules]]
on = "tool_result"
match = "France"
tool_calls = [{{ name = "calculate", arguments = {{ a = 6, b = 7, op = "*" }} }}]

[[rules]]
match = "capital"
reply = "Let me check."
tool_calls = [
  {{ name = "lookup", arguments = {{ city = "Paris" }} }},
  {{ name = "explode", arguments = {{ reason = "testing" }} }},
]
"""


def agent_server(request: RecordedRequest) -> Reply:
    """The model's side of the dialog, by how many tool results it has been sent."""
    return {0: FIRST, 2: SECOND, 3: FINAL}[len(request.tool_results)]


def identifier(route: str, server: LLMServer, tmp_path: Path) -> str:
    if route == "openai!":
        return f"openai!gpt-4o-mini,{FAST}"
    if route == "anthropic!":
        return f"anthropic!claude-sonnet-4-5,{FAST}"
    if route == "litellm":
        return f"openai/gpt-4o-mini,api_base={server.openai_base},{FAST}"
    path = tmp_path / "agent.toml"
    path.write_text(RULES)
    return f"scripted!{path}"


ROUTES = ["openai!", "anthropic!", "litellm", "scripted"]


def calls_of(chat: rg.Chat) -> list[list[tuple[str, str, dict[str, t.Any] | None]]]:
    return [
        [(c.id, c.name, c.parsed_arguments()) for c in m.tool_calls]
        for m in chat.all
        if m.tool_calls
    ]


def results_of(chat: rg.Chat) -> list[tuple[str | None, str]]:
    return [(m.tool_call_id, m.content) for m in chat.all if m.role == "tool"]


async def run_agent(route: str, server: LLMServer, tmp_path: Path) -> rg.Chat:
    server.responder = agent_server
    generator = rg.get_generator(identifier(route, server, tmp_path))
    return await generator.chat(QUESTION).using(*AGENT, choice="required").run()


OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "The country a capital city belongs to.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "A capital city"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "calculate",
            "description": "Apply an arithmetic operator to two numbers.",
            "parameters": {
                "type": "object",
                "properties": {
                    "a": {"type": "number"},
                    "b": {"type": "number"},
                    "op": {"type": "string", "enum": ["+", "-", "*", "/"]},
                },
                "required": ["a", "b", "op"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "explode",
            "description": "A tool that always fails.",
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string"}},
                "required": ["reason"],
                "additionalProperties": False,
            },
        },
    },
]
ANTHROPIC_TOOLS = [
    {
        "name": tool["function"]["name"],
        "description": tool["function"]["description"],
        "input_schema": tool["function"]["parameters"],
    }
    for tool in OPENAI_TOOLS
]


async def test_the_same_agent_holds_on_every_route(llm_server: LLMServer, tmp_path: Path) -> None:
    chats = {route: await run_agent(route, llm_server, tmp_path) for route in ROUTES}
    reference = chats["scripted"]
    assert calls_of(reference) == [
        [("call_0", "lookup", {"city": "Paris"}), ("call_1", "explode", {"reason": "testing"})],
        [("call_2", "calculate", {"a": 6, "b": 7, "op": "*"})],
    ]
    results = results_of(reference)
    assert [(call_id, content[:40]) for call_id, content in results] == [
        ("call_0", "France"),
        ("call_1", results[1][1][:40]),
        ("call_2", "42.0"),
    ]
    assert "RuntimeError" in results[1][1] and "kaboom: testing" in results[1][1]
    assert reference.last.content == ANSWER
    for route, chat in chats.items():
        assert not chat.failed, (route, chat.error)
        assert calls_of(chat) == calls_of(reference), route
        assert results_of(chat) == results, route
        assert (chat.last.role, chat.last.content, chat.last.tool_calls) == (
            "assistant",
            ANSWER,
            None,
        ), route
        assert chat.stop_reason == "stop", route
        assert [m.content for m in chat.all if m.tool_calls] == ["Let me check.", ""], route


async def test_the_wire_carries_tools_and_results_in_each_apis_shape(
    llm_server: LLMServer, tmp_path: Path
) -> None:
    """What each provider sent, as the server received it: the tools, the choice on the
    first call only, the calls echoed back and the results, in OpenAI's shape (the native
    route and litellm's alike) or Anthropic's."""
    bodies: dict[str, list[dict[str, t.Any]]] = {}
    sent_results: dict[str, list[list[ToolResult]]] = {}
    for route in ("openai!", "anthropic!", "litellm"):
        llm_server.reset()
        await run_agent(route, llm_server, tmp_path)
        assert len(llm_server.requests) == 3, route
        bodies[route] = [r.body for r in llm_server.requests]
        sent_results[route] = [r.tool_results for r in llm_server.requests]
        assert [r.tool_names for r in llm_server.requests] == [
            ["lookup", "calculate", "explode"]
        ] * 3
    assert sent_results["openai!"] == sent_results["anthropic!"] == sent_results["litellm"]
    assert [len(r) for r in sent_results["openai!"]] == [0, 2, 3]

    openai = bodies["openai!"]
    assert openai == bodies["litellm"]
    assert [b["tools"] for b in openai] == [OPENAI_TOOLS] * 3
    assert openai[0]["tool_choice"] == "required"
    assert ["tool_choice" in b for b in openai] == [True, False, False]
    assert openai[1]["messages"][1:] == [
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "explode", "arguments": '{"reason": "testing"}'},
                },
            ],
        },
        {"role": "tool", "content": "France", "tool_call_id": "call_0"},
        {"role": "tool", "content": openai[1]["messages"][3]["content"], "tool_call_id": "call_1"},
    ]
    assert openai[2]["messages"][4]["content"] == ""  # the calling message without text
    assert openai[2]["messages"][5:] == [
        {"role": "tool", "content": "42.0", "tool_call_id": "call_2"}
    ]

    anthropic = bodies["anthropic!"]
    assert [b["tools"] for b in anthropic] == [ANTHROPIC_TOOLS] * 3
    assert anthropic[0]["tool_choice"] == {"type": "any"}
    assert ["tool_choice" in b for b in anthropic] == [True, False, False]
    error = sent_results["anthropic!"][1][1].content
    assert anthropic[2]["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_0", "name": "lookup", "input": {"city": "Paris"}},
                {
                    "type": "tool_use",
                    "id": "call_1",
                    "name": "explode",
                    "input": {"reason": "testing"},
                },
            ],
        },
        {  # both replies in one user message, as the API requires
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_0",
                    "content": [{"type": "text", "text": "France"}],
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "call_1",
                    "content": [{"type": "text", "text": error}],
                },
            ],
        },
        {  # no empty text block beside the call: the API refuses one
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "call_2",
                    "name": "calculate",
                    "input": {"a": 6, "b": 7, "op": "*"},
                }
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_2",
                    "content": [{"type": "text", "text": "42.0"}],
                }
            ],
        },
    ]


@pytest.mark.parametrize("status", [500, 429])
@pytest.mark.parametrize("route", ["openai!", "anthropic!", "litellm"])
async def test_api_errors_mid_dialog_are_retried_infrastructure_errors(
    llm_server: LLMServer, tmp_path: Path, route: str, status: int
) -> None:
    failures = {"left": 2}

    def flaky(request: RecordedRequest) -> Reply:
        if request.tool_results and failures["left"]:
            failures["left"] -= 1
            return Reply(status=status)
        return agent_server(request)

    llm_server.responder = flaky
    generator = rg.get_generator(identifier(route, llm_server, tmp_path))
    recovered = await generator.chat(QUESTION).using(*AGENT).run()
    assert recovered.last.content == ANSWER
    assert [r.status for r in llm_server.requests] == [200, status, status, 200, 200]

    llm_server.reset()
    failures["left"] = 10
    llm_server.responder = flaky
    failed = await generator.chat(QUESTION).using(*AGENT).run(on_failed="include")
    assert failed.failed and failed.error_kind == "infrastructure"
    assert isinstance(failed.error, rg.GenerationError)
    reason = "server" if status == 500 else "rate_limit"
    assert (failed.error.reason, failed.error.attempts) == (reason, 3)
    assert [r.status for r in llm_server.requests] == [200, status, status, status]
    assert failed.all[-1].tool_calls  # the dialog up to the call that failed is kept


@pytest.mark.parametrize("route", ROUTES)
async def test_a_tool_reply_longer_than_truncate_is_shortened(
    llm_server: LLMServer, tmp_path: Path, route: str
) -> None:
    @rg.tool(name="lookup", truncate=40)
    def long_lookup(city: str) -> str:
        """The country, at length."""
        return "France " + "x" * 200 + " end"

    llm_server.responder = agent_server
    generator = rg.get_generator(identifier(route, llm_server, tmp_path))
    chat = await generator.chat(QUESTION).using(long_lookup, calculate, explode).run()
    assert chat.last.content == ANSWER
    reply = chat.all[2]
    assert (reply.role, reply.tool_call_id) == ("tool", "call_0")
    assert len(reply.content) == 40
    assert reply.content.startswith("France x") and reply.content.endswith("x end")
    assert "..." in reply.content
    if route != "scripted":
        sent = llm_server.requests[1].tool_results[0]
        assert (sent.call_id, sent.content) == ("call_0", reply.content)


# The providers' reading and writing, piece by piece


def anthropic_body(params: rg.GenerateParams, *messages: Message) -> dict[str, t.Any]:
    return AnthropicGenerator(model="claude-x").body(
        list(messages) or [Message("user", "hi")], params
    )


@pytest.mark.parametrize(
    ("choice", "sent"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "lookup"}}, {"type": "tool", "name": "lookup"}),
        ({"type": "tool", "name": "lookup"}, {"type": "tool", "name": "lookup"}),
    ],
)
def test_anthropic_tool_choice_in_its_own_words(
    choice: str | dict[str, t.Any], sent: dict[str, t.Any]
) -> None:
    params = rg.GenerateParams(tools=[lookup.definition], tool_choice=choice)
    assert anthropic_body(params)["tool_choice"] == sent


@pytest.mark.parametrize("choice", ["lookup", {"type": "function"}, {"mode": "any"}])
def test_anthropic_refuses_a_tool_choice_it_cannot_say(choice: str | dict[str, t.Any]) -> None:
    params = rg.GenerateParams(tools=[lookup.definition], tool_choice=choice)
    with pytest.raises(ValueError) as caught:
        anthropic_body(params)
    assert str(caught.value) == (
        "anthropic! takes tool_choice 'auto', 'required', 'none' or "
        f'{{"type": "function", "function": {{"name": ...}}}}, not {choice!r}'
    )


def test_no_parallel_calls_in_each_apis_words() -> None:
    params = rg.GenerateParams(tools=[lookup.definition], parallel_tool_calls=False)
    body = anthropic_body(params)
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert "parallel_tool_calls" not in body
    forced = params.merge_with(rg.GenerateParams(tool_choice="required"))
    assert anthropic_body(forced)["tool_choice"] == {
        "type": "any",
        "disable_parallel_tool_use": True,
    }
    allowed = params.merge_with(rg.GenerateParams(parallel_tool_calls=True))
    assert "tool_choice" not in anthropic_body(allowed)


def test_anthropic_tools_without_parameters_or_description() -> None:
    @rg.tool
    def now() -> str:
        return "noon"

    assert anthropic_body(rg.GenerateParams(tools=[now.definition]))["tools"] == [
        {"name": "now", "input_schema": {"type": "object", "properties": {}}}
    ]


def test_anthropic_sends_a_malformed_call_with_empty_input_and_an_empty_reply_bare() -> None:
    call = rg.ToolCall(id="c1", function=rg.FunctionCall(name="lookup", arguments="{oops"))
    asked = Message("assistant", "", tool_calls=[call])
    answered = Message("tool", "", tool_call_id="c1")
    after = Message("user", "and then?")
    body = anthropic_body(rg.GenerateParams(), Message("user", "hi"), asked, answered, after)
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "c1", "name": "lookup", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "c1"},
                {"type": "text", "text": "and then?"},
            ],
        },
    ]


async def test_openai_reads_calls_as_compatible_servers_send_them(llm_server: LLMServer) -> None:
    """Arguments as an object (some servers), no id (some others), text beside calls."""
    body = {
        "choices": [
            {
                "finish_reason": "tool_calls",
                "message": {
                    "role": "assistant",
                    "content": "Looking.",
                    "tool_calls": [
                        {"function": {"name": "lookup", "arguments": {"city": "Paris"}}}
                    ],
                },
            }
        ]
    }
    llm_server.add_rule(".", Reply(body=json.dumps(body).encode()))
    generated = await rg.get_generator("openai!m").generate_message(
        [Message("user", "hi")], rg.GenerateParams()
    )
    assert generated.message.content == "Looking."
    assert generated.message.tool_calls == [
        rg.ToolCall(
            id="call_0", function=rg.FunctionCall(name="lookup", arguments='{"city": "Paris"}')
        )
    ]
    assert generated.stop_reason == "tool_calls"


@pytest.mark.parametrize(
    ("api", "message", "detail"),
    [
        (
            "openai",
            {"role": "assistant", "content": None, "tool_calls": {"id": "x"}},
            "the reply's tool_calls is not a list: {'id': 'x'}",
        ),
        (
            "openai",
            {"role": "assistant", "content": None, "tool_calls": [{"id": "x", "function": {}}]},
            "the reply's tool call 0 names no function: {'id': 'x', 'function': {}}",
        ),
        (
            "anthropic",
            [{"type": "tool_use", "id": "x", "input": {}}],
            "the reply's tool_use block lacks a name or an id: "
            "{'type': 'tool_use', 'id': 'x', 'input': {}}",
        ),
    ],
)
async def test_malformed_tool_calls_are_unusable_replies(
    llm_server: LLMServer, api: str, message: t.Any, detail: str
) -> None:
    if api == "openai":
        body: dict[str, t.Any] = {"choices": [{"message": message, "finish_reason": "tool_calls"}]}
        identifier = f"openai!m,{FAST}"
    else:
        body = {"content": message, "stop_reason": "tool_use"}
        identifier = f"anthropic!claude-x,{FAST}"
    llm_server.add_rule(".", Reply(body=json.dumps(body).encode()))
    chat = await rg.get_generator(identifier).chat("hi").using(lookup).run(on_failed="include")
    assert isinstance(chat.error, rg.GenerationError)
    assert chat.error.reason == "bad_response"
    assert str(chat.error).endswith(f"after 3 attempts: {detail}")


async def test_native_providers_support_function_calling() -> None:
    assert await rg.get_generator("openai!anything").supports_function_calling() is True
    assert await rg.get_generator("anthropic!anything").supports_function_calling() is True


# litellm


@pytest.mark.parametrize(
    ("model", "supported"),
    [
        ("gpt-4o-mini", True),
        ("openai/gpt-4o-mini", True),
        ("gpt-3.5-turbo-instruct", False),  # known, without the flag
        ("openai/not-a-model-anyone-has", None),
        ("notaprovider/x", None),
    ],
)
async def test_litellm_function_calling_from_its_model_data(
    model: str, supported: bool | None
) -> None:
    assert await LiteLLMGenerator(model=model).supports_function_calling() is supported


async def test_litellm_tool_calls_skip_its_mcp_gateway(
    llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Some litellm releases send any request with tools through their MCP gateway, whose
    import needs an `mcp` package of their choosing: simulated here, a gateway that every
    request with tools reaches and that can't be imported. Tool calls work all the same,
    and litellm sends the server nothing of it."""
    _litellm()
    litellm_main = importlib.import_module("litellm.main")
    if not hasattr(litellm_main, "may_name_litellm_mcp_gateway"):
        pytest.skip("this litellm release looks for its MCP gateway otherwise")
    monkeypatch.setattr(litellm_main, "may_name_litellm_mcp_gateway", lambda tools: True)
    monkeypatch.setitem(sys.modules, "litellm.responses.mcp.chat_completions_handler", None)
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    # as such a release fails without the guard
    with pytest.raises(Exception, match="chat_completions_handler halted"):
        await _litellm().acompletion(
            model="openai/m",
            api_base=llm_server.openai_base,
            messages=[{"role": "user", "content": "hi"}],
            tools=[tool],
            num_retries=0,
        )
    llm_server.responder = agent_server
    generator = rg.get_generator(f"openai/gpt-4o-mini,api_base={llm_server.openai_base}")
    chat = await generator.chat(QUESTION).using(*AGENT).run()
    assert chat.last.content == ANSWER
    assert len(llm_server.requests) == 3
    assert not any("_skip_mcp_handler" in r.body for r in llm_server.requests)


# the scripted model


async def test_scripted_call_ids_are_numbered_through_the_conversation(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(RULES)
    generator = rg.get_generator(f"scripted!{path}")
    assert isinstance(generator, ScriptedGenerator)
    assert await generator.supports_function_calling() is True
    first, again = await generator.chat(QUESTION).using(*AGENT).run_many(2)
    assert calls_of(first) == calls_of(again)
    assert [c.id for m in first.all for c in m.tool_calls or ()] == ["call_0", "call_1", "call_2"]
    assert [m.metadata.get(INVALID_CALL) for m in first.all if m.role == "tool"] == [None] * 3


async def test_scripted_replies_may_mix_text_calls_and_malformed_arguments(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rules.json"
    path.write_text(
        json.dumps(
            {
                "rules": [
                    {"on": "tool_result", "match": "JSONDecodeError", "reply": "That failed."},
                    {
                        "match": "weather",
                        "replies": [
                            {
                                "content": "Hm.",
                                "tool_calls": [{"name": "lookup", "arguments": "{"}],
                            },
                            "It is sunny.",
                        ],
                    },
                ],
                "default": {"content": "", "tool_calls": [{"name": "lookup"}]},
            }
        )
    )
    generator = rg.get_generator(f"scripted!{path}")
    chat = await generator.chat("the weather?").using(lookup).run()
    assert [(m.role, m.content[:15]) for m in chat.all] == [
        ("user", "the weather?"),
        ("assistant", "Hm."),
        ("tool", chat.all[2].content[:15]),
        ("assistant", "That failed."),
    ]
    assert chat.all[1].tool_calls == [
        rg.ToolCall(id="call_0", function=rg.FunctionCall(name="lookup", arguments="{"))
    ]
    assert chat.all[2].metadata[INVALID_CALL].startswith("JSONDecodeError: ")
    again = await generator.chat("the weather?").run()  # the rule's next reply
    assert (again.last.content, again.last.tool_calls) == ("It is sunny.", None)
    fresh = rg.get_generator(f"scripted!{path}")
    plain = await fresh.chat("the weather?").run()  # no tools to run: the calls stay
    assert (plain.last.content, plain.stop_reason) == ("Hm.", "tool_calls")
    assert plain.last.tool_calls == chat.all[1].tool_calls
    fallback = await generator.chat("what else?").run()
    assert fallback.last.tool_calls is not None
    assert fallback.last.tool_calls[0].function == rg.FunctionCall(name="lookup", arguments="{}")
    completion = await generator.complete("the weather").run()
    assert completion.generated == "Hm."


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[[rules]]\nmatch = 'x'\ntool_calls = [{ arguments = { a = 1 } }]\n",
            "is invalid at rules.0.tool_calls.0.name: Field required",
        ),
        (
            "[[rules]]\nmatch = 'x'\nreplies = [{ text = 'hi' }]\n",
            "is invalid at rules.0.replies.0.text: Extra inputs are not permitted",
        ),
        (
            "[[rules]]\nmatch = 'x'\ntool_calls = [{ name = 'f', arguments = 3 }]\n",
            "is invalid at rules.0.tool_calls.0.arguments.dict[str,any]: Input should be a "
            "valid dictionary",
        ),
        (
            "[[rules]]\nmatch = 'x'\non = 'tool'\nreply = 'y'\n",
            "is invalid at rules.0.on: Input should be 'last_user', 'conversation' or "
            "'tool_result'",
        ),
    ],
)
def test_bad_tool_rules_are_invalid_generator_errors(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(rg.InvalidGeneratorError) as caught:
        rg.get_generator(f"scripted!{path}")
    assert str(caught.value) == f"rules file '{path}' {message}"
