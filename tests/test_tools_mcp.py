"""rg.mcp: the tools of an MCP server (tests/mcp_server.py, on the mcp package's own
server) over stdio, SSE and streamable HTTP on loopback; and rg.as_mcp."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest

import pytest_rigging as rg
from pytest_rigging.error import ToolServerError, error_kind
from pytest_rigging.tools.base import INVALID_CALL, FunctionCall, ToolCall
from tests.conftest import calling

if t.TYPE_CHECKING:
    from pytest_rigging.tools.mcp import MCPClient

needs_mcp = pytest.mark.skipif(
    importlib.util.find_spec("mcp") is None,
    reason="the mcp extra is not installed (pip install 'pytest-rigging[mcp]')",
)

SERVER = Path(__file__).with_name("mcp_server.py")
TRANSPORTS = ["stdio", "sse", "streamable-http"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def serve_http(transport: str) -> tuple[subprocess.Popen[bytes], str]:
    """The test server over HTTP in a subprocess, once it accepts connections."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(SERVER), transport, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60  # a hang guard, not a threshold
    while True:
        assert process.poll() is None, f"the {transport} MCP server exited at start"
        assert time.monotonic() < deadline, f"the {transport} MCP server never listened"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    path = "/sse" if transport == "sse" else "/mcp"
    return process, f"http://127.0.0.1:{port}{path}"


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def http_servers() -> Iterator[dict[str, str]]:
    if importlib.util.find_spec("mcp") is None:
        pytest.skip("the mcp extra is not installed (pip install 'pytest-rigging[mcp]')")
    started = {transport: serve_http(transport) for transport in ("sse", "streamable-http")}
    yield {transport: url for transport, (_, url) in started.items()}
    for process, _ in started.values():
        stop(process)


def client(transport: str, urls: dict[str, str]) -> MCPClient:
    if transport == "stdio":
        return rg.mcp("stdio", command=sys.executable, args=[str(SERVER), "stdio"])
    return rg.mcp(transport, url=urls[transport])  # type: ignore[call-overload]


@pytest.fixture(params=TRANSPORTS)
def server(request: pytest.FixtureRequest) -> MCPClient:
    urls = {} if request.param == "stdio" else request.getfixturevalue("http_servers")
    return client(request.param, urls)


def call(call_id: str, name: str, arguments: dict[str, t.Any] | str) -> ToolCall:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=text))


def children() -> set[int]:
    """This process's child processes (Linux)."""
    found: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found.update(int(pid) for pid in (task / "children").read_text().split())
    return found


@needs_mcp
async def test_lists_and_calls_the_servers_tools(server: MCPClient) -> None:
    """Names, descriptions and input schemas as the server lists them; calls, with the
    server's results, its error results, and arguments that don't fit the schema."""
    async with server:
        tools = {tool.name: tool for tool in server.tools}
        found, _ = await tools["lookup"].handle_tool_call(call("1", "lookup", {"country": "Japan"}))
        added, _ = await tools["add"].handle_tool_call(call("2", "add", {"a": 2, "b": 40}))
        failed, _ = await tools["fail"].handle_tool_call(call("3", "fail", {"reason": "test"}))
        invalid, _ = await tools["add"].handle_tool_call(call("4", "add", {"a": "two"}))
        direct = await tools["add"](a=1, b=1)
    assert set(tools) == {"lookup", "add", "fail", "die"}
    add = tools["add"]
    assert add.description == "Add two integers."
    assert add.parameters_schema["properties"] == {
        "a": {"title": "A", "type": "integer"},
        "b": {"title": "B", "type": "integer"},
    }
    assert add.parameters_schema["required"] == ["a", "b"]
    assert add.definition.function.parameters == add.parameters_schema
    assert tools["lookup"].parameters_schema["properties"]["country"]["type"] == "string"
    assert tools["die"].definition.function.parameters is None

    assert (found.content, found.tool_call_id, found.role) == ("Tokyo", "1", "tool")
    assert added.content == "42"
    assert INVALID_CALL not in found.metadata and INVALID_CALL not in added.metadata
    assert [str(part) for part in direct] == ["2"]

    assert failed.content == (
        '<error type="ToolError">Error executing tool fail: failed on purpose: test</error>\n'
    )
    assert INVALID_CALL not in failed.metadata

    assert invalid.content == (
        '<error type="ValidationError">\n'
        "  arguments: 'b' is a required property (got {'a': 'two'})\n"
        "  a: 'two' is not of type 'integer' (got 'two')\n"
        "</error>\n"
    )
    assert invalid.metadata[INVALID_CALL] == (
        "ValidationError: arguments: 'b' is a required property (got {'a': 'two'})\n"
        "a: 'two' is not of type 'integer' (got 'two')"
    )


