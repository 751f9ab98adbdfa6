"""Prompts: templates from docstrings and signatures, every output type asked for and
parsed (with recovery), the prompt's own steps, the bind/run family, and every bad input."""

from __future__ import annotations

import dataclasses
import re
import sys
import typing as t
from pathlib import Path

import jinja2
import pytest

import pytest_rigging as rg
from pytest_rigging.message import Message
from pytest_rigging.model import Answer, Model, element
from pytest_rigging.prompt import Ctx, Prompt, prompt
from tests.conftest import FakeGenerator, replying


class User(Model):
    name: str = element()
    age: int = element()


@dataclasses.dataclass
class Joke:
    setup: str
    punchline: t.Annotated[str, Ctx(example="[the twist]")]
    chat: rg.Chat


@dataclasses.dataclass
class Bad:
    name: set[int]


@dataclasses.dataclass
class Unresolvable:
    name: Nowhere  # type: ignore[name-defined]  # noqa: F821


City = t.Annotated[str, Ctx(tag="city")]


def capitals(messages: list[Message]) -> str:
    text = messages[-1].content
    known = {"France": "Paris", "Japan": "Tokyo", "Peru": "Lima"}
    city = next((city for c, city in known.items() if c in text), None)
    return f"<answer>{city}</answer> <city>{city}</city>" if city else "I don't know."


def sent(generator: FakeGenerator, call: int = 0) -> str:
    return generator.calls[call][0][-1].content


@pytest.fixture
def geo() -> FakeGenerator:
    return FakeGenerator(model="geo", reply=capitals)


def test_the_package_exports_the_decorator_and_ctx() -> None:

    assert rg.prompt is prompt and rg.Prompt is Prompt and rg.Ctx is Ctx
    assert sys.modules["pytest_rigging.prompt"].prompt is prompt


# Templates


def test_a_prompt_without_docstring_gets_a_generic_instruction() -> None:
    @prompt
    async def summarize(text: str) -> str: ...

    assert summarize.template == (
        "Turn the inputs below into the requested outputs (summarize).\n\n{{ text }}\n\n"
        "Reply with the following output, in xml tags:\n\n<str></str>\n"
    )
    assert summarize.render("one\ntwo") == (
        "Turn the inputs below into the requested outputs (summarize).\n\n"
        "<text>\none\ntwo\n</text>\n\n"
        "Reply with the following output, in xml tags:\n\n<str></str>\n"
    )


def test_inputs_the_docstring_uses_are_templated_the_rest_follow_as_elements() -> None:
    @prompt
    def describe(
        country: t.Annotated[str, Ctx(tag="place", prefix="About:")],
        style: str = "terse",
        words: int = 10,
    ) -> t.Annotated[str, Ctx(tag="description", prefix="Then:", example="[text]")]:
        """Describe   the country
        in {{ words }} words, {% if style == "terse" %}tersely{% endif %}."""

    assert describe.template == (
        "Describe the country\nin {{ words }} words, "
        '{% if style == "terse" %}tersely{% endif %}.\n\n{{ place }}\n\n'
        "Reply with the following output, in xml tags:\n\n"
        "Then:\n<description>[text]</description>\n"
    )
    assert describe.render("A & <B>", words=5) == (
        "Describe the country\nin 5 words, tersely.\n\n"
        "About:\n<place>A &amp; &lt;B&gt;</place>\n\n"
        "Reply with the following output, in xml tags:\n\n"
        "Then:\n<description>[text]</description>\n"
    )


def test_list_dict_and_model_inputs() -> None:
    @prompt
    def rank(
        items: list[t.Annotated[str, Ctx(tag="candidates")]],
        scores: dict[str, float],
        best: User,
        others: list[User],
    ) -> rg.Chat:
        """Rank."""

    assert rank.template == (
        "Rank.\n\n{{ candidates }}\n\n{{ scores }}\n\n{{ best }}\n\n{{ others }}\n"
    )
    assert rank.render(["a<", "b"], {"x": 1.5}, User(name="Ann", age=3), []) == (
        "Rank.\n\n<candidates>\na&lt;\n\nb\n</candidates>\n\n<scores><x>1.5</x></scores>\n\n"
        "<user>\n  <name>Ann</name>\n  <age>3</age>\n</user>\n\n<others></others>\n"
    )


