"""The plugin through pytest's own pytester: settings and precedence, ids, fixtures in
sync and async tests, k-of-n verdicts, errors, and the same outcome under `-n 2`."""

from __future__ import annotations

import collections
import re
from pathlib import Path

import pytest

from tests.conftest import hold_until_in_flight, ini, on, rig_module
from tests.llm_server import LLMServer, peak_overlap

RULES = """
default = "I don't know."

[[rules]]
match = "France"
replies = ["<answer>Paris</answer>", "<answer>Paris</answer>", "<answer>Lyon</answer>"]

[[rules]]
match = "Japan"
reply = "<answer>Tokyo</answer>"

[[rules]]
match = "(?s)Peru.*system-error"
on = "conversation"
reply = "<answer>Lima</answer>"

[[rules]]
match = "Peru"
reply = "Lima, surely."
"""

CAPITALS = """
import pytest
from pytest_rigging.model import Answer

@pytest.fixture
def rig_pipeline(rig_generator, country):
    return rig_generator.chat(f"What is the capital of {country}?").until_parsed_as(Answer)

CASES = [("France", "Paris"), ("Japan", "Tokyo"), ("Peru", "Lima")]

@pytest.mark.parametrize("country,capital", CASES)
@pytest.mark.rig(runs=3, min_pass=2)
def test_capital(rig_chat, capital):
    assert rig_chat.last.parse(Answer).content == capital

@pytest.mark.parametrize("country,capital", [("France", "Paris")])
@pytest.mark.rig(runs=3)
async def test_all_samples_async(rig_chats, capital):
    answers = [c.last.parse(Answer).content for c in rig_chats]
    assert answers.count(capital) == 2, answers
"""


@pytest.fixture
def rules(pytester: pytest.Pytester) -> Path:
    path = pytester.path / "rules.toml"
    path.write_text(RULES)
    return path


def collected(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line]


