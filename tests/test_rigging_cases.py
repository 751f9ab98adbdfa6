"""The cases rigging 3.3.5's own suite checks for chats, messages, slices, generator
identifiers and completions (tests/test_chat.py, test_message_slicing.py,
test_generator_ids.py, test_completion_pipeline.py), restated for this library.

Only what the other suites leave open is here; where this library deliberately differs
from rigging (docs/rigging-compatibility.md), the assertions follow our documented
behaviour. Everything runs offline, on `echo!` generators and the fakes of conftest."""

from __future__ import annotations

import json
import re
import typing as t

import pytest
from pydantic import ValidationError

import pytest_rigging as rg
from pytest_rigging.chat import Chat, ChatPipeline
from pytest_rigging.completion import Completion, CompletionPipeline
from pytest_rigging.error import InvalidGeneratorError, MissingModelError
from pytest_rigging.generator import (
    GenerateParams,
    get_generator,
    get_identifier,
    register_generator,
)
from pytest_rigging.generator import base as generator_base
from pytest_rigging.generator.litellm_ import LiteLLMGenerator
from pytest_rigging.message import (
    ContentImageUrl,
    Message,
    MessageSlice,
    MessageWarning,
    inject_system_content,
    strip_system_content,
)
from pytest_rigging.model import ErrorModel, Model, attr, element
from tests.conftest import FakeGenerator

# Models shaped like the ones rigging's tests parse: plain text, an attribute around
# text, child elements, and a repeated child element.


class Note(Model):
    content: str


class Employee(Model):
    name: str = attr()
    age: int


class Location(Model):
    street: str = element()
    city: str = element()


class Record(Model):
    label: str = attr()
    summary: str = element()
    score: int = element()


class Shelf(Model):
    title: str = attr()
    books: list[str] = element(tag="book")


# Messages


@pytest.mark.parametrize("role", ["system", "user", "assistant", "tool"])
def test_every_rigging_role_is_accepted(role: t.Any) -> None:
    message = Message(role, "text")
    assert message.role == role
    assert message.content == "text"
    assert message.slices == []


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(ValidationError, match="Input should be 'system', 'user', 'assistant'"):
        Message("robot", "beep")  # type: ignore[arg-type]


def test_str_is_role_then_text_and_lists_parts_otherwise() -> None:
    assert str(Message("assistant", "I can help.")) == "[assistant]: I can help."
    assert str(Message("user", "")) == "[user]: "
    mixed = Message("user", ["Look at this", ContentImageUrl.from_url("https://h/p.png")])
    assert str(mixed) == ("[user]:\n |- Look at this\n |- ContentImageUrl(url='https://h/p.png')")
    assert len(Message("user", "hello")) == 5


def test_fit_takes_dicts_strings_and_messages() -> None:
    from_dict = Message.fit({"role": "system", "content": "Be terse."})
    assert (from_dict.role, from_dict.content) == ("system", "Be terse.")
    from_str = Message.fit("Say hi.")
    assert (from_str.role, from_str.content) == ("user", "Say hi.")
    existing = Message("assistant", "kept")
    assert Message.fit(existing) is existing
    mixed = Message.fit_as_list([{"role": "system", "content": "s"}, Message("user", "u")])
    assert [(m.role, m.content) for m in mixed] == [("system", "s"), ("user", "u")]
    assert Message.fit_as_list(None) == []
    assert [m.content for m in Message.fit_as_list("single")] == ["single"]


def test_a_triple_quoted_prompt_is_dedented() -> None:
    message = Message(
        "user",
        """\
        First line
        Second line
    """,
    )
    assert message.content.split("\n") == ["First line", "Second line", ""]


def test_setting_the_text_keeps_other_parts_and_drops_stale_slices() -> None:
    message = Message("user", ["Describe", ContentImageUrl.from_url("https://h/p.png")])
    message.content = "Describe it again"
    # the text stays where it was (rigging moves it after the other parts)
    assert [type(p).__name__ for p in message.content_parts] == ["ContentText", "ContentImageUrl"]
    assert message.content == "Describe it again"

    parsed = Message("assistant", "<note>first</note>")
    parsed.parse(Note)
    assert len(parsed.slices) == 1
    parsed.content = "nothing left to point at"
    assert parsed.slices == []


def test_hash_ignores_identity_but_not_role_or_text() -> None:
    assert Message("user", "same").hash == Message("user", "same").hash
    assert Message("user", "same").hash != Message("assistant", "same").hash
    assert Message("user", "same").hash != Message("user", "other").hash


