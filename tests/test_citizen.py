"""The plugin as a guest in someone else's suite: xdist stays the user's, nothing printed
when unused, no process-wide side effects, bad settings stopped at start-up in one line,
a live status line, and a layout where the library never imports the plugin."""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import typing as t
import xml.dom.minidom
from pathlib import Path

import pytest

import pytest_rigging
from pytest_rigging.plugin import progress
from tests.conftest import (
    ONE_ITEM,
    Clock,
    closing_with_closest,
    hold_until_in_flight,
    ini,
    junit_properties,
    on,
    rig_module,
    run_on_terminal,
    screen,
    wait_for,
)
from tests.llm_server import LLMServer, RecordedRequest, Reply, peak_overlap

PARAMETRIZED = """
import pytest

@pytest.mark.parametrize("n", range(12))
def test_p(n):
    pass
"""


def workers_of(result: pytest.RunResult, name: str) -> set[str]:
    """Which xdist workers ran items of test function `name` (from `-v` output)."""
    return set(re.findall(rf"\[(gw\d)\] .*PASSED .*::{name}\[", result.stdout.str()))


@pytest.mark.parametrize("dist", ["load", "worksteal", "loadgroup"])
def test_xdist_schedules_a_suite_without_rig_tests_as_its_own(
    pytester: pytest.Pytester, dist: str
) -> None:
    ini(pytester)
    pytester.makepyfile(PARAMETRIZED)
    result = pytester.runpytest_subprocess("-n", "2", "--dist", dist, "-v")
    result.assert_outcomes(passed=12)
    assert workers_of(result, "test_p") == {"gw0", "gw1"}
    own = {
        "load": "LoadScheduling",
        "worksteal": "WorkStealingScheduling",
        "loadgroup": "LoadGroupScheduling",
    }[dist]
    assert f"scheduling tests via {own}" in result.stdout.str()
    assert "rigging:" not in result.stdout.str()


def test_xdist_keeps_slices_of_rig_functions_together_and_xdist_groups_working(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    pytester.makepyfile(
        PARAMETRIZED
        + """
@pytest.fixture
def rig_pipeline(rig_generator, n):
    return rig_generator.chat(f"q{n}")

@pytest.mark.parametrize("n", range(6))
@pytest.mark.rig_models("echo!a", "echo!b")
def test_rig(rig_chat, n):
    assert rig_chat.last.content == f"q{n}"

@pytest.mark.parametrize("n", range(6))
@pytest.mark.xdist_group("together")
def test_grouped(n):
    pass

@pytest.mark.parametrize("n", range(6))
@pytest.mark.rig_models("echo!a", "echo!b")
@pytest.mark.xdist_group("together")
def test_rig_grouped(rig_chat, n):
    assert rig_chat.last.content == f"q{n}"
"""
    )
    collected = pytester.runpytest_subprocess("--co", "-q").stdout.lines
    rig = [line.split("::")[-1] for line in collected if "::test_rig[" in line]
    halves = (rig[:6], rig[6:])  # under -n 2: two slices, in collection order
    for dist in ("load", "loadgroup"):
        result = pytester.runpytest_subprocess("-n", "2", "--dist", dist, "-v")
        result.assert_outcomes(passed=42)
        ran = dict(
            (item, worker)
            for worker, item in re.findall(
                r"\[(gw\d)\] .*PASSED .*::(test_rig\[\S+\])", result.stdout.str()
            )
        )
        assert [len({ran[item] for item in half}) for half in halves] == [1, 1], ran
        assert "scheduling tests via FunctionScheduling" in result.stdout.str()
        if dist == "loadgroup":  # xdist_group marks work where xdist documents them
            grouped = workers_of(result, "test_grouped") | workers_of(result, "test_rig_grouped")
            assert len(grouped) == 1


HEAVY = ("pydantic", "litellm", "pytest_rigging.plugin.cassettes", "pytest_rigging.plugin.stats")


def test_silent_when_unused_with_and_without_xdist(pytester: pytest.Pytester) -> None:
    """Nothing printed, and nothing heavy imported in any process, to its very end."""
    ini(pytester)
    pytester.makepyfile(PARAMETRIZED)
    pytester.makeconftest(
        f"""
        import sys

        def pytest_unconfigure(config):
            # not PYTEST_XDIST_WORKER: this suite may run under an enclosing xdist run
            process = getattr(config, "workerinput", {{}}).get("workerid", "controller")
            heavy = [m for m in {HEAVY!r} if m in sys.modules]
            with open(f"heavy-{{process}}.txt", "w") as file:
                file.write(",".join(heavy))
        """
    )
    for args in ([], ["-n", "2"]):
        result = pytester.runpytest_subprocess(*args)
        result.assert_outcomes(passed=12)
        assert "rigging:" not in result.stdout.str() + result.stderr.str()
        imported = {p.name: p.read_text() for p in pytester.path.glob("heavy-*.txt")}
        expected = ["heavy-controller.txt", *(["heavy-gw0.txt", "heavy-gw1.txt"] if args else [])]
        assert imported == dict.fromkeys(expected, "")
        for path in pytester.path.glob("heavy-*.txt"):
            path.unlink()


SIDE_EFFECTS = """
import asyncio, gc, os, sys, warnings
environment, filters = dict(os.environ), list(warnings.filters)
LOOPBACK = ("127.0.0.1", "::1", "localhost")
elsewhere = []  # hosts other than loopback that something looked up or connected to

def audit(event, args):
    if event == "socket.getaddrinfo" and args[0] not in LOOPBACK:
        elsewhere.append(args[0])
    elif event == "socket.connect" and isinstance(args[1], tuple) and args[1][0] not in LOOPBACK:
        elsewhere.append(args[1][0])

sys.addaudithook(audit)
collections, unraisable = [], []
gc.callbacks.append(lambda phase, info: collections.append(phase))
sys.unraisablehook = lambda hooked: unraisable.append(str(hooked.exc_value))

import pytest_rigging as rg
from pytest_rigging.model import Answer

assert len(Answer.from_text("<answer>x</answer> " * 200_000)) == 200_000
assert collections, "the collector ran while parsing"

NATIVE = sys.argv[3] == "native"
OPENAI, ANTHROPIC = ("openai!", "anthropic!") if NATIVE else ("openai/", "anthropic/")

async def chats():
    openai = rg.get_generator(f"{OPENAI}m,api_base={sys.argv[1]},api_key=test-key-000000")
    claude = rg.get_generator(f"{ANTHROPIC}c,api_base={sys.argv[2]},api_key=test-key-000000")
    replies = [await openai.chat("hi").run(), await claude.chat("hi").run()]
    await openai.aclose()
    await claude.aclose()
    return [chat.last.content for chat in replies]

assert asyncio.run(chats()) == ["hello", "hello"]
gc.collect()
assert unraisable == [], unraisable  # aclose() left no socket open

async def text():
    openai = rg.get_generator(f"{OPENAI}m,api_base={sys.argv[1]},api_key=test-key-000000")
    try:
        return (await openai.complete("hi").run()).generated
    finally:
        await openai.aclose()

assert asyncio.run(text()) == "hello"
assert gc.isenabled() and gc.get_freeze_count() == 0
# litellm's tokenizer module points tiktoken at litellm's bundled files when a call first
# loads it: litellm's own setting, which tiktoken needs offline; nothing else may change.
changed = {k for k in {*os.environ, *environment} if os.environ.get(k) != environment.get(k)}
assert changed <= {"TIKTOKEN_CACHE_DIR"}, changed
assert warnings.filters == filters
assert ("litellm" in sys.modules) != NATIVE
# offline: litellm's price map is read from its own files, unasked (no variable set)
assert elsewhere == [], elsewhere
print("clean")
"""


def test_library_leaves_no_process_wide_trace(
    llm_server: LLMServer, tmp_path: Path, route: str
) -> None:
    """Import, parse a large text, and generate over HTTP (chat on both APIs, and text),
    through litellm or the native providers, in a fresh process with every warning an
    error and LITELLM_LOCAL_MODEL_COST_MAP unset: gc, warning filters and environment
    unchanged, no host but loopback looked up or connected to; the native route never
    imports litellm, and closing its generators leaves no socket open."""
    llm_server.add_rule("hi", "hello")
    script = tmp_path / "side_effects.py"
    script.write_text(SIDE_EFFECTS)
    environment = {
        k: v for k, v in __import__("os").environ.items() if k != "LITELLM_LOCAL_MODEL_COST_MAP"
    }
    done = subprocess.run(
        [
            sys.executable,
            "-W",
            "error",
            str(script),
            llm_server.openai_base,
            llm_server.anthropic_base,
            route,
        ],
        capture_output=True,
        text=True,
        env={**environment, "PYTHONPATH": str(Path(__file__).parents[1])},
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # litellm's text completions open a client per call that nobody can close (litellm's
    # own, not pooled); a warning of any other kind is an error above.
    assert "UserWarning" not in done.stderr and "DeprecationWarning" not in done.stderr
    assert done.stdout.strip() == "clean"
    assert [r.api for r in llm_server.requests] == ["openai-chat", "anthropic", "openai-text"]


def test_the_engine_closes_the_generators_it_made(pytester: pytest.Pytester) -> None:
    """Release goes through the generator's own `aclose`, whatever the provider (in a
    subprocess: the provider registry is process-wide)."""
    ini(pytester)
    pytester.makeconftest(
        """
        from pathlib import Path
        from pytest_rigging.generator import register_generator
        from pytest_rigging.generator.offline import EchoGenerator

        class Closing(EchoGenerator):
            async def aclose(self):
                with Path("closed.txt").open("a") as out:
                    out.write(self.model + "\\n")

        register_generator("closing", Closing)
        """
    )
    pytester.makepyfile(ONE_ITEM)
    result = pytester.runpytest_subprocess("--rig-models", "closing!a,closing!b")
    result.assert_outcomes(passed=2)
    assert sorted((pytester.path / "closed.txt").read_text().split()) == ["a", "b"]


@pytest.mark.parametrize(
    ("args", "ini_lines", "message"),
    [
        (["--rig-runs", "0"], "", "--rig-runs must be a whole number >= 1, got '0'"),
        (["--rig-runs", "many"], "", "--rig-runs must be a whole number >= 1, got 'many'"),
        ([], "rig_concurrency = -2", "ini rig_concurrency must be a whole number >= 1, got '-2'"),
        (
            [],
            "rig_gate_mode = sometimes",
            "ini rig_gate_mode: expected one of point, interval, strict, got 'sometimes'",
        ),
        (
            ["--rig-models", "echo!a,,"],
            "",
            "empty model identifier in 'echo!a,,' (two commas in a row, or a comma at either end)",
        ),
        (
            ["--rig-params", "temperature=0.1,temperature=0.2"],
            "",
            "--rig-params: 'temperature' is given twice in 'temperature=0.1,temperature=0.2'",
        ),
        (["--rig-report", "."], "", "--rig-report: '.' is not a file path"),
        (
            ["--rig-models", "notaprovider/x"],
            "",
            "--rig-models: litellm has no provider 'notaprovider' for model 'notaprovider/x'",
        ),
        (
            ["--rig-models", "echo!a,gtp-4o-mini"],
            "",
            "--rig-models: litellm cannot route the model 'gtp-4o-mini': it names no provider"
            " ('provider/model') and litellm knows no model of that name;"
            " closest known: gpt-4o-mini",
        ),
        (
            [],
            "rig_models = gtp-4o-mini",
            "ini rig_models: litellm cannot route the model 'gtp-4o-mini': it names no provider",
        ),
        (
            ["--rig-params", "temperature=5"],
            "",
            "--rig-params: temperature=5 is out of range: no provider accepts temperature"
            " outside 0 to 2 (Anthropic's range is 0 to 1)",
        ),
        (
            ["--rig-params", "temperature=0.2", "--rig-params", "max_tokens=-1"],
            "",
            "--rig-params: max_tokens=-1 is out of range: no provider accepts max_tokens below 1",
        ),
        (
            ["--rig-params", "top_p=1.5"],
            "",
            "--rig-params: top_p=1.5 is out of range: no provider accepts top_p outside 0 to 1",
        ),
        (
            [],
            "rig_params = extra.n=0",
            "ini rig_params: extra.n=0 is out of range: no provider accepts n below 1",
        ),
        (
            ["--rig-params", "frequency_penalty=-2.5"],
            "",
            "--rig-params: frequency_penalty=-2.5 is out of range: no provider accepts"
            " frequency_penalty outside -2 to 2",
        ),
        (
            ["--rig-params", "timeout=0"],
            "",
            "--rig-params: timeout=0 is out of range: no provider accepts timeout of 0 or below",
        ),
        (
            ["--rig-models", "echo!a,temperature=-0.5"],
            "",
            "--rig-models: temperature=-0.5 is out of range: no provider accepts temperature"
            " outside 0 to 2 (Anthropic's range is 0 to 1), in 'echo!a,temperature=-0.5'",
        ),
    ],
)
def test_bad_settings_stop_the_run_at_start_up_in_one_line(
    pytester: pytest.Pytester, args: list[str], ini_lines: str, message: str
) -> None:
    ini(pytester, ini_lines)
    pytester.makepyfile(ONE_ITEM)
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.stderr.lines if line]
    assert len(lines) == 1 and lines[0].startswith("ERROR: "), lines
    assert message in lines[0]
    assert "passed" not in result.stdout.str()


def test_unknown_model_warns_with_the_closest_known(pytester: pytest.Pytester) -> None:
    """A provider litellm routes, with a model its data doesn't list: the server may know
    it (a model newer than litellm's data), so it is a warning."""
    ini(pytester)
    pytester.makepyfile("def test_x(rig_model): pass")
    for model in ("gtp-4o-mini", "openai/gtp-4o-mini"):
        result = pytester.runpytest("--rig-models", model, "--collect-only", "-q")
        result.assert_outcomes()  # collecting only: nothing looked up
        assert "gtp-4o-mini" in result.stdout.str() and "litellm" not in result.stdout.str()
    result = pytester.runpytest("--rig-models", "openai/gtp-4o-mini")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "*RiggingWarning: --rig-models: litellm does not know the model"
            " 'openai/gtp-4o-mini' (a typo?); closest known: gpt-4o-mini*"
        ]
    )


