"""Models declared with pydantic-xml's attr/element/wrapped, and the helpers that build
models at runtime: the cases rigging's own model and XML-parsing tests cover, on ours."""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import types
import typing as t
from textwrap import dedent
from xml.etree import ElementTree

import pytest
from pydantic import BaseModel, Field, ValidationError

import pytest_rigging.model as model_module
import pytest_rigging.parsing as rg_parsing
from pytest_rigging.error import InvalidModelSpecifiedError, MissingModelError
from pytest_rigging.message import Message
from pytest_rigging.model import (
    MAX_DEPTH,
    Answer,
    CommaDelimitedAnswer,
    DelimitedAnswer,
    ErrorModel,
    Model,
    Primitive,
    Question,
    QuestionAnswer,
    SystemErrorModel,
    Thinking,
    ValidationErrorModel,
    YesNoAnswer,
    attr,
    element,
    make_from_schema,
    make_from_signature,
    make_primitive,
    wrapped,
)


class NameWithThings(Model):
    name: str = attr()
    things: list[str] = element("thing")


class Inner(Model):
    type: str = attr()
    content: str


class Outer(Model):
    content: str


class A(Model):
    content: str


class Tag(Model):
    content: str


class Wrapped(Model):
    inners: list[Inner] = element()


class Ticket(Model):
    id: int = attr()
    priority: t.Literal["low", "high"] = element()
    title: str = element()
    notes: str | None = element(default=None)
    labels: list[str] = wrapped("labels", element(tag="label", default=[]))
    owner: Inner | None = element(default=None)


def parsed(text: str, *models: type[Model]) -> list[Model]:
    return Message(role="assistant", content=text).parse_many(*models)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("<answer>hello</answer>", [Answer(content="hello")]),
        ("Random data <question>hello</question>", [Question(content="hello")]),
        (
            "<answer>hello</answer><question>world</question>",
            [Answer(content="hello"), Question(content="world")],
        ),
        (
            "<question>hello</question><answer>world</answer>",
            [Question(content="hello"), Answer(content="world")],
        ),
        (
            "Sure I'll answer between <answer> tags. <answer>hello</answer>",
            [Answer(content="hello")],
        ),
        (
            "Sure I'll answer between <answer></answer> tags. <answer>hello</answer>",
            [Answer(content=""), Answer(content="hello")],
        ),
        (
            "<question> Should I answer between <answer> tags? </question> <answer>hi</answer>",
            [Question(content="Should I answer between <answer> tags?"), Answer(content="hi")],
        ),
        (
            "<question-answer><question>hello</question><answer>world</answer></question-answer>",
            [QuestionAnswer(question=Question(content="hello"), answer=Answer(content="world"))],
        ),
        (
            '<name-with-things name="test"><thing>a</thing><thing>b</thing></name-with-things>',
            [NameWithThings(name="test", things=["a", "b"])],
        ),
        (
            '<wrapped><inner type="cat">meow</inner><inner type="dog">bark</inner></wrapped>',
            [
                Wrapped(
                    inners=[Inner(type="cat", content="meow"), Inner(type="dog", content="bark")]
                )
            ],
        ),
        (
            "<outer>text before <inner>nested content</inner> text after</outer>",
            [Outer(content="text before <inner>nested content</inner> text after")],
        ),
        (
            "<outer>Some text with <inner> incomplete tags</outer>",
            [Outer(content="Some text with <inner> incomplete tags")],
        ),
        (
            "Commentary about the `<outer>` tag\n\n"
            "<outer>\nsomething is <inner> and </inner>\n</outer>",
            [Outer(content="something is <inner> and </inner>")],
        ),
        (
            "<outer>level 1 <middle>level 2 <inner>3</inner> still 2</middle> back to 1</outer>",
            [Outer(content="level 1 <middle>level 2 <inner>3</inner> still 2</middle> back to 1")],
        ),
        ("Here's how to use <tag>: <tag>actual content</tag>", [Tag(content="actual content")]),
        (
            "<outer>Text with &lt;inner&gt; as escaped HTML entities</outer>",
            [Outer(content="Text with <inner> as escaped HTML entities")],
        ),
        (
            "<answer>first</answer> text <answer>second</answer> more <answer>third</answer>",
            [Answer(content="first"), Answer(content="second"), Answer(content="third")],
        ),
    ],
    ids=[
        "single-answer",
        "single-question",
        "answer-and-question",
        "question-and-answer",
        "duplicate-start-tag",
        "duplicate-tags",
        "question-with-answer-tag",
        "question-answer",
        "name-with-things",
        "wrapped",
        "outer-with-inner-tag",
        "incomplete-inner-tag",
        "comment-before-tag",
        "multiple-nested-levels",
        "tag-in-text-and-xml",
        "escaped-xml-in-content",
        "order",
    ],
)
def test_parsing_matches_rigging_cases(content: str, expected: list[Model]) -> None:
    found = parsed(content, *dict.fromkeys(type(m) for m in expected))
    assert [(type(m), m.model_dump()) for m in found] == [
        (type(m), m.model_dump()) for m in expected
    ]


def test_an_unclosed_tag_of_another_model_is_just_text() -> None:
    assert parsed("<answer> <question>hello</question>", Question) == [Question(content="hello")]
    with pytest.raises(MissingModelError, match=r"Failed to find '<answer></answer>' in text"):
        Answer.from_text("<answer> <question>hello</question>")