def test_parse_keeps_the_text_as_written() -> None:
    message = Message("assistant", "<note   >spaced tag</note>")
    assert message.parse(Note).content == "spaced tag"
    assert message.content == "<note   >spaced tag</note>"
    assert len(message.slices) == 1


def test_parse_reads_attribute_and_element_models_from_one_message() -> None:
    message = Message(
        "assistant",
        "<employee name='Ada'>36</employee> and "
        "<location><street>1 Loop Rd</street><city>Springfield</city></location>",
    )
    employee = message.parse(Employee)
    location = message.parse(Location)
    assert (employee.name, employee.age) == ("Ada", 36)
    assert (location.street, location.city) == ("1 Loop Rd", "Springfield")
    assert [type(m) for m in message.models] == [Employee, Location]


def test_parsing_twice_records_each_element_once() -> None:
    single = Message("assistant", "<employee name='Ada'>36</employee>")
    single.parse(Employee)
    single.parse(Employee)
    assert len(single.slices) == 1

    text = (
        "Intro <wrapper><employee  name='Ada'>36</employee> then "
        "<employee name='Bo'>41</employee><employee   name='Cy'>29</employee>"
    )
    several = Message("assistant", text)
    several.parse_set(Employee)
    assert [e.name for e in several.parse_set(Employee)] == ["Ada", "Bo", "Cy"]
    assert len(several.slices) == 3
    assert several.content == text


def test_parse_after_the_text_changed_reads_the_new_text() -> None:
    message = Message("assistant", "<employee name='Ada'>36</employee>")
    message.parse(Employee)
    message.content = "<employee name='Bo'>41</employee>"
    employee = message.parse(Employee)
    assert (employee.name, employee.age) == ("Bo", 41)
    assert len(message.slices) == 1


def test_parse_set_with_a_minimum() -> None:
    message = Message("assistant", "<note>one</note> <note>two</note>")
    assert [n.content for n in message.parse_set(Note, minimum=2)] == ["one", "two"]
    with pytest.raises(MissingModelError, match=r"Expected at least 3 <note></note> elements"):
        message.parse_set(Note, minimum=3)


def test_parse_and_parse_many_name_what_is_missing() -> None:
    message = Message("assistant", "no markup at all")
    assert message.try_parse(Employee) is None
    assert message.try_parse_many(Employee, Location) == []
    with pytest.raises(MissingModelError, match="Failed to find '<employee></employee>'"):
        message.parse(Employee)
    with pytest.raises(MissingModelError, match="Failed to find '<location></location>'"):
        Message("assistant", "<employee name='A'>1</employee>").parse_many(Employee, Location)


def test_strip_cuts_every_element_of_a_model() -> None:
    message = Message("assistant", "Leading words.<note>a</note><note>b</note>")
    message.parse_set(Note)
    assert len(message.slices) == 2
    removed = message.strip(Note)
    assert [type(s.obj) for s in removed] == [Note, Note]
    assert message.slices == []
    assert message.content == "Leading words."


def test_from_model_with_a_role_and_a_suffix() -> None:
    message = Message.from_model(Note(content="hi"), role="assistant", suffix="More to say")
    assert message.role == "assistant"
    assert message.content == "<note>hi</note>\n\nMore to say"
    [recorded] = message.slices
    assert recorded.obj == Note(content="hi")
    assert recorded.content == "<note>hi</note>"


def test_from_model_of_an_error_records_it_in_metadata() -> None:
    message = Message.from_model(ErrorModel(content="went wrong"))
    assert message.metadata == {"error": "went wrong"}
    assert "went wrong" in message.content


def test_apply_copies_and_apply_to_list_fills_each() -> None:
    original = Message("user", "Dear $name")
    filled = original.apply(name="Ada")
    assert filled is not original and filled.uuid == original.uuid
    assert (original.content, filled.content) == ("Dear $name", "Dear Ada")
    listed = Message.apply_to_list([Message("system", "$a"), Message("user", "$b")], a="1", b="2")
    assert [m.content for m in listed] == ["1", "2"]


def test_truncate_and_shorten_copy_and_leave_short_text_alone() -> None:
    long = Message("assistant", "0123456789" * 3)
    cut = long.truncate(20)
    assert cut.content == "01234567\n[truncated]"
    assert len(cut.content) == 20
    assert long.content == "0123456789" * 3
    assert long.shorten(11, sep="~").content == "01234~56789"
    short = Message("assistant", "tiny")
    assert short.truncate(4).content == "tiny"
    assert short.shorten(4).content == "tiny"


