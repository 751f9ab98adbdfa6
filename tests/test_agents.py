"""Agent evals through pytest: tests whose pipeline uses tools, judged by what the model
did (`pytest_rigging.trajectory`), the table's tool-call parse rate and its gate, the tool
mode as an axis of the matrix, `max_depth` as a failed sample, and cassettes that replay
a tool dialog while the tools run again."""

from __future__ import annotations

import json
import typing as t

import pytest

from tests.conftest import ini, outcomes, rate, report, row, rows
from tests.llm_server import Call, LLMServer, Reply

pytestmark = pytest.mark.plugin

SERIAL: list[str] = []
WORKERS = pytest.mark.parametrize("workers", [SERIAL, ["-n", "2"]], ids=["serial", "xdist"])

TOOLS = """
import pytest
import pytest_rigging as rg
from pytest_rigging.trajectory import approx, assert_calls, call

PRICES = {"A1": 40.0, "B2": 25.0}


@rg.tool
def lookup_order(order_id: str) -> dict:
    \"\"\"An order's price.\"\"\"
    return {"order_id": order_id, "price": PRICES[order_id]}


@rg.tool
def refund(price: float, percent: float) -> float:
    \"\"\"The refund for a share of a price.\"\"\"
    return round(price * percent / 100, 2)


@rg.tool(catch=True)
def cancel_order(order_id: str) -> str:
    \"\"\"Cancel an order.\"\"\"
    raise PermissionError("cancelling needs a person")
"""

SUITE = (
    TOOLS
    + """

@pytest.fixture
def rig_pipeline(rig_generator, order_id):
    return rig_generator.chat(f"Order {order_id} arrived broken: refund half.").using(
        lookup_order, refund, cancel_order, max_depth=3
    )


@pytest.mark.parametrize("order_id, amount", [("A1", 20.0), ("B2", 12.5)])
@pytest.mark.rig(runs=2)
def test_refund(rig_chat, order_id, amount):
    assert_calls(
        rig_chat,
        [
            call("lookup_order", order_id=order_id),
            call("refund", price=approx(2 * amount), percent=50),
        ],
        forbidden=["cancel_order"],
    )
    assert str(amount) in rig_chat.last.content
"""
)

ANSWERS = """
[[rules]]
on = "tool_result"
match = '"price":40.0'
tool_calls = [{ name = "refund", arguments = { price = 40.0, percent = 50 } }]

[[rules]]
on = "tool_result"
match = '"price":25.0'
tool_calls = [{ name = "refund", arguments = { price = 25.0, percent = 50 } }]

[[rules]]
on = "tool_result"
match = '^20.0$'
reply = "Refunded 20.0."

[[rules]]
on = "tool_result"
match = '^12.5$'
reply = "Refunded 12.5."
"""

LOOKUP_A1 = """
[[rules]]
match = "Order A1"
tool_calls = [{ name = "lookup_order", arguments = { order_id = "A1" } }]
"""

GOOD = (
    ANSWERS
    + LOOKUP_A1
    + """
[[rules]]
match = "Order B2"
tool_calls = [{ name = "lookup_order", arguments = { order_id = "B2" } }]
"""
)
"""Looks the order up, works the refund out, says it: two calls per sample."""

BAD = (
    """
[[rules]]
on = "tool_result"
match = '"price":40.0'
tool_calls = [{ name = "refund", arguments = '{"price": 40.0, "percent": }' }]

[[rules]]
on = "tool_result"
match = 'JSONDecodeError|Expecting value'
tool_calls = [{ name = "refund", arguments = { price = 40.0, percent = 50 } }]

[[rules]]
on = "tool_result"
match = 'cancelling needs a person'
reply = "I could not cancel it."
"""
    + ANSWERS
    + LOOKUP_A1
    + """
[[rules]]
match = "Order B2"
tool_calls = [{ name = "cancel_order", arguments = { order_id = "B2" } }]
"""
)
"""A1: writes the refund's arguments broken once, then right (three calls, one that
doesn't parse); B2: cancels the order, which is forbidden."""

