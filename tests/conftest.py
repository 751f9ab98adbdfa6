"""Fixtures and fakes shared by the test suite: the loopback LLM server and in-process
generators that count what happens to them."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import typing as t
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.etree import ElementTree

import pytest
import pytest_asyncio
from pydantic import PrivateAttr

from pytest_rigging.generator.base import (
    GeneratedMessage,
    GeneratedText,
    GenerateParams,
    Generator,
    Usage,
    get_generator,
)
from pytest_rigging.generator.litellm_ import _litellm, release_loop
from pytest_rigging.message import Message
from pytest_rigging.plugin.records import ChatRecord
from pytest_rigging.plugin.stats import wilson
from pytest_rigging.tools import FunctionCall, ToolCall
from tests.chromium import launch
from tests.llm_server import LLMServer, RecordedRequest, Reply


def chat_record(
    sample: int | None, conversation: list[tuple[str, str]], model: str, label: str, **fields: t.Any
) -> ChatRecord:
    """A chat's record as the plugin makes it, of `model`'s cell (`label`): `conversation`
    as (role, content) pairs, a passed check, and any field given in `fields`."""
    record: ChatRecord = {
        "model": model,
        "label": label,
        "params": "{}",
        "sample": sample,
        "outcome": "first_try",
        "recovery_rounds": 0,
        "error_kind": None,
        "error": None,
        "input_tokens": 3,
        "output_tokens": 2,
        "latency": 0.5,
        "generator_id": model,
        "conversation": [{"role": role, "content": text} for role, text in conversation],
        "cost": None,
        "check": "passed",
        "check_message": None,
    }
    record.update(fields)  # type: ignore[typeddict-item]
    return record


INTERRUPTED_ON_THIRD = """
    import pytest

    @pytest.fixture
    def rig_pipeline(rig_generator, case):
        return rig_generator.chat(case)

    @pytest.mark.parametrize("case", ["one", "two", "three"])
    def test_a(rig_chat, case):
        if case == "three":
            raise KeyboardInterrupt
"""
"""A test module whose third item is interrupted (Ctrl-C) after two passed."""


def ini(pytester: pytest.Pytester, extra: str = "") -> None:
    """A pytester project's pytest.ini: pytest-asyncio's loop scope set, plus `extra`."""
    pytester.makefile(
        ".ini", pytest=f"[pytest]\nasyncio_default_fixture_loop_scope = function\n{extra}"
    )


def collection_error(pytester: pytest.Pytester, *args: str) -> str:
    """The one collection error's message, as pytest prints it (whole: no traceback), of a
    run collecting with `args`."""
    result = pytester.runpytest("--collect-only", "-q", *args)
    assert result.ret == pytest.ExitCode.INTERRUPTED, result.stdout.str()
    text = result.stdout.str()
    assert text.count("ERROR collecting") == 1, text
    after = text.split("ERROR collecting", 1)[1].split("\n", 1)[1]
    return after.split("\n=====", 1)[0].strip()


def report(pytester: pytest.Pytester, name: str = "r.json") -> dict[str, t.Any]:
    """A pytester run's JSON report (`--rig-report NAME`)."""
    return t.cast(dict[str, t.Any], json.loads((pytester.path / name).read_text()))


def rows(result: pytest.RunResult, first: str) -> list[list[str]]:
    """The cells of each terminal table row that begins with `first` (a model's rows, one
    per params set at `-v`)."""
    return [
        [cell.strip() for cell in line.split("  ") if cell.strip()]
        for line in result.outlines
        if line.split("  ")[0].strip() == first
    ]


def row(result: pytest.RunResult, first: str) -> list[str]:
    """The cells of the terminal table's one row that begins with `first`."""
    [cells] = rows(result, first)
    return cells


def rate(passed: int, total: int) -> str:
    """A rate as the table shows it, with its Wilson interval."""
    low, high = wilson(passed, total)
    return f"{passed / total:.1%} [{low * 100:.1f}-{high * 100:.1f}]"


def outcomes(result: pytest.RunResult) -> dict[str, int]:
    """The closing line's counts ("1 gate failed" as `gate`), but deselected items (which
    xdist doesn't count)."""
    return {k: v for k, v in result.parseoutcomes().items() if k != "deselected"}


def rig_module(tests: str, prompt: str = "x") -> str:
    """A pytester test module whose `rig_pipeline` sends `prompt`, followed by `tests`."""
    return (
        "import pytest\n\n@pytest.fixture\ndef rig_pipeline(rig_generator):\n"
        f"    return rig_generator.chat({prompt!r})\n\n" + textwrap.dedent(tests)
    )


