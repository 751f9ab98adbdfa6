"""Tool calling: `@tool`, `@tool_method`, `Tool`, the calls models make, and MCP servers'
tools (`mcp`, `as_mcp`: loaded on first use, they need the `mcp` extra)."""

from __future__ import annotations

import importlib
import sys
import types
import typing as t

from pytest_rigging.tools.base import (
    FunctionCall,
    FunctionDefinition,
    Tool,
    ToolCall,
    ToolChoice,
    ToolDefinition,
    ToolMethod,
    ToolMode,
    tool,
    tool_method,
)

if t.TYPE_CHECKING:
    from pytest_rigging.tools.mcp import as_mcp, mcp

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
    if name in ("mcp", "as_mcp"):
        return getattr(importlib.import_module("pytest_rigging.tools.mcp"), name)
    raise AttributeError(f"module 'pytest_rigging.tools' has no attribute {name!r}")


class _Package(types.ModuleType):
    """Importing `pytest_rigging.tools.mcp` would make `rg.tools.mcp` that module: the
    name stays rigging's `mcp()` function."""

    def __setattr__(self, name: str, value: t.Any) -> None:
        if name == "mcp" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
