"""Tool calls written in the reply's text (every mode but `api`)."""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    from pytest_rigging.generator.base import GenerateParams
    from pytest_rigging.message import Message
    from pytest_rigging.tools.base import Tool, ToolMode


def prepare(
    messages: list[Message],
    params: GenerateParams,
    tools: t.Sequence[Tool[..., t.Any]],
    mode: ToolMode,
    *,
    add_stop_token: bool,
) -> tuple[list[Message], GenerateParams]:
    """What is sent in a text mode: the tools described in the system message, earlier
    calls and their replies written as text, and no `tools` param."""
    raise NotImplementedError(f"tool mode {mode!r}")


def read(message: Message, tools: t.Sequence[Tool[..., t.Any]], mode: ToolMode) -> Message:
    """The reply with the calls written in its text as `tool_calls`."""
    raise NotImplementedError(f"tool mode {mode!r}")
