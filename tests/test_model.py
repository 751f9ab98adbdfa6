"""Parsing models out of model output: tolerant, exact, and linear on hostile text."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pytest_rigging.error import InvalidModelSpecifiedError, MissingModelError
from pytest_rigging.message import Message
from pytest_rigging.model import (
    Answer,
    CommaDelimitedAnswer,
    DelimitedAnswer,
    Description,
    Instructions,
    Model,
    NewlineDelimitedAnswer,
    Question,
    QuestionAnswer,
    Thinking,
    YesNoAnswer,
    element,
    find_elements,
    kebab,
)


class Person(Model):
    name: str = element()
    age: int = element()
    nicknames: list[str] = element(tag="nickname", default=[])


class Team(Model, tag="squad"):
    lead: Person
    members: list[Person] = element(default=[])


@pytest.mark.parametrize(
    ("cls", "tag"),
    [
        (Answer, "answer"),
        (CommaDelimitedAnswer, "comma-delimited-answer"),
        (NewlineDelimitedAnswer, "newline-delimited-answer"),
        (YesNoAnswer, "yes-no-answer"),
        (QuestionAnswer, "question-answer"),
        (Thinking, "thinking"),
        (Description, "description"),
        (Instructions, "instructions"),
        (Question, "question"),
        (Team, "squad"),
    ],
)
def test_tags_are_kebab_case_class_names_unless_overridden(cls: type[Model], tag: str) -> None:
    assert cls.xml_tags() == f"<{tag}></{tag}>"


def test_kebab_handles_acronyms_and_snake_case() -> None:
    assert kebab("HTTPResponse") == "http-response"
    assert kebab("user_name") == "user-name"


def test_text_around_attributes_and_case_are_tolerated() -> None:
    text = 'Sure! <ANSWER lang="en">  Paris &amp; Co </answer> hope that helps'
    assert Message(role="assistant", content=text).parse(Answer).content == "Paris & Co"


def test_tag_named_in_prose_before_the_real_element_loses() -> None:
    text = "I will answer inside <answer> tags as asked.\n<answer>Paris</answer>"
    assert Message(role="assistant", content=text).parse(Answer).content == "Paris"


def test_first_match_by_position_and_parse_set() -> None:
    message = Message(role="assistant", content="<answer>1</answer> x <answer>2</answer>")
    assert message.parse(Answer).content == "1"
    assert [a.content for a in message.parse_set(Answer)] == ["1", "2"]
    with pytest.raises(MissingModelError, match="at least 3 <answer></answer> elements, found 2"):
        message.parse_set(Answer, minimum=3)


def test_parse_many_orders_by_position_and_requires_each_model() -> None:
    message = Message(
        role="assistant",
        content="<thinking>hmm</thinking><answer>A</answer><thinking>again</thinking>",
    )
    found = message.parse_many(Thinking, Answer)
    assert [type(m).__name__ for m in found] == ["Thinking", "Answer", "Thinking"]
    with pytest.raises(MissingModelError, match="<question></question>"):
        message.parse_many(Answer, Question)


def test_nested_models_and_child_fields() -> None:
    # pydantic-xml reads fields in order: `lead` takes the first <person>, `members` the rest.
    text = """<squad>
      <person><name>Ada</name><age>36</age><nickname>Countess</nickname></person>
      <person><name>Alan</name><age>41</age></person>
    </squad>"""
    team = Message(role="assistant", content=text).parse(Team)
    assert team.lead.name == "Ada"
    assert team.lead.nicknames == ["Countess"]
    assert [p.name for p in team.members] == ["Alan"]
    pair = QuestionAnswer.one_from_text(
        "<question-answer><question>Why?</question><answer>Because</answer></question-answer>"
    )[0]
    assert (pair.question.content, pair.answer.content) == ("Why?", "Because")


def test_round_trip_through_pretty_xml() -> None:
    person = Person(name="A <b> & c", age=3, nicknames=["x", "y"])
    assert Person.one_from_text(person.to_pretty_xml())[0] == person
    assert Answer.one_from_text(Answer(content="1 < 2").to_pretty_xml())[0].content == "1 < 2"


def test_xml_example_shows_the_expected_shape() -> None:
    assert Person.xml_example().splitlines() == [
        "<person>",
        "  <name/>",
        "  <age/>",
        "  <nickname/>",
        "</person>",
    ]
    assert CommaDelimitedAnswer.xml_example() == (
        "<comma-delimited-answer>item1, item2, item3</comma-delimited-answer>"
    )


def test_invalid_element_reports_validation_error_but_later_valid_one_wins() -> None:
    with pytest.raises(ValidationError, match="age"):
        Person.from_text("<person><name>A</name><age>old</age></person>")
    text = (
        "<person><name>A</name><age>old</age></person><person><name>B</name><age>2</age></person>"
    )
    assert Person.one_from_text(text)[0].name == "B"


def test_missing_model_error_names_the_tag() -> None:
    with pytest.raises(MissingModelError, match=r"Failed to find '<answer></answer>' in text"):
        Answer.from_text("no tags here")
    assert Message(role="assistant", content="none").try_parse(Answer) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Yes.", True), ("TRUE", True), ("no way", False), (" False ", False)],
)
def test_yes_no_answer(text: str, expected: bool) -> None:
    assert (
        YesNoAnswer.one_from_text(f"<yes-no-answer>{text}</yes-no-answer>")[0].boolean is expected
    )


def test_yes_no_answer_rejects_anything_else() -> None:
    with pytest.raises(ValidationError, match="expected yes/no/true/false, got 'maybe'"):
        YesNoAnswer.from_text("<yes-no-answer>maybe</yes-no-answer>")


def test_delimited_answers_pick_their_delimiter_and_strip_quotes() -> None:
    comma = CommaDelimitedAnswer.one_from_text(
        "<comma-delimited-answer>'Leonardo da Vinci', Vincent van Gogh ,Pablo Picasso"
        "</comma-delimited-answer>"
    )[0]
    assert comma.items == ["Leonardo da Vinci", "Vincent van Gogh", "Pablo Picasso"]
    lines = NewlineDelimitedAnswer.one_from_text(
        "<newline-delimited-answer>\na\nb, c\n</newline-delimited-answer>"
    )[0]
    assert lines.items == ["a", "b, c"]
    assert DelimitedAnswer.one_from_text("<delimited-answer>a|b|c, d</delimited-answer>")[
        0
    ].items == ["a", "b", "c, d"]
    with pytest.raises(ValidationError, match="at least one delimited item"):
        CommaDelimitedAnswer.from_text("<comma-delimited-answer> , </comma-delimited-answer>")


def test_model_without_fields_is_rejected_clearly() -> None:
    class Empty(Model):
        pass

    with pytest.raises(InvalidModelSpecifiedError, match="Empty has no fields to parse into"):
        Empty.from_text("<empty>x</empty>")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "<answer",
        "</answer></answer><answer>",
        "<<answer>>><</answer</answer",
        "<answer><answer><answer>",
        "\udcff\udcfe<answe\x00r>",
        "<" * 10_000,
    ],
    ids=[
        "empty",
        "unclosed-start",
        "closes-first",
        "tag-soup",
        "opens-only",
        "surrogates",
        "brackets",
    ],
)
def test_bad_output_is_a_parse_failure_never_a_crash(text: str) -> None:
    with pytest.raises(MissingModelError):
        Answer.from_text(text)


def test_non_utf8_bytes_are_decoded_not_crashed_on() -> None:
    assert Answer.one_from_text(b"\xff\xfe<answer>ok \xff</answer>")[0].content == "ok \ufffd"
    with pytest.raises(MissingModelError):
        Answer.from_text(b"\xff\xfe\xfd")


def test_ten_megabytes_with_one_element_at_the_end() -> None:
    text = "word " * 2_000_000 + "<answer>late</answer>"
    assert Answer.one_from_text(text)[0].content == "late"


def test_hostile_unclosed_tags_are_a_parse_failure() -> None:
    # rigging 3.3.5 needs ~13 s for 8 KB of this; bench/bench_parse.py times ours.
    with pytest.raises(MissingModelError):
        Answer.from_text("<answer> " * 12_000)


def test_find_elements_pairs_each_close_with_nearest_open() -> None:
    text = "<a>x<a>y</a>z</a>"
    spans = find_elements("a", text)
    assert [text[s:e] for s, _, _, e in spans] == ["<a>x<a>y</a>z</a>", "<a>y</a>"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<answer>a</answer> x <ANSWER>b</Answer >", ["a", "b"]),
        ("<answer>1 < 2</answer> and </answer> stray <answer>b</answer>", ["1 < 2", "b"]),
        ("<answer>a</answer></answers><answer>b</answer>", ["a", "b"]),
    ],
    ids=["simple", "inner-bracket-and-stray-close", "similar-tag"],
)
def test_fast_and_general_pairing_agree(text: str, expected: list[str]) -> None:
    assert [m.content for m, _ in Answer.from_text(text)] == expected
    general = [text[a:b].strip() for _, a, b, _ in find_elements("answer", text)]
    assert general == expected


def test_models_read_in_bulk_stay_independent() -> None:
    first, second = (m for m, _ in Answer.from_text("<answer>a</answer> <answer>b</answer>"))
    first.content = "changed"
    assert (first.content, second.content) == ("changed", "b")
    assert first.model_fields_set == second.model_fields_set == {"content"}
    copied = second.model_copy(update={"content": "c"})
    assert (copied.content, second.content) == ("c", "b")
