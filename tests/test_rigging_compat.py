"""rigging's API beyond the batching page: messages and their parts, chats and chat lists,
pipeline building (with_, then/map depth, watch, wrap, catch), custom generators on the
batch contract, and identifiers."""

from __future__ import annotations

import base64
import json
import re
import typing as t
from pathlib import Path

import pytest

import pytest_rigging as rg
from pytest_rigging.chat import Chat, ChatList
from pytest_rigging.completion import Completion
from pytest_rigging.generator import (
    GeneratedMessage,
    GeneratedText,
    GenerateParams,
    Generator,
    get_generator,
    get_identifier,
    register_generator,
)
from pytest_rigging.message import (
    ContentAudioInput,
    ContentImageUrl,
    ContentText,
    Message,
    inject_system_content,
    strip_system_content,
)
from pytest_rigging.model import Answer, Question
from tests.conftest import FakeGenerator, on, replying
from tests.llm_server import LLMServer

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


# Messages


def test_message_takes_role_and_content_positionally_and_dedents() -> None:
    message = Message("user", "\n    Say hello\n    politely")
    assert (message.role, message.content) == ("user", "\nSay hello\npolitely")
    assert str(message) == "[user]: \nSay hello\npolitely"
    assert message.uuid != Message("user", "x").uuid
    assert message.meta(source="test") is message and message.metadata == {"source": "test"}


def test_content_parts_and_their_openai_shape(tmp_path: Path) -> None:
    image = tmp_path / "dot.png"
    image.write_bytes(PNG)
    message = Message(
        "user", ["Describe", ContentImageUrl.from_file(image), ContentText(text="briefly")]
    )
    assert message.content == "Describe\nbriefly"
    sent = message.to_openai()
    assert sent["role"] == "user"
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert sent["content"] == [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": url, "detail": "auto"}},
        {"type": "text", "text": "briefly"},
    ]
    # consecutive text parts are kept apart, as the model would otherwise read them joined
    assert Message("user", ["one", "two"]).to_openai()["content"][0] == {
        "type": "text",
        "text": "one\n",
    }
    assert message.content_parts[1].to_bytes() == PNG
    assert Message("user", "plain").to_openai() == {"role": "user", "content": "plain"}
    audio = ContentAudioInput.from_bytes(b"RIFF", format="wav", transcript="hi")
    assert Message("user", [audio]).to_openai()["content"] == [
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    ]
    assert ContentImageUrl.from_url("https://x/y.png").image_url.url == "https://x/y.png"


def test_content_part_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"image file '.*missing.png' does not exist"):
        ContentImageUrl.from_file(tmp_path / "missing.png")
    odd = tmp_path / "blob.unknownext"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"cannot tell the image type of '.*blob.unknownext'"):
        ContentImageUrl.from_file(odd)
    with pytest.raises(ValueError, match="cannot tell the audio format of"):
        ContentAudioInput.from_file(odd)
    with pytest.raises(ValueError, match="the image is a URL, not embedded base64 data"):
        ContentImageUrl.from_url("https://x/y.png").to_bytes()
    with pytest.raises(TypeError, match="message content must be a str or a list"):
        Message("user", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"expected a Message, a \{'role', 'content'\} dict"):
        Message.fit(3.5)  # type: ignore[arg-type]


def test_a_message_round_trips_through_json_with_parts_as_content() -> None:
    message = Message("user", ["look", ContentImageUrl.from_url("https://x/y.png")])
    dumped = json.loads(message.model_dump_json())
    assert [part["type"] for part in dumped["content"]] == ["text", "image_url"]
    assert "content_parts" not in dumped
    loaded = Message.model_validate(dumped)
    assert loaded == message
    assert Message.model_validate({"role": "user", "content": "hi"}).content == "hi"


