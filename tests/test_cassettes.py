"""Cassettes (`--rig-record`): recorded against the loopback server over real HTTP, on both
routes, then replayed with the server refusing every call."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.conftest import ONE_ITEM, OPENAI_TEST_KEY, ini, on
from tests.llm_server import LLMServer, Reply

SUITE = """
import pytest

QUESTIONS = {"France": "Paris", "Japan": "Tokyo", "Peru": "Lima"}


@pytest.fixture
def rig_pipeline(rig_generator, country):
    return rig_generator.chat(f"What is the capital of {country}?")


@pytest.mark.parametrize("country", sorted(QUESTIONS))
@pytest.mark.rig(runs=2)
def test_capital(rig_chat, country):
    assert QUESTIONS[country] in rig_chat.last.content
"""


def scripted(server: LLMServer) -> None:
    for country, capital in {"France": "Paris", "Japan": "Tokyo", "Peru": "Lima"}.items():
        server.add_rule(country, Reply(content=capital, prompt_tokens=9, completion_tokens=1))


def recorded_once(pytester: pytest.Pytester, llm_server: LLMServer) -> None:
    """The suite, recorded with `once` on `openai!m` (6 calls: 3 cases x 2 samples)."""
    ini(pytester)
    pytester.makepyfile(test_capitals=SUITE)
    scripted(llm_server)
    pytester.runpytest("--rig-models", "openai!m", "--rig-record", "once").assert_outcomes(passed=3)


def cassette(pytester: pytest.Pytester) -> Path:
    return pytester.path / "cassettes" / "test_capitals.json"


def rows(pytester: pytest.Pytester, report: str) -> list[dict]:
    return json.loads((pytester.path / report).read_text())["models"]


def test_record_then_replay_with_no_server_gives_the_same_run(
    pytester: pytest.Pytester, llm_server: LLMServer, route: str
) -> None:
    ini(pytester)
    pytester.makepyfile(test_capitals=SUITE)
    scripted(llm_server)
    models = ["--rig-models", on(route, "openai/m,max_retries=0"), "-p", "no:cacheprovider"]
    recorded = pytester.runpytest(*models, "--rig-record", "once", "--rig-report", "a.json")
    recorded.assert_outcomes(passed=3)
    assert len(llm_server.requests) == 6  # 3 cases x 2 samples
    doc = json.loads(cassette(pytester).read_text())
    assert len(doc["entries"]) == 6
    assert {e["request"]["sample"] for e in doc["entries"]} == {0, 1}  # runs=2: two recordings
    llm_server.fail_next(100, status=500)  # the server "stops": any call that reaches it fails
    replayed = pytester.runpytest(*models, "--rig-record", "none", "--rig-report", "b.json")
    replayed.assert_outcomes(passed=3)
    assert len(llm_server.requests) == 6  # not one more
    assert rows(pytester, "a.json") == rows(pytester, "b.json")  # latency included
    before = cassette(pytester).read_text()
    again = pytester.runpytest(*models, "--rig-record", "all")  # re-recorded, unchanged
    again.assert_outcomes(errors=3)  # the server fails now: `all` calls it
    llm_server.reset()
    scripted(llm_server)
    pytester.runpytest(*models, "--rig-record", "all").assert_outcomes(passed=3)
    after = json.loads(cassette(pytester).read_text())
    assert [e["request"] for e in after["entries"]] == [
        e["request"] for e in json.loads(before)["entries"]
    ]


def test_a_changed_prompt_misses_and_says_how(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    recorded_once(pytester, llm_server)
    pytester.makepyfile(
        test_capitals=SUITE.replace(
            'f"What is the capital of {country}?"',
            'f"What is the capital of {country}?" if country != "Peru" else "Capital of Peru?"',
        )
    )
    result = pytester.runpytest("--rig-models", "openai!m", "--rig-record", "none")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_capital*Peru*",
            "no recording in cassettes/test_capitals.json for this call (--rig-record none "
            'replays only); the closest recording differs in messages[0].content: "Capital of '
            'Peru?" here, "What is the capital of Peru?" recorded',
        ]
    )
    assert len(llm_server.requests) == 6  # the miss never reached the server


SYSTEM_PROMPTED = """
import pytest

import pytest_rigging as rg

SYSTEM = "Answer in one word."