def test_same_tag_nesting_reads_the_innermost_as_rigging_does() -> None:
    # rigging's own case (test_xml_parsing, overlapping_tags): only elements holding no
    # element of their tag are read.
    text = "<a>first <b>overlap <a>nested</a> continue</b> end</a>"
    assert [(m.content, s) for m, s in A.from_text(text)] == [("nested", slice(20, 33))]
    assert [m.content for m, _ in A.from_text("<a>1<a>2<a>3</a></a></a>")] == ["3"]
    assert [m.content for m, _ in A.from_text("<a>1</a><a>2 <a>3</a></a>")] == ["1", "3"]
    assert [m.content for m, _ in A.from_text("<a>o <a>i</a> <a>j</a> e</a>")] == ["i", "j"]
    assert Message("assistant", text).parse_set(A) == [A(content="nested")]


def test_a_model_holding_its_own_tag_reads_the_outer_element_too() -> None:
    text = '<node label="a"><node label="b"></node></node>'
    assert [m.label for m, _ in Node.from_text(text)] == ["a", "b"]
    assert Node.one_from_text(text)[0] == Node(label="a", children=[Node(label="b")])


@pytest.mark.parametrize(
    "content",
    [
        "<yes-no-answer>yes</yes-no-answer>",
        "<yes-no-answer>Yes</yes-no-answer>",
        "<yes-no-answer>No, extra stuff</yes-no-answer>",
        "<yes-no-answer>No, stuff <internal-tag></yes-no-answer>",
        "<delimited-answer>hello world</delimited-answer>",
        "<comma-delimited-answer>hello,world</comma-delimited-answer>",
        "<comma-delimited-answer>hello, world, </comma-delimited-answer>",
        "<comma-delimited-answer>hello</comma-delimited-answer>",
        "<comma-delimited-answer>hello;test;stuff</comma-delimited-answer>",
    ],
)
def test_valid_builtin_answers(content: str) -> None:
    models = [YesNoAnswer, DelimitedAnswer, CommaDelimitedAnswer]
    model = next(m for m in models if content.startswith(m.xml_start_tag()))
    assert len(model.from_text(content)) == 1


@pytest.mark.parametrize(
    ("content", "items"),
    [
        ("<delimited-answer>\n- hello\n - world</delimited-answer>", ["hello", "world"]),
        (
            "<delimited-answer>hello, world, foo | bar</delimited-answer>",
            ["hello", "world", "foo | bar"],
        ),
        (
            "<delimited-answer>hello / world / foo / bar, test | value</delimited-answer>",
            ["hello", "world", "foo", "bar, test | value"],
        ),
    ],
)
def test_delimited_answer_items(content: str, items: list[str]) -> None:
    assert DelimitedAnswer.one_from_text(content)[0].items == items


def test_parse_sets() -> None:
    yes_no = "<yes-no-answer>yes</yes-no-answer><yes-no-answer>no</yes-no-answer>"
    assert [m.boolean for m, _ in YesNoAnswer.from_text(yes_no)] == [True, False]
    prose_then_element = "<delimited-answer><delimited-answer>1, 2, 3</delimited-answer>"
    assert len(DelimitedAnswer.from_text(prose_then_element)) == 1


#
# xml_example, in rigging's shape
#


class SimpleElement(Model):
    content: str = element(examples=["Hello, World!"])
    """The main content of the model."""


class NoExample(Model):
    name: str
    """The name of the entity."""


class AttrAndElement(Model):
    id: int = attr(examples=[123])
    """The unique identifier (attribute)."""
    value: str = element(examples=["Some value"])
    """The primary value (element)."""


class Described(Model):
    field1: str = element(examples=["val1"])
    """This is the description for field1."""
    field2: bool = element(examples=[True])
    """This is the description for field2."""
    param: str = element(examples=["override"], description="From the parameter.")
    """This docstring loses to the description parameter."""


class SpecialChars(Model):
    data: str = element(examples=["<tag>&'"])
    """Contains < and > & special characters."""


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        (
            SimpleElement,
            """
            <simple-element>
              <!-- The main content of the model. -->
              <content>Hello, World!</content>
            </simple-element>
            """,
        ),
        (NoExample, "<no-example></no-example>"),
        (
            AttrAndElement,
            """
            <attr-and-element id="123">
              <!-- The primary value (element). -->
              <value>Some value</value>
            </attr-and-element>
            """,
        ),
        (
            Described,
            """
            <described>
              <!-- This is the description for field1. -->
              <field1>val1</field1>
              <!-- This is the description for field2. -->
              <field2>True</field2>
              <!-- From the parameter. -->
              <param>override</param>
            </described>
            """,
        ),
        (
            SpecialChars,
            """
            <special-chars>
              <!-- Contains &lt; and &gt; &amp; special characters. -->
              <data>&lt;tag&gt;&amp;'</data>
            </special-chars>
            """,
        ),
        (Inner, '<inner type=""></inner>'),
        (
            Ticket,
            """
            <ticket id="">
              <priority/>
              <title/>
              <notes/>
              <labels>
                <label/>
              </labels>
              <inner type=""></inner>
            </ticket>
            """,
        ),
        (
            QuestionAnswer,
            """
            <question-answer>
              <!-- The question -->
              <question></question>
              <!-- The answer -->
              <answer></answer>
            </question-answer>
            """,
        ),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else "",
)
def test_xml_example(model: type[Model], expected: str) -> None:
    assert model.xml_example() == dedent(expected).strip()