def test_parse_records_models_and_their_slices() -> None:
    text = "Q: <question>Why?</question> A: <answer>Because.</answer>"
    message = Message("assistant", text)
    assert message.parse(model_type=Answer).content == "Because."
    assert message.parse_many(Question, Answer) == [
        Question(content="Why?"),
        Answer(content="Because."),
    ]
    assert [type(m).__name__ for m in message.models] == ["Answer", "Question"]
    parts = sorted(message.parts, key=lambda p: p.slice_.start)
    assert [text[p.slice_] for p in parts] == [
        "<question>Why?</question>",
        "<answer>Because.</answer>",
    ]
    assert [s.content for s in message.slices] == [text[p.slice_] for p in message.parts]


def test_missing_models_fail_only_when_asked_to() -> None:
    message = Message("assistant", "<answer>yes</answer>")
    assert message.try_parse_many(Question, Answer) == [Answer(content="yes")]
    with pytest.raises(rg.MissingModelError, match="Failed to find '<question></question>'"):
        message.try_parse_many(Question, Answer, fail_on_missing=True)
    assert message.try_parse(Question) is None
    assert message.try_parse_set(Question) == []
    with pytest.raises(rg.MissingModelError, match=r"Expected at least 2 <answer></answer>"):
        message.parse_set(Answer, minimum=2)


def test_strip_apply_truncate_shorten() -> None:
    message = Message("assistant", "Sure. <answer>42</answer> Anything else?")
    message.parse(Answer)
    [removed] = message.strip(Answer)
    assert removed.content == "[detached]" and message.content == "Sure.  Anything else?"
    assert message.models == []
    templated = Message("user", "Hello $name, $unknown")
    assert templated.apply(name="Ada").content == "Hello Ada, $unknown"
    assert templated.content == "Hello $name, $unknown"  # apply copies
    long = Message("user", "abcdefghijklmnopqrstuvwxyz")
    assert long.truncate(10, suffix="...").content == "abcdefg..."
    assert long.shorten(9).content == "abc...xyz"
    assert long.truncate(100).content == long.content


def test_from_model_records_the_model_it_writes() -> None:
    message = Message.from_model([Question(content="Why?"), Answer(content="So.")], suffix="ok")
    assert message.role == "user"
    assert message.content == "<question>Why?</question>\n<answer>So.</answer>\n\nok"
    assert [m.content for m in message.models] == ["Why?", "So."]  # type: ignore[attr-defined]
    assert message.slices[1].content == "<answer>So.</answer>"


def test_system_content_injection_and_removal() -> None:
    messages = [Message("user", "hi")]
    inject_system_content(messages, "Be brief.")
    assert [m.role for m in messages] == ["system", "user"]
    inject_system_content(messages, "Be kind.")
    inject_system_content(messages, "Be kind.")  # not twice
    assert messages[0].content == "Be brief.\n\nBe kind."
    messages = strip_system_content(messages, "Be kind.")
    assert messages[0].content == "Be brief."
    messages = strip_system_content(messages, "Be brief.")
    assert [m.role for m in messages] == ["user"]


# Chats


async def test_chat_accessors_and_copies(fake: FakeGenerator) -> None:
    chat = await fake.chat([Message("system", "sys"), Message("user", "Hi $who")]).run()
    assert chat.prev == chat.messages and chat.next == chat.generated
    assert chat.message_dicts == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "Hi $who"},
        {"role": "assistant", "content": "Hi $who"},
    ]
    assert chat.to_openai() == chat.message_dicts
    clone = chat.clone()
    clone.apply_to_all(who="you")
    assert [m.content for m in clone.all][1:] == ["Hi you", "Hi you"]
    assert chat.last.content == "Hi $who"
    assert chat.clone().apply(who="me").last.content == "Hi me"
    assert chat.clone(only_messages=True).metadata == {}
    assert chat.inject_system_content("More.").messages[0].content == "sys\n\nMore."


async def test_chat_strip_removes_a_model_everywhere() -> None:
    chat = await replying("<thinking>hmm</thinking> <answer>4</answer>").chat("2+2?").run()
    stripped = chat.strip(rg.model.Thinking)
    assert stripped.last.content == "<answer>4</answer>"
    assert chat.last.content.startswith("<thinking>")  # strip copies
    with pytest.raises(rg.MissingModelError, match="Failed to find '<question></question>'"):
        chat.strip(Question, fail_on_missing=True)