@pytest.fixture
def rig_pipeline(rig_generator, case):
    return rig_generator.chat([rg.Message("system", SYSTEM), rg.Message("user", f"Q{case}")])


@pytest.mark.parametrize("case", range(8))
@pytest.mark.rig(runs=2)
def test_q(rig_chat, case):
    pass
"""


def misses(output: str) -> dict[str, str]:
    """Each errored item's id (within the module), and the miss message shown for it
    (under xdist, after the line naming the worker)."""
    return dict(
        re.findall(r"_ ERROR at setup of (\S+) _+\n(?:\[gw\d+\] .*\n)?(no recording in .*)", output)
    )


def closest(output: str, end: str) -> dict[str, str]:
    """Each item whose miss names its closest recording (past the first, explained ones),
    and that recording, as its message gives it up to `end`."""
    said = "the closest recording is "
    return {
        item: message.split(said)[1].split(end)[0]
        for item, message in misses(output).items()
        if said in message
    }


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_changed_system_prompt_explains_the_first_misses_and_names_the_rest(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """Every call of the module misses: the first 3 items that miss (in each process) say
    how they differ; the others name the item's own recording, and that the differences
    were shown above."""
    ini(pytester)
    pytester.makepyfile(test_capitals=SYSTEM_PROMPTED)
    args = ["--rig-models", "echo!a,echo!b", "-p", "no:cacheprovider"]
    pytester.runpytest(*args, "--rig-record", "once").assert_outcomes(passed=16)
    pytester.makepyfile(test_capitals=SYSTEM_PROMPTED.replace("one word", "two words"))
    result = pytester.runpytest_subprocess(*args, "--rig-record", "none", *workers)
    result.assert_outcomes(errors=16)
    shown = misses(result.stdout.str())
    assert len(shown) == 16
    head = (
        "no recording in cassettes/test_capitals.json for this call (--rig-record none "
        "replays only); "
    )
    explained = [item for item, message in shown.items() if "differs in" in message]
    for item in explained:
        assert shown[item] == (
            f"{head}the closest recording differs in messages[0].content: "
            '"Answer in two words." here, "Answer in one word." recorded'
        )
    for item in shown.keys() - set(explained):
        assert re.fullmatch(
            re.escape(f"{head}the closest recording is test_capitals.py::{item}'s sample ")
            + r"[12]"
            + re.escape(
                ", call 1 (how calls differ from their closest recordings is shown for this "
                "module's first 3 items that missed)"
            ),
            shown[item],
        ), shown[item]
    if workers:  # each worker reads the cassette, and counts its own first 3
        assert 3 <= len(explained) <= 6, explained
    else:
        assert len(explained) == 3, explained


def test_a_missed_case_whose_id_changed_names_the_recording_it_was(
    pytester: pytest.Pytester,
) -> None:
    """The ids and the system prompt edited together: no recording shares a missed item's
    id, so the closest is found by what the call says (the same country), not taken from
    the first recording of the same model and sample."""
    suite = """
        import os

        import pytest

        import pytest_rigging as rg

        COUNTRIES = ["France", "Japan", "Peru", "Chile", "Spain"]
        SYSTEM = "Answer in one word."

        @pytest.fixture
        def rig_pipeline(rig_generator, country):
            return rig_generator.chat(
                [rg.Message("system", SYSTEM), rg.Message("user", f"Capital of {country}?")]
            )

        @pytest.mark.parametrize("country", COUNTRIES, ids=IDS)
        def test_capital(rig_chat, country):
            pass
        """
    ini(pytester)
    pytester.makepyfile(test_capitals=suite.replace("IDS", "None"))
    args = ["--rig-models", "echo!a", "-p", "no:cacheprovider"]
    pytester.runpytest(*args, "--rig-record", "once").assert_outcomes(passed=5)
    edited = suite.replace("IDS", "str.lower").replace("one word", "two words")
    pytester.makepyfile(test_capitals=edited)
    result = pytester.runpytest(*args, "--rig-record", "none")
    result.assert_outcomes(errors=5)
    named = closest(result.stdout.str(), "'s sample")
    assert len(named) == 2  # after the first 3
    for item, recording in named.items():
        country = item.removeprefix("test_capital[").removesuffix("-a]")
        assert recording == f"test_capitals.py::test_capital[{country.capitalize()}-a]"


def test_a_recording_without_its_item_is_named_by_what_it_asked(
    pytester: pytest.Pytester,
) -> None:
    """A cassette whose entries don't say which item recorded them (written by hand, or
    before entries carried it): a later miss names the closest recording by its
    generator, call and what it asked."""
    ini(pytester)
    pytester.makepyfile(test_capitals=SYSTEM_PROMPTED.replace("runs=2", "runs=1"))
    args = ["--rig-models", "echo!a", "-p", "no:cacheprovider"]
    pytester.runpytest(*args, "--rig-record", "once").assert_outcomes(passed=8)
    doc = json.loads(cassette(pytester).read_text())
    for entry in doc["entries"]:
        del entry["item"]
    cassette(pytester).write_text(json.dumps(doc))
    pytester.makepyfile(
        test_capitals=SYSTEM_PROMPTED.replace("runs=2", "runs=1").replace("one word", "two words")
    )
    result = pytester.runpytest(*args, "--rig-record", "none")
    result.assert_outcomes(errors=8)
    named = closest(result.stdout.str(), " (how calls differ")
    assert len(named) == 5
    for item, recording in named.items():
        case = item.removeprefix("test_q[").removesuffix("-a]")
        assert recording == f'echo!a\'s sample 1, call 1, asking "Q{case}"'


def test_new_episodes_records_only_what_is_missing(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    recorded_once(pytester, llm_server)
    llm_server.add_rule("Chile", "Santiago")
    pytester.makepyfile(
        test_capitals=SUITE.replace('"Peru": "Lima"}', '"Peru": "Lima", "Chile": "Santiago"}')
    )
    result = pytester.runpytest("--rig-models", "openai!m", "--rig-record", "new_episodes")
    result.assert_outcomes(passed=4)
    assert len(llm_server.requests) == 8  # 6 recorded first, 2 for Chile's samples now
    assert len(json.loads(cassette(pytester).read_text())["entries"]) == 8
    once = pytester.runpytest("--rig-models", "openai!m", "--rig-record", "once")
    once.assert_outcomes(passed=4)  # the cassette exists: `once` replays it
    assert len(llm_server.requests) == 8


def test_recording_under_xdist_writes_what_a_serial_run_writes(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    ini(pytester)
    pytester.makepyfile(test_capitals=SUITE)
    scripted(llm_server)
    args = ["--rig-models", "openai!m,openai!n", "--rig-record", "all", "-p", "no:cacheprovider"]
    pytester.runpytest_subprocess(*args).assert_outcomes(passed=6)
    serial = json.loads(cassette(pytester).read_text())
    cassette(pytester).unlink()
    pytester.runpytest_subprocess(*args, "-n", "2").assert_outcomes(passed=6)
    parallel = json.loads(cassette(pytester).read_text())
    strip = (
        [{**e, "reply": {**e["reply"], "latency": 0}} for e in serial["entries"]],
        [{**e, "reply": {**e["reply"], "latency": 0}} for e in parallel["entries"]],
    )
    assert strip[0] == strip[1] and len(strip[0]) == 12


def test_no_key_is_ever_written(
    pytester: pytest.Pytester, llm_server: LLMServer, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-cassette-key-5555555555555555"
    monkeypatch.setenv("MY_SERVICE_API_KEY", "env-secret-value-66666666")
    ini(pytester)
    pytester.makepyfile(
        test_capitals="""
        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator):
            return rig_generator.chat(
                "keys: sk-cassette-key-5555555555555555 env-secret-value-66666666"
            )

        def test_a(rig_chat):
            pass
        """
    )
    model = on(route, f"openai/m,api_key={key}")
    result = pytester.runpytest(
        "--rig-models", model, "--rig-record", "once", "--rig-report", "r.json"
    )
    result.assert_outcomes(passed=1)
    written = [p for p in pytester.path.rglob("*") if p.is_file() and p.suffix in (".json", ".xml")]
    assert cassette(pytester) in written
    for path in written:
        text = path.read_text()
        assert key not in text and "env-secret-value-66666666" not in text, path
        assert OPENAI_TEST_KEY not in text, path


def test_a_corrupt_cassette_is_an_error_naming_it_and_is_left_alone(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    ini(pytester)
    pytester.makepyfile(test_capitals=ONE_ITEM)
    cassette(pytester).parent.mkdir()
    broken = '{"format": "pytest-rigging-cassette", "version": 1,\n "entries": [\n {"request": '
    cassette(pytester).write_text(broken)
    result = pytester.runpytest("--rig-models", "openai!m", "--rig-record", "new_episodes")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "cassette cassettes/test_capitals.json is not valid JSON at line 3, column 14: "
            "Expecting value (fix it, or delete it to record again)"
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert cassette(pytester).read_text() == broken and not llm_server.requests


def test_a_bad_mode_is_a_usage_error(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile(test_capitals=ONE_ITEM)
    result = pytester.runpytest("--rig-record", "sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line] == [
        "ERROR: --rig-record: expected one of none, once, new_episodes, all, got 'sometimes'"
    ]


def test_all_replaces_what_the_items_it_runs_recorded_before(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """Re-recording with `all` after a prompt changed leaves no stale recording behind."""
    ini(pytester)
    pytester.makepyfile(test_capitals=SUITE)
    scripted(llm_server)
    pytester.runpytest("--rig-models", "openai!m", "--rig-record", "all").assert_outcomes(passed=3)
    pytester.makepyfile(test_capitals=SUITE.replace("What is the capital", "Capital"))
    pytester.runpytest("--rig-models", "openai!m", "--rig-record", "all").assert_outcomes(passed=3)
    entries = json.loads(cassette(pytester).read_text())["entries"]
    assert len(entries) == 6
    assert all(e["request"]["messages"][0]["content"].startswith("Capital of") for e in entries)


def test_calls_a_rig_items_fixture_makes_are_recorded_too(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """A fixture of a rig item that calls a model (a judge's warm-up, a reference answer)
    records and replays as the item's own calls: `none` never reaches the server."""
    ini(pytester)
    pytester.makepyfile(
        test_capitals="""
        import pytest

        @pytest.fixture
        def reference(rig_generator, rig_run):
            return rig_run(rig_generator.chat("reference answer").run()).last.content

        @pytest.fixture
        def rig_pipeline(rig_generator):
            return rig_generator.chat("the answer")

        def test_a(rig_chat, reference):
            assert reference == "reference answer"
        """
    )
    args = ["--rig-models", "openai!m", "-p", "no:cacheprovider"]
    pytester.runpytest(*args, "--rig-record", "once").assert_outcomes(passed=1)
    assert len(llm_server.requests) == 2
    contents = {
        (e["request"]["sample"], e["request"]["messages"][0]["content"])
        for e in json.loads(cassette(pytester).read_text())["entries"]
    }
    assert contents == {(0, "the answer"), (None, "reference answer")}
    llm_server.fail_next(100, status=500)
    pytester.runpytest(*args, "--rig-record", "none").assert_outcomes(passed=1)
    assert len(llm_server.requests) == 2


def test_images_are_recorded_by_digest_and_replay(
    pytester: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A multimodal call is keyed by its image's SHA-256: the cassette holds no image, a
    replay matches, and a different image misses."""
    ini(pytester)
    pytester.makepyfile(
        test_capitals="""
        import os

        import pytest

        import pytest_rigging as rg

        IMAGE = os.environ.get("RIG_TEST_IMAGE", "aGVsbG8=")

        @pytest.fixture
        def rig_pipeline(rig_generator):
            image = rg.ContentImageUrl.from_url(f"data:image/png;base64,{IMAGE}")
            return rig_generator.chat(rg.Message("user", ["What is this?", image]))

        def test_a(rig_chat):
            assert rig_chat.last.content == "a picture"
        """
    )
    llm_server.add_rule(".", "a picture")
    args = ["--rig-models", "openai!m", "-p", "no:cacheprovider"]
    pytester.runpytest(*args, "--rig-record", "once").assert_outcomes(passed=1)
    written = cassette(pytester).read_text()
    assert "aGVsbG8=" not in written and '"url": "sha256:' in written
    llm_server.fail_next(100, status=500)
    pytester.runpytest(*args, "--rig-record", "none").assert_outcomes(passed=1)
    assert len(llm_server.requests) == 1
    monkeypatch.setenv("RIG_TEST_IMAGE", "b3RoZXI=")
    missed = pytester.runpytest(*args, "--rig-record", "none")
    missed.assert_outcomes(errors=1)  # a miss is an error, as any other
    missed.stdout.fnmatch_lines(["no recording in cassettes/test_capitals.json for this call*"])
    assert len(llm_server.requests) == 1