def test_xml_example_uses_the_tag_a_field_gives_a_nested_model() -> None:
    class Boss(Model):
        lead: Inner = element(tag="lead")

    assert Boss.xml_example().splitlines() == ["<boss>", '  <lead type=""></lead>', "</boss>"]


#
# Structured models: attributes, elements, wrapped lists, nesting, round trips
#


def test_structured_model_reads_attributes_elements_and_wrapped_lists() -> None:
    text = """Here is the ticket:
    <TICKET id='7' extra=unquoted>
      <priority>high</priority>
      <title>
        Login fails
      </title>
      <labels><label>auth</label><label>web</label></labels>
      <inner type="person">Ada</inner>
    </TICKET> done."""
    ticket, span = Ticket.one_from_text(text)
    assert ticket == Ticket(
        id=7,
        priority="high",
        title="Login fails",
        labels=["auth", "web"],
        owner=Inner(type="person", content="Ada"),
    )
    assert text[span].startswith("<TICKET") and text[span].endswith("</TICKET>")


def test_prose_inside_text_fields_is_repaired_not_rejected() -> None:
    text = (
        "<ticket id=1><priority>low</priority><title>if a < b && c </br> then</title>"
        '<inner type="x">1 < 2 & <3></inner> note: a & b</ticket>'
    )
    ticket = Ticket.one_from_text(text)[0]
    assert ticket.title == "if a < b && c </br> then"
    assert ticket.owner == Inner(type="x", content="1 < 2 & <3>")


def test_malformed_structure_is_a_validation_error_naming_the_element() -> None:
    with pytest.raises(ValidationError, match=r"<ticket> is not well-formed XML \(mismatched tag"):
        Ticket.from_text("<ticket id='1'><priority>low</priority><title>x</title></oops></ticket>")


def test_invalid_field_is_a_validation_error_naming_the_field() -> None:
    with pytest.raises(ValidationError, match=r"priority\n.*Input should be 'low' or 'high'"):
        Ticket.from_text("<ticket id='1'><priority>urgent</priority><title>x</title></ticket>")
    with pytest.raises(ValidationError, match=r"id\n.*valid integer"):
        Ticket.from_text("<ticket id='one'><priority>low</priority><title>x</title></ticket>")


ROUND_TRIPS = [
    Answer(content="1 < 2 & 3 > 2, &amp; stays"),
    Answer(content=""),
    YesNoAnswer(boolean=False),
    Inner(type='say "hi" & <go>', content="multi\nline\n  indented"),
    NameWithThings(name="n", things=["a <b>", "c & d"]),
    Wrapped(inners=[Inner(type="a", content="x"), Inner(type="b", content="y < z")]),
    QuestionAnswer(question=Question(content="Why?"), answer=Answer(content="Because.")),
    Ticket(id=3, priority="low", title="t", notes="n & m", labels=["x"], owner=None),
    Ticket(id=4, priority="high", title="t", owner=Inner(type="o", content="c")),
    ErrorModel(type="KeyError", content="'k' <missing>"),
]


@pytest.mark.parametrize("model", ROUND_TRIPS, ids=lambda m: type(m).__name__)
def test_round_trip_through_to_xml_and_pretty_xml(model: Model) -> None:
    assert type(model).one_from_text(model.to_xml())[0] == model
    assert type(model).one_from_text(model.to_pretty_xml())[0] == model
    assert str(model) == model.to_pretty_xml()


def test_to_xml_passes_options_through() -> None:
    ticket = Ticket(id=1, priority="low", title="")
    assert ticket.to_xml() == (
        '<ticket id="1"><priority>low</priority><title></title><notes></notes>'
        "<labels></labels></ticket>"
    )
    assert ticket.to_xml(skip_empty=True) == '<ticket id="1"><priority>low</priority></ticket>'
    assert "<notes" not in ticket.to_xml(exclude_none=True)
    assert ticket.to_xml(exclude_unset=True) == (
        '<ticket id="1"><priority>low</priority><title></title></ticket>'
    )
    assert ticket.to_xml(short_empty_elements=True).count(" />") == 3
    assert ticket.to_xml(encoding="utf-8") == ticket.to_xml()


def test_to_pretty_xml_layout_and_options() -> None:
    ticket = Ticket(id=1, priority="low", title="two\nlines", notes=None)
    assert ticket.to_pretty_xml(exclude_none=True) == dedent(
        """\
        <ticket id="1">
          <priority>low</priority>
          <title>
            two
            lines
          </title>
          <labels />
        </ticket>"""
    )
    assert ticket.to_pretty_xml(skip_empty=True).count("\n") == 6
    assert Answer(content="").to_pretty_xml() == "<answer></answer>"
    assert YesNoAnswer(boolean=True).to_pretty_xml() == "<yes-no-answer>yes</yes-no-answer>"
    assert YesNoAnswer(boolean=True).model_dump() == {"boolean": True}


#
# from_text / one_from_text options
#


def test_return_errors_lists_invalid_elements_with_their_slices() -> None:
    text = "<yes-no-answer>maybe</yes-no-answer> and <yes-no-answer>yes</yes-no-answer>"
    found = YesNoAnswer.from_text(text, return_errors=True)
    (error, bad), (model, good) = found
    assert isinstance(error, ValidationError)
    assert "expected yes/no/true/false, got 'maybe'" in str(error)
    assert text[bad] == "<yes-no-answer>maybe</yes-no-answer>"
    assert model == YesNoAnswer(boolean=True)
    assert text[good] == "<yes-no-answer>yes</yes-no-answer>"
    assert YesNoAnswer.from_text(text) == [(model, good)]
    with pytest.raises(MissingModelError, match="Failed to find '<yes-no-answer></yes-no-answer>'"):
        YesNoAnswer.from_text("nothing", return_errors=True)


