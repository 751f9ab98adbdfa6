"""Identifiers, params and the offline providers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_rigging as rg
from pytest_rigging.generator import base
from pytest_rigging.generator.base import Generator
from pytest_rigging.generator.offline import (
    EchoGenerator,
    Rule,
    Script,
    ScriptedGenerator,
    _Asked,
)
from pytest_rigging.message import Message
from tests.conftest import FakeGenerator

SECRET = "sk-test-0123456789abcdefXYZ"


def test_default_provider_is_litellm_and_ids_round_trip() -> None:
    generator = rg.get_generator("gpt-3.5-turbo,temperature=0.6")
    assert generator.provider == "litellm"
    assert generator.to_identifier() == "litellm!gpt-3.5-turbo,temperature=0.6"
    assert generator.params.temperature == 0.6


@pytest.mark.parametrize(
    "identifier",
    [
        "litellm!gpt-4o-mini",
        "litellm!openai/local,temperature=0.2,max_tokens=64,api_base=http://127.0.0.1:9/v1",
        "litellm!gpt-4o,max_connections=50,max_retries=1,stop=END;STOP,seed=7",
        "echo!bot,latency=0.5,top_p=0.9,extra.reasoning_effort=low,extra.n=2",
    ],
)
def test_identifier_round_trip(identifier: str) -> None:
    generator = rg.get_generator(identifier)
    assert generator.to_identifier() == identifier
    again = rg.get_generator(generator.to_identifier())
    assert again.model_dump() == generator.model_dump()
    assert type(again) is type(generator)


def test_identifier_values_are_typed() -> None:
    generator = rg.get_generator("echo!x,stop=a;b,extra.n=2,extra.mode=fast,max_tokens=5")
    assert generator.params.stop == ["a", "b"]
    assert generator.params.extra == {"n": 2, "mode": "fast"}
    assert generator.params.max_tokens == 5


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("", "empty generator identifier ''"),
        ("   ", "empty generator identifier"),
        ("a!b!c", "identifier 'a!b!c' has more than one '!'"),
        ("echo!", "identifier 'echo!' names no model"),
        (  # then every provider known: in this process, tests may have added some
            "nope!x",
            "unknown provider 'nope' in 'nope!x'; known providers: anthropic, ",
        ),
        (
            "echo!x,temperature",
            "malformed part 'temperature' in 'echo!x,temperature': expected key=value",
        ),
        ("echo!x,", "malformed part '' in 'echo!x,': expected key=value"),
        ("echo!x,temprature=1", "unknown param 'temprature' in 'echo!x,temprature=1'; known: "),
        (
            "echo!x,temperature=hot",
            "invalid value 'hot' for 'temperature' in 'echo!x,temperature=hot'",
        ),
        ("echo!x,max_connections=0", "invalid value '0' for 'max_connections'"),
        ("echo!x,max_tokens=1.5", "invalid value '1.5' for 'max_tokens'"),
    ],
)
def test_bad_identifiers_name_the_bad_part(identifier: str, message: str) -> None:
    with pytest.raises(rg.InvalidGeneratorError) as caught:
        rg.get_generator(identifier)
    assert message in str(caught.value)


def test_non_string_identifier() -> None:
    with pytest.raises(rg.InvalidGeneratorError, match="must be a str, got int"):
        rg.get_generator(3)  # type: ignore[arg-type]


def test_api_key_never_shows() -> None:
    generator = rg.get_generator(f"gpt-4o,api_key={SECRET},temperature=0.1")
    assert generator.secret() == SECRET
    shown = [
        generator.to_identifier(),
        repr(generator),
        str(generator),
        json.dumps(generator.model_dump()),
        generator.model_dump_json(),
        repr(generator.chat("hi")),
    ]
    for text in shown:
        assert SECRET not in text
    with pytest.raises(rg.InvalidGeneratorError) as caught:
        rg.get_generator(f"gpt-4o,api_key={SECRET},bogus=1")
    assert SECRET not in str(caught.value)
    assert "api_key=***" in str(caught.value)


def test_environment_keys_are_redacted_from_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_PROVIDER_API_KEY", SECRET)
    with pytest.raises(rg.InvalidGeneratorError) as caught:
        rg.get_generator(f"echo!{SECRET}x,bad")
    assert SECRET not in str(caught.value)


def test_params_merge_only_set_fields() -> None:
    base = rg.GenerateParams(temperature=0.1, max_tokens=10, extra={"a": 1})
    merged = base.merge_with(
        rg.GenerateParams(temperature=0.9), None, rg.GenerateParams(extra={"b": 2})
    )
    assert merged.temperature == 0.9
    assert merged.max_tokens == 10
    assert merged.extra == {"a": 1, "b": 2}
    assert merged.to_dict() == {"temperature": 0.9, "max_tokens": 10, "a": 1, "b": 2}
    assert repr(rg.GenerateParams(top_p=0.5)) == "GenerateParams(top_p=0.5)"


def test_params_reject_unknown_fields() -> None:
    with pytest.raises(ValueError, match="temprature"):
        rg.GenerateParams(temprature=1)  # type: ignore[call-arg]


def test_explicit_params_merge_over_identifier() -> None:
    generator = rg.get_generator(
        "echo!x,temperature=0.1,top_p=0.5", params=rg.GenerateParams(temperature=0.7)
    )
    assert generator.to_identifier() == "echo!x,temperature=0.7,top_p=0.5"


def test_register_generator_keeps_provider_name(monkeypatch: pytest.MonkeyPatch) -> None:
    class Custom(FakeGenerator):
        pass

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    rg.register_generator("fakeprov", Custom)
    generator = rg.get_generator("fakeprov!m,latency=0.01")
    assert isinstance(generator, Custom)
    assert generator.to_identifier() == "fakeprov!m,latency=0.01"
    with pytest.raises(rg.InvalidGeneratorError, match="invalid provider name 'a!b'"):
        rg.register_generator("a!b", FakeGenerator)


async def test_base_generator_says_what_it_cannot_do() -> None:
    class TextOnly(Generator):
        pass

    with pytest.raises(NotImplementedError, match="does not generate text"):
        await TextOnly(model="m").generate_text("x", rg.GenerateParams())


async def test_echo_generator() -> None:
    generator = rg.get_generator("echo!bot")
    assert isinstance(generator, EchoGenerator)
    chat = await generator.chat([{"role": "system", "content": "s"}, "hello"]).run()
    assert chat.last.content == "hello"
    assert chat.usage is not None and chat.usage.output_tokens == 1
    completion = await generator.complete("abc").run()
    assert completion.generated == "abc"


def write_rules(tmp_path: Path, text: str, name: str = "rules.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


RULES = """
default = "I do not know."