async def test_a_chat_loaded_from_json_can_continue(fake: FakeGenerator) -> None:
    register_generator("fakegenerator", FakeGenerator)
    chat = await fake.chat("one").with_(temperature=0.5).run()
    dumped = chat.model_dump_json()
    assert json.loads(dumped)["generator_id"] == "fakegenerator!fake,temperature=0.5"
    loaded = Chat.model_validate_json(dumped)
    assert [m.content for m in loaded.all] == ["one", "one"]
    assert loaded.generator_id == chat.generator_id
    follow_up = await loaded.continue_("two").run()
    assert [m.content for m in follow_up.all] == ["one", "one", "two", "two"]
    assert follow_up.params is not None and follow_up.params.temperature == 0.5


def test_a_chat_naming_an_unknown_provider_loads_but_cannot_run() -> None:
    chat = Chat.model_validate(
        {"messages": [{"role": "user", "content": "hi"}], "generator_id": "nowhere!x"}
    )
    assert (chat.generator, chat.generator_id) == (None, "nowhere!x")
    assert json.loads(chat.model_dump_json())["generator_id"] == "nowhere!x"
    with pytest.raises(
        ValueError,
        match=r"generator 'nowhere!x' can't be rebuilt here \(unknown provider 'nowhere'.*\): "
        "register its provider first",
    ):
        chat.continue_("more")
    with pytest.raises(ValueError, match="this result has no generator: pass one"):
        Chat([Message("user", "x")]).continue_("y")


async def test_a_failed_chat_serializes_its_error_as_text() -> None:
    chat = (
        await replying("no tags")
        .chat("q")
        .until_parsed_as(Answer, max_rounds=1)
        .run(allow_failed=True)
    )
    dumped = json.loads(chat.model_dump_json())
    assert dumped["failed"] is True
    assert dumped["error"] == "Exhausted max rounds (1) while parsing: " + (
        "Failed to find '<answer></answer>' in text"
    )
    assert Chat.model_validate(dumped | {"generator_id": None}).error is None


async def test_runs_return_chat_lists(fake: FakeGenerator) -> None:
    many = await fake.chat("x").run_many(2)
    batch = await fake.chat().run_batch(["a", "b"])
    over = await fake.chat("y").run_over(FakeGenerator(model="other"))
    for chats in (many, batch, over):
        assert type(chats) is ChatList
    assert batch.to_openai() == [
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "a"}],
        [{"role": "user", "content": "b"}, {"role": "assistant", "content": "b"}],
    ]
    [data, _] = batch.to_json()
    assert json.loads(json.dumps(data))["messages"][0]["content"] == [
        {"type": "text", "text": "a", "cache_control": None}
    ]


# Pipelines


async def test_with_returns_a_new_pipeline_once_params_are_set(fake: FakeGenerator) -> None:
    base = fake.chat("x")
    first = base.with_(temperature=0.1)
    assert first is base  # the first call sets them, as in rigging
    hot = base.with_(temperature=1.5)
    cold = base.with_(max_tokens=5)
    assert hot is not base and cold is not base
    assert (hot.params.temperature, hot.params.max_tokens) == (1.5, None)  # type: ignore[union-attr]
    assert (cold.params.temperature, cold.params.max_tokens) == (0.1, 5)  # type: ignore[union-attr]
    assert base.params == GenerateParams(temperature=0.1)


async def test_then_and_map_take_several_callbacks_once_each(fake: FakeGenerator) -> None:
    order: list[str] = []

    def first(chat: Chat) -> None:
        order.append("first")

    async def second(chat: Chat) -> None:
        order.append("second")

    def both(chats: list[Chat]) -> list[Chat]:
        order.append(f"map{len(chats)}")
        return chats

    await fake.chat("x").then(first, second).map(both, both, allow_duplicates=True).run()
    assert order == ["first", "second", "map1", "map1"]
    with pytest.raises(ValueError, match=r"then callback '.*first' is already registered"):
        fake.chat().then(first).then(first)
    with pytest.raises(TypeError, match="map takes callables, got str"):
        fake.chat().map("nope")  # type: ignore[arg-type]


