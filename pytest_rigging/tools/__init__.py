"""Tool calling: `@tool`, `@tool_method`, `Tool`, the calls models make, and MCP servers'
tools (`mcp`, `as_mcp`: they need the `mcp` extra). Names load on first use."""

from __future__ import annotations

import importlib
import sys
import types
import typing as t

if t.TYPE_CHECKING:
    from pytest_rigging.tools.base import Tool, ToolMethod, tool, tool_method
    from pytest_rigging.tools.calls import (
        FunctionCall,
        FunctionDefinition,
        ToolCall,
        ToolChoice,
        ToolDefinition,
        ToolMode,
    )
    from pytest_rigging.tools.mcp import as_mcp, mcp

_WHERE = {
    "FunctionCall": "calls",
    "FunctionDefinition": "calls",
    "ToolCall": "calls",
    "ToolChoice": "calls",
    "ToolDefinition": "calls",
    "ToolMode": "calls",
    "Tool": "base",
    "ToolMethod": "base",
    "tool": "base",
    "tool_method": "base",
    "mcp": "mcp",
    "as_mcp": "mcp",
}
"""Where each name lives, loaded on first use: messages import the calls' data alone, and
`mcp` needs its extra."""

__all__ = [
    "FunctionCall",
    "FunctionDefinition",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "ToolDefinition",
    "ToolMethod",
    "ToolMode",
    "as_mcp",
    "mcp",
    "tool",
    "tool_method",
]


def __getattr__(name: str) -> t.Any:
    module = _WHERE.get(name)
    if module is not None:
        return getattr(importlib.import_module(f"pytest_rigging.tools.{module}"), name)
    raise AttributeError(f"module 'pytest_rigging.tools' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Importing `pytest_rigging.tools.mcp` would make `rg.tools.mcp` that module: the
    name stays rigging's `mcp()` function."""

    def __setattr__(self, name: str, value: t.Any) -> None:
        if name == "mcp" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
