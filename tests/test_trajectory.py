"""`pytest_rigging.trajectory`: assertions over the calls a model made."""

from __future__ import annotations

import json
import re
import typing as t
from unittest import mock

import pytest

import pytest_rigging as rg
from pytest_rigging.chat import Chat
from pytest_rigging.message import Message
from pytest_rigging.tools import FunctionCall, ToolCall
from pytest_rigging.tools.base import INVALID_CALL
from pytest_rigging.trajectory import (
    ANY,
    Call,
    ToolCallCounts,
    approx,
    assert_calls,
    call,
    matches,
    tool_call_counts,
    tool_calls,
)
from tests.conftest import calling


def made(name: str, arguments: str | None = None, /, **given: t.Any) -> ToolCall:
    """A call as a model makes it: `arguments` as written, or `given` as JSON."""
    text = arguments if arguments is not None else json.dumps(given)
    return ToolCall(id=f"id-{name}", function=FunctionCall(name=name, arguments=text))


def failure(*args: t.Any, **kwargs: t.Any) -> str:
    with pytest.raises(AssertionError) as raised:
        assert_calls(*args, **kwargs)
    return str(raised.value)


def assistant(*calls: ToolCall) -> Message:
    return Message("assistant", "", tool_calls=list(calls))


PARIS_THEN_ADD = [made("lookup", city="Paris"), made("add", a=1, b=2)]


# --- reading calls


def test_calls_are_read_in_order_from_a_chat_messages_or_calls() -> None:
    first, second, third = made("a"), made("b"), made("c")
    chat = Chat(
        [Message("user", "go"), assistant(first, second), Message("tool", "ok", tool_call_id="x")],
        [assistant(third), Message("assistant", "done")],
    )
    assert tool_calls(chat) == [first, second, third]
    assert tool_calls(chat.all) == [first, second, third]
    assert tool_calls(assistant(first)) == [first]
    assert tool_calls([third, first]) == [third, first]
    assert tool_calls([]) == []


def test_calls_are_read_from_nothing_else() -> None:
    with pytest.raises(
        TypeError, match=r"^calls are read from a Chat, Messages or ToolCalls, got str$"
    ):
        tool_calls("lookup")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^calls are read from one Chat at a time, got a list of"):
        tool_calls([Chat([Message("user", "hi")])])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"got a list holding int$"):
        tool_calls([1])  # type: ignore[list-item]


# --- orders


def test_the_same_calls_in_another_order_fit_every_order_but_strict() -> None:
    expected = [call("add", a=1, b=2), call("lookup", city="Paris")]
    for order in ("unordered", "subset", "superset"):
        assert_calls(PARIS_THEN_ADD, expected, order=order)
    assert failure(PARIS_THEN_ADD, expected) == (
        "call 1: expected add(a=1, b=2), got lookup(city='Paris'): a different tool\n"
        "    expected (strict)        actual\n"
        "✗ 1 add(a=1, b=2)          1 lookup(city='Paris')\n"
        "✗ 2 lookup(city='Paris')   2 add(a=1, b=2)"
    )
    assert_calls(PARIS_THEN_ADD, list(reversed(expected)), order="strict")


def test_subset_allows_expected_calls_not_made() -> None:
    expected = [call("lookup", city="Paris"), call("add", a=1, b=2), call("log", ANY)]
    assert_calls(PARIS_THEN_ADD, expected, order="subset")
    assert failure(PARIS_THEN_ADD, expected, order="unordered").startswith(
        "missing call log(ANY)\n"
    )
    assert failure(PARIS_THEN_ADD, expected, order="superset").startswith("missing call log(ANY)\n")
    assert failure(PARIS_THEN_ADD, expected).startswith("missing call log(ANY) at position 3\n")


def test_superset_allows_calls_not_expected() -> None:
    expected = [call("add", a=1, b=2)]
    assert_calls(PARIS_THEN_ADD, expected, order="superset")
    assert failure(PARIS_THEN_ADD, expected, order="subset") == (
        "unexpected call lookup(city='Paris') at position 1\n"
        "    expected (subset)     actual\n"
        "✗                       1 lookup(city='Paris')\n"
        "  1 add(a=1, b=2)       2 add(a=1, b=2)"
    )