async def test_callbacks_nesting_runs_deeper_than_max_depth_fail(fake: FakeGenerator) -> None:
    async def again(chat: Chat) -> t.Any:
        return chat.continue_("more").then(again, max_depth=2)

    chat = await fake.chat("x").then(again, max_depth=2).run(on_failed="include")
    assert chat.failed and isinstance(chat.error, rg.MaxDepthError)
    assert isinstance(chat.error, rg.ExhaustedMaxRoundsError)
    assert str(chat.error).startswith("Exceeded max depth (2) of nested pipeline runs")
    assert len(fake.calls) == 3  # the run and two nested levels

    async def once(chat: Chat) -> t.Any:
        return chat.continue_("more")

    done = await fake.chat("x").then(once, max_depth=1).run()
    assert [m.content for m in done.all] == ["x", "x", "more", "more"]


async def test_watchers_see_every_run_and_generators_hand_theirs_on() -> None:
    seen: list[list[str]] = []

    async def watcher(chats: list[Chat]) -> None:
        seen.append([c.last.content for c in chats])

    generator = FakeGenerator(model="echo").watch(watcher)
    assert generator.watch(watcher).watchers == [watcher]  # not twice
    pipeline = generator.chat()
    await pipeline.run_batch(["a", "b"])
    await pipeline.fork("c").run()
    assert seen == [["a", "b"], ["c"]]
    with pytest.raises(ValueError, match=r"watch callback '.*watcher' is already registered"):
        pipeline.watch(watcher)


async def test_wrap_puts_a_users_decorator_around_each_call(fake: FakeGenerator) -> None:
    wrapped_calls: list[str] = []

    def counting(call: t.Callable[..., t.Awaitable[t.Any]]) -> t.Callable[..., t.Any]:
        async def inner(*args: t.Any, **kwargs: t.Any) -> t.Any:
            wrapped_calls.append("call")
            return await call(*args, **kwargs)

        return inner

    await fake.chat("x").wrap(counting).run_many(3)
    assert wrapped_calls == ["call"] * 3
    with pytest.raises(TypeError, match="wrap takes a decorator"):
        fake.wrap(42)  # type: ignore[arg-type]


async def test_wrap_sees_each_attempt_of_a_retrying_provider(
    llm_server: LLMServer, route: str
) -> None:
    from tests.llm_server import Reply

    llm_server.add_rule(".", Reply(status=503), "fine")
    attempts: list[str] = []

    def counting(call: t.Callable[..., t.Awaitable[t.Any]]) -> t.Callable[..., t.Any]:
        async def inner(*args: t.Any, **kwargs: t.Any) -> t.Any:
            attempts.append("attempt")
            return await call(*args, **kwargs)

        return inner

    generator = get_generator(on(route, "gpt-4o-mini") + ",backoff=0").wrap(counting)
    chat = await generator.chat("x").run()
    assert chat.last.content == "fine" and attempts == ["attempt", "attempt"]


async def test_catch_exclude_and_parse_catch(fake: FakeGenerator) -> None:
    pipeline = replying("no tags").chat("q").until_parsed_as(Answer, max_rounds=2)
    with pytest.raises(rg.MaxDepthError):
        await pipeline.catch(exclude=[rg.ExhaustedMaxRoundsError]).run_many(1, on_failed="skip")
    generator = replying("no tags")
    eager = generator.chat("q").until_parsed_as(Answer, catch=False)
    with pytest.raises(rg.MissingModelError, match="Failed to find '<answer></answer>'"):
        await eager.run()
    assert len(generator.calls) == 1  # no recovery was tried
    with pytest.raises(ValueError, match=r"give max_rounds .* or max_depth .*, not both"):
        fake.chat().until_parsed_as(Answer, max_rounds=2, max_depth=1)
    with pytest.raises(ValueError, match="max_depth must be at least 0, got -1"):
        fake.chat().until_parsed_as(Answer, max_depth=-1)