def test_fail_on_many() -> None:
    text = "<answer>a</answer> <answer>b</answer>"
    assert Answer.one_from_text(text)[0].content == "a"
    with pytest.raises(
        ValidationError,
        match=r"found 2 valid <answer></answer> elements where one was expected "
        r"\(fail_on_many=True\)",
    ):
        Answer.one_from_text(text, fail_on_many=True)
    assert Answer.one_from_text("<answer>a</answer>", fail_on_many=True)[0].content == "a"


def test_text_models_take_raw_prose_cdata_and_entities() -> None:
    assert Answer.one_from_text("<answer>if a<b && c>d</answer>")[0].content == "if a<b && c>d"
    assert Answer.one_from_text("<answer><![CDATA[x < &amp;]]> &amp; y</answer>")[0].content == (
        "x < &amp; & y"
    )
    # One decoding pass: an escaped entity stays an entity.
    assert Answer.one_from_text("<answer>&amp;lt;</answer>")[0].content == "&lt;"
    code = "<answer>\n    def f():\n        return 1\n</answer>"
    assert Answer.one_from_text(code)[0].content == "def f():\n    return 1"


def test_attribute_models_tolerate_quoting_and_case() -> None:
    text = "<ERROR type=TimeoutError>slow &amp; steady</Error> <error type='A&amp;B'>x</error>"
    assert [m for m, _ in ErrorModel.from_text(text)] == [
        ErrorModel(type="TimeoutError", content="slow & steady"),
        ErrorModel(type="A&B", content="x"),
    ]


#
# Model kinds and declarations
#