def test_a_bare_model_litellm_cannot_route_stops_the_run_unless_another_route_is_named(
    pytester: pytest.Pytester,
) -> None:
    """No call, no traceback: one line and exit 4. Behind an `api_base` or a native
    provider the same name is the server's business: nothing is looked up."""
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    (pytester.path / "rules.toml").write_text('default = "x"\n')
    result = pytester.runpytest("--rig-models", "gtp-4o-mini")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    [line] = [line for line in result.stderr.lines if line]
    assert closing_with_closest(
        "ERROR: --rig-models: litellm cannot route the model 'gtp-4o-mini': it names no provider"
        " ('provider/model') and litellm knows no model of that name; closest known: gpt-4o-mini",
        line,
    ), line
    assert result.stdout.lines == []
    pytester.makepyfile("def test_x(rig_model): pass")
    routed = [
        "gtp-4o-mini,api_base=http://127.0.0.1:9",
        "openai!gtp-4o-mini",
        "anthropic!gtp-4o-mini",
        "echo!gtp-4o-mini",
        "scripted!rules.toml",
    ]
    result = pytester.runpytest("--rig-models", ",".join(routed), "-W", "error::UserWarning")
    result.assert_outcomes(passed=5)
    shown = result.stdout.str() + result.stderr.str()
    assert "cannot route" not in shown and "does not know" not in shown


MARKED = """
import pytest

@pytest.mark.rig_models("echo!a", {models!r})
@pytest.mark.rig_params({params})
def test_marked(rig_model):
    pass

def test_plain():
    pass
"""


MARKER_ERRORS = {
    "models": (
        "gtp-4o-mini",
        "'temperature=0.2'",
        "test_marks.py::test_marked: @pytest.mark.rig_models: litellm cannot route the model"
        " 'gtp-4o-mini': it names no provider ('provider/model') and litellm knows no model"
        " of that name; closest known: gpt-4o-mini",
    ),
    "params-dict": (
        "echo!b",
        "'temperature=0.2', {'max_tokens': 0}",
        "test_marks.py::test_marked: @pytest.mark.rig_params: max_tokens=0 is out of range:"
        " no provider accepts max_tokens below 1",
    ),
    "params-text": (
        "echo!b",
        "'temperature=2.5'",
        "test_marks.py::test_marked: @pytest.mark.rig_params: temperature=2.5 is out of"
        " range: no provider accepts temperature outside 0 to 2 (Anthropic's range is 0 to 1)",
    ),
}