def test_every_output_shape_is_asked_for() -> None:
    @prompt
    def users() -> list[User]:
        """Users."""

    @prompt
    def emails() -> list[t.Annotated[str, Ctx(tag="email")]]:
        """Emails."""

    @prompt
    def joke() -> Joke:
        """Joke."""

    @prompt
    def pair() -> tuple[City, int, rg.Chat]:
        """Pair."""

    @prompt
    def wrapped() -> tuple[City, rg.Chat]:
        """Wrapped."""

    @prompt
    def example() -> t.Annotated[User, Ctx(example=User(name="Bo", age=9), prefix="Like:")]:
        """Example."""

    @prompt
    def chat_only() -> rg.Chat:
        """Chat."""

    each = "Reply with the following output once for each item, in xml tags:"
    one = "Reply with the following output, in xml tags:"
    many = "Reply with the following outputs, in xml tags:"
    assert users.template == f"Users.\n\n{each}\n\n{User.xml_example()}\n"
    assert emails.template == f"Emails.\n\n{each}\n\n<email></email>\n"
    assert joke.template == (
        f"Joke.\n\n{many}\n\n<setup></setup>\n\n<punchline>[the twist]</punchline>\n"
    )
    assert pair.template == f"Pair.\n\n{many}\n\n<city></city>\n\n<int></int>\n"
    assert wrapped.template == f"Wrapped.\n\n{one}\n\n<city></city>\n"
    assert example.template == (
        f"Example.\n\n{one}\n\nLike:\n<user>\n  <name>Bo</name>\n  <age>9</age>\n</user>\n"
    )
    assert chat_only.template == "Chat.\n"


# Outputs


async def test_str_comes_from_its_tag_not_the_raw_reply() -> None:
    generator = replying("Sure! <str>  Paris  </str> Anything else?")

    @prompt(generator=generator)
    async def capital(country: str) -> str:
        """Capital of {{ country }}?"""

    assert await capital("France") == "Paris"
    assert sent(generator).endswith("<str></str>\n")


@pytest.mark.parametrize(
    ("annotation", "reply", "expected"),
    [
        (int, "<int> 42 </int>", 42),
        (float, "<float>2.5</float>", 2.5),
        (bool, "<bool>true</bool>", True),
        (bool, "<bool>no</bool>", False),
        (list[int], "<int>1</int> and <int>2</int>", [1, 2]),
        (User, "<user><name>Ann</name><age>3</age></user>", User(name="Ann", age=3)),
        (
            list[User],
            "<user><name>A</name><age>1</age></user><user><name>B</name><age>2</age></user>",
            [User(name="A", age=1), User(name="B", age=2)],
        ),
        (City, "<city>Lima</city>", "Lima"),
    ],
)
async def test_basic_list_and_model_outputs_are_parsed(
    annotation: t.Any, reply: str, expected: t.Any
) -> None:
    async def ask() -> str:
        """Ask."""

    ask.__annotations__["return"] = annotation
    assert await prompt(ask, generator=replying(reply))() == expected


async def test_tuple_and_dataclass_outputs_carry_the_chat() -> None:
    generator = replying("<setup>Why?</setup><punchline>Because.</punchline>")

    @prompt(generator=generator)
    async def joke() -> Joke:
        """Tell a joke."""

    told = await joke()
    assert (told.setup, told.punchline) == ("Why?", "Because.")
    assert told.chat.last.content == "<setup>Why?</setup><punchline>Because.</punchline>"

    @prompt(generator=replying("<city>Lima</city> <int>7</int>"))
    async def pair() -> tuple[City, int, rg.Chat]:
        """Pair."""

    city, number, chat = await pair()
    assert (city, number, chat.generator_id) == ("Lima", 7, "fakegenerator!replying")


async def test_a_reply_that_does_not_parse_is_answered_until_it_does() -> None:
    generator = replying("<int>many</int>", "<int>3</int>")

    @prompt(generator=generator)
    async def count() -> int:
        """Count."""

    assert await count() == 3
    recovery = sent(generator, 1)
    assert recovery.startswith("<validation-error>") and "<int></int>" in recovery


async def test_an_output_that_never_parses_exhausts_the_rounds() -> None:
    generator = replying("no tags at all")

    @prompt(generator=generator, max_parsing_rounds=1)
    async def count() -> int:
        """Count."""

    missing = "Failed to find '<int></int>' in text"
    with pytest.raises(rg.ExhaustedMaxRoundsError, match=re.escape(missing)):
        await count()
    assert len(generator.calls) == 2  # the reply, and one recovery


