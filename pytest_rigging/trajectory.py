"""Assertions over the tools a model called: which, with what arguments, in what order.

`assert_calls(chat, [call("lookup", city="Paris"), call("add", a=approx(3.0), b=ANY)])`
raises an `AssertionError` naming the first difference, above a table of the expected
calls beside the actual ones. Arguments are matched with plain values (compared as JSON
compares them), `ANY`, types, predicates, `approx`, `matches`, or `pytest.approx` and
other objects with their own `==`; they may nest inside dicts and lists.

`tool_call_counts` gives what the plugin reports as tool-call parse success.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import re
import typing as t
from types import EllipsisType

from pytest_rigging.chat import Chat
from pytest_rigging.message import Message
from pytest_rigging.tools.calls import ToolCall, ToolCallCounts, count_calls

Order = t.Literal["strict", "unordered", "subset", "superset"]
"""How the actual calls must relate to the expected ones. `strict`: the same calls in the
same order. `unordered`: the same calls in any order. `subset`: every actual call is one
of the expected ones (nothing unexpected was called; each expected call counts once).
`superset`: every expected call was made (other calls may have been made too)."""

__all__ = [
    "ANY",
    "ORDERS",
    "Approx",
    "Call",
    "CallSource",
    "Matcher",
    "Matches",
    "Order",
    "ToolCallCounts",
    "approx",
    "assert_calls",
    "call",
    "matches",
    "tool_call_counts",
    "tool_calls",
]

ORDERS: tuple[Order, ...] = t.get_args(Order)

CallSource: t.TypeAlias = Chat | Message | t.Iterable[Message | ToolCall]
"""Where calls are read from: a chat (all its messages), messages, or the calls themselves."""

_VALUE_WIDTH = 40
_CELL_WIDTH = 60


class Matcher(abc.ABC):
    """An argument matcher: subclasses say why a value doesn't fit, or None when it does."""

    @abc.abstractmethod
    def mismatch(self, value: object) -> str | None: ...

    def shown_as_argument(self, name: str) -> str:
        """How an expected call shows this matcher as its argument `name`."""
        return f"{name}={self!r}"


class _Any(Matcher):
    def mismatch(self, value: object) -> str | None:
        return None

    def __repr__(self) -> str:
        return "ANY"


ANY: t.Final[Matcher] = _Any()
"""Any value. As `call("lookup", ANY)`: any arguments, even ones that aren't JSON."""


class Approx(Matcher):
    """A number within a tolerance of `expected` (see `approx`)."""

    def __init__(self, expected: float, rel: float | None, abs: float | None) -> None:
        if isinstance(expected, bool) or not isinstance(expected, int | float):
            raise TypeError(f"approx() takes a number, got {expected!r}")
        for name, tolerance in (("rel", rel), ("abs", abs)):
            if tolerance is not None and not tolerance >= 0:
                raise ValueError(f"approx(): {name} must be at least 0, got {tolerance!r}")
        self.expected, self.rel, self.abs = expected, rel, abs

    @property
    def tolerance(self) -> float:
        """The largest difference allowed."""
        if self.rel is None and self.abs is None:
            return max(1e-6 * math.fabs(self.expected), 1e-12)
        return max((self.rel or 0.0) * math.fabs(self.expected), self.abs or 0.0)

    def _tolerance_text(self) -> str:
        if self.rel is None:
            return f"{self.abs:g}" if self.abs is not None else ""
        relative = f"{self.rel * 100:g}%"
        return relative if self.abs is None else f"max({self.abs:g}, {relative})"

    def mismatch(self, value: object) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"{_short(value)} is not a number"
        if math.fabs(value - self.expected) <= self.tolerance:
            return None
        tolerance = self._tolerance_text()
        if not tolerance:
            return f"{value!r} is not approximately {self.expected!r}"
        return f"{value!r} is not {self.expected!r} ± {tolerance}"

    def shown_as_argument(self, name: str) -> str:
        return f"{name}{self!r}"

    def __repr__(self) -> str:
        tolerance = self._tolerance_text()
        return f"≈{self.expected!r}" + (f"±{tolerance}" if tolerance else "")


def approx(expected: float, *, rel: float | None = None, abs: float | None = None) -> Approx:
    """A number within `abs` of `expected`, or within `rel` times it (both given: either
    will do). With neither, pytest's default: a relative 1e-6."""
    return Approx(expected, rel, abs)