@pytest.mark.parametrize(
    ("case", "xdist"),
    [
        *((case, False) for case in MARKER_ERRORS),
        # the same check on xdist's workers (a model's, too: each worker would import
        # litellm to find that it can't route it, seconds each)
        ("params-dict", True),
    ],
    ids=lambda value: {True: "xdist", False: "serial"}.get(value, value),
)
def test_a_marker_that_cannot_run_is_a_collection_error_naming_the_test(
    pytester: pytest.Pytester, case: str, xdist: bool
) -> None:
    """A marker is the test's own code, read as pytest collects it: like a bad
    `parametrize`, it is a collection error naming the test (the run stops before any
    call), not a usage error."""
    models, params, message = MARKER_ERRORS[case]
    ini(pytester)
    pytester.makepyfile(test_marks=MARKED.format(models=models, params=params))
    if xdist:
        result = pytester.runpytest_subprocess("-n", "2")
        assert result.ret == pytest.ExitCode.TESTS_FAILED  # how xdist ends on collection errors
    else:
        result = pytester.runpytest()
        assert result.ret == pytest.ExitCode.INTERRUPTED
    result.assert_outcomes(errors=1)
    shown = [line for line in result.stdout.lines if closing_with_closest(message, line)]
    assert len(shown) == 1, result.stdout.str()
    assert "Traceback" not in result.stdout.str()