def test_subset_counts_each_expected_call_once() -> None:
    twice = [made("lookup", city="Paris"), made("lookup", city="Paris")]
    assert failure(twice, [call("lookup", city="Paris")], order="subset") == (
        "unexpected call lookup(city='Paris') at position 2; it fits expected call 1 "
        "lookup(city='Paris'), already matched to call 1\n"
        "    expected (subset)        actual\n"
        "  1 lookup(city='Paris')   1 lookup(city='Paris')\n"
        "✗                          2 lookup(city='Paris')"
    )


def test_an_expected_call_is_missing_when_its_fit_is_taken() -> None:
    once = [made("lookup", city="Paris")]
    expected = [call("lookup", ...), call("lookup", city="Paris")]
    assert failure(once, expected, order="superset") == (
        "missing call lookup(city='Paris'); call 1 lookup(city='Paris') fits it, but is "
        "already matched to expected call 1\n"
        "    expected (superset)      actual\n"
        "  1 lookup(...)            1 lookup(city='Paris')\n"
        "✗ 2 lookup(city='Paris')"
    )


def test_calls_are_paired_where_taking_the_first_fit_would_fail() -> None:
    # Pairing each expected call with the first actual call it fits gives `x=ANY` the
    # call `x=1`, leaving `x=1` nothing; x=ANY <-> x=2 and x=1 <-> x=1 pairs both.
    actual = [made("f", x=1), made("f", x=2)]
    expected = [call("f", x=ANY), call("f", x=1)]
    for order in ("unordered", "subset", "superset"):
        assert_calls(actual, expected, order=order)
    assert failure(actual, [call("f", x=1), call("f", x=1)], order="unordered") == (
        "missing call f(x=1); call 2 f(x=2) differs: argument 'x': 2 != 1\n"
        "    expected (unordered)     actual\n"
        "  1 f(x=1)                 1 f(x=1)\n"
        "✗                          2 f(x=2)\n"
        "✗ 2 f(x=1)"
    )


def test_strict_names_a_missing_and_an_unexpected_call_by_position() -> None:
    assert failure(PARIS_THEN_ADD[:1], [call("lookup", city="Paris"), "add"]) == (
        "missing call add(ANY) at position 2\n"
        "    expected (strict)        actual\n"
        "  1 lookup(city='Paris')   1 lookup(city='Paris')\n"
        "✗ 2 add(ANY)"
    )
    assert failure(PARIS_THEN_ADD, ["lookup"]) == (
        "unexpected call add(a=1, b=2) at position 2\n"
        "    expected (strict)     actual\n"
        "  1 lookup(ANY)         1 lookup(city='Paris')\n"
        "✗                       2 add(a=1, b=2)"
    )
    assert failure([], ["lookup"], order="unordered").startswith("missing call lookup(ANY)\n")


def test_the_first_difference_is_named_and_approx_shows_its_tolerance() -> None:
    actual = [made("lookup", city="Paris"), made("add", a=5, b=1)]
    expected = [call("lookup", city="Paris"), call("add", a=approx(3.0, abs=0.01), b=ANY)]
    assert failure(actual, expected, order="strict") == (
        "call 2: expected add(a≈3.0±0.01, b=ANY), got add(a=5, b=1): argument 'a': 5 is not "
        "3.0 ± 0.01\n"
        "    expected (strict)          actual\n"
        "  1 lookup(city='Paris')     1 lookup(city='Paris')\n"
        "✗ 2 add(a≈3.0±0.01, b=ANY)   2 add(a=5, b=1)"
    )


def test_no_expected_calls_means_no_calls() -> None:
    assert_calls([], [])
    assert_calls(Chat([Message("user", "hi")], [Message("assistant", "hello")]), [])
    assert failure(PARIS_THEN_ADD[:1], [], order="unordered") == (
        "unexpected call lookup(city='Paris') at position 1\n"
        "    expected (unordered)     actual\n"
        "✗                          1 lookup(city='Paris')"
    )


def test_an_unknown_order_is_refused() -> None:
    with pytest.raises(ValueError, match=re.escape("unknown order 'any': choose one of strict, ")):
        assert_calls([], [], order="any")  # type: ignore[arg-type]


# --- arguments


def test_arguments_are_exactly_those_given_unless_partial() -> None:
    paris = made("lookup", city="Paris", units="metric")
    assert call("lookup", city="Paris").mismatch(paris) == "unexpected argument 'units'"
    assert call("lookup", city="Paris", units="metric").mismatch(paris) is None
    assert call("lookup", ..., city="Paris").mismatch(paris) is None
    assert call("lookup", ...).mismatch(paris) is None
    assert call("lookup", ..., country="FR").mismatch(paris) == "argument 'country' missing"
    assert call("lookup").mismatch(made("lookup")) is None
    assert call("lookup").mismatch(made("lookup", "")) is None
    assert call("other").mismatch(paris) == "a different tool"
    assert str(call("lookup", ..., city="Paris")) == "lookup(city='Paris', ...)"