async def test_pipelines_fill_templates(fake: FakeGenerator) -> None:
    pipeline = fake.chat([Message("system", "You are $role."), Message("user", "Hi $name")])
    last_only = await pipeline.apply(name="Ada", role="x").run()
    assert [m.content for m in last_only.messages] == ["You are $role.", "Hi Ada"]
    everywhere = await pipeline.apply_to_all(name="Ada", role="kind").run()
    assert [m.content for m in everywhere.messages] == ["You are kind.", "Hi Ada"]
    assert pipeline.messages[1].content == "Hi $name"
    completion = await fake.complete("Dear $name,").apply(name="Ada").run()
    assert completion.text == "Dear Ada,"


# Generators


class BatchOnly(Generator):
    """A generator written for rigging: only the batch methods."""

    async def generate_messages(
        self, messages: t.Sequence[t.Sequence[Message]], params: t.Sequence[GenerateParams]
    ) -> t.Sequence[GeneratedMessage | BaseException]:
        replies: list[GeneratedMessage | BaseException] = []
        for conversation in messages:
            text = conversation[-1].content
            if text == "boom":
                replies.append(RuntimeError("the batch said no"))
            else:
                reply = GeneratedMessage.from_text(f"<answer>{text}</answer>", stop_reason="stop")
                reply.extra["seen"] = len(conversation)
                replies.append(reply)
        return replies

    async def generate_texts(
        self, texts: t.Sequence[str], params: t.Sequence[GenerateParams]
    ) -> t.Sequence[GeneratedText | BaseException]:
        return [GeneratedText.from_text(text.upper()) for text in texts]


async def test_a_rigging_custom_generator_works_unchanged() -> None:
    register_generator("batchonly", BatchOnly)
    generator = get_generator("batchonly!m,temperature=0.2")
    chats = await generator.chat().until_parsed_as(Answer).run_batch(["a", "b"])
    assert [c.last.parse(Answer).content for c in chats] == ["a", "b"]
    assert chats[0].extra == {"seen": 1} and chats[0].stop_reason == "stop"
    assert chats[0].generator_id == "batchonly!m,temperature=0.2"
    completion = await rg.complete(generator, "abc").run()
    assert isinstance(completion, Completion) and completion.generated == "ABC"
    failed = await rg.chat(generator, "boom").catch(RuntimeError).run(on_failed="include")
    assert failed.failed and str(failed.error) == "the batch said no"


async def test_a_generator_with_neither_method_says_what_to_implement() -> None:
    class Nothing(Generator):
        pass

    with pytest.raises(NotImplementedError, match="implement generate_messages"):
        await Nothing(model="x").chat("hi").run()
    with pytest.raises(NotImplementedError, match="implement generate_texts"):
        await Nothing(model="x").complete("hi").run()


def test_identifiers_round_trip_through_get_identifier() -> None:
    generator = get_generator("openai!gpt-4o,temperature=0.5,stop=a;b,max_connections=4")
    identifier = get_identifier(generator)
    assert identifier == "openai!gpt-4o,max_connections=4,temperature=0.5,stop=a;b"
    assert get_identifier(get_generator(identifier)) == identifier
    assert ",max_tokens=9," in get_identifier(generator, GenerateParams(max_tokens=9))
    assert generator.to_identifier(short=True) == "openai!gpt-4o"
    assert get_identifier(get_generator("gpt-4o")) == "litellm!gpt-4o"
    with_dict = get_generator("gpt-4o", params={"temperature": 0.3})
    assert with_dict.params.temperature == 0.3


def test_generator_and_params_small_parts() -> None:
    generator = get_generator("echo!x")
    assert generator.load() is generator and generator.unload() is generator
    params = GenerateParams(stop=["a"], extra={"k": [1]})
    copy = params.clone()
    copy.extra["k"].append(2)
    assert params.extra == {"k": [1]} and copy.stop == ["a"]
    assert str(GeneratedMessage.from_text("  kept  ")) == "[assistant]:   kept  "
    assert GeneratedText.from_text("t").to_generated_message().message.content == "t"


# Providers send content parts in their own format