@pytest.mark.parametrize(
    ("model", "simple", "with_attrs"),
    [
        (Answer, True, False),
        (YesNoAnswer, True, False),
        (make_primitive("Score", int), True, False),
        (Inner, False, True),
        (ErrorModel, False, True),
        (SimpleElement, False, False),
        (QuestionAnswer, False, False),
        (Ticket, False, False),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else str(v),
)
def test_is_simple(model: type[Model], simple: bool, with_attrs: bool) -> None:
    assert model.is_simple() is simple
    assert model.is_simple_with_attrs() is with_attrs


def test_several_plain_fields_read_child_elements() -> None:
    """rigging's users write `name: str; age: int` and expect a child element per field:
    unmarked scalar fields of a model with several of them are declared element()."""

    class Person(Model):
        name: str
        age: int = 0

    found = Person.one_from_text("<person><name>Ada</name><age>36</age></person>")[0]
    assert found == Person(name="Ada", age=36)
    assert Person.one_from_text("<person><name>Bo</name></person>")[0].age == 0
    assert Person.from_text(Person(name="Cy", age=2).to_pretty_xml())[0][0].name == "Cy"


def test_plain_fields_that_cannot_become_elements_are_rejected_where_declared() -> None:
    with pytest.raises(
        InvalidModelSpecifiedError,
        match=r"Pair: fields 'a', 'b' would all read the text of <pair>; "
        r"declare all but one with element\(\) or attr\(\)",
    ):

        class Pair(Model):
            a: str = Field(default="x", description="a")
            b: str


def test_unmarked_list_of_scalars_is_rejected_where_declared() -> None:
    with pytest.raises(
        InvalidModelSpecifiedError,
        match=r"Tags\.tags: entity name is not provided; "
        r"declare the field with element\(\), attr\(\) or wrapped\(\)",
    ):

        class Tags(Model):
            tags: list[str]


def test_single_attribute_model_parses() -> None:
    class Flag(Model):
        on: bool = attr()

    assert Flag.one_from_text('<flag on="true"></flag>')[0].on is True


class Nothing(Model):
    pass


class Holder(Model):
    thing: Nothing


def test_nested_empty_model_is_rejected_when_parsed() -> None:
    with pytest.raises(InvalidModelSpecifiedError, match="Nothing has no fields to parse into"):
        Holder.from_text("<holder><nothing></nothing></holder>")


def test_unresolved_forward_reference_is_rejected_when_parsed() -> None:
    class Later(Model):
        early: Undefined  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(
        InvalidModelSpecifiedError,
        match=r"Later is not fully defined \(name 'Undefined' is not defined\); define the type, "
        r"then call Later.model_rebuild\(\)",
    ):
        Later.from_text("<later><early>x</early></later>")


#
# make_primitive
#


def test_make_primitive() -> None:
    score = make_primitive("Score", int, doc="A score from 1 to 10.")
    assert issubclass(score, Primitive)
    assert score.xml_tags() == "<score></score>"
    assert score.__doc__ == "A score from 1 to 10."
    assert score.one_from_text("Score: <score> 7 </score>")[0].content == 7
    with pytest.raises(ValidationError, match="valid integer"):
        score.from_text("<score>seven</score>")
    named = make_primitive("Named", tag="nm")
    assert named.one_from_text("<nm> Ada </nm>")[0].content == "Ada"
    assert named(content="  x  ").content == "x"
    assert make_primitive("Raw", strip_content=False)(content="  x  ").content == "  x  "


def test_make_primitive_validator_can_replace_or_reject() -> None:
    def shout(value: str) -> str | None:
        if not value:
            raise ValueError("empty content")
        return value.upper() if value.islower() else None

    loud = make_primitive("Loud", validator=shout)
    assert loud.one_from_text("<loud>hi</loud>")[0].content == "HI"
    assert loud.one_from_text("<loud>Hi</loud>")[0].content == "Hi"
    with pytest.raises(ValidationError, match="empty content"):
        loud.from_text("<loud>  </loud>")


#
# make_from_schema
#


SCHEMA = {
    "title": "User",
    "type": "object",
    "properties": {
        "user-name": {"type": "string", "description": "Login name"},
        "age": {"type": "integer"},
        "role": {"enum": ["admin", "guest"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "address": {"type": "object", "properties": {"street": {"type": "string"}}},
        "scores": {"type": "object", "additionalProperties": {"type": "number"}},
        "nickname": {"type": ["string", "null"]},
    },
    "required": ["user-name", "role"],
}


def test_make_from_schema_builds_elements() -> None:
    user = make_from_schema(SCHEMA)
    assert user.xml_tags() == "<user></user>"
    assert list(user.model_fields) == [
        "user_name",
        "age",
        "role",
        "tags",
        "address",
        "scores",
        "nickname",
    ]
    text = """<user>
      <user-name>ada</user-name><role>admin</role>
      <tags><item>x</item><item>y</item></tags>
      <address>Main St</address>
    </user>"""
    parsed_user = user.one_from_text(text)[0]
    assert parsed_user.model_dump() == {
        "user_name": "ada",
        "age": None,
        "role": "admin",
        "tags": ["x", "y"],
        "address": {"street": "Main St"},
        "scores": None,
        "nickname": None,
    }
    full = parsed_user.model_copy(update={"age": 36, "scores": {"x": 1.5}, "nickname": "A"})
    assert user.one_from_text(full.to_xml())[0] == full
    assert "<!-- Login name -->" in user.xml_example()
    with pytest.raises(ValidationError, match=r"role\n.*Input should be 'admin' or 'guest'"):
        user.from_text("<user><user-name>a</user-name><role>root</role></user>")
    with pytest.raises(ValidationError, match=r"role\n.*Field required"):
        user.from_text("<user><user-name>a</user-name></user>")


def test_make_from_schema_primitive_and_name() -> None:
    one = {"type": "object", "properties": {"value": {"type": "integer"}}}
    assert make_from_schema(one, "Count", allow_primitive=True).one_from_text("<count> 3 </count>")[
        0
    ].model_dump() == {"value": 3}
    assert make_from_schema(one).xml_tags() == "<schema-model></schema-model>"
    assert make_from_schema(one).one_from_text("<schema-model><value>3</value></schema-model>")[
        0
    ].model_dump() == {"value": 3}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"title": "Bare", "type": "object"}, "schema for 'Bare' has no properties"),
        (
            {"properties": {"a": {"$ref": "#/$defs/A"}}},
            "property 'a' is a \\$ref: dereference the schema before building a model",
        ),
        ({"properties": {"_id": {"type": "string"}}}, "property '_id' of 'SchemaModel' cannot"),
        (
            {"properties": {"a-b": {}, "a_b": {}}},
            "property 'a_b' of 'SchemaModel' cannot be a field name",
        ),
    ],
    ids=["no-properties", "ref", "private-name", "clashing-names"],
)
def test_make_from_schema_rejects_unusable_schemas(schema: dict[str, t.Any], message: str) -> None:
    with pytest.raises(InvalidModelSpecifiedError, match=message):
        make_from_schema(schema)


#
# make_from_signature
#


def test_make_from_signature() -> None:
    def search(
        query: t.Annotated[str, "What to look for"],
        owners: list[Inner],
        limit: int = 10,
        tags: list[str] | None = None,
    ) -> None: ...

    call = make_from_signature(inspect.signature(search, eval_str=True), "search")
    assert call.model_fields["query"].description == "What to look for"
    text = """<search>
      <query>red shoes</query>
      <owners><owner type="a">x</owner></owners>
      <tags><item>sale</item></tags>
    </search>"""
    model = call.one_from_text(text)[0]
    assert model.model_dump() == {
        "query": "red shoes",
        "owners": [{"type": "a", "content": "x"}],
        "limit": 10,
        "tags": ["sale"],
    }
    assert call.one_from_text(model.to_pretty_xml())[0] == model
    assert '<owner type=""></owner>' in call.xml_example()


class Plain(BaseModel):
    x: int


@dataclasses.dataclass
class Record:
    x: int


def _plain(p: Plain) -> None: ...
def _record(r: list[Record]) -> None: ...
def _untyped(x) -> None: ...  # type: ignore[no-untyped-def]
def _star(*args: int) -> None: ...


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (_plain, "parameter 'p' of f: pydantic models must inherit from BaseXmlModel"),
        (_record, "parameter 'r' of f: dataclasses are not supported"),
        (_untyped, "parameter 'x' of f has no type annotation"),
        (_star, "parameter 'args' of f: \\*args and \\*\\*kwargs cannot be fields"),
    ],
    ids=["pydantic", "dataclass", "untyped", "star-args"],
)
def test_make_from_signature_rejects_unusable_parameters(
    function: t.Callable[..., None], message: str
) -> None:
    with pytest.raises(InvalidModelSpecifiedError, match=message):
        make_from_signature(inspect.signature(function, eval_str=True), "f")