def test_arguments_whose_names_are_keywords_are_given_as_a_dict() -> None:
    flight = made("book", **{"from": "CDG", "to": "JFK"})
    assert call("book", {"from": "CDG"}, to="JFK").mismatch(flight) is None
    assert str(call("book", {"from": "CDG"}, ...)) == "book(from='CDG', ...)"


def test_plain_values_compare_as_json_does() -> None:
    adding = made("add", a=3, b=2.5, flag=True, note=None)
    assert call("add", a=3.0, b=2.5, flag=True, note=None).mismatch(adding) is None
    assert call("add", a=3, b=2.5, flag=1, note=None).mismatch(adding) == (
        "argument 'flag': True != 1 (booleans aren't numbers)"
    )
    assert call("add", a="3", b=2.5, flag=True, note=None).mismatch(adding) == (
        "argument 'a': 3 != '3'"
    )
    assert call("add", a=3, b=2.5, flag=True, note="").mismatch(adding) == (
        "argument 'note': None != ''"
    )


def test_nested_values_compare_recursively_with_matchers_inside() -> None:
    search = made("search", filter={"range": [1, 2.5], "tags": ["a", "b"], "id": "x-91"})
    wanted = {"range": [1.0, approx(2.4, abs=0.2)], "tags": ["a", ANY], "id": matches(r"^x-\d+$")}
    assert call("search", filter=wanted).mismatch(search) is None
    assert call("search", filter={**wanted, "range": [1, 3]}).mismatch(search) == (
        "argument 'filter' at ['range'][1]: 2.5 != 3"
    )
    assert call("search", filter={**wanted, "tags": ["a"]}).mismatch(search) == (
        "argument 'filter' at ['tags']: 2 items, expected 1"
    )
    assert call("search", filter={"range": ANY, "tags": ANY}).mismatch(search) == (
        "argument 'filter': unexpected key 'id'"
    )
    assert call("search", filter={**wanted, "page": 1}).mismatch(search) == (
        "argument 'filter': missing key 'page'"
    )
    assert call("search", filter=[1]).mismatch(search) == (
        "argument 'filter': {'range': [1, 2.5], 'tags': ['a', 'b'],… is not a list"
    )
    assert call("search", filter={**wanted, "range": {"low": 1}}).mismatch(search) == (
        "argument 'filter' at ['range']: [1, 2.5] is not an object"
    )
    assert str(call("search", filter={"range": [1, approx(2.4, abs=0.2)], "id": str})) == (
        "search(filter={'range': [1, ≈2.4±0.2], 'id': str})"
    )


def test_any_matches_every_value_and_as_the_arguments_any_arguments() -> None:
    assert call("add", a=ANY, b=ANY).mismatch(made("add", a=[1], b=None)) is None
    assert call("add", ANY).mismatch(made("add", "not json")) is None
    assert call("add", a=mock.ANY, b=1).mismatch(made("add", a=7, b=1)) is None
    assert str(call("add", ANY)) == "add(ANY)"


def test_predicates_decide_and_show_their_name() -> None:
    def positive(value: object) -> bool:
        return isinstance(value, int) and value > 0

    assert call("add", a=positive).mismatch(made("add", a=3)) is None
    assert call("add", a=positive).mismatch(made("add", a=-3)) == (
        "argument 'a': -3 does not satisfy positive"
    )
    assert call("add", a=lambda v: v > 2).mismatch(made("add", a="x")) == (
        "argument 'a': 'x' does not satisfy <lambda> (TypeError: '>' not supported between "
        "instances of 'str' and 'int')"
    )
    assert str(call("add", a=positive)) == "add(a=positive)"


def test_types_match_as_json_types_do() -> None:
    assert call("add", a=float, b=int).mismatch(made("add", a=3, b=4)) is None
    assert call("add", a=float, b=int).mismatch(made("add", a=3, b=True)) == (
        "argument 'b': True is not of type int"
    )
    assert call("add", a=str, b=ANY).mismatch(made("add", a=3, b=1)) == (
        "argument 'a': 3 is not of type str"
    )
    assert call("add", a=bool, b=list).mismatch(made("add", a=False, b=[])) is None