async def test_model_output_on_a_scripted_generator(tmp_path: Path) -> None:
    rules = tmp_path / "geo.toml"
    rules.write_text(
        '[[rules]]\nmatch = "capital of France"\nreplies = ["<answer>Paris</answer>"]\n'
    )

    @prompt(generator_id=f"scripted!{rules}")
    async def capital(country: str) -> Answer:
        """What is the capital of {{ country }}?"""

    assert await capital("France") == Answer(content="Paris")


# The prompt's own configuration


async def test_params_system_prompt_and_steps() -> None:
    generator = replying("<str>hi</str>")
    pipeline = generator.chat({"role": "system", "content": "Be brief."})
    seen: list[int] = []

    async def shout(chat: rg.Chat) -> None:
        chat.last.content = chat.last.content.upper()

    async def keep(chats: list[rg.Chat]) -> list[rg.Chat]:
        return chats

    async def record(chats: list[rg.Chat]) -> None:
        seen.append(len(chats))

    @prompt(pipeline=pipeline, system_prompt="Answer in English.")
    async def greet() -> rg.Chat:
        """Greet."""

    greet.with_(temperature=0.3).then(shout).map(keep).watch(record)
    chat = await greet()
    assert chat.last.content == "<STR>HI</STR>"
    assert chat.params is not None and chat.params.temperature == 0.3
    assert generator.calls[0][0][0].content == "Be brief.\n\nAnswer in English."
    assert pipeline.messages[0].content == "Be brief."  # the bound pipeline is untouched
    assert seen == [1]

    copy = greet.clone()
    bare = greet.clone(include_callbacks=False)
    assert copy.then_callbacks == [shout] and copy.watch_callbacks == [record]
    assert bare.then_callbacks == [] and bare.map_callbacks == [] and bare.watch_callbacks == []
    assert (copy.params, copy.system_prompt) == (greet.params, "Answer in English.")
    assert greet.set_(max_parsing_rounds=5).max_parsing_rounds == 5


def test_callback_and_rounds_errors() -> None:
    @prompt
    async def greet() -> rg.Chat:
        """Greet."""

    def sync(chat: rg.Chat) -> None: ...

    async def step(chat: rg.Chat) -> None: ...

    with pytest.raises(TypeError, match=r"then callback '.*sync' must be async"):
        greet.then(sync)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"map callback .* must be async"):
        greet.map(sync)  # type: ignore[arg-type]
    greet.then(step)
    with pytest.raises(ValueError, match=r"callback '.*step' is already registered"):
        greet.then(step)
    greet.then(step, allow_duplicates=True)
    assert greet.then_callbacks == [step, step]
    with pytest.raises(ValueError, match="max_parsing_rounds must be at least 0, got -1"):
        greet.set_(max_parsing_rounds=-1)
    with pytest.raises(ValueError, match="max_parsing_rounds must be at least 0, got -1"):
        prompt(max_parsing_rounds=-1)(greet.func)


# Binding and running


async def test_run_family(geo: FakeGenerator) -> None:
    @prompt(generator=geo, params=rg.GenerateParams(temperature=0.4))
    async def ask(country: str) -> City:
        """Capital of {{ country }}?"""

    assert await ask("Japan") == "Tokyo"
    assert geo.calls[0][1].temperature == 0.4
    assert await ask.run_many(2, "Japan") == ["Tokyo", "Tokyo"]
    assert await ask.run_batch(["France", ("Japan",), {"country": "Peru"}]) == [
        "Paris",
        "Tokyo",
        "Lima",
    ]
    assert await ask.run_batch("France") == ["Paris"]
    other = FakeGenerator(model="other", reply=capitals)
    assert await ask.run_over([other], "France") == ["Paris", "Paris"]
    assert len(other.calls) == 1


async def test_chat_outputs_with_params_batches() -> None:
    @prompt(generator_id="echo!e")
    async def echo(text: str) -> rg.Chat:
        """{{ text }}"""

    temps = await echo.run_batch(["hi"], [rg.GenerateParams(temperature=x) for x in (0.1, 0.2)])
    assert [c.params.temperature for c in temps if c.params] == [0.1, 0.2]
    assert [c.last.content for c in temps] == ["hi\n", "hi\n"]