FAILS_ON_ECHO = rig_module(
    """
    import pytest

    def test_capital(rig_chat):
        assert rig_chat.last.content == "paris"

    @pytest.mark.rig_models("echo!chosen")
    def test_chosen(rig_chat):
        assert rig_chat.last.content == "paris"
    """,
    prompt="The capital of France?",
)


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_the_default_echo_model_is_named_in_the_header_and_under_each_failure(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    ini(pytester)
    pytester.makepyfile(FAILS_ON_ECHO)
    note = (
        "this test ran on echo!echo, the default model, which answers with the last user"
        " message: no models were given (pick models with --rig-models, the ini key rig_models"
        " or @pytest.mark.rig_models)"
    )
    header = (
        "rigging: no models given: rig tests run on the default echo!echo, which answers with"
        " the last user message; pick models with --rig-models, the ini key rig_models or"
        " @pytest.mark.rig_models"
    )
    for options in ([], ["--rig-runs", "1"]):
        result = pytester.runpytest_subprocess(*options, *xdist)
        result.assert_outcomes(failed=2)
        lines = result.stdout.lines
        assert lines.count(note) == 1  # under test_capital's failure, not test_chosen's
        section = lines.index(note) - 1
        assert re.fullmatch(r"-+ rigging: the default model -+", lines[section])
        failures = [
            i for i, line in enumerate(lines) if re.fullmatch(r"_+ test_\w+\[.*\] _+", line)
        ]
        owner = max(i for i in failures if i < section)
        assert "test_capital[echo]" in lines[owner]
        assert lines.count(header) == 1
    chosen = pytester.runpytest_subprocess("--rig-models", "echo!echo", *xdist)
    marked = FAILS_ON_ECHO.replace("def test_capital(rig_chat):", "def test_capital():")
    pytester.makepyfile(marked.replace("rig_chat.last.content ==", "'' =="))
    # the marked test is the only rig test, with or without a rig option
    only_marked = [pytester.runpytest_subprocess(*o, *xdist) for o in ([], ["--rig-runs", "1"])]
    for result in (chosen, *only_marked):
        result.assert_outcomes(failed=2)
        assert "default model" not in result.stdout.str()
        assert "no models given" not in result.stdout.str()


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_repeated_models_and_params_run_once_with_a_warning(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    result = pytester.runpytest_subprocess(
        "--rig-models",
        "echo!a,echo!a",
        "--rig-params",
        "temperature=0.2",
        "--rig-params",
        "temperature=0.20",
        "-v",
        *xdist,
    )
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    assert text.count("'echo!a' is the same model as 'echo!a'; running it once") == 1
    assert (
        text.count("params 'temperature=0.20' are the same as 'temperature=0.2'; running them once")
        == 1
    )
    assert "test_a[a-t0.2]" in text


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_cells_select_by_full_identifier_or_short_label(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    models = ["--rig-models", "scripted!rules.toml,echo!b"]
    (pytester.path / "rules.toml").write_text('default = "x"\n')
    for selector in ("rig_cell(model='rules')", "rig_cell(model='scripted!rules.toml')"):
        result = pytester.runpytest_subprocess(*models, "-m", selector, "-v", *xdist)
        # xdist's controller does not count what its workers deselect
        result.assert_outcomes(passed=1, deselected=0 if xdist else 1)
        assert re.search(r"PASSED .*test_a\[rules\]|test_a\[rules\] PASSED", result.stdout.str())


def test_bad_settings_stop_an_xdist_run_before_workers_start(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    result = pytester.runpytest_subprocess("--rig-runs", "0", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line] == [
        "ERROR: --rig-runs must be a whole number >= 1, got '0'"
    ]
    assert "workers" not in result.stdout.str()


def test_progress_lines_in_logs_and_none_at_q(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a terminal here (pytester captures), so progress comes as log lines; the
    interval is zeroed so that a short group shows them."""
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    ini(pytester)
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.rig(runs=4)
            def test_slow(rig_chat):
                pass
            """
        )
    )
    models = ["--rig-models", "echo!e,latency=0.3", "--junitxml", "j.xml"]
    result = pytester.runpytest(*models)
    result.assert_outcomes(passed=1)
    lines = [line for line in result.stdout.lines if line.startswith("rigging: test_slow: ")]
    assert lines and lines[-1].startswith("rigging: test_slow: 4/4 samples, 0 errors, ")
    assert "<testcase" in (pytester.path / "j.xml").read_text()
    quiet = pytester.runpytest(*models, "-q")
    assert not [line for line in quiet.stdout.lines if line.startswith("rigging: test_slow")]


SLOW_SUITE = {
    "test_a": rig_module(
        """
        @pytest.fixture
        def rig_pipeline(rig_generator, n):
            return rig_generator.chat(f"q{n}")

        @pytest.mark.rig(runs=2)
        @pytest.mark.parametrize("n", range(4))
        def test_slow(rig_chat, n):
            pass

        def test_plain():
            pass
        """
    ),
    "test_b": rig_module(
        "@pytest.mark.parametrize('n', range(3))\ndef test_b(rig_chat, n):\n    pass\n"
    ),
}
"""Two files whose rig items wait for their samples in turn (latency 0.3 s, 2 calls at once)."""
SLOW = ["--rig-models", "echo!e,latency=0.3", "--rig-concurrency", "2"]


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX's")
@pytest.mark.parametrize("verbosity", [[], ["-v"]], ids=["default", "verbose"])
def test_progress_on_a_terminal_is_one_line_cleared_when_done(
    pytester: pytest.Pytester, verbosity: list[str]
) -> None:
    """pytest's own lines stay whole, each with its [%] column, as the status line comes
    and goes beneath them."""
    ini(pytester)
    pytester.makepyfile(**SLOW_SUITE)
    written = run_on_terminal(pytester, *SLOW, *verbosity)
    assert b"rigging: test_slow: " in written  # shown while samples ran
    shown = screen(written)
    assert "8 passed" in shown[-1]
    assert not [line for line in shown if "rigging: test_" in line]
    results = [line for line in shown if line.startswith("test_")]
    if verbosity:
        assert len(set(results)) == 8
        assert all(re.fullmatch(r"test_\S+ PASSED +\[ *\d+%\]", line) for line in results)
    else:
        assert [re.sub(r" +", " ", line) for line in results] == [
            "test_a.py ..... [ 62%]",
            "test_b.py ... [100%]",
        ]


OTHER_REPORTER = """
import sys

import pytest


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    class Sugared(pytest.TerminalReporter):
        pass

    config.pluginmanager.unregister(name="terminalreporter")
    config.pluginmanager.register(Sugared(config, sys.stdout), "terminalreporter")
"""
"""A plugin that writes pytest's lines its own way (as pytest-sugar does)."""


@pytest.mark.skipif(sys.platform == "win32", reason="pseudo-terminals are POSIX's")
@pytest.mark.parametrize(
    ("shared", "conftest"),
    [(["-s"], ""), (["-o", "log_cli=true"], ""), ([], OTHER_REPORTER)],
    ids=["no-capture", "log-cli", "another-reporter"],
)
def test_no_status_line_where_others_write_to_the_terminal(
    pytester: pytest.Pytester, shared: list[str], conftest: str
) -> None:
    """Output not captured, live logs or another reporter may write at any moment, on any
    thread or in their own way: a line rewritten in place would be torn by them, so
    progress comes as log lines (every 10 s, none in so short a run)."""
    ini(pytester)
    pytester.makepyfile(**SLOW_SUITE)
    pytester.makeconftest(conftest)
    written = run_on_terminal(pytester, *SLOW, *shared)
    assert b"8 passed" in written
    assert b"rigging: test_slow" not in written


def finishing(shown: progress.Progress, clock: Clock, times: t.Iterable[float]) -> None:
    """Samples of `shown`'s group finish at `times` (the first one errored)."""
    for n, now in enumerate(times):
        clock.now = now
        shown.sample_done(errored=n == 0)


def test_progress_line_reads_well(pytestconfig: pytest.Config, clock: Clock) -> None:
    shown = progress.Progress(pytestconfig)
    shown.start("test_x.py::test_x[a]", "test_x", 40)
    finishing(shown, clock, [0.5 * n for n in range(1, 11)])
    assert shown.line(5.0) == "rigging: test_x: 10/40 samples, 1 error, 5s elapsed, ~15s left"


def test_time_left_follows_the_recent_pace_and_never_climbs_in_a_stall(
    pytestconfig: pytest.Config, clock: Clock
) -> None:
    shown = progress.Progress(pytestconfig)
    shown.start("test_x.py::test_x[a]", "test_x", 100)
    finishing(shown, clock, [0.5 * n for n in range(1, 11)])  # 2 a second, then nothing

    def left(now: float) -> int | None:
        found = re.search(r", ~(\d+)s left$", shown.line(now))
        return int(found[1]) if found else None

    assert [left(now) for now in (5, 6, 8, 12, 14)] == [44, 43, 41, 37, 35]  # counts down
    assert shown.line(16.0).endswith(", 16s elapsed, stalled for 11s")
    assert shown.line(30.0).endswith(", 30s elapsed, stalled for 25s")
    # 40 more at 10 a second: the 50 left take ~34s at the run's average pace, ~5s at the
    # latest, the stall still in recent memory
    finishing(shown, clock, [30 + 0.1 * n for n in range(1, 41)])
    assert left(34.0) == 15


def test_the_library_never_imports_the_plugin() -> None:
    package = Path(pytest_rigging.__file__).parent
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).parts
        if parts[0] == "plugin" or path.name == "__main__.py":
            continue
        here = ["pytest_rigging", *parts[:-1]]
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(here[: len(here) - node.level + 1]) if node.level else ""
                module = ".".join(p for p in (base, node.module or "") if p)
                names = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            assert not any(n.startswith("pytest_rigging.plugin") for n in names), (path, names)


def test_readme_ids_are_what_pytest_prints(pytester: pytest.Pytester) -> None:
    """The README's first eval test, collected with the command the README gives."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    source = re.search(r"```python\n(# test_capitals\.py\n.*?)```", readme, re.S)
    command = re.search(r"```bash\n(pytest test_capitals\.py .*?)\n```", readme, re.S)
    assert source and command
    ini(pytester)
    pytester.makepyfile(test_capitals=source.group(1))
    args = command.group(1).replace("\\\n", " ").split()[2:]
    result = pytester.runpytest("--collect-only", "-q", *args)
    ids = [line.split("::")[1] for line in result.stdout.lines if "::" in line]
    assert len(ids) == 8
    for claimed in re.findall(r"`(test_capital\[[^\]]+\])`", readme):
        assert claimed in ids, (claimed, ids)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        (
            """
            import pytest

            @pytest.fixture
            def question(country):
                yield f"Capital of {country}?"

            @pytest.fixture
            def rig_pipeline(rig_generator, question):
                return rig_generator.chat(question)

            @pytest.mark.parametrize("country", ["France", "Peru"])
            def test_q(rig_chat, country):
                pass
            """,
            "rig_pipeline depends on 'question', which differs per case and yields: result "
            "fixtures rebuild such fixtures per case, so it must return its value",
        ),
        (
            """
            import pytest

            @pytest.fixture
            def country(request):
                return request.param

            @pytest.fixture
            def rig_pipeline(rig_generator, country):
                return rig_generator.chat(country)

            @pytest.mark.parametrize("country", ["France"], indirect=True)
            def test_q(rig_chat):
                pass
            """,
            "rig_pipeline depends on 'country', which is parametrized indirectly",
        ),
        (
            """
            import pytest

            class TestIt:
                @pytest.fixture
                def rig_pipeline(self, rig_generator):
                    return rig_generator.chat("x")

                def test_q(self, rig_chat):
                    pass
            """,
            "rig_pipeline is defined in a class (TestIt.rig_pipeline)",
        ),
    ],
)
def test_pipelines_that_cannot_be_rebuilt_are_collection_errors(
    pytester: pytest.Pytester, source: str, message: str
) -> None:
    ini(pytester)
    pytester.makepyfile(source)
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    assert message in result.stdout.str()
    assert "ERROR collecting" in result.stdout.str()  # before any item is set up


def test_pipelines_may_use_shared_fixtures_that_yield(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def prefix():
            yield "Capital of"

        @pytest.fixture
        def rig_pipeline(rig_generator, prefix, country):
            return rig_generator.chat(f"{prefix} {country}?")

        @pytest.mark.parametrize("country", ["France", "Peru"])
        def test_q(rig_chat, country):
            assert rig_chat.last.content == f"Capital of {country}?"
        """
    )
    pytester.runpytest().assert_outcomes(passed=2)


def test_each_sample_is_drawn_once(pytester: pytest.Pytester, llm_server: LLMServer) -> None:
    """A test taking both result fixtures, and its group's other items, reuse the samples
    drawn for them: the server sees one call per case, with or without xdist."""
    llm_server.add_rule("q", "fine")
    ini(pytester)
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator, n):
            return rig_generator.chat(f"q{n}")

        @pytest.mark.parametrize("n", range(3))
        def test_both(rig_chat, rig_chats, n):
            assert rig_chats == [rig_chat]
        """
    )
    model = f"openai/m,api_base={llm_server.openai_base},max_retries=0"
    for args in ([], ["-n", "2"]):
        llm_server.reset()
        llm_server.add_rule("q", "fine")
        run = pytester.runpytest_subprocess if args else pytester.runpytest
        run("--rig-models", model, *args).assert_outcomes(passed=3)
        assert sorted(r.last_user for r in llm_server.requests) == ["q0", "q1", "q2"]


def test_ini_models_may_end_lines_with_commas(pytester: pytest.Pytester) -> None:
    ini(pytester, "rig_models =\n    echo!a,\n    echo!b,temperature=0.5,\n    echo!c\n")
    pytester.makepyfile(ONE_ITEM)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=3)
    assert "rigging: models echo!a, echo!b,temperature=0.5, echo!c (ini)" in result.stdout.str()


def test_secrets_are_judged_by_whole_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """A setting is a secret when its whole name, or its last word, says so: `*_token`,
    `*_secret`, `*_password`, `*_key`, or exactly `token`, `secret`, `password`, `api_key`;
    generation params (`max_tokens`) are not. The environment's `*_KEY` names must say which
    key (its `MY_SORT_KEY=assistant` would hide every `[assistant]`)."""
    from pytest_rigging._secrets import is_secret_name, mask_identifier, redact

    monkeypatch.setenv("MY_SORT_KEY", "assistant")
    monkeypatch.setenv("SERVICE_API_KEY", "svc-secret-12345678")
    monkeypatch.setenv("PASSWORD", "bare-password-12345678")
    assert redact("[assistant]: svc-secret-12345678 bare-password-12345678") == (
        "[assistant]: *** ***"
    )
    names = (
        "max_tokens",
        "tokens",
        "top_k",
        "keys",
        "monkey",
        "token_count",
        "sort_key",
        "Api_Key",
        "x-api-key",
        "extra.auth_token",
        "extra.custom_token",
        "access_token",
        "client_secret",
        "db_password",
        "password",
        "secret",
        "token",
        "apikey",
    )
    assert [n for n in names if is_secret_name(n)] == list(names[6:])
    assert mask_identifier("gpt-4o,max_tokens=100,api_key=abc,extra.token=t") == (
        "gpt-4o,max_tokens=100,api_key=***,extra.token=***"
    )


def test_secrets_seen_after_the_first_look_are_masked_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`known_secrets` keeps its answer between calls (it is asked for every chat): a key
    set in the environment, changed there, or given to a generator later must still count."""
    from pytest_rigging._secrets import known_secrets, redact
    from pytest_rigging.generator import get_generator

    before = known_secrets()
    assert known_secrets() is before  # kept while nothing changed
    monkeypatch.setenv("LATER_API_KEY", "later-key-12345678")
    assert redact("later-key-12345678") == "***"
    monkeypatch.setenv("LATER_API_KEY", "changed-key-12345678")
    assert redact("changed-key-12345678 later-key-12345678") == "*** later-key-12345678"
    get_generator("echo!e,api_key=given-key-12345678")
    assert redact("given-key-12345678") == "***"