[[rules]]
match = "(?i)capital of france"
replies = ["<answer>Paris</answer>", "Paris, obviously"]

[[rules]]
match = "system-error"
on = "conversation"
reply = "<answer>Recovered</answer>"
"""


async def test_scripted_generator_cycles_per_conversation(tmp_path: Path) -> None:
    path = write_rules(tmp_path, RULES)
    generator = rg.get_generator(f"scripted!{path}")
    pipeline = generator.chat("What is the capital of France?")
    replies = [c.last.content for c in await pipeline.run_many(3)]
    assert replies == ["<answer>Paris</answer>", "Paris, obviously", "<answer>Paris</answer>"]
    other = await generator.chat("Something else").run()
    assert other.last.content == "I do not know."


async def test_scripted_generator_drives_recovery(tmp_path: Path) -> None:
    path = write_rules(tmp_path, RULES)
    generator = rg.get_generator(f"scripted!{path.with_suffix('')}")
    chats = await generator.chat("capital of France?").until_parsed_as(rg.model.Answer).run_many(2)
    assert [c.recovery_rounds for c in chats] == [0, 1]
    assert [c.last.parse(rg.model.Answer).content for c in chats] == ["Paris", "Recovered"]


async def test_scripted_random_mode_is_seeded_and_order_independent(tmp_path: Path) -> None:
    path = write_rules(
        tmp_path,
        json.dumps({"mode": "random", "rules": [{"match": ".", "replies": list("abcdefgh")}]}),
        "rules.json",
    )

    async def draw(seed: int, order: list[str]) -> dict[str, list[str]]:
        generator = rg.get_generator(f"scripted!{path},seed={seed}")
        chats = await generator.chat().run_batch(order * 4)
        seen: dict[str, list[str]] = {}
        for chat in chats:
            seen.setdefault(chat.messages[-1].content, []).append(chat.last.content)
        return seen

    first = await draw(1, ["q1", "q2"])
    assert first == await draw(1, ["q2", "q1"])
    assert first != await draw(2, ["q1", "q2"])


def test_scripted_inline_script() -> None:
    generator = ScriptedGenerator(
        model="inline", script=Script(rules=[Rule(match="hi", reply="yo")])
    )
    assert generator._pick(_Asked("hi there", ""), rg.GenerateParams()).content == "yo"
    with pytest.raises(LookupError, match="no rule of scripted model 'inline' matches 'bye'"):
        generator._pick(_Asked("bye", ""), rg.GenerateParams())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "[[rules]]\nmatch = 'x'\n",
            "is invalid at rules.0: Value error, rule 'x' has no 'reply', 'replies' or "
            "'tool_calls'",
        ),
        ("[[rules]]\nmatch = '('\nreply = 'x'\n", "rule '(' is not a valid regex"),
        ("bogus = 1\n", "is invalid at bogus: Extra inputs are not permitted"),
        ("mode = 'shuffle'\n", "is invalid at mode"),
        ("rules = [", "is malformed"),
    ],
)
def test_bad_rules_files_are_invalid_generator_errors(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write_rules(tmp_path, text)
    with pytest.raises(rg.InvalidGeneratorError) as caught:
        rg.get_generator(f"scripted!{path}")
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(rg.InvalidGeneratorError, match=r"cannot read rules file '.*nothing\.toml'"):
        rg.get_generator(f"scripted!{tmp_path / 'nothing.toml'}")


async def test_generate_messages_batch_api_is_bounded(fake: FakeGenerator) -> None:
    fake.latency = 0.01
    replies = await fake.generate_messages(
        [[Message(role="user", content=str(i))] for i in range(12)], [rg.GenerateParams()] * 12
    )
    assert [r.message.content for r in replies] == [str(i) for i in range(12)]
    assert fake.peak == fake.max_connections == 4


def test_importing_the_package_imports_neither_litellm_nor_pydantic() -> None:
    code = (
        "import sys, pytest_rigging as rg; before = 'pydantic' in sys.modules; "
        "rg.get_generator('gpt-4o'); "
        "print(before, 'litellm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_empty_default_replies_are_refused(tmp_path: Path) -> None:
    path = write_rules(tmp_path, "default = []\n")
    with pytest.raises(rg.InvalidGeneratorError) as caught:
        rg.get_generator(f"scripted!{path}")
    assert str(caught.value) == (
        f"rules file '{path}' is invalid at default: Value error, an empty list gives no "
        "reply: leave 'default' out instead"
    )