#
# Error models
#


def test_error_models() -> None:
    error = ErrorModel.from_exception(KeyError("missing"))
    assert error.to_xml() == "<error type=\"KeyError\">'missing'</error>"
    assert ErrorModel(content=ValueError("bad")).content == "bad"
    assert ErrorModel(content="x").type == "Exception"
    system = SystemErrorModel.from_exception(RuntimeError("down"))
    assert system.to_pretty_xml() == '<system-error type="RuntimeError">down</system-error>'
    assert ValidationErrorModel.xml_tags() == "<validation-error></validation-error>"
    assert ValidationErrorModel.one_from_text(
        '<validation-error type="ValidationError">age: int</validation-error>'
    )[0] == ValidationErrorModel(type="ValidationError", content="age: int")


#
# Hostile input on structured models stays linear
#


class Scanned:
    """A compiled pattern that adds to `work` the characters each call hands it (from
    `pos` on): what the regular expression engine may scan, so that a parser running a
    pattern over the text again per tag or per nesting level counts as the quadratic
    thing it is, while one advancing `pos` through the text counts once."""

    POSITIONED = ("search", "match", "fullmatch", "finditer", "findall")

    def __init__(self, pattern: re.Pattern[str], work: list[int]) -> None:
        self.pattern, self.work = pattern, work

    def __getattr__(self, name: str) -> t.Any:
        method = getattr(self.pattern, name)

        def counted(*args: t.Any, **kwargs: t.Any) -> t.Any:
            strings = [a for a in (*args, *kwargs.values()) if isinstance(a, str)]
            pos = kwargs.get("pos", 0)
            if name in self.POSITIONED and len(args) > 1 and isinstance(args[1], int):
                pos = args[1]
            self.work[0] += max(map(len, strings), default=0) - pos
            return method(*args, **kwargs)

        return counted


def parse_work(model: type[Model], text: str) -> int:
    """What `model.from_text(text)` costs, counted instead of timed: one per function call
    (Python or builtin), plus the length of every string a Python function is handed, of
    every string a builtin string method runs on, and of the text each of the parser's
    regular expressions is given to scan (`Scanned`). The same for every run and machine,
    and it grows faster than the text when the parser reads the text again per tag or per
    nesting level. (How fast one pattern is on hostile text, backtracking included, is
    `bench/bench_parse.py`'s to measure.)"""
    work = [0]

    def count(frame: types.FrameType, event: str, arg: object) -> None:
        if event == "call":
            work[0] += 1
            code = frame.f_code
            for name in code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]:
                value = frame.f_locals.get(name)
                if isinstance(value, str | bytes):
                    work[0] += len(value)
        elif event == "c_call":
            work[0] += 1
            if isinstance(getattr(arg, "__self__", None), str | bytes):
                work[0] += len(arg.__self__)  # type: ignore[attr-defined]

    with pytest.MonkeyPatch.context() as patch:
        for name in ("_CAMEL", "_ENTITY", "_STRAY_AMP", "_STRAY_LT", "_ATTRIBUTE"):
            patch.setattr(model_module, name, Scanned(getattr(model_module, name), work))
        for name in ("_tag_pattern", "_simple_pattern"):
            compile_for = getattr(model_module, name)
            patch.setattr(
                model_module,
                name,
                lambda tag, compile_for=compile_for: Scanned(compile_for(tag), work),
            )
        previous = sys.getprofile()
        sys.setprofile(count)
        try:
            model.from_text(text)
        except (MissingModelError, ValidationError):
            pass
        finally:
            sys.setprofile(previous)
    return work[0]


HOSTILE: dict[str, tuple[type[Model], t.Callable[[int], str]]] = {
    "unclosed": (Ticket, lambda n: "<ticket> " * n),
    "unclosed-children": (Ticket, lambda n: "<ticket id='1'>" + "<title>" * n + "</ticket>"),
    "prose": (Ticket, lambda n: "<ticket id='1'><title>" + "a<b&" * n + "</title></ticket>"),
    "long-opening-tag": (Ticket, lambda n: "<ticket " + "a" * (8 * n) + "></ticket>"),
    "deep-nesting": (Thinking, lambda n: "<thinking>" * n + "</thinking>" * n),
}
"""Each hostile text as a function of its size, with the model that reads it."""


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_structured_text_costs_work_linear_in_its_length(case: str) -> None:
    """Twice the hostile text costs about twice the work (a parser that reads the text
    again per opening tag or per nesting level costs four times as much)."""
    model, hostile = HOSTILE[case]
    small, large = parse_work(model, hostile(2_000)), parse_work(model, hostile(4_000))
    assert large < 2.5 * small, f"twice the text cost {large / small:.2f} times the work"


def test_hostile_structured_text_fails_or_parses_whole() -> None:
    """What the hostile texts give at a size where a parser that isn't linear takes
    seconds: each fails as it should, or parses, without a RecursionError."""
    n = 12_000
    with pytest.raises(MissingModelError):
        Ticket.from_text(HOSTILE["unclosed"][1](n))
    with pytest.raises(ValidationError, match="is not well-formed XML"):
        Ticket.from_text(HOSTILE["unclosed-children"][1](n))
    with pytest.raises(ValidationError) as prose:
        Ticket.from_text(HOSTILE["prose"][1](n))
    [error] = prose.value.errors()
    assert (error["loc"], error["input"]) == (("priority",), {"id": "1", "title": "a<b&" * n})
    with pytest.raises(ValidationError) as long_tag:
        Ticket.from_text(HOSTILE["long-opening-tag"][1](n))
    assert [e["loc"] for e in long_tag.value.errors()] == [("id",), ("priority",), ("title",)]
    text = HOSTILE["deep-nesting"][1](n)
    [(inner, where)] = Thinking.from_text(text)
    start = len("<thinking>") * (n - 1)
    assert inner == Thinking(content="")
    assert where == slice(start, start + len("<thinking></thinking>"))