def test_system_content_helpers_on_edge_cases() -> None:
    empty: list[Message] = []
    assert [m.role for m in inject_system_content(empty, "Rules.")] == ["system"]
    no_system = [Message("user", "q")]
    assert strip_system_content(no_system, "Rules.") == no_system
    blank = [Message("user", "q")]
    assert inject_system_content(blank, "   ") == blank and len(blank) == 1
    chat = Chat([Message("user", "q")])
    chat.inject_system_content("Rules.")
    assert [(m.role, m.content) for m in chat.messages] == [("system", "Rules."), ("user", "q")]


# Slices


def test_a_slice_built_by_hand_is_detached() -> None:
    part = MessageSlice(
        type="model", start=2, stop=12, obj=Note(content="x"), metadata={"score": 0.5}
    )
    assert (part.type, part.start, part.stop, part.metadata) == ("model", 2, 12, {"score": 0.5})
    assert part.slice_ == slice(2, 12)
    assert len(part) == 10
    assert part.content == "[detached]"
    with pytest.warns(MessageWarning, match="this slice left its message: nothing to change"):
        part.content = "ignored"


def test_a_slice_reads_and_rewrites_its_message() -> None:
    message = Message("assistant", "Total: 17 items.")
    part = message.mark_slice((7, 9))
    assert part is not None and part.content == "17"
    part.content = "171"
    assert message.content == "Total: 171 items."
    assert (part.start, part.stop) == (7, 10)
    shown = str(part)
    assert shown.startswith("MessageSlice(type='other', start=7, stop=10")
    assert "'171'" in shown


def test_mark_slice_by_pattern_whole_text_and_custom_type() -> None:
    message = Message("assistant", "Scores: 7, 42, 300")
    assert message.mark_slice(re.compile(r"\d+")).content == "7"
    every = message.mark_slice(re.compile(r"\d+"), select="all")
    assert [s.content for s in every] == ["7", "42", "300"]
    assert len(message.slices) == 3  # marking again adds nothing
    whole = message.mark_slice(-1)
    assert (whole.start, whole.stop) == (0, len(message.content))
    custom = Message("assistant", "calling lookup").mark_slice("lookup", slice_type="tool_call")
    assert custom.type == "tool_call"


def test_mark_slice_is_case_sensitive_unless_told() -> None:
    message = Message("assistant", "The RESULT is final")
    assert message.mark_slice("result") is None
    found = message.mark_slice("FINAL", case_sensitive=False)
    assert found is not None and found.content == "final"
    last = Message("assistant", "Echo echo echo").mark_slice("echo", select="last")
    assert last.start == 10


@pytest.mark.parametrize("span", [(10, 20), (-1, 3), (4, 2)])
def test_mark_slice_warns_on_a_range_outside_the_text(span: tuple[int, int]) -> None:
    message = Message("assistant", "Brief")
    with pytest.warns(MessageWarning, match=rf"range \({span[0]}, {span[1]}\) is outside"):
        assert message.mark_slice(span) is None
    assert message.slices == []


def test_mark_slice_finds_nothing_in_empty_text_or_for_an_empty_target() -> None:
    assert Message("assistant", "").mark_slice("anything") is None
    message = Message("assistant", "Some words")
    with pytest.warns(MessageWarning, match="an empty string marks nothing"):
        assert message.mark_slice("") is None
    assert message.slices == []


def test_finding_slices_by_filter_and_order() -> None:
    message = Message("assistant", "alpha beta gamma")
    message.mark_slice("alpha", metadata={"weight": 0.9})
    message.mark_slice("beta", metadata={"weight": 0.2})
    message.mark_slice("gamma", slice_type="model", metadata={"weight": 0.7})
    heavy = message.find_slices(filter_fn=lambda s: s.metadata["weight"] > 0.5)
    assert [s.content for s in heavy] == ["alpha", "gamma"]
    assert [s.content for s in message.iter_slices(reverse=True)] == ["gamma", "beta", "alpha"]
    assert [s.content for s in message.iter_slices("other")] == ["alpha", "beta"]
    assert Message("assistant", "nothing marked").get_slice() is None