async def test_native_and_litellm_send_image_parts_alike(llm_server: LLMServer) -> None:
    llm_server.add_rule(".", "seen")
    image = ContentImageUrl.from_bytes(PNG, "image/png")
    bodies = []
    for route in ("litellm", "native"):
        llm_server.reset()
        llm_server.add_rule(".", "seen")
        chat = (
            await get_generator(on(route, "gpt-4o"))
            .chat(Message("user", ["What is this?", image]))
            .run()
        )
        assert chat.last.content == "seen"
        [request] = llm_server.requests
        bodies.append(request.body["messages"])
    assert bodies[0] == bodies[1]
    assert bodies[1][0]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": image.image_url.url, "detail": "auto"},
    }


async def test_anthropic_gets_image_blocks_and_refuses_audio(llm_server: LLMServer) -> None:
    llm_server.add_rule(".", "seen")
    image = ContentImageUrl.from_bytes(PNG, "image/png")
    generator = get_generator(on("native", "claude-3-5-haiku-latest"))
    await generator.chat(Message("user", ["Look:", image])).run()
    [request] = llm_server.requests
    assert request.body["messages"][0]["content"] == [
        {"type": "text", "text": "Look:"},
        {
            "type": "image",
            "source": {
                "type": "base64",
                "media_type": "image/png",
                "data": base64.b64encode(PNG).decode(),
            },
        },
    ]
    audio = ContentAudioInput.from_bytes(b"RIFF", format="wav")
    with pytest.raises(ValueError, match="anthropic! cannot send a input_audio part"):
        await generator.chat(Message("user", ["Hear:", audio])).run()


# Slices, saved chats and step() as rigging 3 code uses them


def test_marking_finding_and_removing_slices() -> None:
    message = Message("assistant", "I think 42. Maybe 42? <answer>42</answer>")
    first = message.mark_slice("42")
    assert (first.start, first.stop, first.type) == (8, 10, "other")
    every = message.mark_slice("42", select="all", metadata={"n": 1})
    assert [s.start for s in every] == [8, 18, 30] and every[0] is first
    assert message.mark_slice("nowhere") is None
    [answer] = message.mark_slice(Answer, select="all")
    assert answer.type == "model" and answer.obj == Answer(content="42")
    assert message.mark_slice(re.compile(r"I \w+")).content == "I think"
    with pytest.warns(rg.message.MessageWarning, match=r"range \(5, 500\) is outside the text"):
        assert message.mark_slice((5, 500)) is None
    with pytest.raises(TypeError, match=r"mark_slice takes a string, a .start, stop. range"):
        message.mark_slice(3.5)  # type: ignore[arg-type]
    assert [s.start for s in message.find_slices("other")] == [0, 8, 18, 30]
    assert message.get_slice("model") is answer
    assert message.get_slice(select="last").start == 30  # type: ignore[union-attr]
    assert [s.type for s in message.iter_slices(["model"])] == ["model"]
    removed = message.remove_slices(Answer)
    assert removed == [answer] and message.content == "I think 42. Maybe 42?"
    assert [s.content for s in message.find_slices()] == ["I think", "42", "42"]
    assert every[2].content == "[detached]"  # it was inside the removed answer


def test_editing_a_slice_moves_the_ones_after_it() -> None:
    message = Message("user", "alpha beta gamma")
    alpha, beta, _ = (message.mark_slice(word) for word in ("alpha", "beta", "gamma"))
    beta.content = "BETA!!"  # type: ignore[union-attr]
    assert message.content == "alpha BETA!! gamma"
    assert [s.content for s in message.slices] == ["alpha", "BETA!!", "gamma"]
    appended = message.append_slice(Answer(content="x"))
    assert message.content == "alpha BETA!! gamma\n<answer>x</answer>"
    assert appended.content == "<answer>x</answer>" and appended.type == "model"
    replaced = message.replace_with_slice("fresh")
    assert message.content == "fresh" and message.slices == [replaced]
    assert alpha.content == "[detached]"  # type: ignore[union-attr]


