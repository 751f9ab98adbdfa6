"""Samples and verdicts: run a test's checks on each of N samples, pass when K pass.

A test that takes `rig_chat` gets its body called once per sample chat; a free-form test
with `runs=N` gets its body called N times (an async one's N bodies together, on the
engine's loop: each calls the model itself). Samples whose chat failed for infrastructure
reasons are never judged: they make the item an error (in setup) when too few judgeable
samples remain, and are never counted as quality failures.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
import typing as t

import pytest

from pytest_rigging._concurrency import in_force
from pytest_rigging._secrets import known_secrets, redact
from pytest_rigging.chat import Chat, ChatList
from pytest_rigging.error import GenerationError, Unscored
from pytest_rigging.message import Message
from pytest_rigging.plugin.matrix import Cell, Verdict, read_verdict
from pytest_rigging.plugin.records import (
    CheckOutcome,
    SampleCheck,
    group_key,
    sample_index,
    sample_number,
)
from pytest_rigging.plugin.state import RUN

SAMPLES_KEY = pytest.StashKey[dict[int, Chat]]()
"""The chats a `rig_chat` test judges, by sample number."""
VERDICTS_KEY = pytest.StashKey[dict[int, t.Any]]()
"""A `rig_verdict` test's verdicts (`judge.JudgeVerdict` or `PairwiseVerdict`), by the
number of the sample they judged."""
OUTCOME_KEY = pytest.StashKey[tuple[int, int]]()
UNSCORED_KEY = pytest.StashKey[str]()
"""Why an item is unscored: its judge gave too few verdicts to tell pass from fail."""
CHECKS_KEY = pytest.StashKey[dict[int | None, SampleCheck]]()
"""What the test's checks made of each sample it judged one by one."""
VERDICT_KEY = pytest.StashKey[Verdict]()
RESULT_FIXTURES = ("rig_chat", "rig_chats")

Verdicts = dict[int, tuple["pytest.Mark | None", Verdict]]
"""Verdicts read so far, by the `rig` mark they were read from."""

_FAILURES = (Exception, pytest.fail.Exception)

BODY: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "pytest_rigging_sample_body", default=None
)
"""The index of the sample whose test body runs here (an item with `runs=N`): the chats
the body runs itself (a free-form test's, a judge's) are that sample's, and get its check."""


class Judged(t.NamedTuple):
    """One sample as its test body left it: its number, its chat (a `rig_chat` test's),
    and what the body raised (None: it passed)."""

    number: int
    chat: Chat | None
    error: BaseException | None


class InfrastructureError(Exception):
    """Too many samples failed for reasons outside the model's answer to judge the item."""


class CallRefused(Exception):
    """A model call the plugin would not make (a spent budget, a cassette miss): it ends
    the item as it is, rather than counting as one sample's failure."""


def judgeable(chats: list[Chat], verdict: Verdict) -> dict[int, Chat]:
    """The chats a test may judge, by sample number (`chats` are in sample order); raises
    when infrastructure errors leave too few."""
    usable = {
        sample_number(index): chat
        for index, chat in enumerate(chats)
        if chat.error_kind != "infrastructure"
    }
    errors = len(chats) - len(usable)
    if errors and len(usable) < max(verdict.min_pass, 1):
        first = next(c for c in chats if c.error_kind == "infrastructure")
        raise InfrastructureError(
            f"{errors}/{len(chats)} samples failed with infrastructure errors, "
            f"too many to reach {verdict.min_pass}: {first.error}"
        )
    return usable


def every_chat(chats: list[Chat]) -> ChatList:
    """A `rig_chats` test's chats; an error when every one failed for infrastructure
    reasons (nothing left to judge)."""
    if chats and all(c.error_kind == "infrastructure" for c in chats):
        raise InfrastructureError(
            f"every sample failed with an infrastructure error: {chats[0].error}"
        )
    return ChatList(chats)


def first_chat(item: pytest.Item, chats: list[Chat]) -> Chat:
    """A `rig_chat` test's first judgeable chat; the others are kept for its bodies (one
    per sample, `wrap`)."""
    judged = item.stash[SAMPLES_KEY] = judgeable(chats, verdict_of(item))
    return next(iter(judged.values()))


def verdict_of(item: pytest.Item) -> Verdict:
    return item.stash.get(VERDICT_KEY, Verdict(runs=1, min_pass=1))


