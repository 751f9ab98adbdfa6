"""Every code block of the seed document runs unchanged (but for `rigging` ->
`pytest_rigging`) against the loopback server, through litellm over real HTTP, and
prints what the seed shows."""

from __future__ import annotations

import ast
import contextlib
import io
import re
import textwrap
from pathlib import Path

import pytest

from tests.llm_server import LLMServer

pytestmark = pytest.mark.usefixtures("release_litellm")

SEED = (
    Path(__file__).resolve().parents[2] / "shared" / "reference" / "seed-iterating-and-batching.md"
)


def seed_blocks() -> dict[str, str]:
    """The seed's python blocks, keyed by the tab title above each ("Run Many Code")."""
    if not SEED.exists():
        pytest.fail(f"the seed document is missing: expected it at {SEED}")
    blocks: dict[str, str] = {}
    title = ""
    lines = SEED.read_text().splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if match := re.match(r'=== "(.+)"', line):
            title = match.group(1)
        if line.strip() == "```py":
            body = []
            index += 1
            while lines[index].strip() != "```":
                body.append(lines[index])
                index += 1
            blocks[title] = textwrap.dedent("\n".join(body))
        index += 1
    return blocks


async def run_seed_block(title: str) -> str:
    """Run one block as the seed shows it, with the import renamed; return its output."""
    source = re.sub(r"\brigging\b", "pytest_rigging", seed_blocks()[title])
    code = compile(source, f"<seed: {title}>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    output = io.StringIO()
    with contextlib.redirect_stdout(output):
        result = eval(code, {"__name__": "__seed__"})
        if result is not None:
            await result
    return output.getvalue()


def test_the_seed_has_the_four_blocks() -> None:
    assert list(seed_blocks()) == [
        "Run Many Code",
        "Batching Inputs Code",
        "Batching Code",
        "Run Over Code",
    ]


async def test_run_many_with_map(llm_server: LLMServer) -> None:
    llm_server.add_rule(
        "Tell me a joke about an animal",
        "Why did the spider go to the computer? \n\nTo check his website!",
        "Why did the chicken join a band? Because it had the drumsticks!",
        "Why don't elephants use computers?\n\nBecause they're afraid of the mouse!",
    )
    llm_server.add_rule("Why did you pick that animal", "Elephants are funny next to a mouse.")
    output = await run_seed_block("Run Many Code")
    # The three requests race, so which chat got which joke varies; what the seed shows
    # is that exactly the chat whose joke names an animal from the list was questioned.
    chats = re.split(r"^--- Chat \d \(\?: (True|False)\) ---\n", output, flags=re.M)[1:]
    flags, bodies = chats[0::2], chats[1::2]
    assert sorted(flags) == ["False", "False", "True"]
    questioned = bodies[flags.index("True")]
    assert questioned.startswith(
        "[user]: Tell me a joke about an animal.\n\n[assistant]: Why don't elephants"
    )
    assert "[user]: Why did you pick that animal?\n\n[assistant]: Elephants are funny" in questioned
    assert all(
        body.count("[user]:") == 1
        for flag, body in zip(flags, bodies, strict=True)
        if flag == "False"
    )
    assert [r.model for r in llm_server.requests] == ["gpt-3.5-turbo"] * 4


async def test_run_batch_with_recovery_and_skip(llm_server: LLMServer) -> None:
    # authors comply at once; painters after one recovery round; the rest never do.
    llm_server.add_rule(
        "authors",
        "<comma-delimited-answer>Jane Austen, Leo Tolstoy, Toni Morrison</comma-delimited-answer>",
    )
    llm_server.add_rule(
        "(?s)painters.*system-error",
        "<comma-delimited-answer>Leonardo da Vinci, Vincent van Gogh, Pablo Picasso"
        "</comma-delimited-answer>",
        on="conversation",
    )
    llm_server.add_rule("painters|musicians|hackers", "Sure! Here are three.", on="conversation")
    output = await run_seed_block("Batching Inputs Code")
    assert output.splitlines() == [
        "--- Chat 1 (3) ---",
        "['Jane Austen', 'Leo Tolstoy', 'Toni Morrison']",
        "",
        "--- Chat 2 (3) ---",
        "['Leonardo da Vinci', 'Vincent van Gogh', 'Pablo Picasso']",
        "",
    ]
    system = [r.messages[0] for r in llm_server.requests]
    assert all(m["role"] == "system" and "<comma-delimited-answer>" in m["content"] for m in system)
    recoveries = [r for r in llm_server.requests if "system-error" in r.last_user]
    assert recoveries, "a recovery message must reach the model"
    assert "Rewrite your whole message" in recoveries[0].last_user
    # 1 (authors) + 2 (painters) + 5 + 5 (the default max_rounds for the other two)
    assert len(llm_server.requests) == 13


async def test_run_batch_over_temperatures(llm_server: LLMServer) -> None:
    llm_server.add_rule("japanese city", "Tokyo is the largest metropolitan area in the world.")
    output = await run_seed_block("Batching Code")
    ids = [line for line in output.splitlines() if line.startswith("litellm!")]
    assert ids == [f"litellm!gpt-3.5-turbo,temperature={t}" for t in (0.6, 0.9, 1.2, 1.5, 1.8)]
    assert output.count("[assistant]: Tokyo is the largest") == 5
    assert sorted(r.body["temperature"] for r in llm_server.requests) == [0.6, 0.9, 1.2, 1.5, 1.8]


async def test_run_over_models(llm_server: LLMServer) -> None:
    llm_server.add_rule("capital of France", "<answer>Paris</answer>")
    output = await run_seed_block("Run Over Code")
    models = [
        line.split(":", 1)[1].strip() for line in output.splitlines() if line.startswith("Model:")
    ]
    assert models == [
        "gpt-4-turbo",
        "claude-3-haiku-20240307",
        "claude-3-sonnet-20240229",
        "gpt-3.5-turbo",
    ]
    assert output.count("Msg:    <answer>Paris</answer>") == 4
    assert output.count("Meta:   {'correct': True}") == 4
    by_model = {r.model: r for r in llm_server.requests}
    assert {r.api for r in llm_server.requests if r.model.startswith("claude")} == {"anthropic"}
    assert by_model["claude-3-haiku-20240307"].body["temperature"] == 0.5
    assert "temperature" not in by_model["claude-3-sonnet-20240229"].body
    assert by_model["gpt-4-turbo"].api == "openai-chat"