def test_removing_slices_by_text_by_object_and_by_nothing() -> None:
    message = Message("assistant", "One fish. Two fish. Red fish.")
    message.mark_slice("fish")  # every occurrence is marked, the first returned
    keep = message.mark_slice("Two")
    assert len(message.remove_slices("FISH")) == 3  # text targets ignore case
    assert message.slices == [keep] and message.content == "One . Two . Red ."
    assert message.remove_slices("absent") == []
    assert message.slices == [keep]

    trio = Message("assistant", "left middle right")
    left, middle, right = (trio.mark_slice(w) for w in ("left", "middle", "right"))
    trio.remove_slices(left, right)  # type: ignore[arg-type]
    assert trio.slices == [middle] and trio.content == "middle"


def test_new_text_moves_slices_that_still_fit_and_drops_the_rest() -> None:
    message = Message("assistant", "Code 42 and 99 here.")
    message.mark_slice("42")
    message.mark_slice("99")
    message.content = "Now the codes are 99 then 42."
    assert sorted((s.content, s.start) for s in message.slices) == [("42", 26), ("99", 18)]
    for part in message.slices:
        assert message.content[part.slice_] == part.content
    message.content = "No numbers any more."
    assert message.slices == []


def test_parsing_keeps_manual_slices_and_links_each_model() -> None:
    message = Message(
        "assistant",
        "Marked text. <record label='r1'><summary>Short</summary><score>7</score></record> "
        "<shelf title='s'><book>A</book><book>B</book></shelf>",
    )
    manual = message.mark_slice("Marked text")
    record = message.parse(Record)
    shelf = message.parse(Shelf)
    assert manual in message.slices and len(message.slices) == 3
    assert [s.obj for s in message.find_slices("model")] == [record, shelf]
    assert (record.label, record.summary, record.score) == ("r1", "Short", 7)
    assert shelf.books == ["A", "B"]


def test_slices_survive_a_json_round_trip() -> None:
    message = Message("assistant", "Intro: <note>body</note>")
    message.parse(Note)
    message.mark_slice("Intro", metadata={"tag": "lead", "values": [1, 2], "none": None})
    loaded = Message.model_validate_json(message.model_dump_json())
    assert sorted(s.content for s in loaded.slices) == ["<note>body</note>", "Intro"]
    tagged = [s for s in loaded.slices if s.metadata.get("tag") == "lead"]
    assert tagged[0].metadata == {"tag": "lead", "values": [1, 2], "none": None}


def test_chat_message_slices_span_every_message() -> None:
    chat = Chat(
        [Message("user", "Is it 7?"), Message("assistant", "Yes, 7.")],
        [Message("assistant", "Final: 7")],
    )
    for message in chat.all:
        message.mark_slice("7", metadata={"role": message.role})
    assert len(chat.message_slices()) == 3
    assistant = chat.message_slices(filter_fn=lambda s: s.metadata["role"] == "assistant")
    assert len(assistant) == 2
    assert Chat([]).message_slices() == []


def test_a_cloned_slice_is_detached() -> None:
    message = Message("assistant", "some text")
    part = message.mark_slice("text", metadata={"k": 1})
    copy = part.clone()
    assert (copy.start, copy.stop, copy.metadata) == (part.start, part.stop, {"k": 1})
    assert copy.content == "[detached]"
    cloned = message.clone()  # a cloned message's slices cover the clone
    cloned.content = "other text"
    assert cloned.slices[0].content == "text" and part.content == "text"
    assert cloned.slices[0]._message is cloned


# Chats


def test_chat_takes_message_likes_for_both_sides() -> None:
    chat = Chat(["Hi", {"role": "assistant", "content": "Hello"}], [Message("user", "Bye")])
    assert [(m.role, m.content) for m in chat.all] == [
        ("user", "Hi"),
        ("assistant", "Hello"),
        ("user", "Bye"),
    ]
    assert len(chat) == 3
    assert chat.generator is None and chat.generator_id is None


def test_all_last_prev_and_next() -> None:
    first = Message("user", "Hi")
    replies = [Message("assistant", "Hey"), Message("user", "How?"), Message("assistant", "Fine")]
    chat = Chat([first], replies)
    assert chat.prev == [first]
    assert chat.next == replies
    assert chat.all == [first, *replies]
    assert chat.last is replies[-1]
    unanswered = Chat([first])
    assert unanswered.last is first and unanswered.next == []


def test_conversation_message_dicts_and_str() -> None:
    chat = Chat([Message("user", "Hi")], [Message("assistant", "Hello there")])
    assert chat.conversation == "[user]: Hi\n\n[assistant]: Hello there"
    assert str(chat) == chat.conversation  # ours: no header, unlike rigging
    assert chat.message_dicts == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello there"},
    ]