def test_secrets_that_arrive_while_they_are_read_are_not_missed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another thread (the engine's loop) may register a key or set one in the
    environment while `known_secrets` reads them: the answer kept must not hide it."""
    from pytest_rigging import _secrets

    reading = _secrets._environment

    def racing(raw: t.Any) -> t.Any:
        monkeypatch.setattr(_secrets, "_environment", reading)
        monkeypatch.setenv("RACING_API_KEY", "racing-env-12345678")
        _secrets.register_secret("racing-registered-12345678")
        return reading(raw)

    monkeypatch.setenv("TRIGGER_API_KEY", "trigger-12345678")  # a change: read again
    monkeypatch.setattr(_secrets, "_environment", racing)
    _secrets.known_secrets()  # read while both arrive
    shown = _secrets.redact("racing-env-12345678 racing-registered-12345678")
    assert shown == "*** ***"


def test_secrets_are_read_safely_while_another_thread_edits_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pytest sets and deletes `PYTEST_CURRENT_TEST` on its thread while the engine's loop
    thread reads the environment's secrets for every chat: with thousands of variables,
    reading name by name meets a name deleted meanwhile (`KeyError`)."""
    import threading

    from pytest_rigging import _secrets

    for index in range(3000):
        monkeypatch.setenv(f"RIG_FILLER_{index}", "x")
    monkeypatch.setenv("RACE_API_KEY", "race-key-12345678")
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            os.environ["RIG_CHURNING"] = "1"
            del os.environ["RIG_CHURNING"]

    churner = threading.Thread(target=churn)
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often: the race shows within a second
    churner.start()
    errors: list[BaseException] = []
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                assert "race-key-12345678" in _secrets.known_secrets()
            except (KeyError, RuntimeError) as error:
                errors.append(error)
    finally:
        stop.set()
        churner.join()
        sys.setswitchinterval(switching)
    assert errors == []


def test_finished_items_hold_no_chats_and_share_their_cells_marks(
    pytester: pytest.Pytester,
) -> None:
    """What 10,000 items cost at the end of a run: a finished item keeps no chat (its
    report holds the records), and a cell's items share one set of marks."""
    ini(pytester)
    pytester.makeconftest(
        """
        from pytest_rigging.plugin.samples import SAMPLES_KEY

        def pytest_sessionfinish(session):
            items = session.items
            assert not [i.nodeid for i in items if SAMPLES_KEY in i.stash]
            by_cell = {}
            for item in items:
                marks = [m for m in item.own_markers if m.name == "rig_cell"]
                by_cell.setdefault(item.callspec.id.split("-")[-1], []).append(marks)
            for marks in by_cell.values():
                label = marks[0][1].kwargs["model"]
                assert [m.kwargs["model"] for m in marks[0]] == ["echo!" + label, label]
                assert all(all(a is b for a, b in zip(m, marks[0], strict=True)) for m in marks)
            print("checked", len(items), "items in", len(by_cell), "cells")
        """
    )
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.parametrize("case", range(3))
            @pytest.mark.rig(runs=2)
            def test_a(rig_chat, case):
                pass
            """
        )
    )
    result = pytester.runpytest("--rig-models", "echo!a,echo!b", "-s")
    result.assert_outcomes(passed=6)
    result.stdout.fnmatch_lines(["*checked 6 items in 2 cells*"])


def test_a_case_marked_with_its_own_verdict_keeps_it(pytester: pytest.Pytester) -> None:
    """Items share one verdict per `rig` mark: a case marked on its own keeps its own."""
    ini(pytester)
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.parametrize(
                "case", [1, pytest.param(2, marks=pytest.mark.rig(runs=3)), 3]
            )
            def test_a(rig_chats, case):
                assert len(rig_chats) == (3 if case == 2 else 2)
            """
        )
    )
    pytester.runpytest("--rig-models", "echo!a,echo!b", "--rig-runs", "2").assert_outcomes(passed=6)


def test_max_tokens_cells_stay_apart(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    result = pytester.runpytest(
        "--rig-models",
        "echo!e",
        "--rig-params",
        "max_tokens=100",
        "--rig-params",
        "max_tokens=200",
        "-v",
    )
    result.assert_outcomes(passed=2)
    text = result.stdout.str()
    assert "test_a[e-mt100] PASSED" in text and "test_a[e-mt200] PASSED" in text
    rows = [line.split() for line in result.stdout.lines if line.startswith("e ")]
    assert [row[1] for row in rows] == ["max_tokens=100", "max_tokens=200"]
    assert "***" not in text


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_skips_are_skips(
    pytester: pytest.Pytester, llm_server: LLMServer, xdist: list[str]
) -> None:
    """No model call for a case that won't run, and a skip in one case's fixture skips that
    case only: whichever case computes the group."""
    llm_server.add_rule("q", "fine")
    ini(pytester)
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def question(n):
            if n in (0, 2):
                pytest.skip(f"case {n} is not asked")
            return f"q{n}"

        @pytest.fixture
        def rig_pipeline(rig_generator, question):
            return rig_generator.chat(question)

        CASES = [0, 1, 2, 3, pytest.param(4, marks=pytest.mark.skipif(True, reason="off"))]

        @pytest.mark.parametrize("n", CASES)
        def test_q(rig_chat, n):
            assert rig_chat.last.content == "fine"
        """
    )
    model = f"openai/m,api_base={llm_server.openai_base},max_retries=0"
    run = pytester.runpytest_subprocess if xdist else pytester.runpytest
    run("--rig-models", model, *xdist).assert_outcomes(passed=2, skipped=3)
    assert sorted(r.last_user for r in llm_server.requests) == ["q1", "q3"]


def test_secrets_stay_masked_in_failures_tracebacks_and_junit(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    key, token = "sk-test-never-shown-4242", "tok-test-never-shown-4343"
    llm_server.add_rule("judge me", "wrong")
    llm_server.fail_next(100, status=500, model="down")
    ini(pytester)
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.rig(runs=2)
            def test_judged(rig_chat):
                assert rig_chat.last.content == "right"

            async def test_free(rig_generator):
                params = rig_generator.params
                await rig_generator.chat("hi").run()
            """,
            prompt="judge me",
        )
    )
    secrets = f"api_key={key},extra.auth_token={token},max_retries=0"
    models = f"openai/up,api_base={llm_server.openai_base},{secrets}"
    models += f",openai/down,api_base={llm_server.openai_base},{secrets}"
    result = pytester.runpytest(
        "--rig-models", models, "--showlocals", "--tb=long", "--junitxml", "j.xml", "-v"
    )
    # judged: a wrong answer (up) and an infrastructure error (down); free-form: an error (down)
    result.assert_outcomes(passed=1, failed=1, errors=2)
    shown = result.stdout.str() + result.stderr.str() + (pytester.path / "j.xml").read_text()
    base = llm_server.openai_base
    assert f"its conversation (litellm!openai/up,api_base={base},extra.auth_token=***)" in shown
    assert key not in shown and token not in shown


def test_secret_params_authenticate_alike_and_show_nowhere(
    pytester: pytest.Pytester, llm_server: LLMServer, route: str
) -> None:
    """`extra.api_key` authenticates on both routes (as `api_key=` does) and is never sent
    in the body; it and any param named like a secret (`extra.custom_token`) stay out of the
    ids, the terminal (`--showlocals`, a provider failing), JUnit and the JSON report."""
    key, token = "sk-extra-never-shown-5151", "tok-custom-never-shown-5252"
    llm_server.add_rule(".", "wrong")
    llm_server.fail_next(100, status=500, model="down")
    ini(pytester)
    pytester.makepyfile(
        rig_module(
            """
            def test_judged(rig_chat):
                assert rig_chat.last.content == "right"

            async def test_free(rig_generator):
                await rig_generator.chat("hi").run()
            """
        )
    )
    base = f"api_base={llm_server.openai_base},max_retries=0"
    models = f"{on(route, 'openai/up')},{base},{on(route, 'openai/down')},{base}"
    params = f"extra.api_key={key},extra.custom_token={token},temperature=0.5"
    result = pytester.runpytest(
        *("--rig-models", models, "--rig-params", params, "--showlocals", "--full-trace"),
        *("--junitxml", "j.xml", "--rig-report", "r.json", "-v"),
    )
    result.assert_outcomes(passed=1, failed=1, errors=2)
    assert "test_judged[up-t0.5] FAILED" in result.stdout.str()
    shown = "".join(
        [result.stdout.str(), result.stderr.str()]
        + [(pytester.path / name).read_text() for name in ("j.xml", "r.json")]
    )
    assert key not in shown and token not in shown
    ids = [line for line in result.stdout.lines if "::test_" in line]
    assert ids and not any("custom_token" in line for line in ids)
    sent = [r for r in llm_server.requests if r.model == "up"]
    assert [r.headers["authorization"] for r in sent] == [f"Bearer {key}"] * 2
    assert all("api_key" not in r.body and r.body["custom_token"] == token for r in sent)