@needs_mcp
async def test_a_dialog_with_the_servers_tools(server: MCPClient) -> None:
    generator = calling(
        [("lookup", '{"country": "France"}'), ("add", '{"a": 2, "b": 3}')],
        [("fail", '{"reason": "asked to"}'), ("add", '{"a": "x", "b": 1}')],
        "Paris, and 5.",
    )
    async with server:
        chat = await generator.chat("Capital of France? And 2+3?").using(*server.tools).run()
    assert not chat.failed
    assert chat.last.content == "Paris, and 5."
    _, first_params = generator.calls[0]
    assert first_params.tools is not None
    sent = {d.function.name: d.function.parameters for d in first_params.tools}
    assert sent["add"] is not None and sent["add"]["required"] == ["a", "b"]

    second, _ = generator.calls[1]
    replies = [(m.tool_call_id, m.content) for m in second if m.role == "tool"]
    assert replies == [("call-0-0", "Paris"), ("call-0-1", "5")]

    third, _ = generator.calls[2]
    failed, invalid = [m for m in third if m.role == "tool"][2:]
    assert (failed.tool_call_id, failed.content) == (
        "call-1-0",
        '<error type="ToolError">Error executing tool fail: failed on purpose: asked to</error>\n',
    )
    assert invalid.content == (
        "<error type=\"ValidationError\">a: 'x' is not of type 'integer' (got 'x')</error>\n"
    )
    assert INVALID_CALL in invalid.metadata and INVALID_CALL not in failed.metadata


@needs_mcp
async def test_leaving_the_block_closes_the_session(server: MCPClient) -> None:
    before_tasks, before_children = asyncio.all_tasks(), children()
    async with server:
        tool = next(tool for tool in server.tools if tool.name == "add")
        assert len(asyncio.all_tasks()) > len(before_tasks)
    assert server.tools == []
    assert asyncio.all_tasks() == before_tasks
    assert children() == before_children
    with pytest.raises(RuntimeError) as raised:
        await tool(a=1, b=2)
    where = (
        f"{sys.executable} {SERVER} stdio" if server.transport == "stdio" else server.connection.url  # type: ignore[union-attr]
    )
    assert str(raised.value) == (
        f"the MCP session with {where} is not open: use its tools inside "
        "`async with rg.mcp(...) as server:`"
    )


@needs_mcp
async def test_a_stdio_server_that_dies_fails_the_next_calls() -> None:
    async with rg.mcp("stdio", command=sys.executable, args=[str(SERVER), "stdio"]) as server:
        tools = {tool.name: tool for tool in server.tools}
        with pytest.raises(ToolServerError) as died:
            await tools["die"]()
        with pytest.raises(ToolServerError) as after:
            await tools["add"](a=1, b=2)
        generator = calling([("add", '{"a": 1, "b": 2}')])
        chat = await generator.chat("1+2?").using(*server.tools).run(allow_failed=True)
    where = f"{sys.executable} {SERVER} stdio"
    assert str(died.value) == (
        f"the MCP server {where} is gone (Connection closed): tool 'die' was not called"
    )
    assert str(after.value) == (
        f"the MCP server {where} is gone (Connection closed): tool 'add' was not called"
    )
    assert chat.failed and isinstance(chat.error, ToolServerError)
    assert error_kind(chat.error) == "infrastructure"