def test_make_from_signature_needs_evaluated_annotations() -> None:
    def lazy(x: int) -> None: ...

    with pytest.raises(
        InvalidModelSpecifiedError,
        match=r"parameter 'x' of f is annotated with the string 'int': pass "
        r"inspect.signature\(function, eval_str=True\)",
    ):
        make_from_signature(inspect.signature(lazy), "f")


class Node(Model):
    label: str = attr()
    children: list[Node] = element(default=[])


class Ping(Model):
    note: str = element()
    pong: Pong | None = element(default=None)


class Pong(Model):
    note: str = element()
    ping: Ping | None = element(default=None)


Ping.model_rebuild()


def test_nesting_deeper_than_the_limit_is_a_validation_error() -> None:
    deep = '<node label="x">' * (MAX_DEPTH + 1) + "</node>" * (MAX_DEPTH + 1)
    (outer, _), (inner, _) = Node.from_text(deep, return_errors=True)
    assert f"<node> nests elements more than {MAX_DEPTH} levels deep" in str(outer)
    assert inner == Node(label="x")
    ok = '<node label="x">' * MAX_DEPTH + "</node>" * MAX_DEPTH
    assert Node.one_from_text(ok)[0].label == "x"
    hostile = "<question-answer>" * 10_000 + "</question-answer>" * 10_000
    with pytest.raises(ValidationError, match=r"question\n  .*Field required"):
        QuestionAnswer.from_text(hostile)  # only the innermost, empty element is read


def test_recursive_models_parse_and_show_an_example() -> None:
    text = '<node label="a"><node label="b"><node label="c"></node></node></node>'
    assert Node.one_from_text(text)[0] == Node(
        label="a", children=[Node(label="b", children=[Node(label="c")])]
    )
    assert Node.xml_example().splitlines() == ['<node label="">', "  <node/>", "</node>"]
    ping = Ping.one_from_text("<ping><note>1 & 2</note><pong><note>a<b</note></pong></ping>")[0]
    assert ping == Ping(note="1 & 2", pong=Pong(note="a<b"))
    assert "<ping/>" in Ping.xml_example()


# rigging's test_xml_parsing cases through `rg.parsing.parse_many`, with the check rigging
# makes there: each model written back with `to_pretty_xml` is the text it was read from.


class Contained(Model, tag="inner"):
    type: str = attr()
    content: str


class Box(Model):
    inners: list[Contained] = element()


class OuterElement(Model, tag="outer"):
    content: str = element()


class Command(Model, tag="multi-field-model"):
    type_: str = attr(name="type")
    foo_field: str = element(tag="foo")
    bar_field: str = element(tag="bar")


class Mixed(Model, tag="mixed-model"):
    content_field: str = element(tag="content")
    nested: OuterElement = element()


MULTI_LINE = "Multiline content with indentation\nsome extra spaces\n\nSome more text"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            "<answer>hello</answer><question>world</question>",
            [Answer(content="hello"), Question(content="world")],
        ),
        (
            "Sure I'll answer between <answer></answer> tags. <answer>hello</answer>",
            [Answer(content=""), Answer(content="hello")],
        ),
        (
            '<box>\n  <inner type="cat">meow</inner>\n  <inner type="dog">bark</inner>\n</box>',
            [
                Box(
                    inners=[
                        Contained(type="cat", content="meow"),
                        Contained(type="dog", content="bark"),
                    ]
                )
            ],
        ),
        (
            "<outer>text before <inner>nested content</inner> text after</outer>",
            [Outer(content="text before <inner>nested content</inner> text after")],
        ),
        ("<a>first <b>overlap <a>nested</a> continue</b> end</a>", [A(content="nested")]),
        (
            "<tag>\n  " + MULTI_LINE.replace("\n", "\n  ").replace("\n  \n", "\n\n") + "\n</tag>",
            [Tag(content=MULTI_LINE)],
        ),
        (
            "<outer>\n  <content>\n    "
            + MULTI_LINE.replace("\n", "\n    ").replace("\n    \n", "\n\n")
            + "\n  </content>\n</outer>",
            [OuterElement(content=MULTI_LINE)],
        ),
        (
            "<outer>Text with <tag> & XML entities</outer>",
            [Outer(content="Text with <tag> & XML entities")],
        ),
        (
            "<outer>Command output: <DIR> Program Files & <DIR> Users</outer>",
            [Outer(content="Command output: <DIR> Program Files & <DIR> Users")],
        ),
        (
            '<multi-field-model type="cmd">\n  <foo>Process <pid> terminated</foo>\n'
            "  <bar>Exit code <1></bar>\n</multi-field-model>",
            [Command(type_="cmd", foo_field="Process <pid> terminated", bar_field="Exit code <1>")],
        ),
        (
            "<mixed-model>\n  <content>Error in <module> at line <42></content>\n  <outer>\n"
            "    <content>normal nested content</content>\n  </outer>\n</mixed-model>",
            [
                Mixed(
                    content_field="Error in <module> at line <42>",
                    nested=OuterElement(content="normal nested content"),
                )
            ],
        ),
    ],
    ids=[
        "answer-and-question",
        "duplicate-tags",
        "wrapped",
        "outer-with-inner-tag",
        "overlapping-tags",
        "multiline-tag",
        "multiline-element",
        "entities",
        "ampersand",
        "multi-field-breaking-chars",
        "mixed-nested",
    ],
)
def test_rigging_parse_cases_write_back_the_text_they_were_read_from(
    content: str, expected: list[Model]
) -> None:
    found = rg_parsing.parse_many(content, *dict.fromkeys(type(m) for m in expected))
    assert [m for m, _ in found] == expected
    for model, where in found:
        assert model.to_pretty_xml() == content[where]


