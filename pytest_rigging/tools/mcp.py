"""Tools that live on MCP servers (`mcp`), and our tools served as an MCP server (`as_mcp`).

`async with rg.mcp("stdio", command=..., args=[...]) as server:` starts the server,
lists its tools and gives them as `server.tools`, ordinary `Tool`s for
`pipeline.using(...)`: their parameters are the server's input schemas, sent as they
are in `api` mode and checked before each call. A call's result comes back as the
tool's reply; a result the server marks as an error is shown to the model as one. A
server that is gone fails the chat with `ToolServerError` (an infrastructure failure).
Leaving the block ends the session and the server's process or HTTP connection.

Needs the `mcp` extra (`pip install 'pytest-rigging[mcp]'`), the official SDK, 2.x.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import json
import typing as t
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType

import anyio
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from pytest_rigging.error import Stop, ToolDefinitionError, ToolServerError
from pytest_rigging.tools.base import Tool, ToolCall, tool_reply, tools_of

MISSING_EXTRA = (
    "pytest_rigging.tools.mcp needs the mcp package, 2.3 or later: "
    "pip install 'pytest-rigging[mcp]'"
)


def _mcp_major() -> int:
    try:
        version = importlib.metadata.version("mcp")
    except importlib.metadata.PackageNotFoundError:
        return 0
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


try:
    import httpx2
    import jsonschema
    import mcp.types as mcp_types
    from mcp import ClientSession, MCPError, StdioServerParameters
    from mcp.client.sse import sse_client
    from mcp.client.stdio import stdio_client
    from mcp.client.streamable_http import streamable_http_client
    from mcp.server.mcpserver import MCPServer
    from mcp.shared._httpx_utils import create_mcp_http_client
except ImportError as error:
    raise ImportError(MISSING_EXTRA) from error
if _mcp_major() < 2:
    raise ImportError(f"{MISSING_EXTRA} (found mcp {importlib.metadata.version('mcp')})")

if t.TYPE_CHECKING:
    from pytest_rigging.message import Content

Transport = t.Literal["stdio", "sse", "streamable-http"]
"""How to reach the server: a subprocess spoken to on its stdin/stdout, or HTTP with
the (older) SSE transport or the streamable HTTP one."""

TRANSPORTS: tuple[Transport, ...] = t.get_args(Transport)

INITIALIZE_TIMEOUT = 10.0
"""Seconds a started server has to answer the handshake and list its tools."""

DEFAULT_HTTP_TIMEOUT = 5.0
DEFAULT_SSE_READ_TIMEOUT = 300.0


class StdioConnection(BaseModel):
    """A server run as a subprocess: `env` is added to a minimal default environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: str
    args: list[str] = []
    cwd: str | Path | None = None
    env: dict[str, str] | None = None