ONE_ITEM = rig_module("def test_a(rig_chat):\n    pass\n")
"""A pytester test module with one matrix item per model."""


def run_on_terminal(pytester: pytest.Pytester, *args: str, columns: int = 80) -> bytes:
    """Everything pytest writes when run on a terminal `columns` wide (a pseudo-terminal,
    as a user's shell gives it), in pytester's project."""
    import fcntl
    import pty
    import struct
    import termios

    ours, theirs = pty.openpty()
    fcntl.ioctl(theirs, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    colours = ("PY_COLORS", "NO_COLOR", "FORCE_COLOR")  # pytester turns them off
    env = {k: v for k, v in os.environ.items() if k not in colours}
    env.update(TERM="xterm", COLUMNS=str(columns))
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args]
    process = subprocess.Popen(
        command, cwd=pytester.path, stdin=theirs, stdout=theirs, stderr=theirs, env=env
    )
    os.close(theirs)
    written: list[bytes] = []
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not select.select([ours], [], [], 1)[0]:
                continue
            try:
                data = os.read(ours, 65536)
            except OSError:  # EIO: the terminal's other end is closed, pytest has ended
                break
            if not data:
                break
            written.append(data)
    finally:
        os.close(ours)
        if process.poll() is None:
            process.kill()
        process.wait()
    return b"".join(written)