def test_the_parsing_module_returns_models_with_their_slices() -> None:
    text = "<answer>a</answer> <question>q</question> <answer>b</answer>"
    assert rg_parsing.parse(text, Answer) == (Answer(content="a"), slice(0, 18))
    assert rg_parsing.try_parse(text, Outer) is None
    assert [m for m, _ in rg_parsing.parse_set(text, Answer, minimum=2)] == [
        Answer(content="a"),
        Answer(content="b"),
    ]
    assert rg_parsing.try_parse_set(text, Outer) == []
    assert [type(m) for m, _ in rg_parsing.try_parse_many(text, Question, Answer, Outer)] == [
        Answer,
        Question,
        Answer,
    ]
    with pytest.raises(
        MissingModelError, match=r"Expected at least 3 <answer></answer> elements, found 2"
    ):
        rg_parsing.parse_set(text, Answer, minimum=3)
    with pytest.raises(MissingModelError, match=r"Failed to find '<outer></outer>' in text"):
        rg_parsing.parse_many(text, Answer, Outer)
    with pytest.raises(MissingModelError, match=r"Failed to find '<outer></outer>' in text"):
        rg_parsing.parse(text, Outer)


class Profile(Model):
    name: str = attr()
    bio: str = element()
    age: int = element()


class Team(Model):
    label: str = attr()
    lead: Profile = element()
    notes: list[A] = element()


TRICKY = [
    A(content="a & b"),
    A(content="x < y > z"),
    A(content="\"quoted\" and 'single'"),
    A(content="<b>bold</b> & <i>"),
    A(content="line 1\n  a & b\nline 3 <x>"),
    Profile(name='A "&" <B>', bio='x & y <z> "q"', age=3),
    Team(
        label="t&<",
        lead=Profile(name="n", bio="<b>&", age=1),
        notes=[A(content="1 & 2"), A(content="<3>")],
    ),
]


@pytest.mark.parametrize("model", TRICKY, ids=lambda m: type(m).__name__)
def test_models_round_trip_through_the_xml_they_write(model: Model) -> None:
    cls = type(model)
    assert [m for m, _ in cls.from_text(model.to_pretty_xml())] == [model]
    assert [m for m, _ in cls.from_text(model.to_xml())] == [model]
    for xml in (model.to_xml(escape=True), model.to_pretty_xml(escape=True)):
        assert [m for m, _ in cls.from_text(xml)] == [model]
        ElementTree.fromstring(xml)  # well-formed


def test_text_is_written_raw_as_rigging_writes_it() -> None:
    assert A(content="a & b <c>").to_pretty_xml() == "<a>a & b <c></a>"
    assert A(content="a & b <c>").to_xml() == "<a>a & b <c></a>"
    assert A(content="a & b <c>").to_xml(escape=True) == "<a>a &amp; b &lt;c&gt;</a>"
    assert A(content="a & b <c>").to_pretty_xml(escape=True) == "<a>a &amp; b &lt;c&gt;</a>"
    profile = Profile(name='"x" & y', bio="1 < 2", age=3)
    assert profile.to_pretty_xml() == (
        '<profile name="&quot;x&quot; &amp; y">\n  <bio>1 < 2</bio>\n  <age>3</age>\n</profile>'
    )
    assert (
        profile.to_xml()
        == '<profile name="&quot;x&quot; &amp; y"><bio>1 < 2</bio><age>3</age></profile>'
    )
    assert str(profile) == profile.to_pretty_xml()


@pytest.mark.parametrize(
    "text", ["a &lt; b", "&amp;", "<![CDATA[x]]>", "ends </a> early", "ENDS </A> EARLY"]
)
def test_text_that_would_read_back_otherwise_is_escaped(text: str) -> None:
    model = A(content=text)
    assert model.to_pretty_xml() == model.to_pretty_xml(escape=True)
    assert A.one_from_text(model.to_pretty_xml())[0] == model
    assert A.one_from_text(model.to_xml())[0] == model


def test_raw_xml_takes_only_short_empty_elements_and_encoding() -> None:
    ticket = Ticket(id=1, priority="low", title="a & b")
    assert ticket.to_xml(short_empty_elements=True, encoding="utf-8").count(" />") == 2
    assert "<title>a & b</title>" in ticket.to_xml(encoding="utf-8")
    with pytest.raises(
        TypeError,
        match=r"to_xml\(\) takes method, xml_declaration only with escape=True "
        r"\(options of the XML serializer\)",
    ):
        ticket.to_xml(xml_declaration=True, method="xml")