def test_approx_takes_an_absolute_or_relative_tolerance() -> None:
    assert approx(3.0, abs=0.01).mismatch(3.009) is None
    assert approx(100, rel=0.01).mismatch(101) is None
    assert approx(100, rel=0.01).mismatch(102) == "102 is not 100 ± 1%"
    assert approx(100, rel=0.01, abs=5).mismatch(104) is None
    assert approx(100, rel=0.01, abs=5).mismatch(106) == "106 is not 100 ± max(5, 1%)"
    assert approx(0.3).mismatch(0.1 + 0.2) is None
    assert approx(0.3).mismatch(0.31) == "0.31 is not approximately 0.3"
    assert approx(1.0).mismatch(True) == "True is not a number"
    assert approx(1.0).mismatch("1.0") == "'1.0' is not a number"
    assert [repr(approx(3.0)), repr(approx(3, rel=0.5))] == ["≈3.0", "≈3±50%"]


def test_pytest_approx_works_as_an_argument() -> None:
    assert call("add", a=pytest.approx(0.3)).mismatch(made("add", a=0.1 + 0.2)) is None
    assert call("add", a=pytest.approx([1, 2])).mismatch(made("add", a=[1, 2.0000001])) is None
    assert call("add", a=pytest.approx(0.3)).mismatch(made("add", a=0.4)) == (
        "argument 'a': 0.4 != 0.3 ± 3.0e-07"
    )


def test_matches_searches_strings_only() -> None:
    assert matches("Par").mismatch("Paris, France") is None
    assert matches("^Par$").mismatch("Paris") == "'Paris' does not match '^Par$'"
    assert matches("paris", re.IGNORECASE).mismatch("PARIS") is None
    assert matches(re.compile(r"\d")).mismatch("a1") is None
    assert matches(r"\d").mismatch(1) == "1 is not a string"
    assert str(call("lookup", city=matches("^Par"))) == "lookup(city=matches('^Par'))"


def test_long_values_are_cut_and_strings_say_where_they_differ() -> None:
    text = "lorem ipsum " * 10
    wrong = text[:70] + "X" + text[71:]
    assert call("say", text=text).mismatch(made("say", text=wrong)) == (
        "argument 'text': 'lorem ipsum lorem ipsum lorem ipsum lo… != "
        "'lorem ipsum lorem ipsum lorem ipsum lo… (they differ at index 70)"
    )
    table = failure([made("say", text=wrong)], [call("say", text=text)]).splitlines()
    assert table[2] == (
        "✗ 1 say(text='lorem ipsum lorem ipsum lorem ipsum lo…)   "
        "1 say(text='lorem ipsum lorem ipsum lorem ipsum lo…)"
    )


def test_arguments_that_are_not_a_json_object_fit_only_any_arguments() -> None:
    broken = made("lookup", "{city: Paris")
    listed = made("lookup", "[1, 2]")
    for actual in (broken, listed):
        assert call("lookup", ...).mismatch(actual) == "arguments are not a JSON object"
        assert call("lookup", ANY).mismatch(actual) is None
    assert_calls([broken, listed], ["lookup", "lookup"])
    assert failure([broken], [call("lookup", city="Paris")]) == (
        "call 1: expected lookup(city='Paris'), got lookup(<not a JSON object: "
        "'{city: Paris'>): arguments are not a JSON object\n"
        "    expected (strict)        actual\n"
        "✗ 1 lookup(city='Paris')   1 lookup(<not a JSON object: '{city: Paris'>)"
    )