def test_the_report_survives_anything_a_model_says(pytester: pytest.Pytester) -> None:
    """A lone surrogate, control characters and a 10 MB reply (the echo model says them
    back): the JSON report is written and reads back, JUnit parses, and the terminal shows a
    bounded, escaped excerpt."""
    ini(pytester)
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator, text):
            return rig_generator.chat(text)

        TEXTS = ["lone \\ud800 surrogate", "bell \\x07 escape \\x1b[31m", "x" * 10_000_000]

        @pytest.mark.parametrize("text", TEXTS, ids=["surrogate", "control", "huge"])
        @pytest.mark.rig(runs=2)
        def test_said(rig_chat, text):
            assert rig_chat.last.content == "something else"
        """
    )
    result = pytester.runpytest("--rig-report", "r.json", "--junitxml", "j.xml")
    result.assert_outcomes(failed=3)
    doc = json.loads((pytester.path / "r.json").read_text())
    said = {
        i["nodeid"].split("[")[1]: i["chats"][0]["conversation"][1]["content"] for i in doc["items"]
    }
    assert said["surrogate-echo]"] == "lone \ud800 surrogate"
    assert len(said["huge-echo]"]) == 10_000_000
    xml.dom.minidom.parse(str(pytester.path / "j.xml"))
    shown = result.stdout.str()
    assert len(shown) < 100_000
    # the conversation: each message of 10 MB cut on its own to its first and last 400
    # (shown twice more in the short summary where pytest doesn't truncate it: under CI)
    assert shown.count("... [10,000,000 characters; 9,999,200 left out] ...") in (2, 4)
    assert "\x1b" not in shown and "\x07" not in shown and "\\x1b[31m" in shown
    assert "lone \\ud800 surrogate" in shown


HOSTILE = {
    "surrogate": "lone \udc80 and \ud800 surrogates",
    "controls": "rtl \u202e c1 \x9b31m esc \x1b[31m red \x07 bell \r cr",
}
"""Replies that must reach the JSON report as they are and terminals escaped."""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_what_a_model_writes_reaches_the_report_intact_and_the_terminal_escaped(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    """Lone surrogates cross from xdist workers to the controller (execnet refuses what UTF-8
    can't hold), a captured log's included, and no raw control, C1 or bidi character
    reaches the terminal or JUnit from a failure: pytest's own assertion diff, a raised
    exception's message, a skip's reason (which must stay pytest's tuple)."""
    ini(pytester)
    pytester.makepyfile(
        f"""
        import logging
        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator, text):
            return rig_generator.chat(text)

        cases = pytest.mark.parametrize("text", {list(HOSTILE.values())!r}, ids={list(HOSTILE)!r})

        @cases
        def test_diffed(rig_chat, text):
            assert rig_chat.last.content == "something else"

        @cases
        def test_raised(rig_chat, text):
            raise ValueError(rig_chat.last.content)

        @cases
        def test_passes(rig_chat, text):
            assert rig_chat.last.content == text

        @cases
        def test_skipped(rig_chat, text):
            pytest.skip(rig_chat.last.content)

        @cases
        def test_logged(rig_chat, text):
            if "surrogate" in text:  # captured output is the user's: shown as it is, but
                logging.getLogger("eval").warning(rig_chat.last.content)  # for surrogates
            assert False, "logged"
        """
    )
    run = pytester.runpytest_subprocess  # a record it logs would reach this suite's own log
    options = ("--rig-models", "echo!m", "--rig-report", "r.json", "--junitxml", "j.xml", "-rs")
    for record in ("once", "none"):  # recorded in a cassette, then replayed from it
        result = run(*options, *xdist, "--rig-record", record)
        result.assert_outcomes(passed=2, failed=6, skipped=2)
        doc = json.loads((pytester.path / "r.json").read_text())
        said = sorted(i["chats"][0]["conversation"][-1]["content"] for i in doc["items"])
        assert said == sorted([*HOSTILE.values()] * 5)
    junit = (pytester.path / "j.xml").read_text()
    xml.dom.minidom.parseString(junit)
    assert "\u202e" not in junit and "\x9b" not in junit  # XML allows both: escaped by us
    shown = result.stdout.str() + result.stderr.str()
    for raw in "\udc80\ud800\u202e\x9b\x1b\x07":
        assert raw not in shown, repr(raw)
    assert "SKIPPED [1] test_what_a_model_writes" in shown  # a skip's reason, escaped
    assert re.search(r"SKIPPED .*: lone \\udc80 and \\ud800 surrogates", shown)
    assert "WARNING  eval" in shown and "lone \\udc80" in shown  # a captured log
    assert "+ rtl \\u202e c1 \\x9b31m esc \\x1b[31m red \\x07 bell" in shown  # the diff
    assert "ValueError: lone \\udc80 and \\ud800 surrogates" in shown


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_an_infrastructure_error_is_an_error_everywhere(
    pytester: pytest.Pytester, llm_server: LLMServer, xdist: list[str]
) -> None:
    llm_server.fail_next(100, status=500, model="down")
    ini(pytester)
    pytester.makepyfile(
        """
        async def test_free(rig_generator):
            await rig_generator.chat("hi").run()
        """
    )
    model = f"openai/down,api_base={llm_server.openai_base},max_retries=0"
    run = pytester.runpytest_subprocess if xdist else pytester.runpytest
    result = run("--rig-models", model, "--junitxml", "j.xml", "--rig-report", "r.json", *xdist)
    result.assert_outcomes(errors=1)
    assert "ERROR at call of test_free[down]" in result.stdout.str()
    junit = (pytester.path / "j.xml").read_text()
    assert "<error " in junit and "<failure" not in junit
    doc = json.loads((pytester.path / "r.json").read_text())
    assert [i["outcome"] for i in doc["items"]] == ["error"]
    assert doc["models"][0]["items_errored"] == 1


HELD_UNTIL_A_SLOW_ITEM_STARTS = """
import asyncio
import threading
import time

from pytest_rigging.generator import GeneratedMessage, register_generator
from pytest_rigging.generator.offline import EchoGenerator
from pytest_rigging.message import Message

SLOW_ITEM_STARTED = threading.Event()


class Held(EchoGenerator):
    \"\"\"Answers only once an item of this model has started (a hang guard aside): the
    items that run before that must do without its answers.\"\"\"

    async def generate_message(self, messages, params):
        deadline = time.monotonic() + 30  # a hang guard, not a threshold
        while not SLOW_ITEM_STARTED.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        answer = "answered" if SLOW_ITEM_STARTED.is_set() else "held past the guard"
        return GeneratedMessage(message=Message(role="assistant", content=answer))


register_generator("held", Held)


def pytest_runtest_logstart(nodeid, location):
    if "slow" in nodeid:
        SLOW_ITEM_STARTED.set()
"""


def test_each_item_waits_for_its_own_samples_only(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A test function's items start together, but each waits only for its own samples: the
    slow model answers only once one of its own items has started, and the fast model's
    item before it still passes, its report (and JSON record) made before any slow answer,
    so that neither its setup nor its JSON duration can carry the slow calls' time (an
    item waiting for the group's samples would wait for the hang guard instead)."""
    from pytest_rigging.generator import base

    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))  # the run registers `held`
    ini(pytester)
    pytester.makeconftest(HELD_UNTIL_A_SLOW_ITEM_STARTS)
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator, n):
            return rig_generator.chat(f"q{n}")

        @pytest.mark.parametrize("n", range(2))
        @pytest.mark.rig_models("echo!fast", "held!slow")
        def test_q(rig_chat, n):
            assert rig_chat.last.content in (f"q{n}", "answered")
        """
    )
    result = pytester.runpytest("-v", "-p", "no:randomly", "--rig-report", "r.json")
    result.assert_outcomes(passed=4)
    ran = re.findall(r"test_q\[(\d-\w+)\] PASSED", result.stdout.str())
    assert ran == ["0-fast", "0-slow", "1-fast", "1-slow"]  # a fast item first
    doc = json.loads((pytester.path / "r.json").read_text())
    assert [i["outcome"] for i in doc["items"]] == ["passed"] * 4


def test_no_starvation_by_a_failing_or_hanging_model(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """A model waiting to retry gives its slot back, and a hanging model holds no more than
    its share of the limit: the healthy model's calls go out meanwhile (by the order the
    server saw them, not by time)."""
    llm_server.add_rule(".", "fine")
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    base = f"api_base={llm_server.openai_base}"
    # one slot in all: the failing model's backoff is when the healthy one may call (the
    # slot is handed over as the backoff starts, so any length shows it)
    llm_server.fail_next(1, status=503, model="failing")
    models = f"openai/failing,{base},max_retries=1,backoff=0.2,openai/healthy,{base}"
    result = pytester.runpytest("--rig-models", models, "--rig-concurrency", "1")
    result.assert_outcomes(passed=2)
    order = [(r.model, r.status) for r in llm_server.requests]
    assert order == [("failing", 503), ("healthy", 200), ("failing", 200)], order
    # four slots, two models: the hanging one holds two, the healthy one two. The server
    # holds the hanging model's replies until all four healthy calls have come in, which
    # they can't if it holds more than its share (its calls time out instead, at 10 s)
    llm_server.reset()
    healthy_in = threading.Event()

    def respond(request: RecordedRequest) -> Reply:
        if request.model == "hanging":
            return Reply("", until=healthy_in)
        if sum(r.model == "healthy" for r in llm_server.requests) == 4:
            healthy_in.set()
        return Reply("fine")

    llm_server.responder = respond
    pytester.makepyfile(
        test_many=rig_module(
            """
            @pytest.mark.rig(runs=4)
            def test_a(rig_chat):
                pass
            """
        )
    )
    models = f"openai/hanging,{base},timeout=10,openai/healthy,{base}"
    pytester.runpytest("test_many.py", "--rig-models", models, "--rig-concurrency", "4")
    hanging = [r for r in llm_server.requests if r.model == "hanging"]
    healthy = [r for r in llm_server.requests if r.model == "healthy"]
    assert len(healthy) == 4 and len(hanging) == 4
    assert all(h.start < min(r.end for r in hanging) for h in healthy)


def test_slots_a_model_leaves_idle_are_lent_to_the_others(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """Four slots, two models: while the failing one waits out its backoff, the healthy one
    uses all four (not only its even share of two), and the failing one still gets its
    retries in."""
    llm_server.latency = 0.2
    llm_server.add_rule(".", "fine")
    llm_server.fail_next(1000, status=500, model="failing", delay=0)  # answers at once
    ini(pytester)
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.rig(runs=20)
            def test_a(rig_chat):
                pass
            """
        )
    )
    base = f"api_base={llm_server.openai_base}"
    models = f"openai!failing,{base},max_retries=2,backoff=0.5,openai!healthy,{base}"
    result = pytester.runpytest("--rig-models", models, "--rig-concurrency", "4")
    result.assert_outcomes(passed=1, errors=1)
    healthy = [r for r in llm_server.requests if r.model == "healthy"]
    failing = [r for r in llm_server.requests if r.model == "failing"]
    assert len(healthy) == 20 and len(failing) == 60  # every attempt made
    assert peak_overlap(healthy) == 4
    assert peak_overlap(llm_server.requests) == 4  # and never more than the limit