async def test_chats_gather_their_messages_slices(fake: FakeGenerator) -> None:
    chat = await fake.chat("<answer>a</answer>").run()
    for message in chat.all:
        message.parse(Answer)
    assert [s.content for s in chat.message_slices("model")] == ["<answer>a</answer>"] * 2
    assert chat.message_slices(filter_fn=lambda s: s.start > 0) == []


def test_a_chat_rigging_saved_loads() -> None:
    """The shape rigging 3.3.5 writes (its tool fields unset, usage with a total)."""
    saved = {
        "uuid": "86b741e2-2bce-4d68-a10c-74daaa57f451",
        "timestamp": "2026-11-27T08:54:59.571944",
        "messages": [
            {
                "role": "user",
                "tool_calls": None,
                "tool_call_id": None,
                "metadata": {},
                "compatibility_flags": [],
                "slices": [],
                "content": [{"type": "text", "text": "Hi", "cache_control": None}],
            }
        ],
        "generated": [{"role": "assistant", "content": [{"type": "text", "text": "Hello"}]}],
        "stop_reason": "stop",
        "usage": {"input_tokens": 7, "output_tokens": 5, "total_tokens": 12},
        "params": {"temperature": 1.25, "tools": None, "modalities": None, "extra": {}},
        "error": None,
        "failed": False,
        "generator_id": "gpt-3.5-turbo",
    }
    chat = Chat.model_validate(saved)
    assert chat.last.content == "Hello"
    assert chat.generator_id == "litellm!gpt-3.5-turbo,temperature=1.25"
    assert json.loads(chat.model_dump_json())["usage"]["total_tokens"] == 12
    with pytest.raises(ValueError, match="'audio' is a rigging param for audio output"):
        GenerateParams.model_validate({"audio": {"voice": "alloy"}})


async def test_a_then_callback_may_return_a_step_to_run_again(fake: FakeGenerator) -> None:
    async def until_long(chat: Chat) -> t.Any:
        if len(chat.all) >= 6:
            return None
        # a continued chat starts a fresh pipeline: its steps are added again
        return chat.continue_("again").then(until_long, max_depth=5).step()

    chat = await fake.chat("x").then(until_long, max_depth=5).run()
    assert [m.content for m in chat.all] == ["x", "x", "again", "again", "again", "again"]
    with pytest.raises(NotImplementedError, match="stepping through a pipeline run"):
        async with fake.chat("x").step():
            pass


async def test_an_outer_max_depth_bounds_the_levels_inside_it(fake: FakeGenerator) -> None:
    async def deeper(chat: Chat) -> t.Any:
        return chat.continue_("more").then(deeper)  # its own default would allow 20

    chat = await fake.chat("x").then(deeper, max_depth=1).run(on_failed="include")
    assert isinstance(chat.error, rg.MaxDepthError) and len(fake.calls) == 2


async def test_wrapping_one_pipeline_leaves_the_generators_other_pipelines_alone(
    fake: FakeGenerator,
) -> None:
    seen: list[str] = []

    def marking(call: t.Callable[..., t.Awaitable[t.Any]]) -> t.Callable[..., t.Any]:
        async def inner(*args: t.Any, **kwargs: t.Any) -> t.Any:
            seen.append("wrapped")
            return await call(*args, **kwargs)

        return inner

    wrapped = fake.chat("a").wrap(marking)
    await fake.chat("b").run()
    await wrapped.run()
    assert seen == ["wrapped"] and len(fake.calls) == 2  # one generator, one limit


async def test_sibling_chats_keep_their_own_system_message(fake: FakeGenerator) -> None:
    first, second = await fake.chat([Message("system", "Be brief."), "hi"]).run_many(2)
    first.inject_system_content("Be kind.")
    assert first.messages[0].content == "Be brief.\n\nBe kind."
    assert second.messages[0].content == "Be brief."


async def test_a_content_part_is_one_batch_input(fake: FakeGenerator) -> None:
    image = ContentImageUrl.from_url("https://x/y.png")
    [chat] = await fake.chat().run_batch(image)
    assert chat.messages[0].content_parts == [image]