async def test_bind_variants(geo: FakeGenerator) -> None:
    @prompt
    async def capital(country: str) -> City:
        """Capital of {{ country }}?"""

    assert await capital.bind(geo)("Peru") == "Lima"
    assert await capital.bind(geo.chat({"role": "system", "content": "s"}))("Peru") == "Lima"
    assert await capital.bind_many(geo)(3, "Japan") == ["Tokyo"] * 3
    first = await geo.chat("Hello").run()
    assert await capital.bind(first)("France") == "Paris"
    assert [m.content for m in geo.calls[-1][0][:2]] == ["Hello", first.last.content]
    other = FakeGenerator(model="other", reply=capitals)
    assert await capital.bind_over(geo)([other], "Peru") == ["Lima", "Lima"]
    assert await capital.run_over([other, geo], "Peru") == ["Lima", "Lima"]


async def test_run_over_without_a_pipeline_skips_failures() -> None:
    @prompt
    async def count() -> int:
        """Count."""

    good, bad = replying("<int>1</int>"), replying("none")
    assert await count.run_over([bad, good]) == [1]
    with pytest.raises(ValueError, match="prompt 'count': run_over needs at least one generator"):
        await count.run_over([])


async def test_generator_and_pipeline_prompt_decorators(geo: FakeGenerator) -> None:
    @geo.prompt
    async def capital(country: str) -> City:
        """Capital of {{ country }}?"""

    @geo.chat({"role": "system", "content": "Be brief."}).prompt
    async def capital_brief(country: str) -> City:
        """Capital of {{ country }}?"""

    assert isinstance(capital, Prompt) and isinstance(capital_brief, Prompt)
    assert await capital("Japan") == "Tokyo"
    assert await capital_brief("Peru") == "Lima"
    assert geo.calls[-1][0][0].content == "Be brief."


async def test_failure_modes(geo: FakeGenerator) -> None:
    @prompt(generator=geo)
    async def capital(country: str) -> Answer:
        """Capital of {{ country }}?"""

    assert await capital.run_batch(["France", "Atlantis"], on_failed="skip") == [
        Answer(content="Paris")
    ]
    with pytest.raises(rg.ExhaustedMaxRoundsError):
        await capital("Atlantis")
    include = "prompt 'capital' parses its output: on_failed='include' needs a prompt that"
    with pytest.raises(NotImplementedError, match=include):
        await capital.run_batch(["France"], on_failed="include")
    with pytest.raises(NotImplementedError, match=include):
        capital.bind_many(geo.chat().catch(on_failed="include"))
    with pytest.raises(NotImplementedError, match="on_failed='skip' has nothing to return"):
        capital.bind(geo.chat().catch(on_failed="skip"))


# Bad input


async def test_running_without_a_generator_or_with_bad_arguments() -> None:
    @prompt
    async def echo(text: str) -> str:
        """{{ text }}"""

    missing = "prompt 'echo' has no generator: pass generator_id=, generator= or pipeline="
    with pytest.raises(RuntimeError, match=missing):
        await echo("x")
    with pytest.raises(RuntimeError, match=missing):
        await echo.run_many(2, "x")
    with pytest.raises(RuntimeError, match=missing):
        await echo.run_batch(["x"])
    with pytest.raises(ValueError, match="cannot bind prompt 'echo' to int: use a ChatPipeline"):
        echo.bind(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="prompt 'echo': missing a required argument: 'text'"):
        echo.render()
    with pytest.raises(TypeError, match="prompt 'echo': too many positional arguments"):
        echo.render("a", "b")
    with pytest.raises(TypeError, match="prompt 'echo': got an unexpected keyword argument 'x'"):
        echo.render("a", x=1)


def test_render_rejects_values_of_the_wrong_type() -> None:
    @prompt
    async def ask(n: int, user: User, items: list[str], table: dict[str, str]) -> rg.Chat:
        """Ask {{ missing }}."""

    good = (1, User(name="a", age=1), ["x"], {"k": "v"})
    cases = [
        ((object(), *good[1:]), "parameter 'n' takes a str, int, float or bool, got object"),
        ((1, "Ann", *good[2:]), "parameter 'user' takes a User, got str"),
        ((*good[:2], "x", good[3]), "parameter 'items' takes a list, got str"),
        ((*good[:3], {1: "v"}), "parameter 'table' takes a dict with str keys"),
    ]
    for args, message in cases:
        with pytest.raises(TypeError, match=re.escape(f"prompt 'ask', {message}")):
            ask.render(*args)
    with pytest.raises(jinja2.UndefinedError, match="'missing' is undefined"):
        ask.render(*good)