def test_generator_id_keeps_the_provider() -> None:
    assert Chat([], generator=get_generator("gpt-3.5")).generator_id == "litellm!gpt-3.5"
    assert Chat([]).generator_id is None


def test_chat_and_message_metadata() -> None:
    chat = Chat([Message("user", "a").meta(step=1), Message("assistant", "b").meta(step=2, x=3)])
    assert chat.meta(run="r1") is chat
    assert chat.metadata == {"run": "r1"}
    assert chat.message_metadata == {"step": 2, "x": 3}


def test_apply_fills_the_last_message_in_place() -> None:
    chat = Chat([Message("user", "Ask $who")], [Message("assistant", "Told $who")])
    assert chat.apply(who="Ada") is chat
    assert [m.content for m in chat.all] == ["Ask $who", "Told Ada"]
    unanswered = Chat([Message("system", "$x"), Message("user", "$x")])
    unanswered.apply(x="y")
    assert [m.content for m in unanswered.all] == ["$x", "y"]
    assert [m.content for m in unanswered.apply_to_all(x="z").all] == ["z", "y"]


async def test_clone_copies_messages_and_optionally_the_rest() -> None:
    chat = await get_generator("echo!x,temperature=0.4").chat("ping").meta(tag="t").run()
    copy = chat.clone()
    assert copy.uuid != chat.uuid and copy.generator is chat.generator
    assert copy.all[0] is not chat.all[0] and copy.all[0].uuid == chat.all[0].uuid
    assert copy.metadata == {"tag": "t"} and copy.metadata is not chat.metadata
    assert (copy.params, copy.usage, copy.stop_reason) == (chat.params, chat.usage, "stop")
    copy.all[0].content = "changed"
    assert chat.all[0].content == "ping"
    bare = chat.clone(only_messages=True)
    assert (bare.metadata, bare.params, bare.usage, bare.stop_reason) == ({}, None, None, None)


async def test_restart_fork_and_continue_build_the_right_conversation() -> None:
    chat = Chat(
        [Message("user", "Hello"), Message("assistant", "Hi")],
        [Message("user", "Extra")],
        generator=get_generator("echo!x"),
    )
    assert len(chat.restart().messages) == 2
    assert len(chat.restart(include_all=True).messages) == 3
    assert len(chat.continue_(Message("user", "More")).messages) == 4
    assert len(chat.continue_(Message("assistant", "Also")).messages) == 4
    assert [m.content for m in chat.fork("Other").messages] == ["Hello", "Hi", "Other"]
    assert len(chat.fork("Other", include_all=True).messages) == 4
    continued = await chat.continue_("Next?").run()
    assert [m.content for m in continued.all] == ["Hello", "Hi", "Extra", "Next?", "Next?"]
    chat.generator = None
    with pytest.raises(ValueError, match="this result has no generator: pass one"):
        chat.restart()
    with pytest.raises(ValueError, match="this result has no generator: pass one"):
        chat.fork("x")


def test_continue_keeps_what_was_parsed() -> None:
    chat = Chat(
        [
            Message("user", "<employee name='Ada'>36</employee>"),
            Message("assistant", "<location><street>Main</street><city>X</city></location>"),
        ],
        generator=get_generator("echo!x"),
    )
    chat.all[0].parse(Employee)
    chat.all[1].parse(Location)
    messages = chat.continue_([Message("user", "And then?")]).messages
    assert [len(m.slices) for m in messages] == [1, 1, 0]
    assert isinstance(messages[1].slices[0].obj, Location)


def test_pipeline_fork_meta_and_add() -> None:
    pipeline = ChatPipeline(get_generator("echo!x"), [Message("user", "Hello")])
    forked = pipeline.fork(Message("user", "There"))
    assert forked is not pipeline
    assert [m.content for m in forked.messages] == ["Hello", "There"]
    assert [m.content for m in pipeline.messages] == ["Hello"]
    assert pipeline.meta(key="value") is pipeline and pipeline.metadata == {"key": "value"}
    assert pipeline.add(Message("assistant", "Hi!")) is pipeline  # no merging of roles
    assert [(m.role, m.content) for m in pipeline.messages] == [
        ("user", "Hello"),
        ("assistant", "Hi!"),
    ]