class Matches(Matcher):
    """A string in which a regular expression is found (see `matches`)."""

    def __init__(self, pattern: str | re.Pattern[str], flags: int) -> None:
        try:
            self.pattern = re.compile(pattern, flags)
        except re.error as error:
            raise ValueError(f"matches(): bad regular expression {pattern!r}: {error}") from None

    def mismatch(self, value: object) -> str | None:
        if not isinstance(value, str):
            return f"{_short(value)} is not a string"
        if self.pattern.search(value):
            return None
        return f"{_short(value)} does not match {self.pattern.pattern!r}"

    def __repr__(self) -> str:
        return f"matches({self.pattern.pattern!r})"


def matches(pattern: str | re.Pattern[str], flags: int = 0) -> Matches:
    """A string in which `pattern` is found with `re.search`, as pytest's `raises(match=)`
    finds it: anchor it (`^...$`) to match the whole string. Only strings match."""
    return Matches(pattern, flags)


@dataclasses.dataclass(frozen=True)
class Call:
    """An expected call: the tool's name and what its arguments must match."""

    name: str
    arguments: t.Mapping[str, object] = dataclasses.field(default_factory=dict)
    partial: bool = False
    """Other arguments may be given too."""
    any_arguments: bool = False
    """The arguments aren't looked at (they needn't even be JSON)."""

    def mismatch(self, actual: ToolCall) -> str | None:
        """Why `actual` isn't this call, or None when it is."""
        if actual.name != self.name:
            return "a different tool"
        if self.any_arguments:
            return None
        given = actual.parsed_arguments()
        if given is None:
            return "arguments are not a JSON object"
        for name, expected in self.arguments.items():
            if name not in given:
                return f"argument {name!r} missing"
            miss = _mismatch(expected, given[name], ())
            if miss is not None:
                return f"argument {name!r}{miss}"
        if not self.partial:
            extra = next((name for name in given if name not in self.arguments), None)
            if extra is not None:
                return f"unexpected argument {extra!r}"
        return None

    def __str__(self) -> str:
        if self.any_arguments:
            return f"{self.name}(ANY)"
        shown = [_shown_argument(name, value) for name, value in self.arguments.items()]
        return f"{self.name}({', '.join(shown + ['...'] * self.partial)})"


def call(name: str, /, *options: object, **arguments: object) -> Call:
    """The call of tool `name` with exactly these arguments, each a value or a matcher.

    Positional options after the name: a dict of arguments (for names that aren't Python
    identifiers, such as `from`), `...` (other arguments may be given too), or `ANY` (any
    arguments at all)."""
    if not isinstance(name, str) or not name:
        raise TypeError(f"call() takes the tool's name first, got {name!r}")
    partial = any_arguments = False
    given: dict[str, object] = {}
    for option in options:
        if isinstance(option, EllipsisType) and not partial:
            partial = True
        elif option is ANY and not any_arguments:
            any_arguments = True
        elif isinstance(option, t.Mapping) and not given:
            if not all(isinstance(key, str) for key in option):
                raise TypeError(f"call({name!r}, ...): argument names are strings")
            given = dict(option)
        else:
            raise TypeError(
                f"call({name!r}, ...) takes, after the name, a dict of arguments, `...` "
                f"(other arguments allowed) or ANY (any arguments), each once; got {option!r}"
            )
    both = sorted(set(given) & set(arguments))
    if both:
        raise ValueError(f"call({name!r}, ...): argument {both[0]!r} given twice")
    if any_arguments and (given or arguments or partial):
        raise ValueError(f"call({name!r}, ANY) accepts any arguments: give no others")
    return Call(name, {**given, **arguments}, partial=partial, any_arguments=any_arguments)


def tool_calls(source: CallSource) -> list[ToolCall]:
    """The calls in `source`, in the order they were made."""
    found: list[ToolCall] = []
    for item in _messages_or_calls(source):
        if isinstance(item, ToolCall):
            found.append(item)
        else:
            found.extend(item.tool_calls or ())
    return found


def tool_call_counts(source: Chat | t.Iterable[Message]) -> ToolCallCounts:
    """How many calls `source` made, and how many of them the tools' replies mark as
    invalid (`INVALID_CALL` in their metadata)."""
    return count_calls(m for m in _messages_or_calls(source) if isinstance(m, Message))