def test_precedence_marker_over_cli_over_ini_over_default(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        def test_plain(rig_model, rig_params):
            pass

        @pytest.mark.rig_models("echo!from-marker")
        @pytest.mark.rig_params("temperature=0.9", {"top_p": 0.5})
        def test_marked(rig_model, rig_params):
            pass
        """
    )
    ini(pytester)
    result = pytester.runpytest("--collect-only", "-q")
    assert collected(result) == [
        "test_precedence_marker_over_cli_over_ini_over_default.py::test_plain[echo]",
        "test_precedence_marker_over_cli_over_ini_over_default.py::test_marked[from-marker-t0.9]",
        "test_precedence_marker_over_cli_over_ini_over_default.py::test_marked[from-marker-p0.5]",
    ]
    ini(
        pytester,
        "rig_models = echo!from-ini\nrig_params =\n    temperature=0.1\n    temperature=0.2",
    )
    result = pytester.runpytest("--collect-only", "-q")
    assert collected(result)[:2] == [
        "test_precedence_marker_over_cli_over_ini_over_default.py::test_plain[from-ini-t0.1]",
        "test_precedence_marker_over_cli_over_ini_over_default.py::test_plain[from-ini-t0.2]",
    ]
    header = pytester.runpytest("--collect-only").stdout.str()
    assert (
        "rigging: models echo!from-ini (ini); params temperature=0.1 | temperature=0.2 (ini); "
        "runs 1; concurrency 64" in header
    )
    result = pytester.runpytest("--collect-only", "-q", "--rig-models", "echo!cli-a,echo!cli-b")
    assert [line.rsplit("[", 1)[1] for line in collected(result)[:4]] == [
        "cli-a-t0.1]",
        "cli-a-t0.2]",
        "cli-b-t0.1]",
        "cli-b-t0.2]",
    ]
    assert collected(result)[-1].endswith("test_marked[from-marker-p0.5]")


def test_ids_are_short_unique_and_k_friendly(pytester: pytest.Pytester, rules: Path) -> None:
    ini(pytester)
    pytester.makepyfile(
        test_ids="""
        import pytest

        @pytest.mark.parametrize("country", ["France", "Japan"])
        def test_capital(rig_generator, country):
            pass
        """
    )
    models = (
        "gpt-4o-mini,temperature=0.7,api_key=sk-test-never-in-ids-123456,"
        f"openai/gpt-4o-mini,scripted!{rules},anthropic/claude-x,bedrock/claude-x"
    )
    result = pytester.runpytest(
        "--collect-only", "-q", "--rig-models", models, "--rig-params", "seed=1"
    )
    ids = [line.split("[", 1)[1].rstrip("]") for line in collected(result)]
    assert ids == [
        "France-gpt-4o-mini-t0.7-s1",
        "France-gpt-4o-mini-s1",
        "France-rules-s1",
        "France-litellm-anthropic-claude-x-s1",
        "France-litellm-bedrock-claude-x-s1",
        "Japan-gpt-4o-mini-t0.7-s1",
        "Japan-gpt-4o-mini-s1",
        "Japan-rules-s1",
        "Japan-litellm-anthropic-claude-x-s1",
        "Japan-litellm-bedrock-claude-x-s1",
    ]
    assert "sk-test-never-in-ids" not in result.stdout.str()
    selected = pytester.runpytest("-q", "--rig-models", models, "-k", "Japan and rules")
    selected.assert_outcomes(passed=1)
    by_marker = pytester.runpytest(
        "-q", "--rig-models", models, "-m", "rig_cell(model='openai/gpt-4o-mini')"
    )
    by_marker.assert_outcomes(passed=2)


def test_result_fixtures_sync_async_and_k_of_n(pytester: pytest.Pytester, rules: Path) -> None:
    ini(pytester, f"rig_models = scripted!{rules}")
    pytester.makepyfile(test_capitals=CAPITALS)
    result = pytester.runpytest("-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*test_capital?France-Paris-rules? PASSED*"])


def test_k_of_n_failure_says_how_many_and_shows_the_first_failure(
    pytester: pytest.Pytester, rules: Path
) -> None:
    ini(pytester, f"rig_models = scripted!{rules}")
    pytester.makepyfile(test_capitals=CAPITALS.replace("min_pass=2", "min_pass=3"))
    result = pytester.runpytest("-k", "France and not samples")
    result.assert_outcomes(failed=1, deselected=3)
    text = result.stdout.str()
    assert "2/3 samples passed, needed 3" in text
    assert "first failing sample (#3):\nAssertionError: assert 'Lyon' == 'Paris'" in text
    assert f"its conversation (scripted!{rules}):" in text
    assert "[user]: What is the capital of France?\n\n[assistant]: <answer>Lyon</answer>" in text


def test_free_form_tests_run_one_item_at_a_time(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile(
        """
        import pytest

        calls = []

        async def test_async_free(rig_pipeline):
            chat = await rig_pipeline.fork("hello").run()
            assert chat.last.content == "hello"

        def test_sync_free(rig_pipeline, rig_run):
            chat = rig_run(rig_pipeline.fork("hi").run())
            assert chat.last.content == "hi"

        @pytest.mark.rig(runs=4, min_pass=3)
        def test_repeated(rig_generator):
            calls.append(1)
            assert len(calls) != 2

        def test_count():
            assert len(calls) == 4
        """
    )
    result = pytester.runpytest("-v", "-p", "no:randomly")
    result.assert_outcomes(passed=4)


def test_bad_identifier_is_a_usage_error_naming_it(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile("def test_x(rig_model): pass")
    result = pytester.runpytest("--rig-models", "echo!ok,nope!model")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "--rig-models: unknown provider 'nope' in 'nope!model'; known providers:"
        in result.stderr.str()
    )
    result = pytester.runpytest("--rig-params", "temprature=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--rig-params: unknown param 'temprature'" in result.stderr.str()
    result = pytester.runpytest("--rig-models", "temperature=0.2,gpt-4o")
    assert "starts with a param ('temperature=0.2'), not a model" in result.stderr.str()


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        ("rig(run=3)", "@pytest.mark.rig() got an unexpected keyword argument 'run'"),
        ("rig(runs=0)", "@pytest.mark.rig(runs=...) must be an int >= 1, got 0"),
        ("rig(runs=2, min_pass=3)", "min_pass=...) must be an int from 0 to runs (2), got 3"),
        ("rig_models('nope!x')", "@pytest.mark.rig_models: unknown provider 'nope'"),
        ("rig_params(temperature=1)", "takes params sets as positional arguments"),
        ("rig_params('temperature=hot')", "invalid value 'hot' for 'temperature'"),
    ],
)
def test_marker_typos_are_collection_errors(
    pytester: pytest.Pytester, marker: str, message: str
) -> None:
    ini(pytester)
    pytester.makepyfile(
        f"import pytest\n\n@pytest.mark.{marker}\ndef test_x(rig_model):\n    pass\n"
    )
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert message in result.stdout.str()
    result.assert_outcomes(errors=1)


def test_pipeline_without_messages_is_a_clear_error(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile("def test_x(rig_chat):\n    pass\n")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    assert (
        "rig_pipeline has no messages to send: override the rig_pipeline fixture"
        in result.stdout.str()
    )


def test_infrastructure_errors_make_errors_not_failures(
    pytester: pytest.Pytester, llm_server: LLMServer, route: str
) -> None:
    ini(pytester)
    llm_server.fail_next(100, status=500, model="broken")
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.rig(runs=2)
            def test_ping(rig_chat):
                assert rig_chat.last.content == "ping"
            """,
            prompt="ping",
        )
    )
    result = pytester.runpytest(
        "--rig-models",
        ",".join(on(route, f"openai/{m},max_retries=0") for m in ("fine", "broken")),
        "-rA",
    )
    result.assert_outcomes(passed=1, errors=1)
    assert (
        "2/2 samples failed with infrastructure errors, too many to reach 2" in result.stdout.str()
    )