def test_stripping_nothing_changes_nothing() -> None:
    parts = ["look:", ContentImageUrl.from_url("https://x/y.png"), "then this"]
    message = Message("user", parts)
    assert message.strip("model") == []
    assert [p.type for p in message.content_parts] == ["text", "image_url", "text"]
    templated = Message("user", ["Describe $thing", ContentImageUrl.from_url("https://x/y.png")])
    filled = templated.apply(thing="this")
    assert [p.type for p in filled.content_parts] == ["text", "image_url"]
    assert filled.content == "Describe this"


def test_a_text_only_provider_never_imports_pydantic_xml() -> None:
    """Parsing models load pydantic-xml; a run that only sends and receives text (the native
    providers' import, a first message) does without it."""
    import subprocess
    import sys

    script = (
        "import sys, pytest_rigging as rg\n"
        "from pytest_rigging.generator import openai_, anthropic_\n"
        "m = rg.Message('user', 'hi'); m.to_openai(); m.models\n"
        "import asyncio\n"
        "asyncio.run(rg.get_generator('echo!x').chat(m).run())\n"
        "asyncio.run(rg.get_generator('echo!x').complete('x').run())\n"
        "assert 'pydantic_xml' not in sys.modules, 'pydantic_xml imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


async def test_completions_clone_and_their_pipelines_add(fake: FakeGenerator) -> None:
    pipeline = fake.complete("Dear").add(" Ada,")
    assert pipeline.text == "Dear Ada,"
    assert pipeline.fork(" hi").text == "Dear Ada, hi" and pipeline.text == "Dear Ada,"
    completion = (await pipeline.run()).meta(k=[1])
    copy = completion.clone()
    copy.metadata["k"].append(2)
    assert (copy.text, copy.generated, copy.generator) == (
        completion.text,
        completion.generated,
        completion.generator,
    )
    assert completion.metadata == {"k": [1]} and completion.clone(only_messages=True).metadata == {}


async def test_a_wrapped_pipelines_chats_still_name_the_shared_generator(
    fake: FakeGenerator,
) -> None:
    def passthrough(call: t.Callable[..., t.Awaitable[t.Any]]) -> t.Callable[..., t.Any]:
        return call

    chat = await fake.chat("a").wrap(passthrough).run()
    assert chat.generator is fake  # the plugin attributes chats to models by identity


def test_slices_over_repeated_text_keep_their_own_occurrence() -> None:
    message = Message("assistant", "$intro <answer>x</answer> <answer>x</answer>")
    assert len(message.try_parse_set(Answer)) == 2
    filled = message.apply(intro="")
    spans = [(s.start, s.stop) for s in filled.slices]
    assert [filled.content[a:b] for a, b in spans] == ["<answer>x</answer>"] * 2
    assert spans[0] < spans[1]  # the first slice still covers the first element


def test_a_clone_keeps_an_unregistered_generator_id() -> None:
    chat = Chat.model_validate({"messages": [], "generator_id": "nowhere!x"})
    assert chat.clone().generator_id == "nowhere!x"
    assert json.loads(chat.clone().model_dump_json())["generator_id"] == "nowhere!x"


async def test_a_built_chat_has_the_private_state_of_a_loaded_one(fake: FakeGenerator) -> None:
    register_generator("fakegenerator", FakeGenerator)
    chat = await fake.chat("x").run()
    loaded = Chat.model_validate(chat.model_dump())
    private = {"_unbuilt": None, "_tool_use": None}
    assert chat.__pydantic_private__ == loaded.__pydantic_private__ == private
    assert loaded.model_dump() == chat.model_dump()


def test_setting_text_keeps_its_cache_marker_and_adds_no_empty_part() -> None:
    system = Message("system", [ContentText(text="Be brief.", cache_control={"type": "x"})])
    system.content += " Really."
    assert system.content_parts == [
        ContentText(text="Be brief. Really.", cache_control={"type": "x"})
    ]
    image = ContentImageUrl.from_url("https://x/y.png")
    only_image = Message("user", ["$gone", image]).apply(gone="")
    assert only_image.content_parts == [image]