ARGS = ("--rig-models", "scripted!good.toml,scripted!bad.toml")


@pytest.fixture(autouse=True)
def unfitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The table at its full width (a terminal's `COLUMNS` would fold its headers)."""
    monkeypatch.delenv("COLUMNS", raising=False)


def project(pytester: pytest.Pytester, suite: str = SUITE) -> None:
    ini(pytester)
    pytester.makepyfile(test_agent=suite)
    (pytester.path / "good.toml").write_text(GOOD)
    (pytester.path / "bad.toml").write_text(BAD)


def calls_of(chat: dict[str, t.Any]) -> list[tuple[str, str]]:
    """A recorded chat's tool calls, (name, arguments), in order."""
    return [
        (call["name"], call["arguments"])
        for message in chat["conversation"]
        for call in message.get("tool_calls", [])
    ]


def dialogs(pytester: pytest.Pytester, name: str) -> list[list[tuple[str, str]]]:
    """Every recorded chat's tool calls, in the report's order."""
    doc = report(pytester, name)
    return [calls_of(chat) for item in doc["items"] for chat in item["chats"]]


@WORKERS
def test_an_agent_eval(pytester: pytest.Pytester, workers: list[str]) -> None:
    """The good model's samples pass; the bad one's fail on what it did, with the
    trajectory's message; the table counts each model's tool calls and those that didn't
    parse; the report keeps every call and the replies' call ids."""
    project(pytester)
    result = pytester.runpytest(
        *ARGS, "--rig-report", "r.json", "--rig-inspect-log", "logs", "-rf", *workers
    )
    assert outcomes(result) == {"passed": 2, "failed": 2}
    failures = {line.split(" - ")[0]: line for line in result.outlines if line.startswith("FAILED")}
    assert set(failures) == {
        "FAILED test_agent.py::test_refund[A1-20.0-bad]",
        "FAILED test_agent.py::test_refund[B2-12.5-bad]",
    }
    said = {line for line in result.outlines if line.startswith("AssertionError: ")}
    assert said == {
        "AssertionError: call 2: expected refund(price≈40.0, percent=50), got refund(<not a "
        """JSON object: '{"price": 40.0, "percent": }'>): arguments are not a JSON object""",
        "AssertionError: forbidden call cancel_order(order_id='B2') at position 1",
    }
    header = next(line for line in result.outlines if line.startswith("model "))
    assert "tool calls parsed [95% CI]" in header
    assert row(result, "good")[-5] == rate(8, 8)  # 2 items x 2 samples x 2 calls
    assert row(result, "bad")[-5] == rate(6, 8)  # A1: 3 calls, 1 broken; B2: 1 call
    doc = report(pytester)
    rows = {r["label"]: r for r in doc["models"]}
    assert (rows["good"]["tool_calls"], rows["good"]["tool_parse_rate_counts"]) == (8, [8, 8])
    assert (rows["bad"]["tool_calls"], rows["bad"]["tool_parse_rate_counts"]) == (8, [6, 8])
    chats = {
        (item["nodeid"].split("[")[1].rstrip("]"), chat["sample"]): chat
        for item in doc["items"]
        for chat in item["chats"]
    }
    assert calls_of(chats[("A1-20.0-bad", 1)]) == [
        ("lookup_order", '{"order_id": "A1"}'),
        ("refund", '{"price": 40.0, "percent": }'),
        ("refund", '{"price": 40.0, "percent": 50}'),
    ]
    assert chats[("A1-20.0-bad", 1)]["tool_calls_invalid"] == 1
    # inspect logs mark the calls the table counts as not parsed, and only those
    logs = [json.loads(path.read_text()) for path in (pytester.path / "logs").iterdir()]
    marked = [
        (call["function"], call["parse_error"].split(":")[0])
        for log in logs
        for sample in log["samples"]
        for message in sample["messages"]
        for call in message.get("tool_calls") or []
        if call["parse_error"] is not None
    ]
    assert marked == [("refund", "JSONDecodeError")] * 2  # A1 on bad, both samples
    tool_replies = [m for m in chats[("B2-12.5-good", 2)]["conversation"] if m["role"] == "tool"]
    assert [(m["tool_call_id"], m["content"]) for m in tool_replies] == [
        ("call_0", '{"order_id":"B2","price":25.0}'),
        ("call_1", "12.5"),
    ]


def test_the_tool_call_parse_rate_gate(pytester: pytest.Pytester) -> None:
    project(pytester)
    result = pytester.runpytest(*ARGS, "--rig-min-tool-parse-rate", "0.9")
    assert outcomes(result) == {"passed": 2, "failed": 2, "gate": 1}
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    fail = [line for line in result.outlines if line.startswith("FAIL scripted!")]
    assert fail == [
        "FAIL scripted!bad.toml: tool-call parse rate 75.0% [40.9%-92.9%], needs >= 90.0% "
        "(rig-min-tool-parse-rate, point)"
    ]


def test_a_suite_without_tools_shows_no_tool_column(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile(
        test_plain="""
import pytest

@pytest.fixture
def rig_pipeline(rig_generator):
    return rig_generator.chat("hello")

def test_echo(rig_chat):
    assert rig_chat.last.content == "hello"
"""
    )
    result = pytester.runpytest("--rig-report", "r.json")
    assert outcomes(result) == {"passed": 1}
    assert not any("tool calls" in line for line in result.outlines)
    assert "tool_calls" not in report(pytester)["models"][0]


TEXT_ONLY = """
function_calling = false

[[rules]]
on = "conversation"
match = '(?s)<tool-response[^>]*>20.0</tool-response>\\s*$'
reply = "Refunded 20.0."

[[rules]]
on = "conversation"
match = '(?s)<tool-response[^>]*>\\{"order_id":"A1","price":40.0\\}</tool-response>\\s*$'
reply = '<tool-call name="refund">{"price": 40.0, "percent": 50}</tool-call>'

[[rules]]
on = "conversation"
match = '(?s)<available-tools>.*Order A1'
reply = '<tool-call name="lookup_order">{"order_id": "A1"}</tool-call>'

[[rules]]
on = "conversation"
match = '(?s)<rg-tool-call.*Order A1'
reply = '<rg-tool-call name="lookup_order"><order_id>A1</order_id'
"""
"""A model with no function calling that writes good `json-in-xml` calls and breaks its
`xml` ones (its closing tags go missing)."""

MODES = (
    TOOLS
    + """

@pytest.fixture
def rig_pipeline(rig_generator):
    return rig_generator.chat("Order A1 arrived broken: refund half.").using(
        lookup_order, refund, max_depth=2
    )


@pytest.mark.rig_params("tool_mode=xml", "tool_mode=json-in-xml")
def test_refund(rig_chat):
    expected = [call("lookup_order", order_id="A1"), call("refund", price=40, percent=50)]
    assert_calls(rig_chat, expected)
"""
)


@WORKERS
def test_the_tool_mode_is_an_axis_of_the_matrix(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """`tool_mode` in the params sets makes a cell per mode: the text model passes in
    json-in-xml and fails in xml, whose calls don't parse; `-v`'s table shows each cell's
    tool-call parse rate."""
    ini(pytester)
    pytester.makepyfile(test_modes=MODES)
    (pytester.path / "plain.toml").write_text(TEXT_ONLY)
    result = pytester.runpytest(
        "--rig-models", "scripted!plain.toml", "--rig-report", "r.json", "-v", *workers
    )
    assert outcomes(result) == {"passed": 1, "failed": 1}
    doc = report(pytester)
    assert {i["nodeid"].split("::")[1]: i["outcome"] for i in doc["items"]} == {
        "test_refund[plain-xml]": "failed",
        "test_refund[plain-json-in-xml]": "passed",
    }
    cells = {r["params"]: r for r in doc["cells"]}
    assert cells["tool_mode=json-in-xml"]["tool_parse_rate_counts"] == [2, 2]
    # two rounds of broken calls answered, the third never run (max_depth=2)
    assert cells["tool_mode=xml"]["tool_parse_rate_counts"] == [0, 2]
    xml, json_in_xml = sorted(rows(result, "plain"), key=lambda cells: cells[1] != "tool_mode=xml")
    # model, params, chats, 1st try, recovered, exhausted, errors, parse, pass, tool calls
    assert xml[:10] == [
        "plain",
        "tool_mode=xml",
        "1",
        "0",
        "0",
        "0",
        "0",
        "-",
        rate(0, 1),
        rate(0, 2),
    ]
    assert json_in_xml[:10] == [
        "plain", "tool_mode=json-in-xml", "1", "0", "0", "0", "0", "-", rate(1, 1), rate(2, 2)
    ]  # fmt: skip


def test_text_mode_dialogs_replay_from_cassettes(pytester: pytest.Pytester) -> None:
    """Calls read from text have ids derived from the reply, so a recorded text-mode dialog
    replays request for request: the same calls, the same outcomes, no miss."""
    ini(pytester)
    pytester.makepyfile(test_modes=MODES)
    (pytester.path / "plain.toml").write_text(TEXT_ONLY)
    args = ("--rig-models", "scripted!plain.toml")
    recorded = pytester.runpytest(*args, "--rig-record", "once", "--rig-report", "a.json")
    replayed = pytester.runpytest(*args, "--rig-record", "none", "--rig-report", "b.json")
    assert outcomes(recorded) == outcomes(replayed) == {"passed": 1, "failed": 1}

    assert dialogs(pytester, "a.json") == dialogs(pytester, "b.json")
    assert ("refund", '{"price": 40.0, "percent": 50}') in dialogs(pytester, "a.json")[1]


def test_a_model_that_never_stops_calling_fails_its_sample(pytester: pytest.Pytester) -> None:
    """Past `max_depth` rounds the sample fails (not an error), its dialog kept."""
    ini(pytester)
    pytester.makepyfile(
        test_loop=TOOLS
        + """

@pytest.fixture
def rig_pipeline(rig_generator):
    pipeline = rig_generator.chat("Order A1 arrived broken: refund half.")
    return pipeline.using(lookup_order, max_depth=2)


def test_refund(rig_chat):
    assert rig_chat.last.content
"""
    )
    (pytester.path / "loop.toml").write_text(LOOKUP_A1)
    result = pytester.runpytest(
        "--rig-models", "scripted!loop.toml", "--rig-report", "r.json", "-rf"
    )
    assert outcomes(result) == {"failed": 1}
    assert (
        "[error]: Exceeded max depth (2) of tool calls: the model still called tools "
        "(lookup_order) after 2 rounds of tool calls (using(max_depth=2))"
    ) in result.outlines
    [item] = report(pytester)["items"]
    assert item["outcome"] == "failed"
    [chat] = item["chats"]
    assert chat["error_kind"] == "parse"
    assert [m["role"] for m in chat["conversation"]] == [
        "user", "assistant", "tool", "assistant", "tool", "assistant"
    ]  # fmt: skip


HTTP_SUITE = (
    TOOLS
    + """

@pytest.fixture
def rig_pipeline(rig_generator):
    return rig_generator.chat("Order A1 arrived broken: refund half.").using(lookup_order, refund)


@pytest.mark.rig(runs=2)
def test_refund(rig_chat):
    expected = [call("lookup_order", order_id="A1"), call("refund", price=40, percent=50)]
    assert_calls(rig_chat, expected)
    assert "20.0" in rig_chat.last.content
"""
)


def test_a_recorded_agent_eval_replays_with_no_request(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """Recorded once on the loopback server, the dialogs replay with zero requests and
    the same calls, the tools running again; a tool whose result changed misses on the
    next model call, saying where."""
    ini(pytester)
    pytester.makepyfile(test_http=HTTP_SUITE)
    refund = Reply(tool_calls=[Call("refund", {"price": 40.0, "percent": 50})])
    llm_server.add_rule(r'"price":40.0\}$', refund, on="conversation", model="m")
    llm_server.add_rule(r"\n20.0$", "Refunded 20.0.", on="conversation", model="m")
    lookup = Reply(tool_calls=[Call("lookup_order", {"order_id": "A1"})])
    llm_server.add_rule("Order A1", lookup, model="m")
    args = ("--rig-models", "openai!m,max_retries=0")
    recorded = pytester.runpytest(*args, "--rig-record", "once", "--rig-report", "a.json")
    assert outcomes(recorded) == {"passed": 1}
    assert len(llm_server.requests) == 6  # 2 samples x 3 calls
    replayed = pytester.runpytest(*args, "--rig-record", "none", "--rig-report", "b.json")
    assert outcomes(replayed) == {"passed": 1}
    assert len(llm_server.requests) == 6  # not one more

    assert (
        dialogs(pytester, "a.json")
        == dialogs(pytester, "b.json")
        == [[("lookup_order", '{"order_id": "A1"}'), ("refund", '{"price": 40.0, "percent": 50}')]]
        * 2
    )
    (pytester.path / "test_http.py").write_text(HTTP_SUITE.replace('"A1": 40.0', '"A1": 45.0'))
    edited = pytester.runpytest(*args, "--rig-record", "none", "-rE")
    assert outcomes(edited) == {"errors": 1}
    assert len(llm_server.requests) == 6
    miss = (
        "no recording in cassettes/test_http.json for this call (--rig-record none replays "
        "only); the closest recording differs in messages[2].content: "
        '"...r_id\\":\\"A1\\",\\"price\\":45.0}" here, '
        '"...r_id\\":\\"A1\\",\\"price\\":40.0}" recorded'
    )
    assert miss in edited.outlines, edited.outlines


SECRET = "sk-agent-secret-424242424242"

SECRET_SUITE = """
import os
import pytest
import pytest_rigging as rg


@rg.tool
def vault(name: str) -> str:
    \"\"\"A stored value.\"\"\"
    return "the value is " + os.environ["AGENT_API_KEY"]


@rg.tool
def login(password: str) -> str:
    \"\"\"Log in.\"\"\"
    return "logged in"


@pytest.fixture
def rig_pipeline(rig_generator):
    return rig_generator.chat("Log in.").using(vault, login, max_depth=3)


def test_login(rig_chat):
    assert rig_chat.last.content == "logged out", rig_chat.conversation
"""

SECRET_RULES = f"""
[[rules]]
on = "tool_result"
match = 'the value is'
tool_calls = [
  {{ name = "login", arguments = {{ password = "{SECRET}" }} }},
  {{ name = "{SECRET}", arguments = '{{"again": "{SECRET}"}}' }},
]

[[rules]]
on = "tool_result"
match = 'logged in'
reply = "Logged in with {SECRET}."

[[rules]]
match = "Log in"
tool_calls = [{{ name = "vault", arguments = {{ name = "key" }} }}]
"""


def test_a_secret_in_tool_calls_and_results_is_shown_nowhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key a tool returns, and the model then writes into a call's arguments and even
    its name, is masked in the failure, the report, the page, the inspect log, the
    cassette and the JUnit file."""
    monkeypatch.setenv("AGENT_API_KEY", SECRET)
    ini(pytester)
    pytester.makepyfile(test_secret=SECRET_SUITE)
    (pytester.path / "m.toml").write_text(SECRET_RULES)
    result = pytester.runpytest(
        "--rig-models=scripted!m.toml",
        "--rig-record=all",
        "--rig-report=r.json",
        "--rig-html=p.html",
        "--rig-inspect-log=logs",
        "--junitxml=j.xml",
    )
    assert outcomes(result) == {"failed": 1}
    written = [
        pytester.path / "r.json",
        pytester.path / "p.html",
        pytester.path / "j.xml",
        *(pytester.path / "logs").iterdir(),
        *(pytester.path / "cassettes").iterdir(),
    ]
    assert len(written) == 5
    for text in [result.stdout.str(), *(path.read_text() for path in written)]:
        assert SECRET not in text
    calls = calls_of(report(pytester)["items"][0]["chats"][0])
    assert calls == [
        ("vault", '{"name": "key"}'),
        ("login", '{"password": "***"}'),
        ("***", '{"again": "***"}'),
    ]