MATRIX = """
import pytest

@pytest.fixture
def rig_pipeline(rig_generator):
    return rig_generator.chat("Say something.")

@pytest.mark.rig(runs=5)
def test_matrix(rig_chat):
    assert rig_chat.last.content == "Say something."
"""


@pytest.mark.parametrize("workers", [None, "2"])
def test_whole_matrix_in_flight_at_once_and_no_call_twice(
    pytester: pytest.Pytester, llm_server: LLMServer, workers: str | None, route: str
) -> None:
    """Serially all 30 calls are in flight at once; under -n 2 each worker's slice (3 items,
    15 calls). The server holds every reply until that many are in flight (or, should they
    never be, for 30 s), so the overlap it sees doesn't depend on how fast calls go out."""
    at_once = 15 if workers else 30
    guard = hold_until_in_flight(llm_server, at_once, lambda request: request.last_user)
    ini(pytester)
    pytester.makepyfile(test_matrix=MATRIX)
    args = [
        "--rig-models",
        ",".join(on(route, m) for m in ("openai/m1", "openai/m2", "claude-3-haiku-20240307")),
        "--rig-params",
        "temperature=0.2",
        "--rig-params",
        "temperature=0.8",
        "-p",
        "no:cacheprovider",
    ]
    if workers:
        args += ["-n", workers]
    try:
        result = pytester.runpytest_subprocess(*args)
    finally:
        guard.cancel()
    result.assert_outcomes(passed=6)
    requests = llm_server.requests
    assert len(requests) == 30
    assert peak_overlap(requests) >= at_once
    counts = collections.Counter((r.model, r.body["temperature"]) for r in requests)
    assert set(counts.values()) == {5} and len(counts) == 6


def test_same_outcome_with_and_without_xdist(pytester: pytest.Pytester, rules: Path) -> None:
    ini(pytester, f"rig_models = scripted!{rules}, echo!echo")
    pytester.makepyfile(test_capitals=CAPITALS)

    def outcomes(*args: str) -> dict[str, str]:
        result = pytester.runpytest_subprocess("-rA", "-p", "no:cacheprovider", *args)
        found = re.findall(r"^(PASSED|FAILED|ERROR) (\S+)", result.stdout.str(), re.M)
        return {nodeid: outcome for outcome, nodeid in found} or {"": result.stdout.str()}

    serial = outcomes()
    assert len(serial) == 8, serial
    assert outcomes("-n", "2") == serial


def test_fixtures_built_from_parametrize_arguments_are_rebuilt_per_case(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def question(country):
            return f"capital of {country}?"
        """
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator, question):
            return rig_generator.chat(question)

        @pytest.mark.parametrize("country", ["France", "Japan", "Peru"])
        def test_q(rig_chat, country):
            assert rig_chat.last.content == f"capital of {country}?"
        """
    )
    pytester.runpytest().assert_outcomes(passed=3)