FREE_FORM_RUNS = """
import pytest

@pytest.fixture
def per_item():
    box = []
    yield box
    assert len(box) == 3, box  # set up once for the item: its three samples share it

@pytest.mark.rig(runs=3, min_pass=2)
async def test_free(rig_generator, per_item):
    per_item.append(1)
    chat = await rig_generator.chat("q").run()
    assert chat.last.content == "fine"
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_an_async_free_form_tests_samples_run_together_under_the_limit(
    pytester: pytest.Pytester, llm_server: LLMServer, xdist: list[str]
) -> None:
    """`runs=3` on an async test that calls the model itself: its three samples are in
    flight together (on the engine's loop, under the run's limit: one at a time with
    `--rig-concurrency 1`), each judged on its own, k of n as before; each chat is its
    sample's, with that sample's check, in the JSON report and JUnit."""
    ini(pytester)
    pytester.makepyfile(FREE_FORM_RUNS)
    model = f"openai!m,api_base={llm_server.openai_base}"
    run = pytester.runpytest_subprocess if xdist else pytester.runpytest
    for concurrency, peak in (("64", 3), ("1", 1)):
        llm_server.reset()
        # Replies wait until `peak` calls are in flight (a hang guard aside), and take
        # 0.5 s: three calls going out together would overlap, whatever the machine's pace.
        llm_server.latency = 0.5
        replies = iter(["fine", "wrong", "fine"])
        guard = hold_until_in_flight(llm_server, peak, lambda _, r=replies: next(r))
        result = run(
            *("--rig-models", model, "--rig-concurrency", concurrency, "--rig-report", "r.json"),
            *("--junitxml", "j.xml", *xdist),
        )
        guard.cancel()
        result.assert_outcomes(passed=1)
        assert len(llm_server.requests) == 3
        assert peak_overlap(llm_server.requests) == peak, concurrency
        doc = json.loads((pytester.path / "r.json").read_text())
        [item] = doc["items"]
        assert item["samples"] == [2, 3] and len(item["chats"]) == 3
        chats = sorted(item["chats"], key=lambda c: c["sample"])
        assert [c["sample"] for c in chats] == [1, 2, 3]  # which sample got "wrong": any
        [wrong] = [c for c in chats if c["conversation"][-1]["content"] == "wrong"]
        for chat in chats:
            if chat is wrong:
                assert chat["check"] == "failed"
                assert chat["check_message"].startswith("AssertionError: assert 'wrong' == ")
            else:
                assert (chat["check"], chat["check_message"]) == ("passed", None)
        properties = junit_properties(pytester.path / "j.xml")
        assert properties["rig_failed_samples"] == str(wrong["sample"])


def interrupted(
    pytester: pytest.Pytester,
    command: list[str],
    ready: t.Callable[[], bool],
    after: float = 0.0,
    then: t.Callable[[], None] = lambda: None,
) -> str:
    """Run `command` in the project; once `ready()` (and `after` seconds more), send it
    Ctrl-C as a terminal does (SIGINT to its process group: xdist workers too), then call
    `then()` while it stops. What it printed; it must end interrupted."""
    process = subprocess.Popen(
        command,
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # A shell's background job inherits SIGINT ignored (CI runners may start us so):
        # give the run the disposition a terminal's would have.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        wait_for(ready, "the run to be ready for Ctrl-C")
        time.sleep(after)
        os.killpg(process.pid, signal.SIGINT)
        then()
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:  # a failure above: leave no run behind
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == pytest.ExitCode.INTERRUPTED, out
    return out


CTRL_C_CONFTEST = """
import asyncio
from pathlib import Path

from pytest_rigging.generator import GeneratedMessage, register_generator
from pytest_rigging.generator.offline import EchoGenerator
from pytest_rigging.message import Message


class FirstFast(EchoGenerator):
    \"\"\"The first call answers at once (and leaves a mark); the others take a minute.\"\"\"

    calls: int = 0

    async def generate_message(self, messages, params):
        self.calls += 1
        if self.calls > 1:
            await asyncio.sleep(60)
        Path("first-done").touch()
        return GeneratedMessage(message=Message(role="assistant", content="ok"))


