"""Tool calling: `@tool`, `@tool_method`, `Tool`, the calls models make, and MCP servers'
tools (`mcp`, with the `mcp` extra)."""

from __future__ import annotations

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

__all__ = [
    "FunctionCall",
    "FunctionDefinition",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "ToolDefinition",
    "ToolMethod",
    "ToolMode",
    "tool",
    "tool_method",
]