def prepare(item: pytest.Function, cell: Cell, runs: int, verdicts: Verdicts) -> None:
    """A matrix item before `-k`/`-m` select among them: its cell's marks and JUnit
    properties, its verdict (`runs` by default), and, for several samples, a test function
    that judges each."""
    for mark in cell.marks:
        item.add_marker(mark)
    item.user_properties.extend([("rig_model", cell.shown_model), ("rig_params", cell.params_text)])
    marker = item.get_closest_marker("rig")
    known = verdicts.get(id(marker))  # a function's items share its mark, and so its verdict
    if known is None or known[0] is not marker:
        known = (marker, read_verdict(marker, runs, item.nodeid))
        verdicts[id(marker)] = known
    verdict = item.stash[VERDICT_KEY] = known[1]
    if verdict.runs > 1:
        if "rig_chat" in item.fixturenames:
            wrap(item, verdict, per_chat=True)
        elif "rig_chats" not in item.fixturenames:
            wrap(item, verdict, per_chat=False)


def runs_line(items: t.Iterable[pytest.Item], runs: int) -> str | None:
    """What rig marks set instead of the run's `runs` (which the header shows), per test
    function, the first few named; None when no selected test differs."""
    by_test: dict[str, int] = {}
    for item in items:
        verdict = item.stash.get(VERDICT_KEY, None)
        if verdict is not None:
            by_test.setdefault(group_key(item.nodeid), verdict.runs)
    marked: dict[int, list[str]] = {}
    for test, count in by_test.items():
        if count != runs:
            marked.setdefault(count, []).append(test)
    if not marked:
        return None
    parts = []
    for count, tests in sorted(marked.items()):
        more = f" and {len(tests) - 3} more" if len(tests) > 3 else ""
        parts.append(f"{count} ({', '.join(tests[:3])}{more})")
    others = len(by_test) - sum(len(tests) for tests in marked.values())
    rest = {0: "", 1: f"; runs {runs} for the other test"}.get(
        others, f"; runs {runs} for the other {others} tests"
    )
    return f"rigging: runs per test from rig marks: {', '.join(parts)}{rest}"


def unscored(item: pytest.Item, report: pytest.TestReport, error: BaseException) -> None:
    """A one-sample item whose body read a verdict its judge never gave: reported as
    skipped (unscored: neither passed nor failed; `records.shown_status` counts it apart),
    with why, where the test is."""
    why = f"1 sample unscored (the judge gave no verdict): {error}"
    item.stash[UNSCORED_KEY] = why
    path, line, _ = item.location
    report.outcome = "skipped"
    report.longrepr = (path, (line or 0) + 1, f"unscored: {excerpt(why, MESSAGE_EXCERPT)}")


def show_dialog(item: pytest.Item, report: pytest.TestReport) -> None:
    """A failed one-sample item whose chat needed recovery, or ran out of it, shows the
    whole exchange under its failure (several samples show it in the failure itself)."""
    samples = item.stash.get(SAMPLES_KEY, None)
    if samples is None or len(samples) != 1:
        return
    [chat] = samples.values()
    if chat.recovery_rounds or chat.failed:
        report.sections.append((f"rigging: its conversation ({chat.generator_id})", dialog(chat)))


def wrap(item: pytest.Function, verdict: Verdict, per_chat: bool) -> None:
    """Replace the item's test function by one that judges every sample."""
    function = item.obj

    def calls(kwargs: dict[str, t.Any]) -> list[tuple[int, Chat | None, dict[str, t.Any]]]:
        """Each sample's index, chat (a `rig_chat` test's) and arguments (its verdict, a
        `rig_verdict` test's)."""
        if not per_chat:
            return [(i, None, kwargs) for i in range(verdict.runs)]
        verdicts = item.stash.get(VERDICTS_KEY, {}) if "rig_verdict" in kwargs else {}
        return [
            (
                sample_index(number),
                chat,
                {**kwargs, "rig_chat": chat}
                | ({"rig_verdict": verdicts[number]} if number in verdicts else {}),
            )
            for number, chat in item.stash[SAMPLES_KEY].items()
        ]

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def judged_async(**kwargs: t.Any) -> None:
            if per_chat:  # the chats are drawn: each body only judges its own
                outcomes = [
                    Judged(sample_number(i), c, await _outcome_async(function, a, i))
                    for i, c, a in calls(kwargs)
                ]
            else:  # each body calls the model: the samples run together
                engine = item.config.stash[RUN].engine()
                ended = await engine.together(
                    lambda i: _outcome_async(function, kwargs, i), verdict.runs
                )
                outcomes = [Judged(sample_number(i), None, e) for i, e in enumerate(ended)]
            _judge(item, verdict, outcomes)

        item.obj = judged_async
    else:

        @functools.wraps(function)
        def judged(**kwargs: t.Any) -> None:  # holding pytest's thread, one body at a time
            outcomes = [
                Judged(sample_number(i), c, _outcome(function, a, i)) for i, c, a in calls(kwargs)
            ]
            _judge(item, verdict, outcomes)

        item.obj = judged