def screen(written: bytes, columns: int = 80) -> list[str]:
    """The lines a terminal `columns` wide shows once `written` is written to it: carriage
    returns, backspaces, erasing and cursor moves applied, colours dropped; no line
    scrolls away."""
    lines: list[list[str]] = []

    def at(row: int) -> list[str]:
        lines.extend([] for _ in range(row + 1 - len(lines)))
        return lines[row]

    row = column = 0
    sequences = r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b\[[0-9;]*[A-Za-z]|[\s\S]"
    for token in re.findall(sequences, written.decode()):
        code, argument = token[-1], token[2:-1]
        count = int(argument) if argument.isdigit() else 1
        if token.startswith("\x1b]"):
            pass  # a message to the terminal itself (pytest's taskbar progress): not shown
        elif not token.startswith("\x1b["):
            if token == "\r":
                column = 0
            elif token == "\n":
                row += 1
            elif token == "\b":
                column = max(column - 1, 0)
            else:
                if column == columns:  # past the last column: the terminal wraps first
                    row, column = row + 1, 0
                line = at(row)
                line.extend(" " * (column + 1 - len(line)))
                line[column] = token
                column += 1
        elif code == "m":
            pass
        elif code == "A":
            row = max(row - count, 0)
        elif code == "C":
            column = min(column + count, columns - 1)
        elif code == "D":
            column = max(column - count, 0)
        elif code == "K" and argument in ("", "0"):
            del at(row)[column:]
        elif code == "K" and argument == "2":
            at(row).clear()
        else:
            raise AssertionError(f"a sequence this screen does not know: {token!r}")
    return ["".join(line).rstrip() for line in lines]


class Clock:
    """A `time` module whose `monotonic()` reads `now`, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The status line's clock (`plugin.progress`), moved by the test."""
    from pytest_rigging.plugin import progress

    found = Clock()
    monkeypatch.setattr(progress, "time", found)
    return found


@pytest.fixture(params=["litellm", "native"])
def route(request: pytest.FixtureRequest) -> str:
    """The route a provider test runs on: litellm's or the native providers'."""
    return str(request.param)


def on(route: str, identifier: str) -> str:
    """`identifier` (litellm's spelling: `gpt-4o,...`, `openai/m,...`, `claude-...`) on
    `route`: the native route names the provider instead (`openai!`, `anthropic!`)."""
    if route == "litellm":
        return identifier
    model, comma, rest = identifier.partition(",")
    provider, slash, name = model.rpartition("/")
    if model.startswith("claude") or provider == "anthropic":
        return f"anthropic!{name if slash else model}{comma}{rest}"
    return f"openai!{name if slash else model}{comma}{rest}"


def named(identifier: str) -> str:
    """How errors name the generator: `provider!model`."""
    generator = get_generator(identifier)
    return f"{generator.provider}!{generator.model}"


def closing_with_closest(message: str, line: str) -> bool:
    """Whether `line` is `message`, which ends with the first of the names litellm knows
    closest to a misspelt one, and any more of them: which follow it depends on the
    release's bundled data (litellm is not pinned)."""
    return re.fullmatch(f"{re.escape(message)}(, [^ ,]+)*", line) is not None


def junit_properties(path: Path, name: str | None = None) -> dict[str, str | None]:
    """The properties of the testcase `name` in a JUnit file (None: its only testcase)."""
    cases = [c for c in ElementTree.parse(path).getroot().iter("testcase")]
    [case] = cases if name is None else [c for c in cases if c.get("name") == name]
    return {p.get("name", ""): p.get("value") for p in case.iter("property")}


def hold_until_in_flight(
    server: LLMServer, at_once: int, content: t.Callable[[RecordedRequest], str]
) -> threading.Timer:
    """Answer each request with `content(request)` once `at_once` requests are in flight
    together, so that the overlap the server sees doesn't depend on how fast calls go out
    (should they never all be, after 30 s: a hang guard, not a threshold). The guard, to
    cancel once the run is over."""
    all_in = threading.Event()

    def respond(request: RecordedRequest) -> Reply:
        if sum(r.end == 0.0 for r in server.requests) >= at_once:
            all_in.set()
        return Reply(content(request), until=all_in)

    server.responder = respond
    guard = threading.Timer(30, all_in.set)
    guard.start()
    return guard


def wait_for(condition: t.Callable[[], bool], what: str) -> None:
    """Wait until `condition()` holds: a hang guard of 60 s, not a threshold."""
    deadline = time.monotonic() + 60  # a hang guard, not a threshold
    while not condition():
        assert time.monotonic() < deadline, f"still waiting for {what} after 60 s"
        time.sleep(0.01)


pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that runs pytest through `pytester` tests the plugin with pytest and xdist
    themselves: marked `plugin`, which CI also runs on the lowest and the newest pytest and
    pytest-xdist supported (`.ci/run`)."""
    for item in items:
        if "pytester" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.plugin)


# litellm is imported once, up front: `pytester` removes the modules a test imported when
# the test ends, and what litellm installs (finders, loggers) breaks once half-removed.
# `_litellm` keeps the import offline itself (LITELLM_LOCAL_MODEL_COST_MAP, set for the
# import alone), as it does in every process the tests start: nothing to set here.
_litellm()
# So are the native providers, and every plugin module a test may import in-process:
# a module pytester removes comes back as a second copy, with state (a loop's shared
# session) of its own.
for _module in (
    "generator.openai_",
    "generator.anthropic_",
    "plugin.cassettes",
    "plugin.budget",
    "plugin.baseline",
    "plugin.shards",
    "plugin.execution",
    "plugin.report",
):
    importlib.import_module(f"pytest_rigging.{_module}")

# Shaped so that nothing mistakes them for real keys, but long enough to be redacted.
OPENAI_TEST_KEY = "test-openai-key-do-not-leak-0001"
ANTHROPIC_TEST_KEY = "test-anthropic-key-do-not-leak-0002"


class FakeGenerator(Generator):
    """An in-process generator: replies with `reply(messages)` (echo by default) after
    `latency` seconds (a number, or a function of the messages), and records every call
    and the peak number of calls in flight."""

    latency: float | t.Callable[[list[Message]], float] = 0.0
    reply: t.Callable[[list[Message]], str] | None = None

    _calls: list[tuple[list[Message], GenerateParams]] = PrivateAttr(default_factory=list)
    _in_flight: int = PrivateAttr(default=0)
    _peak: int = PrivateAttr(default=0)

    @property
    def calls(self) -> list[tuple[list[Message], GenerateParams]]:
        return self._calls

    @property
    def peak(self) -> int:
        return self._peak

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def _answer(self, messages: list[Message]) -> str:
        if self.reply is not None:
            return self.reply(messages)
        return next((m.content for m in reversed(messages) if m.role == "user"), "")

    async def generate_message(
        self, messages: t.Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        self._calls.append((list(messages), params))
        self._in_flight += 1
        self._peak = max(self._peak, self._in_flight)
        try:
            delay = self.latency(list(messages)) if callable(self.latency) else self.latency
            if delay:
                await asyncio.sleep(delay)
            content = self._answer(list(messages))
        finally:
            self._in_flight -= 1
        return GeneratedMessage(
            message=Message(role="assistant", content=content),
            stop_reason="stop",
            usage=Usage(input_tokens=1, output_tokens=1),
        )

    async def generate_text(self, text: str, params: GenerateParams) -> GeneratedText:
        message = await self.generate_message([Message(role="user", content=text)], params)
        return GeneratedText(text=message.message.content, usage=message.usage)


def replying(*contents: str) -> FakeGenerator:
    """A fake whose n-th call answers contents[n] (the last one repeats)."""
    answers = list(contents)

    def reply(messages: list[Message]) -> str:
        return answers.pop(0) if len(answers) > 1 else answers[0]

    return FakeGenerator(model="replying", reply=reply)


Step = str | list[tuple[str, str]]
"""A scripted reply: text, or tool calls as (name, arguments JSON) pairs."""


class CallingGenerator(FakeGenerator):
    """A fake with function calling, whose n-th reply is `steps[n]` (the last repeats):
    text, or tool calls with ids `call-<n>-<i>`."""

    steps: list[Step] = []
    calling: bool = True

    async def supports_function_calling(self) -> bool:
        return self.calling

    async def generate_message(
        self, messages: t.Sequence[Message], params: GenerateParams
    ) -> GeneratedMessage:
        turn = len(self.calls)
        self.calls.append((list(messages), params))
        step = self.steps[min(turn, len(self.steps) - 1)]
        message = Message(role="assistant", content=step if isinstance(step, str) else "")
        if not isinstance(step, str):
            message.tool_calls = [
                ToolCall(id=f"call-{turn}-{i}", function=FunctionCall(name=name, arguments=args))
                for i, (name, args) in enumerate(step)
            ]
        return GeneratedMessage(
            message=message,
            stop_reason="stop" if isinstance(step, str) else "tool_calls",
            usage=Usage(input_tokens=1, output_tokens=1),
        )


def calling(*steps: Step) -> CallingGenerator:
    return CallingGenerator(model="calling", steps=list(steps))


@pytest.fixture
def fake() -> FakeGenerator:
    return FakeGenerator(model="fake", max_connections=4)


@pytest.fixture(scope="session")
def llm_server_session() -> Iterator[LLMServer]:
    with LLMServer() as server:
        yield server


@pytest_asyncio.fixture
async def release_litellm() -> AsyncIterator[None]:
    """After a test that called litellm on its own loop, release what litellm keeps there."""
    yield
    await release_loop()


@pytest.fixture
def llm_server(llm_server_session: LLMServer, monkeypatch: pytest.MonkeyPatch) -> LLMServer:
    """The loopback server, reset, with both providers' base URLs and keys pointing at it,
    so that identifiers copied from the seed (`gpt-3.5-turbo`, `claude-3-...`) reach it."""
    server = llm_server_session
    server.reset()
    for name in ("OPENAI_BASE_URL", "OPENAI_API_BASE"):
        monkeypatch.setenv(name, server.openai_base)
    for name in ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE"):
        monkeypatch.setenv(name, server.anthropic_base)
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_TEST_KEY)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_TEST_KEY)
    return server


Done = t.TypeVar("Done")


class BrowserThread:
    """A headless Chromium driven by Playwright's sync API on a thread of its own.

    Between its calls, that API marks its event loop as running on the thread that uses
    it, which would stop every pytest-asyncio test run later on that thread (the browser
    lives for the session); on a thread of its own it marks nothing of the tests'."""

    def __init__(self, executor: ThreadPoolExecutor, browser: t.Any) -> None:
        self._executor = executor
        self._browser = browser

    def run(self, work: Callable[[t.Any], Done]) -> Done:
        """`work(browser)`, on the browser's thread; what it returns or raises."""
        return self._executor.submit(work, self._browser).result(timeout=300)


def browser_missing() -> str | None:
    """What the browser tests need and this machine lacks, as the command that installs
    it; None when nothing is missing."""
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[dev]', or pip install playwright)")
    if shutil.which("chromium") is None:
        missing.append("chromium (Debian: apt-get install -y chromium)")
    if not missing:
        return None
    return "the browser tests need " + " and ".join(missing)


@pytest.fixture(scope="session")
def browser() -> Iterator[BrowserThread]:
    """One headless Chromium for the session (`BrowserThread`). Skips when Chromium or
    Playwright is missing, naming what to install; fails instead when
    RIG_BROWSER_REQUIRED=1 (CI)."""
    missing = browser_missing()
    if missing is not None:
        if os.environ.get("RIG_BROWSER_REQUIRED") == "1":
            pytest.fail(f"{missing} (RIG_BROWSER_REQUIRED=1)", pytrace=False)
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    executor = ThreadPoolExecutor(1, thread_name_prefix="browser")

    def start() -> tuple[t.Any, t.Any]:
        playwright = sync_playwright().start()
        return playwright, launch(playwright)

    playwright, launched = executor.submit(start).result(timeout=120)
    try:
        yield BrowserThread(executor, launched)
    finally:
        executor.submit(lambda: (launched.close(), playwright.stop())).result(timeout=120)
        executor.shutdown()


def read_data(path: Path) -> dict[str, t.Any]:
    """The data block of the HTML page written to `path`, as the page's script reads it."""
    html = path.read_text(encoding="ascii")
    found = re.search(r'<script type="application/json" id="rig-data">(.*?)</script>', html, re.S)
    assert found is not None, "no data block"
    return t.cast(dict[str, t.Any], json.loads(found[1]))