def assert_calls(
    source: CallSource,
    expected: t.Sequence[Call | str] | None = None,
    *,
    order: Order = "strict",
    forbidden: str | Call | t.Iterable[str | Call] = (),
    max_calls: int | None = None,
    min_calls: int | None = None,
) -> None:
    """Fail with an `AssertionError` unless the calls in `source` fit.

    `expected`: calls (`call(...)`, or a tool's name for any call of it) the actual calls
    must match in the given `order`; None checks no calls. `forbidden`: tools (names, or
    calls for a tool called with some arguments) that must not be called. `max_calls`,
    `min_calls`: bounds on the number of calls.
    """
    __tracebackhide__ = True
    if order not in ORDERS:
        raise ValueError(f"unknown order {order!r}: choose one of {', '.join(ORDERS)}")
    for bound_name, bound in (("max_calls", max_calls), ("min_calls", min_calls)):
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int)):
            raise TypeError(f"{bound_name} must be an int, got {bound!r}")
        if bound is not None and bound < 0:
            raise ValueError(f"{bound_name} must be at least 0, got {bound}")
    if max_calls is not None and min_calls is not None and min_calls > max_calls:
        raise ValueError(f"min_calls={min_calls} is more than max_calls={max_calls}")
    wanted = None if expected is None else [_as_call(item, "expected") for item in expected]
    banned = [
        _as_call(item, "forbidden")
        for item in ([forbidden] if isinstance(forbidden, str | Call) else forbidden)
    ]
    actual = tool_calls(source)
    failure = _limits_failure(actual, banned, max_calls, min_calls)
    if failure is None and wanted is not None:
        failure = _expected_failure(wanted, actual, order)
    if failure is not None:
        raise AssertionError(failure)


def _messages_or_calls(source: CallSource) -> list[Message | ToolCall]:
    if isinstance(source, Chat):
        return list(source.all)
    if isinstance(source, Message | ToolCall):
        return [source]
    if isinstance(source, str | bytes) or not isinstance(source, t.Iterable):
        raise TypeError(
            f"calls are read from a Chat, Messages or ToolCalls, got {type(source).__name__}"
        )
    items: list[Message | ToolCall] = []
    for item in source:
        if isinstance(item, Chat):
            raise TypeError("calls are read from one Chat at a time, got a list of chats")
        if not isinstance(item, Message | ToolCall):
            raise TypeError(
                "calls are read from a Chat, Messages or ToolCalls, got a list holding "
                f"{type(item).__name__}"
            )
        items.append(item)
    return items


def _as_call(item: object, role: str) -> Call:
    if isinstance(item, Call):
        return item
    if isinstance(item, str):
        return call(item, ANY)
    raise TypeError(f"{role} calls are call(...) or tool names, got {item!r}")


def _limits_failure(
    actual: list[ToolCall], banned: list[Call], max_calls: int | None, min_calls: int | None
) -> str | None:
    for position, made in enumerate(actual, 1):
        if any(rule.mismatch(made) is None for rule in banned):
            return _with_list(
                f"forbidden call {_shown_call(made)} at position {position}", actual, {position}
            )
    if max_calls is not None and len(actual) > max_calls:
        over = set(range(max_calls + 1, len(actual) + 1))
        return _with_list(f"{_count(actual)}, more than max_calls={max_calls}", actual, over)
    if min_calls is not None and len(actual) < min_calls:
        return _with_list(f"{_count(actual)}, fewer than min_calls={min_calls}", actual, set())
    return None


def _count(actual: list[ToolCall]) -> str:
    return f"{len(actual)} tool call" + ("" if len(actual) == 1 else "s")


def _expected_failure(expected: list[Call], actual: list[ToolCall], order: Order) -> str | None:
    if order == "strict":
        return _strict_failure(expected, actual)
    fits = [[e.mismatch(a) is None for a in actual] for e in expected]
    partner = _assign(fits)
    taken = {a: e for e, a in enumerate(partner) if a is not None}
    missing = [e for e, a in enumerate(partner) if a is None]
    unexpected = [a for a in range(len(actual)) if a not in taken]
    if order == "subset":
        missing = []
    elif order == "superset":
        unexpected = []
    if not missing and not unexpected:
        return None
    if missing:
        headline = _missing(missing[0], expected, actual, taken)
    else:
        headline = _unexpected(unexpected[0], expected, actual, taken, partner)
    rows = [_Row(taken.get(a), a, a in unexpected) for a in range(len(actual))]
    rows += [_Row(e, None, e in missing) for e, a in enumerate(partner) if a is None]
    return _with_table(headline, order, expected, actual, rows)


def _strict_failure(expected: list[Call], actual: list[ToolCall]) -> str | None:
    rows: list[_Row] = []
    headline: str | None = None
    for i in range(max(len(expected), len(actual))):
        position = f"at position {i + 1}"
        if i >= len(actual):
            rows.append(_Row(i, None, True))
            headline = headline or f"missing call {expected[i]} {position}"
        elif i >= len(expected):
            rows.append(_Row(None, i, True))
            headline = headline or f"unexpected call {_shown_call(actual[i])} {position}"
        else:
            reason = expected[i].mismatch(actual[i])
            rows.append(_Row(i, i, reason is not None))
            if reason is not None and headline is None:
                got = _shown_call(actual[i])
                headline = f"call {i + 1}: expected {expected[i]}, got {got}: {reason}"
    if headline is None:
        return None
    return _with_table(headline, "strict", expected, actual, rows)