def test_decorator_errors() -> None:
    async def f() -> str: ...

    with pytest.raises(ValueError, match="at most one of pipeline, generator and generator_id"):
        prompt(generator_id="echo!a", generator=rg.get_generator("echo!b"))(f)


def declared(returns: t.Any, *params: t.Any, doc: str = "Do it.") -> Prompt[t.Any, t.Any]:
    """A prompt over a function with these annotations (`(name, annotation, kind)`)."""

    async def func(*args: t.Any, **kwargs: t.Any) -> t.Any: ...

    func.__doc__ = doc
    func.__name__ = "func"
    func.__signature__ = inspect_signature(returns, params)  # type: ignore[attr-defined]
    return prompt(func)


def inspect_signature(returns: t.Any, params: tuple[t.Any, ...]) -> t.Any:
    import inspect

    kinds = inspect.Parameter
    return inspect.Signature(
        [
            kinds(
                name,
                kinds.POSITIONAL_OR_KEYWORD if kind is None else kind,
                annotation=annotation,
            )
            for name, annotation, kind in params
        ],
        return_annotation=returns,
    )


@pytest.mark.parametrize(
    ("returns", "message"),
    [
        (None, "prompt 'func' needs a return annotation"),
        (set[int], "prompt 'func': unsupported return type set[int]: use str, int, float, bool"),
        (list, "prompt 'func': name the item type, as in list[str]"),
        (list[dict[str, int]], "prompt 'func': unsupported list item dict[str, int]"),
        (tuple[str, ...], "prompt 'func': name every element type, as in tuple[str, int]"),
        (tuple[str, list[int]], "prompt 'func': a list cannot be part of a tuple or dataclass"),
        (tuple[int, tuple[int]], "prompt 'func': a tuple cannot be part of a tuple or dataclass"),
        (tuple[str, str], "prompt 'func': its parts share xml tags (str, str): give them"),
        (Bad, "prompt 'func', field 'name': unsupported return type set[int]"),
        (
            Unresolvable,
            "prompt 'func': cannot resolve the annotations of Unresolvable (name 'Nowhere'",
        ),
        (
            t.Annotated[str, Ctx(example=User(name="a", age=1))],
            "prompt 'func': the Ctx example of a str must be a string",
        ),
    ],
)
def test_unsupported_outputs(returns: t.Any, message: str) -> None:
    with pytest.raises(TypeError, match=re.escape(message)):
        declared(returns)


def test_unsupported_inputs() -> None:
    import inspect

    kinds = inspect.Parameter
    cases = [
        (("x", kinds.empty, None), "parameter 'x' needs a type annotation"),
        (("x", str, kinds.VAR_POSITIONAL), "parameter 'x': only parameters passable by keyword"),
        (("x", str, kinds.POSITIONAL_ONLY), "parameter 'x': only parameters passable by keyword"),
        (("x", set[str], None), "parameter 'x': unsupported type set[str]: use str, int"),
        (("x", list, None), "parameter 'x': name the item type, as in list[str]"),
        (("x", list[list[str]], None), "parameter 'x': lists and dicts inside lists or dicts"),
        (("x", list[object], None), "parameter 'x': unsupported item type <class 'object'>"),
        (("x", dict[int, str], None), "parameter 'x': use dict[str, T], keys are the element"),
    ]
    for param, message in cases:
        with pytest.raises(TypeError, match=re.escape(f"prompt 'func', {message}")):
            declared(str, param)
    # A parameter the docstring uses is only templated: any type, no annotation needed.
    assert declared(str, ("x", kinds.empty, None), doc="{{ x }}").inputs == []
    with pytest.raises(TypeError, match=re.escape("prompt 'func': its inputs share xml tags")):
        declared(str, ("a", t.Annotated[str, Ctx(tag="b")], None), ("b", str, None))


def test_annotations_that_cannot_be_resolved() -> None:
    class Local(Model):
        content: str

    async def local() -> Local: ...

    with pytest.raises(TypeError, match="prompt 'local': cannot resolve its annotations"):
        prompt(local)
