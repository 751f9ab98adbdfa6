"""Prompts: docstring templates, typed outputs, and the run family (run_batch included)."""

from __future__ import annotations

import pytest

import pytest_rigging as rg
from pytest_rigging.message import Message
from pytest_rigging.model import Answer
from tests.conftest import FakeGenerator


def capitals(messages: list[Message]) -> str:
    text = messages[-1].content
    known = {"France": "Paris", "Japan": "Tokyo", "Peru": "Lima"}
    return next((f"<answer>{city}</answer>" for c, city in known.items() if c in text), "?")


@pytest.fixture
def geo() -> FakeGenerator:
    return FakeGenerator(model="geo", reply=capitals)


async def test_model_output_is_parsed_and_shape_requested(geo: FakeGenerator) -> None:
    @rg.prompt(generator=geo)
    async def capital(country: str) -> Answer:
        """What is the capital of {{ country }}?"""

    answer = await capital("France")
    assert answer == Answer(content="Paris")
    sent = geo.calls[0][0][-1].content
    assert sent.startswith("What is the capital of France?")
    assert sent.endswith("Produce the output in this form:\n<answer></answer>")


async def test_unmentioned_arguments_are_appended_as_tags(geo: FakeGenerator) -> None:
    @geo.prompt
    async def describe(country: str, style: str = "terse") -> str:
        """Describe the country."""

    assert (
        describe.render("Peru")
        == "Describe the country.\n\n<country>Peru</country>\n<style>terse</style>"
    )
    assert await describe("Peru") == "<answer>Lima</answer>"


async def test_chat_output_and_run_family(geo: FakeGenerator) -> None:
    @rg.prompt(generator=geo, params=rg.GenerateParams(temperature=0.4))
    async def ask(country: str) -> rg.Chat:
        """Capital of {{ country }}?"""

    chat = await ask("Japan")
    assert chat.generator_id == "fakegenerator!geo,temperature=0.4"
    many = await ask.run_many(2, "Japan")
    assert [c.last.content for c in many] == ["<answer>Tokyo</answer>"] * 2
    batch = await ask.run_batch(["France", ("Japan",), {"country": "Peru"}])
    assert [c.last.content for c in batch] == [
        "<answer>Paris</answer>",
        "<answer>Tokyo</answer>",
        "<answer>Lima</answer>",
    ]
    temps = await ask.run_batch(["France"], [rg.GenerateParams(temperature=t) for t in (0.1, 0.2)])
    assert [c.params.temperature for c in temps if c.params] == [0.1, 0.2]
    other = FakeGenerator(model="other", reply=capitals)
    over = await ask.run_over([other], "France")
    assert [c.generator.model for c in over if c.generator] == ["other", "geo"]


async def test_failures_follow_on_failed(geo: FakeGenerator) -> None:
    @rg.prompt(generator=geo)
    async def capital(country: str) -> Answer:
        """Capital of {{ country }}?"""

    assert await capital.run_batch(["France", "Atlantis"], on_failed="skip") == [
        Answer(content="Paris")
    ]
    with pytest.raises(rg.ExhaustedMaxRoundsError):
        await capital("Atlantis")
    with pytest.raises(ValueError, match="on_failed='include' needs a prompt that returns Chat"):
        await capital.run_batch(["France"], on_failed="include")


async def test_bind_and_identifiers(geo: FakeGenerator) -> None:
    @rg.prompt
    async def echo(text: str) -> str:
        """{{ text }}"""

    with pytest.raises(
        ValueError, match="prompt 'echo' has no generator: pass generator_id= to @prompt, or bind"
    ):
        await echo("x")
    assert await echo.bind("echo!e")("hello") == "hello"
    assert (
        await echo.bind(geo.chat({"role": "system", "content": "s"}))("Peru")
        == "<answer>Lima</answer>"
    )

    @rg.prompt(generator_id="echo!e")
    async def shout(text: str) -> str:
        """{{ text | upper }}"""

    assert await shout("hi") == "HI"


def test_prompt_declaration_errors() -> None:
    async def undocumented(x: str) -> str: ...

    with pytest.raises(
        ValueError, match="prompt 'undocumented' needs a docstring: it is the prompt"
    ):
        rg.prompt(undocumented)

    async def wrong(x: str) -> int:
        """x"""

    with pytest.raises(TypeError, match="returns <class 'int'>: use str, Chat or a Model subclass"):
        rg.prompt(wrong)


async def test_run_batch_with_a_bare_string_is_one_call(geo: FakeGenerator) -> None:
    @rg.prompt(generator=geo)
    async def capital(country: str) -> str:
        """Capital of {{ country }}?"""

    assert await capital.run_batch("France") == ["<answer>Paris</answer>"]
    assert await capital.run_batch({"country": "Peru"}) == ["<answer>Lima</answer>"]
