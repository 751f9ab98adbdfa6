"""A small MCP server for tests/test_tools_mcp.py, on the `mcp` package's own server.

`python tests/mcp_server.py [stdio]` serves it on stdin/stdout; `sse PORT` and
`streamable-http PORT` serve it over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
import typing as t

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("rigging-test-tools")

CAPITALS = {"France": "Paris", "Japan": "Tokyo"}


@server.tool()
def lookup(country: t.Annotated[str, "A country's name"]) -> str:
    """The capital of a country."""
    if country not in CAPITALS:
        raise ToolError(f"no capital known for {country}")
    return CAPITALS[country]


@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@server.tool()
def fail(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(f"failed on purpose: {reason}")


@server.tool()
def die() -> str:
    """Ends the server's process at once, as a crash would."""
    os._exit(3)


if __name__ == "__main__":
    transport = sys.argv[1] if len(sys.argv) > 1 else "stdio"
    if transport == "stdio":
        server.run("stdio")
    elif transport == "sse":
        server.run("sse", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