async def test_a_chat_round_trips_through_json() -> None:
    chat = await get_generator("echo!x,max_tokens=20").chat("<note>saved</note>").run()
    chat.meta(source="round-trip")
    chat.last.parse(Note)
    dumped = chat.model_dump_json()
    assert json.loads(dumped)["generator_id"] == "echo!x,max_tokens=20"
    loaded = Chat.model_validate_json(dumped)
    assert loaded.conversation == chat.conversation
    assert (loaded.uuid, loaded.timestamp) == (chat.uuid, chat.timestamp)
    assert (loaded.metadata, loaded.usage, loaded.stop_reason) == (
        {"source": "round-trip"},
        chat.usage,
        "stop",
    )
    assert isinstance(loaded.generator, type(chat.generator))
    assert loaded.params == GenerateParams(max_tokens=20)
    assert [s.content for s in loaded.last.slices] == ["<note>saved</note>"]


def test_strip_leaves_other_models_and_the_original() -> None:
    chat = Chat(
        [Message("user", "<note>keep me</note>")],
        [Message("assistant", "Sure <employee name='A'>1</employee><note>drop</note>")],
    )
    stripped = chat.strip(Employee)
    assert [m.content for m in stripped.all] == ["<note>keep me</note>", "Sure <note>drop</note>"]
    assert chat.last.content.startswith("Sure <employee")
    with pytest.raises(MissingModelError, match="Failed to find '<location></location>'"):
        chat.strip(Location, fail_on_missing=True)


# Generator identifiers


@pytest.mark.parametrize("identifier", ["some_model", "litellm!some_model"])
def test_litellm_is_the_default_provider(identifier: str) -> None:
    generator = get_generator(identifier)
    assert isinstance(generator, LiteLLMGenerator)
    assert generator.model == "some_model"


@pytest.mark.parametrize(
    ("identifier", "expected"),
    [
        ("litellm!m,max_tokens=123,top_p=10", GenerateParams(max_tokens=123, top_p=10)),
        ("litellm!m,temperature=0.5", GenerateParams(temperature=0.5)),
        ("m,temperature=1.0,max_tokens=100", GenerateParams(max_tokens=100, temperature=1.0)),
        ("m,stop=END", GenerateParams(stop=["END"])),
        ("m,stop=a;b;c;", GenerateParams(stop=["a", "b", "c", ""])),
    ],
)
def test_identifier_params_become_generate_params(
    identifier: str, expected: GenerateParams
) -> None:
    assert get_generator(identifier).params == expected


@pytest.mark.parametrize(
    "identifier",
    [
        "some_model,max_tokens=1024,top_p=0.1",
        "custom,temperature=1.0,max_tokens=100,api_base=https://localhost:8000",
        "many/model/slashes,stop=a;b;c;",
    ],
)
def test_rigging_identifiers_round_trip_with_the_provider_named(identifier: str) -> None:
    generator = get_generator(identifier)
    assert generator.to_identifier() == f"litellm!{identifier}"
    assert get_identifier(get_generator(generator.to_identifier())) == f"litellm!{identifier}"


def test_an_api_key_may_hold_equals_signs_and_never_shows() -> None:
    generator = get_generator("litellm!some_model,api_key=ZXhhbXBsZXRleHQ=")
    assert generator.model == "some_model"
    assert generator.secret() == "ZXhhbXBsZXRleHQ="
    assert generator.to_identifier() == "litellm!some_model"
    with pytest.raises(
        InvalidGeneratorError, match=r"'api_key' is given twice in .*api_key=\*\*\*"
    ):
        get_generator("echo!x,api_key=first,api_key=second")


@pytest.mark.parametrize(
    ("identifier", "message"),
    [
        ("invalid!testing", "unknown provider 'invalid' in 'invalid!testing'"),
        ("no_exist!stuff,args=123", "unknown provider 'no_exist'"),
        ("http!with_cls_args", "unknown provider 'http'"),  # HTTP-spec generator: not yet
        ("litellm:invalid,stuff:test,t1/123", "malformed part 'stuff:test' in .*: expected key="),
        ("bad:invalid,stuff:test,t1//;;123:", "malformed part 'stuff:test'"),
        ("litellm:model,bad_param=123,temperature=1.0", "unknown param 'bad_param'"),
        ("litellm:model,temperature=True", "invalid value 'True' for 'temperature'"),
        ("echo!x,stop=a,stop=b", "'stop' is given twice"),
    ],
)
def test_malformed_rigging_identifiers_are_refused(identifier: str, message: str) -> None:
    with pytest.raises(InvalidGeneratorError, match=message):
        get_generator(identifier)


