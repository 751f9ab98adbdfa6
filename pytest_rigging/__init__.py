"""pytest-rigging: eval suites for LLM software as pytest tests, on a rigging-compatible
pipeline library.

`import pytest_rigging as rg` gives the library (`rg.get_generator`, `rg.Chat`,
`rg.prompt`, ...); the pytest plugin loads through the `pytest11` entry point.
Names load on first use (PEP 562), so importing the package, as pytest does for every
run, costs almost nothing until the library is used; litellm loads only when a litellm
generator first generates.
"""

from __future__ import annotations

import importlib
import sys
import types
import typing as t

if t.TYPE_CHECKING:
    from pytest_rigging import (
        completion,
        data,
        error,
        generator,
        judge,
        message,
        model,
        parsing,
        tools,
        trajectory,
        watchers,
    )
    from pytest_rigging.chat import (
        Chat,
        ChatList,
        ChatPipeline,
        MapChatCallback,
        ThenChatCallback,
    )
    from pytest_rigging.completion import (
        Completion,
        CompletionPipeline,
        MapCompletionCallback,
        ThenCompletionCallback,
    )
    from pytest_rigging.error import (
        ExhaustedMaxRoundsError,
        GenerationError,
        InvalidGeneratorError,
        JudgeError,
        MaxDepthError,
        MissingModelError,
        Stop,
        ToolDepthError,
        Unscored,
    )
    from pytest_rigging.generator import (
        GeneratedMessage,
        GeneratedText,
        GenerateParams,
        Generator,
        Usage,
        chat,
        complete,
        get_generator,
        get_identifier,
        register_generator,
    )
    from pytest_rigging.judge import Judge, JudgeVerdict, PairwiseVerdict
    from pytest_rigging.message import (
        ContentAudioInput,
        ContentImageUrl,
        ContentText,
        Message,
        MessageDict,
        MessageSlice,
    )
    from pytest_rigging.model import Model, attr, element, wrapped
    from pytest_rigging.prompt import Ctx, Prompt, prompt
    from pytest_rigging.tools import (
        FunctionCall,
        Tool,
        ToolCall,
        ToolDefinition,
        ToolMode,
        tool,
        tool_method,
    )
    from pytest_rigging.tools.mcp import as_mcp, mcp

__version__ = "0.1.0"

_WHERE = {
    "Chat": "chat",
    "ChatList": "chat",
    "ChatPipeline": "chat",
    "MapChatCallback": "chat",
    "ThenChatCallback": "chat",
    "MapCompletionCallback": "completion",
    "ThenCompletionCallback": "completion",
    "Completion": "completion",
    "CompletionPipeline": "completion",
    "ExhaustedMaxRoundsError": "error",
    "GenerationError": "error",
    "InvalidGeneratorError": "error",
    "MaxDepthError": "error",
    "MissingModelError": "error",
    "GenerateParams": "generator",
    "GeneratedMessage": "generator",
    "GeneratedText": "generator",
    "Generator": "generator",
    "Usage": "generator",
    "chat": "generator",
    "complete": "generator",
    "get_generator": "generator",
    "get_identifier": "generator",
    "register_generator": "generator",
    "Judge": "judge",
    "JudgeError": "error",
    "JudgeVerdict": "judge",
    "PairwiseVerdict": "judge",
    "Unscored": "error",
    "Stop": "error",
    "ToolDepthError": "error",
    "FunctionCall": "tools",
    "Tool": "tools",
    "ToolCall": "tools",
    "ToolDefinition": "tools",
    "ToolMode": "tools",
    "tool": "tools",
    "tool_method": "tools",
    "mcp": "tools.mcp",
    "as_mcp": "tools.mcp",
    "ContentAudioInput": "message",
    "ContentImageUrl": "message",
    "ContentText": "message",
    "Message": "message",
    "MessageDict": "message",
    "MessageSlice": "message",
    "Model": "model",
    "attr": "model",
    "element": "model",
    "wrapped": "model",
    "Ctx": "prompt",
    "Prompt": "prompt",
    "prompt": "prompt",
}

_MODULES = (
    "data",
    "error",
    "generator",
    "judge",
    "message",
    "model",
    "parsing",
    "tools",
    "trajectory",
    "watchers",
    "completion",
)
"""Submodules reachable as attributes (`rg.model.Answer`). `chat` and `prompt` are not:
there, as in rigging, the names are the `rg.chat()` function and the `@rg.prompt`
decorator."""

__all__ = [
    "Chat",
    "ChatList",
    "ChatPipeline",
    "Completion",
    "CompletionPipeline",
    "ContentAudioInput",
    "ContentImageUrl",
    "ContentText",
    "Ctx",
    "ExhaustedMaxRoundsError",
    "FunctionCall",
    "GenerateParams",
    "GeneratedMessage",
    "GeneratedText",
    "GenerationError",
    "Generator",
    "InvalidGeneratorError",
    "Judge",
    "JudgeError",
    "JudgeVerdict",
    "MapChatCallback",
    "MapCompletionCallback",
    "MaxDepthError",
    "Message",
    "MessageDict",
    "MessageSlice",
    "MissingModelError",
    "Model",
    "PairwiseVerdict",
    "Prompt",
    "Stop",
    "ThenChatCallback",
    "ThenCompletionCallback",
    "Tool",
    "ToolCall",
    "ToolDefinition",
    "ToolDepthError",
    "ToolMode",
    "Unscored",
    "Usage",
    "as_mcp",
    "attr",
    "chat",
    "complete",
    "completion",
    "data",
    "element",
    "error",
    "generator",
    "get_generator",
    "get_identifier",
    "judge",
    "mcp",
    "message",
    "model",
    "parsing",
    "prompt",
    "register_generator",
    "tool",
    "tool_method",
    "tools",
    "trajectory",
    "watchers",
    "wrapped",
]


def __getattr__(name: str) -> t.Any:
    module = _WHERE.get(name)
    if module is None:
        if name in _MODULES:
            return importlib.import_module(f"pytest_rigging.{name}")
        raise AttributeError(f"module 'pytest_rigging' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pytest_rigging.{module}"), name)
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """Importing a submodule makes Python set it as an attribute of its package: for
    `pytest_rigging.chat` and `pytest_rigging.prompt` that would hide the `rg.chat()`
    function and the `@rg.prompt` decorator, so those names keep their function."""

    def __setattr__(self, name: str, value: t.Any) -> None:
        if name in ("chat", "prompt") and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