def test_bad_expected_calls_are_refused() -> None:
    with pytest.raises(TypeError, match=r"^call\(\) takes the tool's name first, got 3$"):
        call(3)  # type: ignore[arg-type]
    with pytest.raises(
        TypeError,
        match=re.escape(
            "call('add', ...) takes, after the name, a dict of arguments, `...` (other "
            "arguments allowed) or ANY (any arguments), each once; got 1"
        ),
    ):
        call("add", 1)
    with pytest.raises(TypeError, match=r"got Ellipsis$"):
        call("add", ..., ...)
    with pytest.raises(ValueError, match=re.escape("call('add', ...): argument 'a' given twice")):
        call("add", {"a": 1}, a=2)
    with pytest.raises(ValueError, match=re.escape("call('add', ANY) accepts any arguments")):
        call("add", ANY, a=1)
    with pytest.raises(TypeError, match=re.escape("call('add', ...): argument names are strings")):
        call("add", {1: 2})
    with pytest.raises(
        TypeError, match=r"^expected calls are call\(\.\.\.\) or tool names, got 3$"
    ):
        assert_calls([], [3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"^approx\(\) takes a number, got '3'$"):
        approx("3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^approx\(\): abs must be at least 0, got -1$"):
        approx(3, abs=-1)
    with pytest.raises(ValueError, match=r"^matches\(\): bad regular expression '\(': missing \)"):
        matches("(")


# --- forbidden tools and caps


def test_a_forbidden_call_fails_with_its_position() -> None:
    actual = [*PARIS_THEN_ADD, made("delete_db", name="prod")]
    expected = [call("lookup", city="Paris"), call("add", ...)]
    assert_calls(actual, expected, order="superset", forbidden=["drop_table"])
    assert failure(actual, expected, order="superset", forbidden=["drop_table", "delete_db"]) == (
        "forbidden call delete_db(name='prod') at position 3\n"
        "    actual\n"
        "  1 lookup(city='Paris')\n"
        "  2 add(a=1, b=2)\n"
        "✗ 3 delete_db(name='prod')"
    )
    assert failure(actual, forbidden="delete_db").startswith("forbidden call delete_db(")
    assert_calls(actual, forbidden=call("delete_db", name="test"))
    assert failure(actual, forbidden=call("add", ..., a=approx(1))).startswith(
        "forbidden call add(a=1, b=2) at position 2\n"
    )


def test_call_caps_fail_with_the_count() -> None:
    assert_calls(PARIS_THEN_ADD, max_calls=2, min_calls=2)
    assert failure(PARIS_THEN_ADD, max_calls=1) == (
        "2 tool calls, more than max_calls=1\n"
        "    actual\n"
        "  1 lookup(city='Paris')\n"
        "✗ 2 add(a=1, b=2)"
    )
    assert failure(PARIS_THEN_ADD[:1], min_calls=2) == (
        "1 tool call, fewer than min_calls=2\n    actual\n  1 lookup(city='Paris')"
    )
    assert failure([], min_calls=1) == (
        "0 tool calls, fewer than min_calls=1\n    actual\n    (no calls)"
    )


def test_bad_caps_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^max_calls must be at least 0, got -1$"):
        assert_calls([], max_calls=-1)
    with pytest.raises(TypeError, match=r"^min_calls must be an int, got 1\.5$"):
        assert_calls([], min_calls=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^min_calls=3 is more than max_calls=2$"):
        assert_calls([], min_calls=3, max_calls=2)


# --- counts, and real chats


def test_tool_call_counts_reads_invalid_replies() -> None:
    chat = Chat(
        [Message("user", "go")],
        [
            assistant(made("lookup", city="Paris"), made("add", "{")),
            Message("tool", "France", tool_call_id="id-lookup"),
            Message("tool", "bad", tool_call_id="id-add", metadata={INVALID_CALL: "bad JSON"}),
            Message("assistant", "done"),
        ],
    )
    counts = tool_call_counts(chat)
    assert counts == ToolCallCounts(total=2, invalid=1)
    assert counts.valid == 1
    assert counts + ToolCallCounts(3, 0) == ToolCallCounts(5, 1)
    assert tool_call_counts([]) == ToolCallCounts(0, 0)


async def test_a_chat_from_a_tool_loop_is_checked() -> None:
    @rg.tool
    def lookup(city: str) -> str:
        return {"Paris": "France"}[city]

    @rg.tool
    def add(a: float, b: float) -> float:
        return a + b

    generator = calling(
        [("lookup", '{"city": "Paris"}'), ("add", '{"a": 1, "b": "two"}')],
        [("add", '{"a": 1, "b": 2.0}'), ("weather", '{"city": "Paris"}')],
        "France; 3",
    )
    chat = await generator.chat("go").using(lookup, add).run()
    assert [m.role for m in chat.all].count("tool") == 4
    assert_calls(
        chat,
        [call("add", a=1, b=approx(2)), call("lookup", city=matches("^Par"))],
        order="superset",
        forbidden=["delete_db"],
        max_calls=4,
    )
    assert tool_call_counts(chat) == ToolCallCounts(total=4, invalid=2)
    assert rg.trajectory.assert_calls is assert_calls
    assert isinstance(call("x"), Call)
