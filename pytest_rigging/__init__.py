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
import typing as t

if t.TYPE_CHECKING:
    from pytest_rigging import error, model
    from pytest_rigging.chat import Chat, ChatPipeline
    from pytest_rigging.completion import Completion, CompletionPipeline
    from pytest_rigging.error import (
        ExhaustedMaxRoundsError,
        GenerationError,
        InvalidGeneratorError,
        MissingModelError,
    )
    from pytest_rigging.generator import (
        GeneratedMessage,
        GeneratedText,
        GenerateParams,
        Generator,
        Usage,
        get_generator,
        register_generator,
    )
    from pytest_rigging.message import Message, MessageDict
    from pytest_rigging.model import Model
    from pytest_rigging.prompt import Prompt, prompt

__version__ = "0.1.0"

_WHERE = {
    "Chat": "chat",
    "ChatPipeline": "chat",
    "Completion": "completion",
    "CompletionPipeline": "completion",
    "ExhaustedMaxRoundsError": "error",
    "GenerationError": "error",
    "InvalidGeneratorError": "error",
    "MissingModelError": "error",
    "GenerateParams": "generator",
    "GeneratedMessage": "generator",
    "GeneratedText": "generator",
    "Generator": "generator",
    "Usage": "generator",
    "get_generator": "generator",
    "register_generator": "generator",
    "Message": "message",
    "MessageDict": "message",
    "Model": "model",
    "Prompt": "prompt",
    "prompt": "prompt",
}

__all__ = [
    "Chat",
    "ChatPipeline",
    "Completion",
    "CompletionPipeline",
    "ExhaustedMaxRoundsError",
    "GenerateParams",
    "GeneratedMessage",
    "GeneratedText",
    "GenerationError",
    "Generator",
    "InvalidGeneratorError",
    "Message",
    "MessageDict",
    "MissingModelError",
    "Model",
    "Prompt",
    "Usage",
    "error",
    "get_generator",
    "model",
    "prompt",
    "register_generator",
]


def __getattr__(name: str) -> t.Any:
    module = _WHERE.get(name)
    if module is None:
        if name in ("error", "model", "message", "chat", "completion", "generator"):
            return importlib.import_module(f"pytest_rigging.{name}")
        raise AttributeError(f"module 'pytest_rigging' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"pytest_rigging.{module}"), name)
    globals()[name] = value
    return value