def test_a_registered_custom_class_is_built_by_its_provider_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Parrot(FakeGenerator):
        pass

    monkeypatch.setattr(generator_base, "_REGISTRY", dict(generator_base._REGISTRY))
    with pytest.raises(InvalidGeneratorError, match="unknown provider 'parrot'"):
        get_generator("parrot!polly")
    register_generator("parrot", Parrot)
    generator = get_generator("parrot!polly,temperature=0.2")
    assert isinstance(generator, Parrot) and generator.model == "polly"
    assert generator.to_identifier() == "parrot!polly,temperature=0.2"
    with pytest.raises(InvalidGeneratorError, match="invalid provider name ''"):
        register_generator("", Parrot)


async def test_a_registered_class_runs_and_its_chats_reload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(generator_base, "_REGISTRY", dict(generator_base._REGISTRY))
    register_generator("parrot", FakeGenerator)
    chat = await get_generator("parrot!polly").chat("squawk").run()
    assert chat.generator_id == "parrot!polly"
    loaded = Chat.model_validate_json(chat.model_dump_json())
    assert isinstance(loaded.generator, FakeGenerator) and loaded.generator.model == "polly"


def test_get_identifier_keeps_extra_so_it_recreates_the_generator() -> None:
    """A documented difference: rigging leaves `params.extra` out of identifiers."""
    generator = get_generator("some_model,temperature=0.5")
    generator.params.extra = {"abc": 123}
    identifier = get_identifier(generator)
    assert identifier == "litellm!some_model,temperature=0.5,extra.abc=123"
    assert get_generator(identifier).params.extra == {"abc": 123}


# Completions


def test_completion_fields_and_generator_id() -> None:
    generator = get_generator("gpt-3.5")
    completion = Completion("foo", "bar", generator)
    assert (completion.text, completion.generated, completion.all) == ("foo", "bar", "foobar")
    assert completion.generator is generator
    assert str(completion) == "foobar"  # ours: the whole text
    assert completion.generator_id == "litellm!gpt-3.5"
    completion.generator = None
    assert completion.generator_id is None
    assert Completion("only").generated == ""


def test_completion_restart_fork_and_continue_texts() -> None:
    completion = Completion("foo", "bar", get_generator("echo!x"))
    assert completion.restart().text == "foo"  # ours: the original text
    assert completion.restart(include_all=True).text == "foobar"
    assert completion.fork("baz").text == "foobaz"
    assert completion.continue_("baz").text == "foobarbaz"
    completion.generator = None
    with pytest.raises(ValueError, match="this result has no generator: pass one"):
        completion.restart()


async def test_a_continued_completion_runs_on_the_whole_text() -> None:
    completion = await get_generator("echo!x").complete("ab").meta(k=1).run()
    assert (completion.text, completion.generated) == ("ab", "ab")
    follow = await completion.continue_("c").run()
    assert (follow.text, follow.generated, follow.metadata) == ("ababc", "ababc", {"k": 1})


def test_completion_pipeline_with_fork_meta_and_apply() -> None:
    pipeline = CompletionPipeline(get_generator("echo!x"), "Hello $name")
    assert pipeline.with_(GenerateParams(max_tokens=123)) is pipeline
    tuned = pipeline.with_(top_p=0.5)
    assert tuned is not pipeline
    assert tuned.params == GenerateParams(max_tokens=123, top_p=0.5)
    first, second = pipeline.fork("!"), pipeline.fork("?")
    assert (pipeline.text, first.text, second.text) == (
        "Hello $name",
        "Hello $name!",
        "Hello $name?",
    )
    assert pipeline.meta(key="value") is pipeline and pipeline.metadata == {"key": "value"}
    applied = pipeline.apply(name="World", unused="x")
    assert applied is not pipeline
    assert (pipeline.text, applied.text) == ("Hello $name", "Hello World")


async def test_module_level_chat_and_complete() -> None:
    generator = get_generator("echo!x")
    chat = await rg.chat(generator, "hey").run()
    assert chat.last.content == "hey"
    completion = await rg.complete(generator, "text").run()
    assert completion.generated == "text"


# The pipeline's conversation as rigging shows it (`pipeline.chat`, `len(pipeline)`) and
# rigging's `add(..., merge_strategy=)` (tests/test_chat.py)