def _assign(fits: list[list[bool]]) -> list[int | None]:
    """The actual call each expected one is paired with, pairing as many as can be
    (augmenting paths: taking the first fitting call for each in turn can leave one
    unpaired where another pairing pairs all)."""
    owner: list[int | None] = [None] * (len(fits[0]) if fits else 0)

    def pair(e: int, seen: set[int]) -> bool:
        for a, fit in enumerate(fits[e]):
            if fit and a not in seen:
                seen.add(a)
                current = owner[a]
                if current is None or pair(current, seen):
                    owner[a] = e
                    return True
        return False

    for e in range(len(fits)):
        pair(e, set())
    partner: list[int | None] = [None] * len(fits)
    for a, paired in enumerate(owner):
        if paired is not None:
            partner[paired] = a
    return partner


def _missing(
    e: int,
    expected: list[Call],
    actual: list[ToolCall],
    taken: dict[int, int],
) -> str:
    headline = f"missing call {expected[e]}"
    for a, made in enumerate(actual):
        if a not in taken and made.name == expected[e].name:
            reason = expected[e].mismatch(made)
            return f"{headline}; call {a + 1} {_shown_call(made)} differs: {reason}"
    for a, made in enumerate(actual):
        if a in taken and expected[e].mismatch(made) is None:
            return (
                f"{headline}; call {a + 1} {_shown_call(made)} fits it, but is already "
                f"matched to expected call {taken[a] + 1}"
            )
    return headline


def _unexpected(
    a: int,
    expected: list[Call],
    actual: list[ToolCall],
    taken: dict[int, int],
    partner: list[int | None],
) -> str:
    made = actual[a]
    headline = f"unexpected call {_shown_call(made)} at position {a + 1}"
    for e, wanted in enumerate(expected):
        if partner[e] is None and wanted.name == made.name:
            return f"{headline}; expected call {e + 1} {wanted} differs: {wanted.mismatch(made)}"
    for e, wanted in enumerate(expected):
        other = partner[e]
        if other is not None and wanted.mismatch(made) is None:
            return (
                f"{headline}; it fits expected call {e + 1} {wanted}, already matched to "
                f"call {other + 1}"
            )
    return headline


@dataclasses.dataclass(frozen=True)
class _Row:
    """One row of the table: an expected call, the actual call beside it, and whether
    the row is a difference."""

    expected: int | None
    actual: int | None
    differs: bool


def _with_table(
    headline: str,
    order: Order,
    expected: list[Call],
    actual: list[ToolCall],
    rows: list[_Row],
) -> str:
    width = len(str(max(len(expected), len(actual), 1)))
    label = f"expected ({order})"
    lefts = ["" if row.expected is None else _cell(str(expected[row.expected])) for row in rows]
    column = max([len(label), *map(len, lefts)])
    lines = [headline, f"  {'':>{width}} {label:<{column}}   {'':>{width}} actual"]
    for row, left in zip(rows, lefts, strict=True):
        e, a = row.expected, row.actual
        left_number = "" if e is None else str(e + 1)
        right_number = "" if a is None else str(a + 1)
        right = "" if a is None else _cell(_shown_call(actual[a]))
        mark = "✗" if row.differs else " "
        line = f"{mark} {left_number:>{width}} {left:<{column}}   {right_number:>{width}} {right}"
        lines.append(line.rstrip())
    return "\n".join(lines)


def _with_list(headline: str, actual: list[ToolCall], marked: set[int]) -> str:
    width = len(str(max(len(actual), 1)))
    lines = [headline, f"  {'':>{width}} actual"]
    for position, made in enumerate(actual, 1):
        mark = "✗" if position in marked else " "
        lines.append(f"{mark} {position:>{width}} {_cell(_shown_call(made))}")
    if not actual:
        lines.append(f"  {'':>{width}} (no calls)")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class _Miss:
    """Where inside an argument's value it differs, and how."""

    path: tuple[str | int, ...]
    reason: str

    def __str__(self) -> str:
        where = "".join(f"[{step!r}]" for step in self.path)
        return (f" at {where}" if where else "") + f": {self.reason}"