@needs_mcp
async def test_an_http_server_that_dies_fails_the_next_call() -> None:
    process, url = serve_http("streamable-http")
    try:
        async with rg.mcp("streamable-http", url=url) as server:
            stop(process)
            add = next(tool for tool in server.tools if tool.name == "add")
            with pytest.raises(ToolServerError) as raised:
                await add(a=1, b=2)
    finally:
        stop(process)
    assert str(raised.value).startswith(f"the MCP server {url} is gone (")
    assert str(raised.value).endswith("): tool 'add' was not called")


@needs_mcp
async def test_a_server_that_cant_be_reached_fails_to_open() -> None:
    with pytest.raises(ToolServerError) as no_command:
        async with rg.mcp("stdio", command="/nonexistent/mcp-server"):
            pass
    assert str(no_command.value) == (
        "can't reach the MCP server /nonexistent/mcp-server: "
        "[Errno 2] No such file or directory: '/nonexistent/mcp-server'"
    )
    url = f"http://127.0.0.1:{free_port()}/sse"
    with pytest.raises(ToolServerError) as refused:
        async with rg.mcp("sse", url=url):
            pass
    assert str(refused.value) == (
        f"can't reach the MCP server {url}: All connection attempts failed"
    )


@needs_mcp
def test_bad_arguments_to_mcp_say_what_is_wrong() -> None:
    with pytest.raises(ValueError) as unknown:
        rg.mcp("websocket", url="ws://127.0.0.1:1")  # type: ignore[call-overload]
    assert str(unknown.value) == (
        "unknown MCP transport 'websocket': use one of stdio, sse, streamable-http"
    )
    with pytest.raises(TypeError) as no_command:
        rg.mcp("stdio", args=["x"])  # type: ignore[call-overload]
    assert str(no_command.value) == (
        "rg.mcp('stdio', ...) takes command (and args): command: Field required"
    )
    with pytest.raises(TypeError) as wrong:
        rg.mcp("sse", command="server")  # type: ignore[call-overload]
    assert str(wrong.value) == (
        "rg.mcp('sse', ...) takes url: url: Field required; command: Extra inputs are not permitted"
    )


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "mcp" or name.startswith("mcp.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mcp", None)  # type: ignore[arg-type]
    monkeypatch.delitem(sys.modules, "pytest_rigging.tools.mcp", raising=False)
    monkeypatch.delitem(vars(rg), "mcp", raising=False)
    message = (
        "pytest_rigging.tools.mcp needs the mcp package, 2.3 or later: "
        "pip install 'pytest-rigging[mcp]'"
    )
    with pytest.raises(ImportError) as imported:
        import pytest_rigging.tools.mcp  # noqa: F401
    assert str(imported.value) == message
    with pytest.raises(ImportError) as exported:
        rg.mcp  # noqa: B018
    assert str(exported.value) == message
    monkeypatch.delitem(sys.modules, "pytest_rigging.tools.mcp", raising=False)


@needs_mcp
async def test_as_mcp_serves_our_tools() -> None:
    @rg.tool
    def lookup(country: t.Annotated[str, "A country"]) -> str:
        """The capital of a country."""
        return {"France": "Paris"}[country]

    class Calc:
        @rg.tool_method
        async def add(self, a: int, b: int) -> int:
            """Add two integers."""
            return a + b

        @rg.tool_method
        def finish(self, answer: str) -> str:
            """Give the answer."""
            raise rg.Stop(f"the answer is {answer}")

    served = rg.as_mcp(lookup, Calc(), name="ours")
    listed = {tool.name: tool for tool in await served.list_tools()}
    assert set(listed) == {"lookup", "add", "finish"}
    assert listed["add"].description == "Add two integers."
    assert listed["add"].input_schema["required"] == ["a", "b"]
    added = await served.call_tool("add", {"a": 2, "b": 3})
    stopped = await served.call_tool("finish", {"answer": "42"})
    assert [block.text for block in added.content] == ["5"]  # type: ignore[union-attr]
    assert [block.text for block in stopped.content] == ["the answer is 42"]  # type: ignore[union-attr]