register_generator("firstfast", FirstFast)
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_ctrl_c_keeps_the_samples_that_finished(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    """A terminal's Ctrl-C while an item waits for its samples: the one that finished is in
    the report, under the interrupted item; under xdist too, where the controller stops
    before its workers could hand anything over (it reads their journals)."""
    ini(pytester)
    pytester.makeconftest(CTRL_C_CONFTEST)
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.rig(runs=3)
            def test_a(rig_chat):
                pass
            """
        )
    )
    command = [
        sys.executable,
        "-m",
        "pytest",
        "--rig-models",
        "firstfast!m",
        "--rig-report",
        "r.json",
        "-p",
        "no:cacheprovider",
        *xdist,
    ]
    # the first sample is recorded once its call returns
    interrupted(pytester, command, ready=(pytester.path / "first-done").exists, after=0.5)
    doc = json.loads((pytester.path / "r.json").read_text())
    assert doc["settings"]["interrupted"] is True
    assert [(i["outcome"], len(i["chats"])) for i in doc["items"]] == [("interrupted", 1)]
    assert doc["models"][0]["chats"] == 1


TEARDOWN_AFTER_THE_CALLS_STOPPED = """
import time
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def teardown_after_the_calls_stopped():
    \"\"\"After Ctrl-C, the session's teardown waits (a hang guard aside) for the test to
    see the calls in flight cancelled, and says whether it did: calls that go on until
    the plugin unconfigures are still in flight when it ends.\"\"\"
    yield
    deadline = time.monotonic() + 30  # a hang guard, not a threshold
    while not Path("calls-stopped").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    seen = Path("calls-stopped").exists()
    Path("torn-down").write_text("after the calls stopped" if seen else "with calls in flight")
"""


@pytest.mark.parametrize(
    ("where", "xdist"),
    [("body", []), ("body", ["-n", "2"]), ("teardown", [])],
    ids=["body-serial", "body-xdist", "teardown-serial"],
)
def test_no_call_starts_after_ctrl_c_wherever_it_lands(
    pytester: pytest.Pytester, llm_server: LLMServer, where: str, xdist: list[str]
) -> None:
    """Ctrl-C in a test body or a fixture's teardown while the function's other samples are
    computed, two at a time: the server answers the first item's call (`q0`) and holds
    every other, so two calls are in flight when the signal lands, and no slot frees
    before it. Those two are cancelled (the server sees their clients hang up) before the
    session's teardown ends, not when the plugin unconfigures, and no call starts after
    the signal: none but those three ever reaches the server."""
    never = threading.Event()
    llm_server.responder = lambda request: Reply(
        request.last_user, until=None if request.last_user == "q0" else never
    )
    ini(pytester)
    pytester.makeconftest(TEARDOWN_AFTER_THE_CALLS_STOPPED)
    pytester.makepyfile(
        """
        import time
        from pathlib import Path
        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator, n):
            return rig_generator.chat(f"q{n}")

        def sleep_until_ctrl_c():
            Path("sleeping").touch()
            time.sleep(30)

        @pytest.fixture
        def tearing_down(n):
            yield
            if n == 0 and WHERE == "teardown":
                sleep_until_ctrl_c()

        @pytest.mark.parametrize("n", range(40))
        def test_q(rig_chat, n, tearing_down):
            if n == 0 and WHERE == "body":
                sleep_until_ctrl_c()
        """.replace("WHERE", repr(where))
    )

    def held() -> list[RecordedRequest]:
        return [r for r in llm_server.requests if r.last_user != "q0"]

    def calls_stopped() -> None:
        wait_for(lambda: all(r.hung_up for r in held()), "the calls in flight to be cancelled")
        (pytester.path / "calls-stopped").touch()

    model = f"openai!m,api_base={llm_server.openai_base}"
    command = [sys.executable, "-m", "pytest", "--rig-models", model, "--rig-concurrency", "2"]
    interrupted(
        pytester,
        [*command, "-p", "no:cacheprovider", *xdist],
        ready=lambda: (pytester.path / "sleeping").exists() and len(held()) >= 2,
        then=calls_stopped,
    )
    assert (pytester.path / "torn-down").read_text() == "after the calls stopped"
    assert [r.last_user for r in llm_server.requests if r.status == 200] == ["q0"]
    assert all(r.hung_up for r in held())
    late = [r.last_user for r in held()][2:]  # in the order they reached the server
    assert late == [], "calls that started after Ctrl-C (the two in flight were held)"


ALARM = """
import signal

import pytest


@pytest.fixture
def alarm():
    \"\"\"Fail the test after 0.5 s from a signal handler, as pytest-timeout's signal
    method does.\"\"\"
    def fail(signum, frame):
        pytest.fail("timed out", pytrace=False)

    previous = signal.signal(signal.SIGALRM, fail)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def pytest_collection_modifyitems(items):
    \"\"\"test_free between test_x's items: while it waits, test_x[b]'s sample is in
    flight.\"\"\"
    free = [item for item in items if item.originalname == "test_free"]
    rest = [item for item in items if item.originalname != "test_free"]
    items[:] = rest[:1] + free + rest[1:]
"""


def test_a_wait_a_timeout_ends_cancels_only_its_own_calls(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """A free-form test failed by a timeout while `rig_run` waits: its own call is
    cancelled (the server sees its client hang up), not the samples another test
    function's items still wait for (Ctrl-C alone stops every call)."""
    never = threading.Event()
    llm_server.add_rule("qa", "qa")
    llm_server.add_rule("qb", Reply("qb", delay=2.0))
    llm_server.add_rule("slow", Reply("slow", until=never))
    ini(pytester)
    pytester.makeconftest(ALARM)
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator, case):
            return rig_generator.chat(f"q{case}")

        @pytest.mark.parametrize("case", ["a", "b"])
        def test_x(rig_chat, case):
            assert rig_chat.last.content == f"q{case}"

        def test_free(rig_generator, rig_run, alarm):
            rig_run(rig_generator.chat("slow").run())
        """
    )
    model = f"openai!m,api_base={llm_server.openai_base}"
    result = pytester.runpytest(
        "--rig-models", model, "-p", "no:randomly", "-p", "no:cacheprovider", "-v"
    )
    result.stdout.fnmatch_lines(
        ["*test_x[[]a-m[]] PASSED*", "*test_free[[]m[]] FAILED*", "*test_x[[]b-m[]] PASSED*"]
    )
    result.assert_outcomes(passed=2, failed=1)
    [slow] = [r for r in llm_server.requests if r.last_user == "slow"]
    wait_for(lambda: slow.hung_up, "test_free's call to be cancelled")


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_ctrl_c_stops_an_async_free_form_tests_samples_in_flight(
    pytester: pytest.Pytester, llm_server: LLMServer, xdist: list[str]
) -> None:
    """Ctrl-C while two of an async free-form test's three samples wait for the model (the
    server answers the first call and holds the others): both calls are cancelled (the
    server sees their clients hang up), and the report keeps the sample that finished,
    under the interrupted item."""
    never, lock, answered = threading.Event(), threading.Lock(), []

    def respond(request: RecordedRequest) -> Reply:
        with lock:
            first = not answered
            answered.append(request)
        return Reply("fine") if first else Reply("", until=never)

    llm_server.responder = respond
    ini(pytester)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rig(runs=3)
        async def test_free(rig_generator):
            await rig_generator.chat("q").run()
        """
    )

    def ready() -> bool:
        requests = list(llm_server.requests)
        return len(requests) == 3 and sum(r.status == 200 for r in requests) == 1

    model = f"openai!m,api_base={llm_server.openai_base}"
    command = [sys.executable, "-m", "pytest", "--rig-models", model, "--rig-report", "r.json"]
    interrupted(pytester, [*command, "-p", "no:cacheprovider", *xdist], ready=ready, after=0.5)
    held = [r for r in llm_server.requests if r.status != 200]
    assert len(held) == 2 and all(r.hung_up for r in held)
    doc = json.loads((pytester.path / "r.json").read_text())
    assert [(i["outcome"], len(i["chats"])) for i in doc["items"]] == [("interrupted", 1)]


def test_an_async_samples_body_runs_on_the_plugins_loop(pytester: pytest.Pytester) -> None:
    """There, `rig_run` (which would wait on that loop forever) fails its sample saying
    what to do instead, and a KeyboardInterrupt a body raises ends the run as anywhere
    else, the report written."""
    ini(pytester)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rig(runs=2)
        async def test_blocks(rig_pipeline, rig_run):
            rig_run(rig_pipeline.fork("hi").run())

        @pytest.mark.rig(runs=2)
        async def test_stops(rig_pipeline):
            await rig_pipeline.fork("hi").run()
            raise KeyboardInterrupt
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:randomly", "--rig-report", "r.json")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            "*0/2 samples passed, needed 2",
            "*RuntimeError: rig_run can't wait here: an async test with runs=N runs its "
            "samples on the plugin's loop, which rig_run would wait on; await the pipeline "
            "instead",
        ]
    )
    doc = json.loads((pytester.path / "r.json").read_text())
    assert [i["outcome"] for i in doc["items"]] == ["failed", "interrupted"]


def test_the_xdist_hooks_import_nothing_heavy() -> None:
    """The controller registers them at start-up for every `-n` run, rig tests or not: no
    pydantic, no engine (what the journal's records need is plain data)."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pytest_rigging.plugin.xdist; "
            "print(sorted(m for m in ('pydantic', 'pytest_rigging.plugin.stats', "
            "'pytest_rigging.plugin.execution') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "[]"