def _mismatch(expected: object, value: object, path: tuple[str | int, ...]) -> _Miss | None:
    """Why `value`, read from JSON, doesn't fit `expected`, and where inside it."""
    if isinstance(expected, Matcher):
        reason = expected.mismatch(value)
    elif isinstance(expected, type):
        fits = _is_instance(value, expected)
        reason = None if fits else f"{_short(value)} is not of type {expected.__name__}"
    elif isinstance(expected, t.Mapping):
        return _mapping_mismatch(expected, value, path)
    elif isinstance(expected, list | tuple):
        return _sequence_mismatch(expected, value, path)
    elif isinstance(expected, bool) or isinstance(value, bool):
        same = isinstance(expected, bool) and isinstance(value, bool) and expected == value
        reason = None if same else _differs(value, expected)
        if reason is not None and (_is_number(expected) or _is_number(value)):
            reason = f"{reason} (booleans aren't numbers)"
    elif isinstance(expected, str | int | float) or expected is None:
        reason = None if _plain_equal(expected, value) else _differs(value, expected)
    elif callable(expected):
        reason = _predicate_mismatch(expected, value)
    else:
        reason = None if expected == value else _differs(value, expected)
    return None if reason is None else _Miss(path, reason)


def _mapping_mismatch(
    expected: t.Mapping[object, object], value: object, path: tuple[str | int, ...]
) -> _Miss | None:
    if not isinstance(value, dict):
        return _Miss(path, f"{_short(value)} is not an object")
    for key, inner in expected.items():
        if key not in value:
            return _Miss(path, f"missing key {key!r}")
        miss = _mismatch(inner, value[key], (*path, str(key)))
        if miss is not None:
            return miss
    extra = next((key for key in value if key not in expected), None)
    return None if extra is None else _Miss(path, f"unexpected key {extra!r}")


def _sequence_mismatch(
    expected: t.Sequence[object], value: object, path: tuple[str | int, ...]
) -> _Miss | None:
    if not isinstance(value, list):
        return _Miss(path, f"{_short(value)} is not a list")
    if len(value) != len(expected):
        return _Miss(path, f"{len(value)} items, expected {len(expected)}")
    for index, (inner, item) in enumerate(zip(expected, value, strict=True)):
        miss = _mismatch(inner, item, (*path, index))
        if miss is not None:
            return miss
    return None


def _plain_equal(expected: str | int | float | None, value: object) -> bool:
    if isinstance(expected, str) or expected is None:
        return type(value) is type(expected) and value == expected
    return isinstance(value, int | float) and value == expected


def _differs(value: object, expected: object) -> str:
    if isinstance(value, str) and isinstance(expected, str) and len(value) > _VALUE_WIDTH:
        at = next(
            (i for i, (a, b) in enumerate(zip(value, expected, strict=False)) if a != b),
            min(len(value), len(expected)),
        )
        return f"{_short(value)} != {_short(expected)} (they differ at index {at})"
    return f"{_short(value)} != {_short(expected)}"


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_instance(value: object, kind: type) -> bool:
    """`isinstance` as JSON types are: a bool isn't a number, an int is a float."""
    if isinstance(value, bool):
        return kind in (bool, object)
    if kind is float:
        return isinstance(value, int | float)
    return isinstance(value, kind)


def _predicate_mismatch(predicate: t.Callable[[object], object], value: object) -> str | None:
    try:
        if predicate(value):
            return None
    except Exception as error:
        raised = f" ({type(error).__name__}: {error})"
    else:
        raised = ""
    return f"{_short(value)} does not satisfy {_shown(predicate)}{raised}"


def _shown(expected: object) -> str:
    """An expected value as a call shows it: a function by its name, a type by its own."""
    if isinstance(expected, type):
        return expected.__name__
    if isinstance(expected, t.Mapping):
        inner = ", ".join(f"{key!r}: {_shown(value)}" for key, value in expected.items())
        return "{" + inner + "}"
    if isinstance(expected, list | tuple):
        return "[" + ", ".join(_shown(value) for value in expected) + "]"
    if callable(expected) and not isinstance(expected, Matcher):
        return getattr(expected, "__name__", None) or repr(expected)
    return _short(expected)


def _shown_argument(name: str, expected: object) -> str:
    if isinstance(expected, Matcher):
        return expected.shown_as_argument(name)
    return f"{name}={_shown(expected)}"


def _shown_call(made: ToolCall) -> str:
    given = made.parsed_arguments()
    if given is None:
        return f"{made.name}(<not a JSON object: {_short(made.arguments)}>)"
    return f"{made.name}({', '.join(f'{k}={_short(v)}' for k, v in given.items())})"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 1] + "…"


def _cell(text: str) -> str:
    return text if len(text) <= _CELL_WIDTH else text[: _CELL_WIDTH - 1] + "…"