class HTTPConnection(BaseModel):
    """A server over HTTP (SSE or streamable): `timeout` for each request, and
    `sse_read_timeout` for the wait between two events of a stream."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    url: str
    headers: dict[str, str] | None = None
    timeout: float = DEFAULT_HTTP_TIMEOUT
    sse_read_timeout: float = DEFAULT_SSE_READ_TIMEOUT


SSEConnection = HTTPConnection
"""rigging's name for the SSE transport's settings."""

Connection: t.TypeAlias = StdioConnection | HTTPConnection

_GONE = (anyio.ClosedResourceError, anyio.BrokenResourceError, httpx2.TransportError, OSError)
"""What a call raises when the transport under the session is gone."""


class MCPTool(Tool[..., t.Any]):
    """A tool of an MCP server: its arguments are checked against the server's input
    schema before the call, so a call that doesn't fit is answered as invalid (as for
    local tools) without a round trip."""

    def check_arguments(self, call: ToolCall) -> dict[str, t.Any]:
        arguments = super().check_arguments(call)
        validator_type = jsonschema.validators.validator_for(self.parameters_schema)
        problems = sorted(
            validator_type(self.parameters_schema).iter_errors(arguments),
            key=lambda problem: [str(part) for part in problem.absolute_path],
        )
        if problems:
            raise ValidationError.from_exception_data(
                f"{self.name} arguments",
                [
                    InitErrorDetails(
                        type=PydanticCustomError("json_schema", "{reason}", {"reason": p.message}),
                        loc=tuple(p.absolute_path),
                        input=p.instance,
                    )
                    for p in problems
                ],
            )
        return arguments


class MCPClient:
    """A session with one MCP server, open for an `async with` block: `tools` are the
    server's tools while it is open (empty otherwise)."""

    def __init__(self, transport: Transport, connection: Connection) -> None:
        _check_transport(transport)
        if (transport == "stdio") != isinstance(connection, StdioConnection):
            raise TypeError(
                f"the {transport} transport takes "
                f"{'a StdioConnection' if transport == 'stdio' else 'an HTTPConnection'}"
            )
        self.transport: Transport = transport
        self.connection: Connection = connection
        self.tools: list[Tool[..., t.Any]] = []
        self._session: ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._failure: Exception | None = None

    def __repr__(self) -> str:
        return f"MCPClient({self.transport}: {self._where})"

    @property
    def _where(self) -> str:
        if isinstance(self.connection, StdioConnection):
            return " ".join([self.connection.command, *self.connection.args])
        return self.connection.url

    @property
    def session(self) -> ClientSession:
        """The open session (for what `tools` don't cover: resources, prompts)."""
        if self._session is None:
            raise RuntimeError(
                f"the MCP session with {self._where} is not open: use its tools inside "
                "`async with rg.mcp(...) as server:`"
            )
        return self._session

    async def __aenter__(self) -> MCPClient:
        started: asyncio.Future[ClientSession] = asyncio.get_running_loop().create_future()
        self._closing = asyncio.Event()
        self._runner = asyncio.create_task(self._run(started))
        try:
            self._session = await started
            with anyio.fail_after(INITIALIZE_TIMEOUT):
                self.tools = [self._tool(listed) for listed in await self._list_tools()]
        except BaseException as error:
            await self._close()
            if isinstance(error, TimeoutError):
                raise ToolServerError(
                    f"the MCP server {self._where} did not answer and list its tools within "
                    f"{INITIALIZE_TIMEOUT:g}s"
                ) from error
            if isinstance(error, Exception) and _gone(error):
                raise ToolServerError(
                    f"can't reach the MCP server {self._where}: {_reason(error)}"
                ) from error
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._close()

    async def _run(self, started: asyncio.Future[ClientSession]) -> None:
        """Hold the transport and the session open until `_close`, in a task of their own:
        a transport that fails then ends this task, not the caller's (anyio would cancel
        whichever task entered its task groups), and the block may be left from another
        task than the one that entered it."""
        try:
            async with AsyncExitStack() as stack:
                read, write = await self._open_transport(stack)
                session = await stack.enter_async_context(ClientSession(read, write))
                with anyio.fail_after(INITIALIZE_TIMEOUT):
                    await session.initialize()
                started.set_result(session)
                await self._closing.wait()
        except Exception as error:
            if not started.done():
                started.set_exception(error)
            elif not _gone(error):
                self._failure = error
        finally:
            if not started.done():
                started.cancel()

    async def _close(self) -> None:
        self._session = None
        self.tools = []
        runner, self._runner = self._runner, None
        if runner is not None:
            self._closing.set()
            await runner

    async def _open_transport(self, stack: AsyncExitStack) -> tuple[t.Any, t.Any]:
        """The session's read and write streams, closed with `stack`."""
        connection = self.connection
        if isinstance(connection, StdioConnection):
            parameters = StdioServerParameters(**connection.model_dump())
            return await stack.enter_async_context(stdio_client(parameters))
        if self.transport == "sse":
            return await stack.enter_async_context(
                sse_client(
                    connection.url,
                    headers=connection.headers,
                    timeout=connection.timeout,
                    sse_read_timeout=connection.sse_read_timeout,
                )
            )
        client = await stack.enter_async_context(
            create_mcp_http_client(
                headers=connection.headers,
                timeout=httpx2.Timeout(connection.timeout, read=connection.sse_read_timeout),
            )
        )
        return await stack.enter_async_context(
            streamable_http_client(connection.url, http_client=client)
        )

    async def _list_tools(self) -> list[mcp_types.Tool]:
        listed: list[mcp_types.Tool] = []
        cursor: str | None = None
        while True:
            params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await self.session.list_tools(params=params)
            listed.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return listed

    def _tool(self, listed: mcp_types.Tool) -> MCPTool:
        async def call(**arguments: t.Any) -> t.Any:
            return await self._call(listed.name, arguments)

        call.__name__ = listed.name
        return MCPTool(
            name=listed.name,
            description=listed.description or "",
            parameters_schema=dict(listed.input_schema),
            fn=call,
        )

    async def _call(self, name: str, arguments: dict[str, t.Any]) -> t.Any:
        from pytest_rigging.model import ErrorModel

        session, runner = self.session, self._runner
        assert runner is not None
        calling = asyncio.ensure_future(session.call_tool(name, arguments))
        try:
            await asyncio.wait({calling, runner}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not calling.done():
                calling.cancel()
                await asyncio.gather(calling, return_exceptions=True)
        if calling.cancelled():
            raise self._server_gone(name, self._failure)
        error = calling.exception()
        if error is not None:
            if not _gone(error):
                raise error
            raise self._server_gone(name, self._failure or error) from error
        result = calling.result()
        parts = _parts_of(result)
        if result.is_error:
            text = "\n".join(str(part) for part in parts) or "the tool failed"
            return ErrorModel(type="ToolError", content=text)
        return parts

    def _server_gone(self, name: str, error: BaseException | None) -> ToolServerError:
        reason = "its connection closed" if error is None else _reason(error)
        return ToolServerError(
            f"the MCP server {self._where} is gone ({reason}): tool {name!r} was not called"
        )


def _gone(error: BaseException) -> bool:
    """Whether an error (or all of a group's) only says the server is unreachable: once
    the session ends, that is no news."""
    inner = getattr(error, "exceptions", None)
    if isinstance(inner, tuple):
        return all(_gone(each) for each in inner)
    if isinstance(error, MCPError):
        return error.code == mcp_types.CONNECTION_CLOSED
    return isinstance(error, _GONE)


def _reason(error: BaseException) -> str:
    """What went wrong, from the first error of a group."""
    inner = getattr(error, "exceptions", None)
    if isinstance(inner, tuple) and inner:
        return _reason(inner[0])
    return str(error) or type(error).__name__


def _parts_of(result: mcp_types.CallToolResult) -> list[Content]:
    """A result's content as message parts. A result with only structured content is
    given as its JSON (servers should send that as text too, and most do)."""
    from pytest_rigging.message import ContentAudioInput, ContentImageUrl, ContentText

    parts: list[Content] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(ContentText(text=block.text))
        elif isinstance(block, mcp_types.ImageContent):
            url = f"data:{block.mime_type};base64,{block.data}"
            parts.append(ContentImageUrl.from_url(url))
        elif isinstance(block, mcp_types.AudioContent):
            audio_format = block.mime_type.rpartition("/")[2]
            audio = ContentAudioInput.Audio(data=block.data, format=audio_format)
            parts.append(ContentAudioInput(input_audio=audio))
        elif isinstance(block, mcp_types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, mcp_types.TextResourceContents):
                parts.append(ContentText(text=resource.text))
            else:
                parts.append(ContentText(text=resource.blob))
        else:
            parts.append(ContentText(text=f"resource {block.uri} ({block.name})"))
    if not parts and result.structured_content is not None:
        parts.append(ContentText(text=json.dumps(result.structured_content)))
    return parts


@t.overload
def mcp(
    transport: t.Literal["stdio"],
    *,
    command: str,
    args: list[str] | None = None,
    cwd: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> MCPClient: ...


@t.overload
def mcp(
    transport: t.Literal["sse", "streamable-http"],
    *,
    url: str,
    headers: dict[str, str] | None = None,
    timeout: float = DEFAULT_HTTP_TIMEOUT,
    sse_read_timeout: float = DEFAULT_SSE_READ_TIMEOUT,
) -> MCPClient: ...


def mcp(transport: Transport, **connection: t.Any) -> MCPClient:
    """A client of an MCP server, to use as `async with rg.mcp(...) as server:` and give
    `server.tools` to `using()`: `"stdio"` runs `command` with `args`; `"sse"` and
    `"streamable-http"` connect to `url`."""
    _check_transport(transport)
    settings = {name: value for name, value in connection.items() if value is not None}
    try:
        if transport == "stdio":
            return MCPClient(transport, StdioConnection(**settings))
        return MCPClient(transport, HTTPConnection(**settings))
    except ValidationError as error:
        needs = "command (and args)" if transport == "stdio" else "url"
        raise TypeError(f"rg.mcp({transport!r}, ...) takes {needs}: {_problems(error)}") from None


def _check_transport(transport: str) -> None:
    if transport not in TRANSPORTS:
        raise ValueError(f"unknown MCP transport {transport!r}: use one of {', '.join(TRANSPORTS)}")


def _problems(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
        for problem in error.errors(include_url=False)
    )


def as_mcp(*tools: t.Any, name: str = "Rigging Tools") -> MCPServer:
    """An MCP server offering these tools (anything `using()` takes); run it with
    `.run("stdio")` or `.run("streamable-http", port=...)`. A tool's `Stop` is answered
    with its message; an exception is the server's error result."""
    server = MCPServer(name)
    for each in tools_of(list(tools)):
        server.add_tool(_served(each), name=each.name, description=each.description)
    return server


def _served(tool: Tool[..., t.Any]) -> t.Callable[..., t.Awaitable[t.Any]]:
    """The tool's function as the server calls it, its reply made MCP content."""
    signature = tool._signature
    if signature is None:
        raise ToolDefinitionError(
            f"tool {tool.name!r} can't be served over MCP: it has no Python signature "
            "to describe its parameters"
        )

    @functools.wraps(tool.fn)
    async def serve(**arguments: t.Any) -> list[mcp_types.ContentBlock]:
        try:
            result = await tool._invoke(arguments)
        except Stop as stop:
            result = stop.message
        return [_block_of(part) for part in tool_reply("mcp", result).content_parts]

    serve.__signature__ = signature.replace(  # type: ignore[attr-defined]
        return_annotation=list[mcp_types.ContentBlock]
    )
    return serve


def _block_of(part: Content) -> mcp_types.ContentBlock:
    from pytest_rigging.message import ContentAudioInput, ContentImageUrl

    if isinstance(part, ContentImageUrl) and part.mimetype is not None:
        data = part.image_url.url.partition(";base64,")[2]
        return mcp_types.ImageContent(data=data, mime_type=part.mimetype)
    if isinstance(part, ContentAudioInput):
        audio = part.input_audio
        return mcp_types.AudioContent(data=audio.data, mime_type=f"audio/{audio.format}")
    if isinstance(part, ContentImageUrl):
        return mcp_types.TextContent(text=part.image_url.url)
    return mcp_types.TextContent(text=part.text)