def test_scripted_answers_do_not_depend_on_how_xdist_splits_tests(
    pytester: pytest.Pytester,
) -> None:
    ini(pytester)
    (pytester.path / "rules.toml").write_text(
        '[[rules]]\nmatch = "."\nreplies = ["Paris", "Paris", "Lyon", "Lyon"]\n'
    )
    body = (
        "@pytest.fixture\ndef rig_pipeline(rig_generator):\n    return rig_generator.chat('q')\n\n"
        "@pytest.mark.rig(runs=2)\ndef test_{0}(rig_chat):\n"
        "    assert rig_chat.last.content == 'Paris'\n"
    )
    pytester.makepyfile("import pytest\n\n" + body.format("one") + "\n\n" + body.format("two"))
    args = ["--rig-models", "scripted!rules.toml", "-p", "no:cacheprovider"]
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=2)
    pytester.runpytest_subprocess(*args, "-n", "2").assert_outcomes(passed=2)
    grouped = pytester.runpytest_subprocess(*args, "-n", "2", "--dist", "loadgroup", "-v")
    grouped.assert_outcomes(passed=2)


def test_keys_never_reach_ids_tracebacks_or_junit(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile(
        """
        def test_a(rig_model, rig_cell, rig_params):
            assert False, "show me the locals"
        """
    )
    key, extra = "sk-test-locals-key-4444444444", "sk-test-extra-key-5555555555"
    result = pytester.runpytest(
        "--rig-models",
        f"echo!e,api_key={key}",
        "--rig-params",
        f"extra.auth_token={extra}",
        "--junitxml=j.xml",
        "-l",
        "-v",
    )
    result.assert_outcomes(failed=1)
    for text in (result.stdout.str(), (pytester.path / "j.xml").read_text()):
        assert key not in text and extra not in text
    assert "test_a[e]" in result.stdout.str()
    result = pytester.runpytest("--rig-models", "gpt-4o,API_KEY=sk-test-upper-666666666")
    assert "sk-test-upper" not in result.stderr.str() + result.stdout.str()
    assert "unknown param 'API_KEY' in 'gpt-4o,API_KEY=***'" in result.stderr.str()


def test_header_only_when_rig_tests_or_options(pytester: pytest.Pytester) -> None:
    from pytest_rigging.plugin.matrix import DEFAULT_SETTINGS

    ini(pytester)
    pytester.makepyfile(test_plain="def test_x(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert "rigging:" not in result.stdout.str() + result.stderr.str()
    pytester.makepyfile(test_rig="def test_y(rig_model): pass")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert (
        DEFAULT_SETTINGS.header()
        == "rigging: models echo!echo (default); params {} (default); runs 1; concurrency 64"
    )
    assert result.stdout.lines.count(DEFAULT_SETTINGS.header()) == 1


def test_an_exhausted_sample_shows_every_reply_of_its_dialog(
    pytester: pytest.Pytester, tmp_path: Path
) -> None:
    """The failure of a sample that ran out of parse rounds shows what the model said each
    time and what it was asked, each message cut on its own and a long dialog by its ends;
    `rig_chats` is a ChatList."""
    rules = tmp_path / "stubborn.toml"
    rules.write_text(
        'default = "no tags, attempt ' + "x" * 3000 + '"\n'
        "[[rules]]\n"
        'match = "second"\n'
        'replies = ["still none", "nope"]\n'
    )
    ini(pytester, f"rig_models = scripted!{rules}")
    pytester.makepyfile(
        test_dialog="""
        import pytest
        from pytest_rigging.chat import ChatList
        from pytest_rigging.model import Answer

        @pytest.fixture
        def rig_pipeline(rig_generator, question):
            return rig_generator.chat(question).until_parsed_as(Answer, max_rounds=3)

        @pytest.mark.parametrize("question", ["first"])
        def test_short(rig_chat, question):
            assert rig_chat.last.parse(Answer)

        @pytest.mark.parametrize("question", ["first"])
        def test_chats(rig_chats, question):
            assert isinstance(rig_chats, ChatList) and rig_chats.to_openai()

        def test_long(rig_generator, rig_run):
            from pytest_rigging.plugin.samples import dialog

            pipeline = rig_generator.chat("second").until_parsed_as(Answer, max_rounds=8)
            chat = rig_run(pipeline.run(on_failed="include"))
            shown = dialog(chat)
            # 16 messages: the first 2 and the last 8 show (5 of the 8 replies)
            assert shown.count("[assistant]: ") == 5 and "... [6 messages left out] ..." in shown
        """
    )
    pytester.runpytest("-k", "chats or long").assert_outcomes(passed=2)
    result = pytester.runpytest("-k", "short")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert text.count("[assistant]: no tags, attempt xxx") == 3
    assert text.count("Rewrite your whole message") == 2
    assert "[error]: Exhausted max rounds (3) while parsing" in text
    assert text.count("[3,017 characters; 2,217 left out] ...") == 3  # each reply cut alone