def _outcome(
    function: t.Callable[..., t.Any], arguments: dict[str, t.Any], index: int
) -> BaseException | None:
    try:
        with in_force(BODY, index):
            function(**arguments)
    except CallRefused:
        raise
    except _FAILURES as error:
        return error
    return None


async def _outcome_async(
    function: t.Callable[..., t.Any], arguments: dict[str, t.Any], index: int
) -> BaseException | None:
    try:
        with in_force(BODY, index):
            await function(**arguments)
    except CallRefused:
        raise
    except _FAILURES as error:
        return error
    return None


def _judge(
    item: pytest.Function,
    verdict: Verdict,
    outcomes: list[Judged],
) -> None:
    """Pass when `verdict.min_pass` of the samples passed; each sample's check is kept
    for its chats' records."""
    checks: dict[int | None, SampleCheck] = {o.number: check_of(o.error) for o in outcomes}
    item.stash[CHECKS_KEY] = checks
    errored = [o.error for o in outcomes if isinstance(o.error, GenerationError)]
    unscored = [o.error for o in outcomes if isinstance(o.error, Unscored)]
    judged = [o.error for o in outcomes if not isinstance(o.error, GenerationError | Unscored)]
    passed = sum(e is None for e in judged)
    item.stash[OUTCOME_KEY] = (passed, len(judged))  # errored samples were never judged
    if passed >= verdict.min_pass:
        return
    if errored and passed + len(errored) >= verdict.min_pass:
        raise errored[0]
    if unscored and passed + len(errored) + len(unscored) >= verdict.min_pass:
        why = (
            f"{passed}/{len(outcomes)} samples passed, needed {verdict.min_pass}; "
            f"{len(unscored)} unscored (the judge gave no verdict): {unscored[0]}"
        )
        item.stash[UNSCORED_KEY] = why
        raise pytest.skip.Exception(f"unscored: {excerpt(why, MESSAGE_EXCERPT)}")
    lines = [f"{passed}/{len(outcomes)} samples passed, needed {verdict.min_pass}"]
    number, chat, error = next(o for o in outcomes if o.error is not None)
    lines.append(f"\nfirst failing sample (#{number}):\n{excerpt(_describe(error))}")
    if chat is not None:
        lines.append(f"\nits conversation ({chat.generator_id}):\n{dialog(chat)}")
    pytest.fail("\n".join(lines), pytrace=False)


CHECK_LINES, CHECK_CHARACTERS = 5, 500
"""A check's message in a sample's record: at most its first lines, and characters."""


def check_of(error: BaseException | None) -> SampleCheck:
    """A sample's check from what its test body raised (None: it passed); the message is
    the failure's first lines, secrets removed."""
    if error is None:
        return SampleCheck("passed", None)
    described = redact(_describe(error), known_secrets())  # whole: no secret cut in two
    message = "\n".join([line for line in described.splitlines() if line.strip()][:CHECK_LINES])
    if len(message) > CHECK_CHARACTERS:
        message = message[: CHECK_CHARACTERS - 3] + "..."
    outcome: CheckOutcome = (
        "error"
        if isinstance(error, GenerationError)
        else "unscored"
        if isinstance(error, Unscored)
        else "failed"
    )
    return SampleCheck(outcome, message)


def checks_of(
    item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport
) -> dict[int | None, SampleCheck]:
    """The test's check on each of the item's samples: as judged one by one (`runs=N`), or
    the call's own outcome for an item with one sample (its chat, and every chat its body
    ran itself: a free-form test's, a judge's); none for a `rig_chats` test, which judges
    them together, nor for a call that skipped."""
    judged = item.stash.get(CHECKS_KEY, None)
    if judged is not None:
        del item.stash[CHECKS_KEY]  # taken: an item run again (a rerun plugin) judges anew
        return judged
    fixtures: t.Sequence[str] = getattr(item, "fixturenames", ())
    one_sample = verdict_of(item).runs == 1 and "rig_chats" not in fixtures
    skipped = report.skipped and UNSCORED_KEY not in item.stash  # not judged at all
    if call.when != "call" or skipped or not one_sample:
        return {}
    check = check_of(call.excinfo.value if call.excinfo is not None else None)
    return dict.fromkeys([None, *item.stash.get(SAMPLES_KEY, {})], check)


def _describe(error: BaseException | None) -> str:
    text = str(error).strip()
    name = type(error).__name__
    return f"{name}: {text}" if text else name


_HOSTILE = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)
"""What a terminal, a CI log or a JUnit file must not get raw from a model: control
characters (C0 but tab and newline, DEL, C1: ESC and CSI recolour and move the cursor, CR
rewrites a line), the marks that reorder text (bidi overrides and isolates), and lone
surrogates (which UTF-8 can't hold)."""
EXCERPT = 2000
"""Characters kept from each end of a long text in a failure message."""
MESSAGE_EXCERPT = 400
"""Each message of a failing chat shows at most about three times this many characters."""
DIALOG_HEAD, DIALOG_TAIL = 2, 8
"""A failing chat shows its first and last messages; those between are counted."""