def test_the_pipeline_chat_is_its_conversation_with_its_settings() -> None:
    params = GenerateParams(temperature=0.5)
    pipeline = ChatPipeline(get_generator("echo!x"), [Message("user", "Hello")], params=params)
    pipeline.meta(key="value")
    chat = pipeline.chat
    assert isinstance(chat, Chat) and len(chat) == len(pipeline) == 1
    assert (chat.generator, chat.params, chat.metadata) == (
        pipeline.generator,
        params,
        {"key": "value"},
    )
    chat.messages.append(Message("assistant", "Hi"))  # the pipeline's own list
    assert [m.content for m in pipeline.messages] == ["Hello", "Hi"]
    pipeline.chat = Chat([Message("user", "a")], [Message("assistant", "b")])
    assert [m.content for m in pipeline.messages] == ["a", "b"]
    continued = Chat(
        [Message("user", "Hello"), Message("assistant", "Hi")], generator=get_generator("echo!x")
    )
    assert [m.content for m in continued.continue_("More").chat.all] == ["Hello", "Hi", "More"]


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (
            "none",
            [("user", "Hello"), ("user", "There"), ("assistant", "Hi!"), ("assistant", "More")],
        ),
        ("only-user-role", [("user", "Hello\nThere"), ("assistant", "Hi!"), ("assistant", "More")]),
        ("all", [("user", "Hello\nThere"), ("assistant", "Hi!\nMore")]),
    ],
)
def test_add_merges_same_role_messages_as_told(
    strategy: t.Any, expected: list[tuple[str, str]]
) -> None:
    pipeline = ChatPipeline(get_generator("echo!x"), [Message("user", "Hello")])
    original = pipeline.clone()
    pipeline.add("There", merge_strategy=strategy)
    pipeline.add([Message("assistant", "Hi!")], merge_strategy=strategy)
    pipeline.add({"role": "assistant", "content": "More"}, merge_strategy=strategy)
    assert [(m.role, m.content) for m in pipeline.chat.all] == expected
    assert [m.content for m in original.messages] == ["Hello"]  # merging copies


def test_add_merges_only_the_first_incoming_message_and_into_an_empty_pipeline_adds() -> None:
    pipeline = ChatPipeline(get_generator("echo!x"))
    pipeline.add(Message("user", "Hello"), merge_strategy="all")
    assert [m.content for m in pipeline.messages] == ["Hello"]
    pipeline.add(
        [Message("user", "There"), Message("assistant", "Hi!"), Message("assistant", "x")],
        merge_strategy="all",
    )
    assert [m.content for m in pipeline.messages] == ["Hello\nThere", "Hi!", "x"]
    assert pipeline.add([], merge_strategy="all") is pipeline and len(pipeline) == 3


def test_an_unknown_merge_strategy_is_refused() -> None:
    pipeline = ChatPipeline(get_generator("echo!x"), "Hello")
    with pytest.raises(
        ValueError, match=r"^merge_strategy must be one of none, only-user-role, all, got 'user'$"
    ):
        pipeline.add("There", merge_strategy="user")  # type: ignore[arg-type]


def test_completions_and_their_pipelines_have_a_length() -> None:
    completion = Completion("foo", "bar", get_generator("echo!x"))
    assert len(completion) == 6
    assert len(completion.restart()) == 3 and len(completion.restart(include_all=True)) == 6
    assert len(completion.fork("baz")) == 6 and len(completion.continue_("baz")) == 9


async def test_a_failing_map_callback_fails_its_chats_once_its_error_is_caught() -> None:
    async def failing(chats: list[Chat]) -> list[Chat]:
        raise RuntimeError("Map callback failure")

    pipeline = get_generator("echo!x").chat("test").map(failing)
    with pytest.raises(RuntimeError, match="Map callback failure"):
        await pipeline.run(on_failed="include")  # not a caught error
    chats = await pipeline.catch(RuntimeError, on_failed="include").run_many(2)
    assert [(c.failed, str(c.error)) for c in chats] == [(True, "Map callback failure")] * 2
    assert await pipeline.catch(RuntimeError).run_many(2, on_failed="skip") == []


def test_max_depth_error_takes_riggings_own_arguments() -> None:
    step = object()
    error = rg.MaxDepthError(3, step, "the prompt")
    assert str(error) == "Exceeded max depth (3) while generating ('the prompt')"
    assert (error.max_depth, error.step) == (3, step)
    assert isinstance(error, rg.ExhaustedMaxRoundsError)
    assert (
        str(rg.MaxDepthError(2, "unparsed")) == "Exhausted max rounds (2) while parsing: unparsed"
    )