def excerpt(text: str, keep: int = EXCERPT) -> str:
    """`text` fit for a terminal and a JUnit file, whatever a model said: escaped (`escape`),
    and a long text cut to its first and last `keep`
    characters with its size between."""
    text = escape(text)
    if len(text) <= 3 * keep:
        return text
    left_out = len(text) - 2 * keep
    return (
        f"{text[:keep]}\n... [{len(text):,} characters; {left_out:,} left out] ...\n{text[-keep:]}"
    )


def escape(text: str) -> str:
    """`text` with each hostile character (`_HOSTILE`) written as its Python escape
    (`\\x1b`, `\\u202e`, `\\udc80`): seen for what it is, and unable to act."""
    return _HOSTILE.sub(lambda match: repr(match.group())[1:-1], text)


def showable(config: pytest.Config, report: pytest.TestReport) -> pytest.TestReport:
    """A rig item's report as the terminal, JUnit and the xdist controller may get it: its
    failure text (pytest's own assertion diff and traceback included) escaped (`escape`),
    lone surrogates in its sections (captured output and logs, which are the user's
    otherwise) escaped so that execnet can send them, and no known secret anywhere (frames
    `--full-trace` shows, a library's own included). The item's record (`report.rig`)
    keeps what the model said, for the JSON report.

    The report goes through pytest's own serialization hooks (as xdist sends it) to reach
    every text it holds; only when one needs it, so most reports pass as they are."""
    if report.longrepr is None and not report.sections:  # most reports of a run
        return report
    failure = _failure_text(report.longrepr) if report.longrepr is not None else ""
    sections = [content for _, content in report.sections]
    secrets = known_secrets()
    if not (
        _HOSTILE.search(failure)
        or any(_SURROGATE.search(text) for text in sections)
        or any(secret in text for text in (failure, *sections) for secret in secrets)
    ):
        return report
    record = report.__dict__.pop("rig", None)
    data = config.hook.pytest_report_to_serializable(config=config, report=report)
    data["longrepr"] = _each_text(data.get("longrepr"), lambda text: redact(escape(text), secrets))
    data["sections"] = _each_text(
        data.get("sections"), lambda text: redact(_unsurrogate(text), secrets)
    )
    safe: pytest.TestReport = config.hook.pytest_report_from_serializable(config=config, data=data)
    if record is not None:
        safe.rig = record  # type: ignore[attr-defined]  # crosses xdist in the report's dict
    return safe


def _failure_text(longrepr: object) -> str:
    """A report's failure as text: a skip's `(path, line, reason)` as it is (pytest's
    `longreprtext` shows it as a tuple's repr, where nothing raw would be found)."""
    if isinstance(longrepr, tuple):
        return "\n".join(map(str, longrepr))
    return str(longrepr)


_SURROGATE = re.compile(r"[\ud800-\udfff]")


def _unsurrogate(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _each_text(value: object, change: t.Callable[[str], str]) -> object:
    """`value` (serialized report data) with `change` applied to every text in it, and its
    shape kept: pytest requires a skip's `(path, line, reason)` to stay a tuple."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {key: _each_text(item, change) for key, item in value.items()}
    if isinstance(value, tuple):
        return tuple(_each_text(item, change) for item in value)
    if isinstance(value, list):
        return [_each_text(item, change) for item in value]
    return value


def dialog(chat: Chat) -> str:
    """A failing chat's exchange, every message cut on its own: after a recovery, each
    reply the model gave shows, however long the others were. Images and audio show as
    what they are; a dialog longer than DIALOG_HEAD + DIALOG_TAIL messages, by its ends."""
    messages = chat.all
    shown = [_shown(m) for m in messages[:DIALOG_HEAD]]
    left_out = len(messages) - DIALOG_HEAD - DIALOG_TAIL
    if left_out > 0:
        shown.append(f"... [{left_out} messages left out] ...")
    shown.extend(_shown(m) for m in messages[max(DIALOG_HEAD, len(messages) - DIALOG_TAIL) :])
    if chat.failed and chat.error is not None:
        shown.append(f"[error]: {excerpt(str(chat.error), MESSAGE_EXCERPT)}")
    return "\n\n".join(shown)


def _shown(message: Message) -> str:
    media = "".join(
        f"\n |- {excerpt(str(part), MESSAGE_EXCERPT)}"
        for part in message.content_parts
        if part.type != "text"
    )
    return f"[{message.role}]: {excerpt(message.content, MESSAGE_EXCERPT)}{media}"
