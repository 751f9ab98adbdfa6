"""Parse success per model: exact figures in the table and the JSON, with and without
xdist, for both test styles, sync and async; gates; merging shards; JUnit; the step
summary; infrastructure errors kept apart; Ctrl-C still writes the report."""

from __future__ import annotations

import json
import re
import sys
import textwrap
import threading
from pathlib import Path
from xml.etree import ElementTree

import pytest

from pytest_rigging.plugin.cli import main as rigging_main
from pytest_rigging.plugin.gates import Check, apart
from pytest_rigging.plugin.stats import wilson
from tests.conftest import (
    INTERRUPTED_ON_THIRD,
    ONE_ITEM,
    ini,
    junit_properties,
    on,
    read_data,
    rig_module,
)
from tests.llm_server import LLMServer, Reply

MODELS = {
    "good": 'default = "<answer>ok</answer>"\n',
    "recovering": (
        '[[rules]]\nmatch = "system-error"\non = "conversation"\nreply = "<answer>ok</answer>"\n'
        '\n[[rules]]\nmatch = "."\nreply = "no tags at all"\n'
    ),
    "never": 'default = "no tags at all"\n',
}

PIPELINE = """
import pytest
from pytest_rigging.model import Answer

@pytest.fixture
def rig_pipeline(rig_generator, case):
    return rig_generator.chat(f"case {case}").until_parsed_as(Answer, max_rounds=2)
"""

RESULT_STYLE = """
@pytest.mark.parametrize("case", ["a", "b"])
@pytest.mark.rig(runs=3, min_pass=2)
def test_result_style(rig_chat, case):
    assert rig_chat.last.parse(Answer).content == "ok"
"""

SUITE = (
    PIPELINE
    + RESULT_STYLE
    + """
@pytest.mark.parametrize("case", ["c"])
async def test_free_style(rig_pipeline, case):
    chat = await rig_pipeline.run()
    assert chat.last.parse(Answer).content == "ok"

@pytest.mark.parametrize("case", ["d"])
def test_free_style_sync(rig_pipeline, rig_run, case):
    chat = rig_run(rig_pipeline.run())
    assert chat.last.parse(Answer).content == "ok"

@pytest.mark.parametrize("case", ["e"])
@pytest.mark.rig(runs=2)
async def test_all_samples(rig_chats, case):
    assert all(not c.failed for c in rig_chats)
"""
)

# Per model: 2 result items x 3 samples + 1 + 1 free-form + 1 x 2 samples = 10 chats.
EXPECTED = {
    "good": {"chats": 10, "first_try": 10, "recovered": 0, "exhausted": 0, "error": 0,
             "samples": [6, 6], "items": [5, 0, 0]},
    "recovering": {"chats": 10, "first_try": 0, "recovered": 10, "exhausted": 0, "error": 0,
                   "samples": [6, 6], "items": [5, 0, 0]},
    "never": {"chats": 10, "first_try": 0, "recovered": 0, "exhausted": 10, "error": 0,
              "samples": [0, 6], "items": [0, 5, 0]},
    "broken": {"chats": 10, "first_try": 0, "recovered": 0, "exhausted": 0, "error": 10,
               "samples": [0, 0], "items": [0, 0, 5]},
}  # fmt: skip


@pytest.fixture
def suite(
    pytester: pytest.Pytester, llm_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """The suite, the three scripted models, and `broken`, whose every call gets a 500; on
    a terminal wide enough for the table's every column.

    `broken` is on the native route: litellm formats a traceback in the engine's thread
    for every failed call, and on CPython 3.11 two threads parsing source at once can
    break pytest's own traceback formatting in this process (a spurious "AST constructor
    recursion depth mismatch", CPython gh-106905)."""
    monkeypatch.setenv("COLUMNS", "250")
    ini(pytester)
    pytester.makepyfile(test_suite=SUITE)
    models = []
    for name, rules in MODELS.items():
        (pytester.path / f"{name}.toml").write_text(rules)
        models.append(f"scripted!{name}.toml")
    llm_server.fail_next(10_000, status=500, model="broken")
    return [
        "--rig-models",
        ",".join([*models, "openai!broken,max_retries=0"]),
        "-p",
        "no:cacheprovider",
    ]


def run(pytester: pytest.Pytester, *args: str) -> tuple[pytest.RunResult, dict]:
    """Run pytest (in this process unless xdist is asked for) and read its JSON report."""
    report = pytester.path / f"report-{len(list(pytester.path.glob('report-*')))}.json"
    runner = pytester.runpytest_subprocess if "-n" in args else pytester.runpytest
    result = runner(*args, f"--rig-report={report}")
    return result, json.loads(report.read_text())


def by_label(doc: dict) -> dict[str, dict]:
    return {row["label"]: row for row in doc["models"]}


def without_timings(doc: dict) -> dict:
    text = json.dumps({k: doc[k] for k in ("models", "cells", "gates")})
    return json.loads(re.sub(r'"(median_latency|latency|duration)": [0-9.e-]+', r'"\1": 0', text))


def test_every_count_and_rate_exactly_and_the_same_with_and_without_xdist(
    pytester: pytest.Pytester, suite: list[str]
) -> None:
    """Every figure of a serial run and of a run under `-n 2`, and the two reports agree
    but for timings (one run of each, checked both ways)."""
    serial = every_count_and_rate_exactly(*run(pytester, *suite))
    parallel = every_count_and_rate_exactly(*run(pytester, *suite, "-n", "2"))
    assert without_timings(serial) == without_timings(parallel)


def every_count_and_rate_exactly(result: pytest.RunResult, doc: dict) -> dict:
    """Check a run of the suite, what pytest said and its report; the report."""
    # the broken model's items error, free-form ones included: pytest agrees with the figures
    result.assert_outcomes(passed=10, failed=5, errors=5)
    rows = by_label(doc)
    assert list(rows) == ["good", "recovering", "never", "broken"]
    for label, expected in EXPECTED.items():
        row = rows[label]
        for key in ("chats", "first_try", "recovered", "exhausted", "error"):
            assert row[key] == expected[key], (label, key)
        assert [row["samples_passed"], row["samples_total"]] == expected["samples"], label
        assert [row["items_passed"], row["items_failed"], row["items_errored"]] == expected[
            "items"
        ], label
    assert rows["good"]["parse_rate"] == 1.0 and rows["never"]["parse_rate"] == 0.0
    assert rows["good"]["parse_rate_interval"] == list(wilson(10, 10))
    assert rows["never"]["pass_rate"] == 0.0
    # Errors are never parse or quality failures: the broken model has no parse rate at all.
    assert rows["broken"]["parse_rate"] is None and rows["broken"]["pass_rate"] is None
    assert rows["broken"]["error_rate"] == 1.0 and rows["good"]["error_rate"] == 0.0
    assert rows["good"]["input_tokens"] > 0 and rows["good"]["output_tokens"] == 10
    items = {item["nodeid"]: item for item in doc["items"]}
    assert len(items) == 20
    one = items["test_suite.py::test_result_style[a-recovering]"]
    assert one["samples"] == [3, 3] and one["outcome"] == "passed"
    assert [c["sample"] for c in one["chats"]] == [1, 2, 3]
    assert [c["outcome"] for c in one["chats"]] == ["recovered"] * 3
    conversation = one["chats"][0]["conversation"]
    assert [m["role"] for m in conversation] == ["user", "assistant", "user", "assistant"]
    assert conversation[0] == {"role": "user", "content": "case a"}
    assert conversation[1]["content"] != "<answer>ok</answer>"  # the reply that failed
    assert "Rewrite your whole message" in conversation[2]["content"]
    assert conversation[3] == {"role": "assistant", "content": "<answer>ok</answer>"}
    broken = items["test_suite.py::test_result_style[a-broken]"]
    assert broken["outcome"] == "error" and broken["chats"][0]["error_kind"] == "infrastructure"
    assert doc["settings"]["models"][-1] == "openai!broken,max_retries=0"
    text = result.stdout.str()
    assert text.count("rigging: parse success per model") == 1  # not once per worker
    assert re.search(r"^good\s+10\s+10\s+0\s+0\s+0\s+100\.0% \[72\.2-100\.0\]", text, re.M)
    assert re.search(r"^never\s+10\s+0\s+0\s+10\s+0\s+0\.0% \[0\.0-27\.8\]", text, re.M)
    assert re.search(r"^broken\s+10\s+0\s+0\s+0\s+10\s+-\s+-\s+0/0/5", text, re.M)
    return doc


def test_verbosity(pytester: pytest.Pytester, suite: list[str]) -> None:
    verbose = pytester.runpytest(
        *suite, "-v", "--rig-params", "temperature=0.1", "--rig-params", "temperature=0.9"
    )
    assert re.search(r"^good\s+temperature=0\.1\s+10\s+10\s", verbose.stdout.str(), re.M)
    assert re.search(r"^good\s+temperature=0\.9\s+10\s+10\s", verbose.stdout.str(), re.M)
    quiet = pytester.runpytest(*suite, "-q")
    assert re.search(
        r"^model\s+errors\s+parse rate \[95% CI\]\s+pass rate \[95% CI\]\s+items ok/fail/err\s+"
        r"tokens in/out\s+cost$",
        quiet.stdout.str(),
        re.M,
    )
    silent = pytester.runpytest(*suite, "-qq")
    assert "parse success per model" not in silent.stdout.str()


LENIENT = (
    PIPELINE
    + """
@pytest.mark.parametrize("case", ["a", "b"])
@pytest.mark.rig(runs=5, min_pass=0)
def test_lenient(rig_chat, case):
    assert rig_chat.last.parse(Answer).content == "ok"
"""
)


@pytest.mark.parametrize(
    ("gate", "fails"),
    [
        (
            ["--rig-min-parse-rate", "0.5"],
            ["never.toml: parse rate 0.0% [0.0%-27.8%], needs >= 50.0%"],
        ),
        (["--rig-min-parse-rate", "0.5", "--rig-min-parse-rate", "never=0"], []),
        (["--rig-min-pass-rate", "90%"], ["never.toml: sample pass rate 0.0% [0.0%-27.8%]"]),
        (
            ["--rig-max-error-rate", "0.2"],
            ["flaky,max_retries=0: error rate 30.0% [10.8%-60.3%], needs <= 20.0%"],
        ),
        (["--rig-max-error-rate", "0.2", "--rig-gate-mode", "interval"], []),
        (["--rig-min-parse-rate", "0.8", "--rig-gate-mode", "strict"], ["good", "never", "flaky"]),
        (["--rig-min-parse-rate", "0.8", "--rig-gate-mode", "interval"], ["never"]),
        (["--rig-min-parse-rate", "0.25", "--rig-gate-mode", "interval"], []),
    ],
    ids=[
        "parse",
        "per-model",
        "pass",
        "errors",
        "errors-interval",
        "strict",
        "interval-fails",
        "interval-passes",
    ],
)
def test_gates_fail_the_run_even_when_every_test_passed(
    pytester: pytest.Pytester, llm_server: LLMServer, gate: list[str], fails: list[str]
) -> None:
    ini(pytester)
    pytester.makepyfile(test_lenient=LENIENT)
    for name in ("good", "never"):
        (pytester.path / f"{name}.toml").write_text(MODELS[name])
    llm_server.add_rule(".", "<answer>ok</answer>")
    llm_server.fail_next(3, status=500, model="flaky")
    models = "scripted!good.toml,scripted!never.toml,openai/flaky,max_retries=0"
    result = pytester.runpytest("--rig-models", models, "-p", "no:cacheprovider", *gate)
    result.assert_outcomes(passed=6)
    lines = [line for line in result.stdout.lines if line.startswith("FAIL ") and "needs" in line]
    assert len(lines) == len(fails), lines
    for expected in fails:
        assert any(expected in line for line in lines), (expected, lines)
    assert result.ret == (1 if fails else 0)


def test_gates_from_ini_and_bad_values(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(rig_model): pass")
    ini(pytester, "rig_min_parse_rate = nope\n")
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line] == [
        "ERROR: ini rig_min_parse_rate: expected a rate from 0 to 1 (or 0-100%), got 'nope'"
    ]
    ini(pytester, "rig_min_parse_rate =\n    0\n    echo=0.9\n")
    result = pytester.runpytest("--rig-max-error-rate", "1.5")
    assert (
        "--rig-max-error-rate: expected a rate from 0 to 1 (or 0-100%), got '1.5'"
        in result.stderr.str()
    )
    pytester.makepyfile(
        """
        import pytest
        from pytest_rigging.model import Answer

        @pytest.fixture
        def rig_pipeline(rig_generator):
            return rig_generator.chat("no tags").until_parsed_as(Answer, max_rounds=1)

        def test_x(rig_chat):
            assert rig_chat.failed
        """
    )
    result = pytester.runpytest()
    assert result.ret == 1  # the item passes; its model fails the per-model gate (by label)
    result.stdout.fnmatch_lines(["FAIL echo!echo: parse rate 0.0%*needs >= 90.0%*"])


def junit_cases(path: Path) -> tuple[dict[str, str], dict[str, str | None]]:
    """A JUnit file's suite counts, and its testcases (`classname::name`) with each one's
    failure message (None for a pass)."""
    suite = ElementTree.parse(path).getroot().find("testsuite")
    assert suite is not None
    cases: dict[str, str | None] = {}
    for case in suite.iter("testcase"):
        failure = case.find("failure")
        key = f"{case.get('classname')}::{case.get('name')}"
        cases[key] = None if failure is None else failure.get("message")
    return dict(suite.attrib), cases


GATED = rig_module(
    """
    @pytest.mark.parametrize("case", ["a", "b"])
    @pytest.mark.rig(runs=3)
    def test_a(rig_chat, case):
        pass
    """
)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_failed_gate_is_a_failing_testcase_and_counted_in_the_closing_line(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """Each gate judged is a JUnit testcase named after it (a failed one failing with its
    FAIL line), the budget too; the closing line counts the failed gate apart from the
    tests, and neither `-x`, `--lf` nor the short summary takes it for a failed test."""
    ini(pytester)
    pytester.makepyfile(test_gated=GATED)
    gates = ["--rig-min-pass-rate", "0.5", "--rig-min-pass-rate", "careful=0.97"]
    result = pytester.runpytest_subprocess(
        *("--rig-models", "echo!careful,echo!bold", *gates, "--rig-gate-mode", "strict"),
        *("--rig-max-tokens", "100000", "--junitxml", "out/gate.xml", "-x", "-rA", *workers),
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    fail = (
        "FAIL echo!careful: sample pass rate 100.0% [61.0%-100.0%], needs >= 97.0% "
        "(rig-min-pass-rate, strict)"
    )
    result.stdout.fnmatch_lines([fail, "*= 4 passed, 1 gate failed in *"])
    assert "stopping after" not in result.stdout.str()
    assert "rigging.gates" not in result.stdout.str()  # no FAILED line in the short summary
    suite, cases = junit_cases(pytester.path / "out" / "gate.xml")
    assert (suite["tests"], suite["failures"], suite["errors"]) == ("7", "1", "0")
    assert {k: v for k, v in cases.items() if k.startswith("rigging.gates::")} == {
        "rigging.gates::rig-min-pass-rate[echo!careful]": fail,
        "rigging.gates::rig-min-pass-rate[echo!bold]": None,
        "rigging.gates::rig-max-tokens": None,
    }
    lastfailed = pytester.path / ".pytest_cache" / "v" / "cache" / "lastfailed"
    assert not lastfailed.exists() or "rigging" not in lastfailed.read_text()
    again = pytester.runpytest_subprocess("--rig-models", "echo!careful,echo!bold", "--lf")
    again.stdout.fnmatch_lines(["*= 4 passed in *"])


def test_gates_that_pass_are_passing_testcases_and_a_failed_one_counts_without_junit(
    pytester: pytest.Pytester,
) -> None:
    """Passing gates are passing testcases, not counted in the closing line; failed ones
    are counted with `-p no:junitxml` too; `--collect-only` judges none."""
    ini(pytester)
    pytester.makepyfile(test_gated=GATED)
    models = ["--rig-models", "echo!careful,echo!bold"]
    passing = pytester.runpytest(*models, "--rig-min-pass-rate", "0.5", "--junitxml", "j.xml")
    assert passing.ret == pytest.ExitCode.OK
    passing.stdout.fnmatch_lines(["*= 4 passed in *"])
    suite, cases = junit_cases(pytester.path / "j.xml")
    assert (suite["tests"], suite["failures"]) == ("6", "0")
    assert cases["rigging.gates::rig-min-pass-rate[echo!bold]"] is None
    strict = ["--rig-min-pass-rate", "1", "--rig-gate-mode", "strict"]
    failing = pytester.runpytest(*models, *strict, "-p", "no:junitxml")
    assert failing.ret == pytest.ExitCode.TESTS_FAILED
    failing.stdout.fnmatch_lines(["*= 4 passed, 2 gates failed in *"])
    never = ["--rig-min-pass-rate", "nope=0.5"]  # fails once judged: that model never runs
    collected = pytester.runpytest(*models, *never, "--co", "--junitxml", "co.xml")
    assert collected.ret == pytest.ExitCode.OK  # nothing ran: no gate is judged
    assert junit_cases(pytester.path / "co.xml")[1] == {}


def test_checks_of_one_name_are_told_apart() -> None:
    """Two rows of one model (a cell's, and a judge's at other params) are judged apart:
    two testcases, since JUnit keeps one per name."""
    checks = [
        Check("rig-min-pass-rate[m]", True, "pass m"),
        Check("rig-min-pass-rate[m]", False, "FAIL m"),
        Check("rig-max-tokens", True, "pass"),
        Check("rig-max-tokens", True, "pass"),
    ]
    assert [(c.name, c.line) for c in apart(checks)] == [
        ("rig-min-pass-rate[m]", "pass m"),
        ("rig-min-pass-rate[m#2]", "FAIL m"),
        ("rig-max-tokens", "pass"),
        ("rig-max-tokens#2", "pass"),
    ]


def test_merge_of_shards_equals_one_run(pytester: pytest.Pytester, suite: list[str]) -> None:
    _, whole = run(pytester, *suite)
    _, first = run(pytester, *suite, "-k", "result_style")
    _, second = run(pytester, *suite, "-k", "not result_style")
    shards = [pytester.path / "report-1.json", pytester.path / "report-2.json"]
    merged_path = pytester.path / "merged.json"
    code = rigging_main(["merge", *map(str, shards), "-o", str(merged_path)])
    assert code == 0
    merged = json.loads(merged_path.read_text())
    assert without_timings(merged) == without_timings(whole)
    assert len(merged["items"]) == len(first["items"]) + len(second["items"]) == 20
    assert rigging_main(["merge", *map(str, shards), "--min-parse-rate", "0.9"]) == 1


def test_merge_numbers_the_samples_of_a_version_1_report_from_1(pytester: pytest.Pytester) -> None:
    """A shard's report from before samples were numbered from 1 (version 1, from 0, no
    checks) merges with a new one into one numbering."""
    ini(pytester)
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.rig(runs=2)
            def test_a(rig_chat):
                pass

            @pytest.mark.rig(runs=2)
            def test_b(rig_chat):
                pass
            """
        )
    )
    _, new = run(pytester, "--rig-models", "echo!e", "-k", "test_a")
    _, old = run(pytester, "--rig-models", "echo!e", "-k", "test_b")
    old["version"] = 1
    for chat in old["items"][0]["chats"]:
        chat["sample"] -= 1
        del chat["check"], chat["check_message"]
    (pytester.path / "old.json").write_text(json.dumps(old))
    merged_path = pytester.path / "merged.json"
    shards = [str(pytester.path / "report-0.json"), str(pytester.path / "old.json")]
    assert rigging_main(["merge", *shards, "-o", str(merged_path)]) == 0
    merged = json.loads(merged_path.read_text())
    assert merged["version"] == 2
    samples = {
        i["nodeid"].split("::")[1]: sorted(c["sample"] for c in i["chats"]) for i in merged["items"]
    }
    assert samples == {"test_a[e]": [1, 2], "test_b[e]": [1, 2]}
    assert [c["check"] for c in new["items"][0]["chats"]] == ["passed", "passed"]


def test_shards_run_every_item_once_and_merge_into_the_whole_run(
    pytester: pytest.Pytester, suite: list[str]
) -> None:
    """A CI matrix of two jobs: `--rig-shard 1/2` and `2/2` (one under xdist) run each item
    once, whole test functions each, and `merge` gives the unsharded run's report."""
    _, whole = run(pytester, *suite)
    first_result, first = run(pytester, *suite, "--rig-shard", "1/2")
    _, second = run(pytester, *suite, "--rig-shard", "2/2", "-n", "2")
    # functions of 8, 4, 4 and 4 items: the biggest first, each to the lighter shard
    first_result.stdout.fnmatch_lines(["rigging: shard 1/2: 2 of 4 test functions, 12 of 20 items"])
    ids = [[item["nodeid"] for item in doc["items"]] for doc in (first, second)]
    assert sorted(ids[0] + ids[1]) == sorted(item["nodeid"] for item in whole["items"])
    functions = [{nodeid.split("[")[0] for nodeid in shard} for shard in ids]
    assert functions[0].isdisjoint(functions[1]) and (len(ids[0]), len(ids[1])) == (12, 8)
    shards = [pytester.path / "report-1.json", pytester.path / "report-2.json"]
    merged_path = pytester.path / "merged.json"
    assert rigging_main(["merge", *map(str, shards), "-o", str(merged_path)]) == 0
    assert without_timings(json.loads(merged_path.read_text())) == without_timings(whole)


MOSTLY_ONE_TEST = """
import pytest

@pytest.fixture
def rig_pipeline(rig_generator, case):
    return rig_generator.chat(f"case {case}")

@pytest.mark.parametrize("case", range(40))
@pytest.mark.rig(runs=3, min_pass=2)
def test_big(rig_chat, case):
    assert rig_chat.last.content == f"case {case}"

@pytest.mark.parametrize("case", range(8))
def test_small(rig_chat, case):
    pass
"""

SHUFFLING = """
import os

def pytest_collection_modifyitems(items):
    if os.environ.get("SHUFFLE"):  # another order (a shuffling plugin's, say)
        items.reverse()
"""


def test_a_suite_of_mostly_one_test_splits_evenly_by_cases(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One test of 40 cases and one of 8, on two models: the big test is cut between its
    cases, so the two shards hold 48 items each (not 80 and 16); every item runs in one
    shard only, with its three samples and the other model's item of its case, whatever
    the order each job collects in (the second job's is reversed, under xdist); `merge`
    gives the unsharded run's report."""
    ini(pytester)
    pytester.makeconftest(SHUFFLING)
    pytester.makepyfile(MOSTLY_ONE_TEST)
    suite = ["--rig-models", "echo!a,echo!b", "-p", "no:cacheprovider"]
    _, whole = run(pytester, *suite)
    first_result, first = run(pytester, *suite, "--rig-shard", "1/2")
    monkeypatch.setenv("SHUFFLE", "1")
    _, second = run(pytester, *suite, "--rig-shard", "2/2", "-n", "2")
    first_result.stdout.fnmatch_lines(
        [
            "rigging: shard 1/2: 1 of 2 test functions (1 of them in part, cut by cases), "
            "48 of 96 items"
        ]
    )
    shards = [{item["nodeid"]: item for item in doc["items"]} for doc in (first, second)]
    assert [len(shard) for shard in shards] == [48, 48]
    assert shards[0].keys().isdisjoint(shards[1].keys())
    assert shards[0].keys() | shards[1].keys() == {item["nodeid"] for item in whole["items"]}
    for shard in shards:
        cases = {nodeid.rsplit("-", 1)[0] for nodeid in shard}
        assert {f"{case}-{m}]" for case in cases for m in "ab"} == shard.keys()
        for nodeid, item in shard.items():
            assert item["outcome"] == "passed"
            assert len(item["chats"]) == (3 if "test_big" in nodeid else 1)
    paths = [pytester.path / "report-1.json", pytester.path / "report-2.json"]
    merged_path = pytester.path / "merged.json"
    assert rigging_main(["merge", *map(str, paths), "-o", str(merged_path)]) == 0
    assert without_timings(json.loads(merged_path.read_text())) == without_timings(whole)
    shown = " ".join(pytester.runpytest("--help").stdout.str().split())
    assert "one bigger than a slice's share is cut by cases" in shown


LATER_PARAMETER = """
import pytest

@pytest.hookimpl(trylast=True)  # after the plugin's: the cell's id is no longer last
def pytest_generate_tests(metafunc):
    if "lang" in metafunc.fixturenames:
        metafunc.parametrize("lang", ["en", "fr"])
"""


def test_a_case_stays_whole_when_a_later_parameter_follows_its_cell(
    pytester: pytest.Pytester,
) -> None:
    """A conftest that parametrizes after the plugin puts its id after the cell's
    (`test_big[7-a-en]`): the case (`7`, `en`) still keeps both models in one shard, in a
    folder whose name holds a bracket too."""
    ini(pytester)
    pytester.makeconftest(LATER_PARAMETER)
    folder = pytester.mkdir("cases[1]")
    (folder / "test_big.py").write_text(
        textwrap.dedent(
            """
            import pytest

            @pytest.mark.parametrize("case", range(9))  # 36 items: 18 a shard, mid-number
            def test_big(rig_chat, case, lang):
                pass
            """
        )
    )
    suite = ["--rig-models", "echo!a,echo!b", "-p", "no:cacheprovider"]
    shards = [run(pytester, *suite, "--rig-shard", f"{k}/2")[1]["items"] for k in (1, 2)]
    ids = [{item["nodeid"].split("::test_big[")[1] for item in items} for items in shards]
    assert "7-a-en]" in ids[0] | ids[1]  # the cell's id is in the middle
    assert sorted(map(len, ids)) == [18, 18]
    for held in ids:  # each case's item on model a is in the shard of its item on b
        assert {i.replace("-a-", "-b-") for i in held if "-a-" in i} == {
            i for i in held if "-b-" in i
        }


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_shard_with_nothing_to_run_passes(pytester: pytest.Pytester, workers: list[str]) -> None:
    """More shards than test functions: the extra jobs pass (pytest would exit 5, "no tests
    collected", and fail the CI job); a selection that is empty anyway still exits 5."""
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    result = pytester.runpytest_subprocess("--rig-models", "echo!a", "--rig-shard", "2/3", *workers)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(deselected=1 if not workers else 0)
    if not workers:
        result.stdout.fnmatch_lines(["rigging: shard 2/3: 0 of 1 test functions, 0 of 1 items"])
        # an empty selection (the same run with or without workers: made once)
        empty = pytester.runpytest_subprocess(
            "--rig-models", "echo!a", "--rig-shard", "1/3", "-k", "x"
        )
        assert empty.ret == pytest.ExitCode.NO_TESTS_COLLECTED


@pytest.mark.parametrize("value", ["0/2", "3/2", "1", "a/b", "1/0"])
def test_a_bad_shard_is_a_usage_error_naming_it(pytester: pytest.Pytester, value: str) -> None:
    ini(pytester)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--rig-shard", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line] == [
        f"ERROR: --rig-shard: expected K/N with 1 <= K <= N (the K-th of N shards), got {value!r}"
    ]


def test_merge_rejects_what_is_not_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "other.json").write_text('{"hello": 1}')
    assert rigging_main(["merge", str(tmp_path / "other.json")]) == 2
    assert "other.json is not a pytest-rigging report (version 1 or 2)" in capsys.readouterr().err
    assert rigging_main(["merge", str(tmp_path / "missing.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert rigging_main(["merge", str(tmp_path / "other.json"), "--min-pass-rate", "x"]) == 2


def test_merge_tells_bad_input_and_output_from_a_failed_gate(
    pytester: pytest.Pytester, suite: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 with one line for a report with a missing or ill-typed field, or an output it
    cannot write; 1 stays for a failed gate."""
    pytester.runpytest_subprocess(*suite, "--rig-report", "shard.json", "-k", "never")
    doc = json.loads((pytester.path / "shard.json").read_text())
    del doc["items"][0]["model"]
    (pytester.path / "missing.json").write_text(json.dumps(doc))
    doc["items"][0]["model"], doc["items"][1]["samples"] = "m", "3 of 3"
    (pytester.path / "typed.json").write_text(json.dumps(doc))
    for name, message in [
        (
            "missing.json",
            "missing.json is not a valid pytest-rigging report: items.0.model: Field required",
        ),
        ("typed.json", "typed.json is not a valid pytest-rigging report: items.1.samples: "),
    ]:
        assert rigging_main(["merge", str(pytester.path / name)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    blocked = pytester.path / "file"
    blocked.write_text("")
    shard = str(pytester.path / "shard.json")
    assert rigging_main(["merge", shard, "-o", f"{blocked}/x.json"]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot write {blocked}/x.json: ")
    assert rigging_main(["merge", shard, "--min-parse-rate", "1"]) == 1


def test_unwritable_step_summary_is_a_warning(
    pytester: pytest.Pytester, suite: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = pytester.path / "file"
    blocked.write_text("")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(blocked / "summary.md"))
    report = f"{blocked}/r.json"
    result = pytester.runpytest_subprocess(*suite, "-k", "good", "--rig-report", report)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*RiggingWarning: cannot write --rig-report */file/r.json: *",
            "*RiggingWarning: cannot append to GITHUB_STEP_SUMMARY */file/summary.md: *",
        ]
    )


def test_junit_properties(pytester: pytest.Pytester, suite: list[str]) -> None:
    pytester.runpytest_subprocess(
        *suite, "--junitxml=junit.xml", "-k", "recovering and result_style and a"
    )
    xml = (pytester.path / "junit.xml").read_text()
    for name, value in [
        ("rig_model", "scripted!recovering.toml"),
        ("rig_params", "{}"),
        ("rig_samples", "3/3"),
        ("rig_first_try", "0"),
        ("rig_recovered", "3"),
        ("rig_exhausted", "0"),
        ("rig_error", "0"),
    ]:
        assert f'<property name="{name}" value="{value}" />' in xml


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_junit_gives_each_item_of_a_group_its_own_time(
    pytester: pytest.Pytester, llm_server: LLMServer, workers: list[str]
) -> None:
    """A test function's samples start together; each item's JUnit time is its own
    samples' (first call out to last answer in), not the group's on the first item to ask
    and next to nothing on the rest: the slow case's time is on the slow case alone."""
    llm_server.add_rule("slow", Reply(content="ok", delay=1.5))
    llm_server.add_rule(".", Reply(content="ok", delay=0.2))
    ini(pytester)
    pytester.makepyfile(
        test_timed="""
        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator, case):
            return rig_generator.chat(f"case {case}")

        @pytest.mark.parametrize("case", ["fast1", "fast2", "slow", "fast3"])
        @pytest.mark.rig(runs=3, min_pass=2)
        def test_a(rig_chat, case):
            pass
        """
    )
    result = pytester.runpytest_subprocess(
        "--rig-models", "openai!m", "--junitxml", "j.xml", "-p", "no:randomly", *workers
    )
    result.assert_outcomes(passed=4)
    times = junit_times(pytester.path / "j.xml")
    fast = [times[f"test_a[fast{n}-m]"] for n in (1, 2, 3)]
    assert times["test_a[slow-m]"] >= 1.5, times
    assert min(fast) >= 0.2, times
    assert max(fast) < times["test_a[slow-m]"], times  # not the group's time on fast1


def junit_times(path: Path) -> dict[str, float]:
    """Each testcase's time in a JUnit file, by name."""
    suite = ElementTree.parse(path).getroot()
    return {case.get("name", ""): float(case.get("time", "0")) for case in suite.iter("testcase")}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_junit_gives_each_replayed_item_its_own_time(
    pytester: pytest.Pytester, llm_server: LLMServer, workers: list[str]
) -> None:
    """Replayed from a cassette (no call sent, no recorded latency waited), each item's
    JUnit time is still its own samples': what its pipeline does with the recorded answers
    (here a step that takes 1 s on the slow case), not next to nothing for every item."""
    llm_server.add_rule(".", Reply(content="ok", delay=0.05))
    ini(pytester)
    pytester.makepyfile(
        test_timed="""
        import asyncio
        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator, case):
            async def work(chat):
                await asyncio.sleep(1.0 if case == "slow" else 0.1)

            return rig_generator.chat(f"case {case}").then(work)

        @pytest.mark.parametrize("case", ["fast1", "fast2", "slow", "fast3"])
        @pytest.mark.rig(runs=3, min_pass=2)
        def test_a(rig_chat, case):
            pass
        """
    )
    run = ("--rig-models", "openai!m", "--junitxml", "j.xml", "-p", "no:randomly", *workers)
    pytester.runpytest_subprocess(*run, "--rig-record", "once").assert_outcomes(passed=4)
    llm_server.reset()
    pytester.runpytest_subprocess(*run, "--rig-record", "none").assert_outcomes(passed=4)
    assert not llm_server.requests  # all replayed
    times = junit_times(pytester.path / "j.xml")
    fast = [times[f"test_a[fast{n}-m]"] for n in (1, 2, 3)]
    assert times["test_a[slow-m]"] >= 1.0, times
    assert min(fast) >= 0.1, times
    assert max(fast) < times["test_a[slow-m]"], times


def test_step_summary(
    pytester: pytest.Pytester, suite: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = pytester.path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    pytester.runpytest(*suite, "--rig-min-parse-rate", "0.5")
    text = summary.read_text()
    assert text.startswith("earlier step\n## pytest-rigging: parse success per model")
    assert re.search(r"^\| good\s+\| 10\s+\| 10 ", text, re.M)
    assert "**FAIL** scripted!never.toml: parse rate 0.0%" in text


@pytest.mark.parametrize("xdist", [[], ["-n", "1"]], ids=["serial", "xdist"])
def test_interrupted_run_still_writes_what_finished(
    pytester: pytest.Pytester, xdist: list[str]
) -> None:
    ini(pytester)
    pytester.makepyfile(INTERRUPTED_ON_THIRD)
    result = pytester.runpytest_subprocess(
        "--rig-report=report.json", "--rig-html=page.html", "-p", "no:randomly", *xdist
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED
    doc = json.loads((pytester.path / "report.json").read_text())
    shown = read_data(pytester.path / "page.html")
    assert [i["status"] for i in shown["items"]] == ["passed", "interrupted", "passed"]
    assert shown["run"]["settings"]["interrupted"] is True
    # "three" never reported, but its sample had finished: it is kept, as interrupted
    assert [(i["nodeid"].split("[")[1], i["outcome"], len(i["chats"])) for i in doc["items"]] == [
        ("one-echo]", "passed", 1),
        ("two-echo]", "passed", 1),
        ("three-echo]", "interrupted", 1),
    ]
    assert doc["settings"]["interrupted"] is True
    assert doc["models"][0]["chats"] == 3
    assert "rigging: the run was interrupted: the figures hold what finished" in result.stdout.str()


def test_cost_per_model_from_litellms_prices(
    pytester: pytest.Pytester, llm_server: LLMServer, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tokens at the model's prices in litellm's bundled data (read offline), per model in
    the table, the JSON and the step summary; `-` for a model without a price; `merge`
    recomputes it."""
    from pytest_rigging.generator._litellm_data import token_prices

    summary = pytester.path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    monkeypatch.setenv("COLUMNS", "250")  # the table's every column, the cost among them
    llm_server.add_rule(".", Reply(content="fine", prompt_tokens=1000, completion_tokens=200))
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    result, doc = run(pytester, "--rig-models", f"{on(route, 'openai/gpt-4o-mini')},echo!e")
    result.assert_outcomes(passed=2)
    prices = token_prices("gpt-4o-mini")
    assert prices is not None and prices[0] > 0
    expected = 1000 * prices[0] + 200 * prices[1]
    rows = {row["label"]: row for row in doc["models"]}
    assert rows["gpt-4o-mini"]["cost"] == pytest.approx(expected)
    assert rows["e"]["cost"] is None
    shown = f"${expected:,.4f}"
    assert any(shown in line and "gpt-4o-mini" in line for line in result.stdout.lines)
    echo_line = next(line for line in result.stdout.lines if line.startswith("e "))
    assert " - " in echo_line and "$" not in echo_line
    assert shown in summary.read_text()
    merged = pytester.path / "merged.json"
    assert rigging_main(["merge", str(pytester.path / "report-0.json"), "-o", str(merged)]) == 0
    merged_rows = {row["label"]: row for row in json.loads(merged.read_text())["models"]}
    assert merged_rows["gpt-4o-mini"]["cost"] == pytest.approx(expected)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_spent_budget_starts_no_call_skips_the_rest_and_fails_the_run(
    pytester: pytest.Pytester, llm_server: LLMServer, workers: list[str]
) -> None:
    """`--rig-max-tokens`: once spent, no request reaches the server, the items not yet run
    are skipped for budget, and the run fails with a line naming the budget. One call at a
    time (per worker): serially, calls of 30 tokens against 70 allowed make exactly 3
    requests; under `-n 2` the workers share the run's budget through the run's folder, so
    the run stops after 3 requests plus what was in flight or not yet heard of (each worker
    hears of the other's spending within a few ms): 3 to 5, never 10."""
    llm_server.add_rule(".", Reply(content="fine", prompt_tokens=20, completion_tokens=10))
    ini(pytester)
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.parametrize("case", range(10))
            def test_a(rig_chat, case):
                pass
            """
        )
    )
    args = ["--rig-models", "openai!m", "--rig-max-tokens", "70", "--rig-concurrency", "2"]
    result = pytester.runpytest_subprocess(
        *args, "-rs", "--junitxml", "j.xml", *(workers or ["--rig-concurrency=1"])
    )
    calls = len(llm_server.requests)
    assert calls == 3 if not workers else 3 <= calls <= 5
    result.assert_outcomes(passed=calls, skipped=10 - calls)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    spent = (
        f"FAIL rigging budget --rig-max-tokens 70 spent: the run used {30 * calls} tokens; "
        f"{10 - calls} items skipped for budget"
    )
    result.stdout.fnmatch_lines(
        [
            spent,
            "*rigging: budget spent (--rig-max-tokens 70*tokens used): no new model call starts",
            f"*= {calls} passed, {10 - calls} skipped, 1 gate failed in *",
        ]
    )
    suite, cases = junit_cases(pytester.path / "j.xml")
    assert (suite["tests"], suite["failures"]) == ("11", "1")
    assert cases["rigging.gates::rig-max-tokens"] == spent


def test_xdist_workers_share_the_runs_budget(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """The budget is the run's, not an even share per worker: a function kept whole on one
    worker (`xdist_group` under `--dist loadgroup`) may spend all of it."""
    llm_server.add_rule(".", Reply(content="fine", prompt_tokens=20, completion_tokens=10))
    ini(pytester)
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.xdist_group("one")
            @pytest.mark.parametrize("case", range(10))
            def test_a(rig_chat, case):
                pass

            def test_plain():
                pass
            """
        )
    )
    args = ["--rig-models", "openai!m", "--rig-max-tokens", "70", "--rig-concurrency", "2"]
    result = pytester.runpytest_subprocess(*args, "-n", "2", "--dist", "loadgroup")
    assert len(llm_server.requests) == 3  # an even share (35) would have stopped at 2
    result.assert_outcomes(passed=4, skipped=7)


def test_a_spent_budget_skips_free_form_tests_too(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """A test that runs its pipeline itself (sync through `rig_run`, or async) is skipped
    for budget when its call would start once the budget is spent."""
    llm_server.add_rule(".", Reply(content="fine", prompt_tokens=20, completion_tokens=10))
    ini(pytester)
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.parametrize("case", range(3))
            def test_sync(rig_pipeline, rig_run, case):
                rig_run(rig_pipeline.run())

            @pytest.mark.parametrize("case", range(3))
            async def test_async(rig_pipeline, case):
                await rig_pipeline.run()
            """
        )
    )
    result = pytester.runpytest("--rig-models", "openai!m", "--rig-max-tokens", "50")
    result.assert_outcomes(passed=2, skipped=4)
    assert len(llm_server.requests) == 2 and result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_spent_budget_skips_a_free_form_item_with_several_runs(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """`rig(runs=3)` on a free-form test: a refused call ends the item (skipped), it doesn't
    count as a failed sample."""
    llm_server.add_rule(".", Reply(content="fine", prompt_tokens=20, completion_tokens=10))
    ini(pytester)
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.rig(runs=3)
            def test_free(rig_pipeline, rig_run):
                rig_run(rig_pipeline.run())
            """
        )
    )
    result = pytester.runpytest("--rig-models", "openai!m", "--rig-max-tokens", "50", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*rigging: budget spent (--rig-max-tokens 50*"])
    assert len(llm_server.requests) == 2


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--rig-max-tokens", "0", "expected a whole number of tokens above 0, got '0'"),
        ("--rig-max-tokens", "1.5", "expected a whole number of tokens above 0, got '1.5'"),
        ("--rig-max-cost", "-1", "expected an amount of USD above 0, got '-1'"),
        ("--rig-max-cost", "nan", "expected an amount of USD above 0, got 'nan'"),
    ],
)
def test_a_bad_budget_is_a_usage_error_naming_it(
    pytester: pytest.Pytester, option: str, value: str, message: str
) -> None:
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    result = pytester.runpytest("--rig-models", "echo!a", option, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line] == [f"ERROR: {option}: {message}"]


BASELINE_SUITE = """
import pytest

@pytest.fixture
def rig_pipeline(rig_generator, case):
    return rig_generator.chat(f"case {case}")

@pytest.mark.parametrize("case", ["a", "b", "c", "d"])
def test_case(rig_chat, case):
    assert rig_chat.last.content == "yes"
"""


def answering(pytester: pytest.Pytester, no: str) -> list[str]:
    """The model (always the same identifier) answers "no" to the cases in `no`."""
    rules = f'default = "yes"\n\n[[rules]]\nmatch = "case [{no}]"\nreply = "no"\n'
    (pytester.path / "model.toml").write_text(rules)
    return ["--rig-models", "scripted!model.toml", "-p", "no:cacheprovider", "-rfEx"]


def test_a_baseline_tells_known_failures_from_flips(pytester: pytest.Pytester) -> None:
    """Saved with one failing case: the same run against it passes and lists that case as a
    known failure (xfail); a model that fails one more case shows it flipped, failing the
    run."""
    ini(pytester)
    pytester.makepyfile(test_cases=BASELINE_SUITE)
    saved = pytester.runpytest(*answering(pytester, "d"), "--rig-save-baseline", "base.json")
    saved.assert_outcomes(passed=3, failed=1)
    base = json.loads((pytester.path / "base.json").read_text())
    assert base["format"] == "pytest-rigging-baseline" and base["version"] == 1
    assert {k.split("[")[1]: v["outcome"] for k, v in base["items"].items()} == {
        "a-model]": "passed", "b-model]": "passed", "c-model]": "passed", "d-model]": "failed"
    }  # fmt: skip
    same = pytester.runpytest(*answering(pytester, "d"), "--rig-baseline", "base.json")
    same.assert_outcomes(passed=3, xfailed=1)
    assert same.ret == pytest.ExitCode.OK
    same.stdout.fnmatch_lines(
        [
            "against base.json: 0 flipped to failing, 0 fixed, 1 known failures, 0 rates moved "
            "beyond noise; 0 new items, 0 of its items not run",
            "  known failures (fail in both): test_cases.py::test_case[d-model]",
            "XFAIL test_cases.py::test_case[d-model] - rigging: known failure (it failed "
            "in base.json too)",
        ]
    )
    subset = pytester.runpytest(
        *answering(pytester, "d"), "--rig-baseline", "base.json",
        "--deselect", "test_cases.py::test_case[d-model]",
    )  # fmt: skip
    subset.stdout.fnmatch_lines(["against base.json: *; 0 new items, 1 of its items not run"])
    worse = pytester.runpytest(*answering(pytester, "cd"), "--rig-baseline", "base.json", "-n", "2")
    worse.assert_outcomes(passed=2, failed=1, xfailed=1)
    assert worse.ret == pytest.ExitCode.TESTS_FAILED
    worse.stdout.fnmatch_lines(
        [
            "against base.json: 1 flipped to failing, 0 fixed, 1 known failures*",
            "  flipped (passed there, fail here): test_cases.py::test_case[c-model]",
        ]
    )


def capitals(capital: str, extra: str = "") -> str:
    """Twelve cases whose ids are made of their values (`c00-{capital}`...), and one other
    test function."""
    cases = ", ".join(f"('c{i:02}', '{capital}')" for i in range(12))
    return f"""
import pytest

@pytest.fixture
def rig_pipeline(rig_generator, country):
    return rig_generator.chat(f"case {{country}}")

@pytest.mark.parametrize(("country", "capital"), [{cases}{extra}])
def test_capital(rig_chat, country, capital):
    assert rig_chat.last.content == "yes"

@pytest.mark.parametrize("country", ["other"])
def test_other(rig_chat, country):
    pass
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_baseline_names_new_and_missing_items_and_pairs_edited_cases(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """Every case's expected value edited: the comparison names the first 10 new items and
    the first 10 not run, counts the rest, and says that the new ones pair with those not
    run by test and cell (an item of another test not run pairs with none), suggesting
    stable ids. A case added while another test's item is deselected pairs with nothing."""
    ini(pytester)
    pytester.makepyfile(test_capitals=capitals("x"))
    pytester.runpytest(*answering(pytester, "-"), "--rig-save-baseline", "base.json")
    pytester.makepyfile(test_capitals=capitals("y"))
    edited = pytester.runpytest(
        *answering(pytester, "-"), "--rig-baseline", "base.json", "-k", "not test_other", *workers
    )
    edited.assert_outcomes(passed=12)
    first_ten = [f"test_capitals.py::test_capital[c{i:02}" for i in range(10)]
    edited.stdout.fnmatch_lines(
        [
            "against base.json: 0 flipped to failing, 0 fixed, 0 known failures, 0 rates moved "
            "beyond noise; 12 new items, 13 of its items not run",
            *(f"  new (not in the baseline): {node}-y-model]" for node in first_ten),
            "  new (not in the baseline): ... and 2 more",
            *(f"  not run (in the baseline, not here): {node}-x-model]" for node in first_ten),
            "  not run (in the baseline, not here): ... and 3 more",
            "  12 new items pair with 12 not run by test and cell: most likely their ids "
            "changed (a parametrized case's id is made of its values, so an edited value "
            "starts a new history)",
            "  give each case a stable id to keep its history: pytest.param(..., id=...), "
            "ids=... on parametrize, or cases from a file with "
            "@pytest.mark.rig_cases(FILE, id=FIELD)",
        ],
        consecutive=True,
    )
    pytester.makepyfile(test_capitals=capitals("x", ", ('c12', 'x')"))
    added = pytester.runpytest(
        *answering(pytester, "-"), "--rig-baseline", "base.json", "-k", "not test_other", *workers
    )
    added.stdout.fnmatch_lines(
        [
            "against base.json: *; 1 new items, 1 of its items not run",
            "  new (not in the baseline): test_capitals.py::test_capital[c12-x-model]",
            "  not run (in the baseline, not here): test_capitals.py::test_other[other-model]",
        ],
        consecutive=True,
    )
    assert "pair with" not in added.stdout.str()


CHECKED_SUITE = """
import os
import pytest

@pytest.fixture
def rig_pipeline(rig_generator, case):
    return rig_generator.chat(f"case {case}")

@pytest.mark.rig(runs=5, min_pass=3)
@pytest.mark.parametrize("case", ["a", "b"])
def test_several(rig_chat, case):
    said = rig_chat.last.content
    assert said == "yes", f"case {case} said {said} to {os.environ['RIG_CHECK_TOKEN']}"

@pytest.mark.parametrize("case", ["c"])
def test_one(rig_chat, case):
    assert rig_chat.last.content == "yes"

@pytest.mark.parametrize("case", ["d"])
def test_together(rig_chats, case):
    assert len(rig_chats) == 1

@pytest.mark.parametrize("case", ["e"])
async def test_free(rig_pipeline, case):
    chat = await rig_pipeline.run()
    assert chat.last.content == "yes"

@pytest.mark.rig(runs=2, min_pass=1)
@pytest.mark.parametrize("case", ["f"])
def test_judge_down(rig_chat, case):
    from pytest_rigging.error import GenerationError

    raise GenerationError("the judge model is down")
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_each_sample_records_its_check_and_samples_count_from_one(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    """Each chat of the JSON report says what the test's checks made of its sample, and why
    they failed (first lines, secrets masked); samples are numbered from 1 there as in the
    terminal's "first failing sample (#n)"; a `rig_chats` test's chats have no check of
    their own."""
    monkeypatch.setenv("RIG_CHECK_TOKEN", "check-secret-value-4242")
    ini(pytester, "asyncio_mode = auto")
    pytester.makepyfile(test_checked=CHECKED_SUITE)
    (pytester.path / "model.toml").write_text(
        '[[rules]]\nmatch = "case a"\nreplies = ["yes", "no", "yes", "no", "yes"]\n\n'
        '[[rules]]\nmatch = "case b"\nreplies = ["no", "yes", "no", "no", "yes"]\n\n'
        '[[rules]]\nmatch = "case [ce]"\nreply = "no"\n\n'
        '[[rules]]\nmatch = "."\nreply = "yes"\n'
    )
    result = pytester.runpytest(
        "--rig-models", "scripted!model.toml", "--rig-report", "r.json", "-p", "no:randomly",
        "--junitxml", "junit.xml", *workers,
    )  # fmt: skip
    result.assert_outcomes(passed=2, failed=3, errors=1)
    result.stdout.fnmatch_lines(["*2/5 samples passed, needed 3", "*first failing sample (#1):"])
    doc = json.loads((pytester.path / "r.json").read_text())
    assert doc["version"] == 2
    items = {item["nodeid"].split("::")[1].split("-")[0]: item for item in doc["items"]}
    for case in "ab":
        chats = sorted(items[f"test_several[{case}"]["chats"], key=lambda c: c["sample"])
        assert [c["sample"] for c in chats] == [1, 2, 3, 4, 5]
        failed = ",".join(str(c["sample"]) for c in chats if c["check"] == "failed")
        properties = junit_properties(pytester.path / "junit.xml", f"test_several[{case}-model]")
        assert properties["rig_failed_samples"] == failed  # the same numbers as the JSON
        for chat in chats:
            said = chat["conversation"][-1]["content"]
            if said == "yes":
                assert (chat["check"], chat["check_message"]) == ("passed", None)
                continue
            assert chat["check"] == "failed"
            assert chat["check_message"].splitlines()[:2] == [
                f"AssertionError: case {case} said no to ***",
                "assert 'no' == 'yes'",
            ]
    [one] = items["test_one[c"]["chats"]
    assert (one["sample"], one["check"]) == (1, "failed")
    assert one["check_message"].startswith("AssertionError: assert 'no' == 'yes'")
    [together] = items["test_together[d"]["chats"]
    assert (together["sample"], together["check"], together["check_message"]) == (1, None, None)
    [free] = items["test_free[e"]["chats"]
    assert (free["sample"], free["check"]) == (None, "failed")
    down = items["test_judge_down[f"]["chats"]
    assert sorted((c["sample"], c["check"], c["check_message"]) for c in down) == [
        (number, "error", "GenerationError: the judge model is down") for number in (1, 2)
    ]
    assert "check-secret-value-4242" not in (pytester.path / "r.json").read_text()


FREE_FORM_SYNC = """
import pytest

@pytest.fixture
def rig_pipeline(rig_generator):
    return rig_generator.chat("q")

@pytest.mark.rig(runs=3, min_pass=2)
def test_free(rig_pipeline, rig_run):
    chat = rig_run(rig_pipeline.run())
    assert chat.last.content == "yes", "sample said no"
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_free_form_tests_chats_are_its_samples_with_their_checks(
    pytester: pytest.Pytester, workers: list[str]
) -> None:
    """A sync free-form test with `runs=3` runs its body once per sample: the chats each
    body ran are that sample's (numbered from 1), with its check, in the JSON report and
    JUnit's failed samples."""
    ini(pytester)
    pytester.makepyfile(test_free=FREE_FORM_SYNC)
    (pytester.path / "model.toml").write_text(
        '[[rules]]\nmatch = "."\nreplies = ["yes", "no", "yes"]\n'
    )
    result = pytester.runpytest(
        "--rig-models", "scripted!model.toml", "--rig-report", "r.json", "--junitxml", "j.xml",
        *workers,
    )  # fmt: skip
    result.assert_outcomes(passed=1)
    [item] = json.loads((pytester.path / "r.json").read_text())["items"]
    assert item["samples"] == [2, 3]
    shown = [
        (c["sample"], c["conversation"][-1]["content"], c["check"], c["check_message"])
        for c in sorted(item["chats"], key=lambda c: c["sample"])
    ]
    assert [chat[:3] for chat in shown] == [
        (1, "yes", "passed"),
        (2, "no", "failed"),
        (3, "yes", "passed"),
    ]
    assert shown[0][3] is None and shown[2][3] is None
    assert shown[1][3].startswith("AssertionError: sample said no\nassert 'no' == 'yes'")
    assert junit_properties(pytester.path / "j.xml")["rig_failed_samples"] == "2"


def test_a_failing_sample_is_named_by_its_number_past_an_errored_one(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    """Sample 1's call fails (never judged, no check): the first failing sample is #2, in
    the terminal as in the JSON."""
    ini(pytester)
    pytester.makepyfile(
        rig_module(
            """
            @pytest.mark.rig(runs=3, min_pass=2)
            def test_a(rig_chat):
                assert rig_chat.last.content == "nope"
            """
        )
    )
    llm_server.fail_next(1, status=500, model="m")
    result, doc = run(pytester, "--rig-models", "openai/m,max_retries=0", "--rig-concurrency", "1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*0/2 samples passed, needed 2", "*first failing sample (#2):"])
    chats = sorted(doc["items"][0]["chats"], key=lambda c: c["sample"])
    assert [(c["sample"], c["error_kind"], c["check"]) for c in chats] == [
        (1, "infrastructure", None),
        (2, None, "failed"),
        (3, None, "failed"),
    ]


def test_fail_on_regression_judges_rates_beyond_noise(pytester: pytest.Pytester) -> None:
    """A pass rate that dropped beyond noise (95% intervals apart) fails the run with
    `--rig-fail-on-regression`, even with every item's failure known; without the flag it
    is listed only."""
    ini(pytester)
    pytester.makepyfile(
        test_cases=BASELINE_SUITE.replace(
            "def test_case", "@pytest.mark.rig(runs=10, min_pass=0)\ndef test_case"
        )
    )
    pytester.runpytest(*answering(pytester, "d"), "--rig-save-baseline", "base.json")
    worse = [*answering(pytester, "abcd"), "--rig-baseline", "base.json"]
    listed = pytester.runpytest(*worse)
    assert listed.ret == pytest.ExitCode.OK
    listed.stdout.re_match_lines([r"  dropped: model pass rate 75\.0% \[.*\] -> 0\.0% \[0\.0%-"])
    judged = pytester.runpytest(*worse, "--rig-fail-on-regression", "--junitxml", "j.xml")
    assert judged.ret == pytest.ExitCode.TESTS_FAILED
    dropped = (
        "FAIL model: pass rate dropped beyond noise since the baseline (--rig-fail-on-regression)"
    )
    judged.stdout.fnmatch_lines([dropped, "*= 4 passed, 1 gate failed in *"])
    suite, cases = junit_cases(pytester.path / "j.xml")
    assert (suite["tests"], suite["failures"]) == ("5", "1")
    assert cases["rigging.gates::rig-fail-on-regression[model]"] == dropped


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "base.json is not JSON: not a pytest-rigging baseline"),
        (
            '{"version": 1}',
            "base.json is not a pytest-rigging baseline (one written by --rig-save-baseline)",
        ),
        (
            '{"format": "pytest-rigging-baseline", "version": 9, "items": {}, "models": {}}',
            "base.json is a baseline of version 9; this version of pytest-rigging reads version 1: "
            "save it again with --rig-save-baseline",
        ),
    ],
)
def test_a_baseline_of_another_kind_is_a_usage_error_naming_the_file(
    pytester: pytest.Pytester, content: str, message: str
) -> None:
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    (pytester.path / "base.json").write_text(content)
    result = pytester.runpytest("--rig-baseline", "base.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert [line for line in result.stderr.lines if line] == [f"ERROR: --rig-baseline: {message}"]


def test_secrets_stay_out_of_reports(
    pytester: pytest.Pytester, llm_server: LLMServer, route: str
) -> None:
    key = "sk-test-report-key-777777777777"
    ini(pytester)
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator):
            return rig_generator.chat("my key is {key}")

        def test_a(rig_chat):
            pass
        """
    )
    result = pytester.runpytest(
        "--rig-models",
        on(route, f"openai/m,api_key={key}"),
        "--rig-report=r.json",
        "--rig-html=p.html",
        "--junitxml=j.xml",
        "-v",
    )
    result.assert_outcomes(passed=1)
    assert llm_server.requests[0].headers["authorization"] == f"Bearer {key}"
    for text in (
        result.stdout.str(),
        (pytester.path / "r.json").read_text(),
        (pytester.path / "p.html").read_text(),
        (pytester.path / "j.xml").read_text(),
    ):
        assert key not in text
    assert "my key is ***" in (pytester.path / "r.json").read_text()
    assert "my key is ***" in (pytester.path / "p.html").read_text()


def test_engine_loop_is_stopped_after_the_run(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    pytester.runpytest().assert_outcomes(passed=1)
    assert not [t for t in threading.enumerate() if t.name == "pytest-rigging-loop"]
    assert sys.modules.get("pytest_rigging.plugin") is not None


def test_a_crashed_worker_loses_only_its_own_items(pytester: pytest.Pytester) -> None:
    """A worker that dies mid-run takes only its in-flight item; the figures of every
    item reported before and after it reach the table and the JSON."""
    ini(pytester)
    pytester.makepyfile(
        """
        import os
        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator, case):
            return rig_generator.chat(f"case {case}")

        @pytest.mark.parametrize("case", ["a", "b", "c"])
        def test_fine(rig_chat, case):
            assert rig_chat.last.content == f"case {case}"

        def test_crash(rig_model):
            os._exit(3)
        """
    )
    result = pytester.runpytest_subprocess(
        "-n", "2", "--rig-report=r.json", "-p", "no:cacheprovider"
    )
    # the crash is reported once, not retried: an error, lost with its worker
    result.assert_outcomes(passed=3, errors=1)
    assert "crashed while running" in result.stdout.str()
    doc = json.loads((pytester.path / "r.json").read_text())
    assert sorted(item["nodeid"].split("::")[1] for item in doc["items"]) == [
        "test_crash[echo]",
        *(f"test_fine[{case}-echo]" for case in "abc"),
    ]
    [lost] = [item for item in doc["items"] if "test_crash" in item["nodeid"]]
    assert lost["outcome"] == "error" and re.fullmatch(
        r"lost with xdist worker gw\d, which crashed", lost["lost"]
    )
    model = doc["models"][0]
    assert (model["chats"], model["items_passed"], model["items_errored"]) == (3, 3, 1)


def test_free_form_infrastructure_errors_are_not_judged(
    pytester: pytest.Pytester, llm_server: LLMServer
) -> None:
    ini(pytester)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.rig(runs=2, min_pass=1)
        async def test_free(rig_generator):
            chat = await rig_generator.chat("hi").run()
            assert chat.last.content == "hi"
        """
    )
    llm_server.fail_next(100, status=500, model="bad")
    result, doc = run(
        pytester, "--rig-models", "openai/bad,max_retries=0", "--rig-min-pass-rate", "0.5"
    )
    [row] = doc["models"]
    assert (row["samples_passed"], row["samples_total"], row["pass_rate"]) == (0, 0, None)
    assert (row["error"], row["items_errored"]) == (2, 1)
    # nothing was judged: a release must not pass its gate on no evidence
    message = (
        "openai/bad,max_retries=0: no sample pass rate to judge (all 2 of its chats errored), "
        "needs >= 50.0% (rig-min-pass-rate, point)"
    )
    assert [(g["passed"], g["value"], g["message"]) for g in doc["gates"]] == [
        (False, None, message)
    ]
    assert f"FAIL {message}" in result.stdout.lines


def test_merge_keeps_shards_whose_short_ids_coincide(pytester: pytest.Pytester) -> None:
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    (pytester.path / "sub").mkdir()
    for path in ("rules.toml", "sub/rules.toml"):
        (pytester.path / path).write_text('default = "y"\n')
    _, one = run(pytester, "--rig-models", "scripted!rules.toml")
    _, two = run(pytester, "--rig-models", "scripted!sub/rules.toml")
    assert one["items"][0]["nodeid"] == two["items"][0]["nodeid"]
    shards = [str(pytester.path / f"report-{i}.json") for i in (0, 1)]
    assert rigging_main(["merge", *shards, "-o", str(pytester.path / "m.json")]) == 0
    merged = json.loads((pytester.path / "m.json").read_text())
    assert len(merged["items"]) == 2 and len(merged["models"]) == 2


def test_a_gate_for_a_model_that_did_not_run_fails_and_says_so(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    ini(pytester)
    pytester.makepyfile(ONE_ITEM)
    result = pytester.runpytest(
        "--rig-min-pass-rate",
        "nosuchmodel=0.99",
        "--rig-min-pass-rate",
        "0.5",
        "--rig-report",
        "r.json",
    )
    assert result.ret == 1
    lines = [line for line in result.stdout.lines if line.startswith(("pass ", "FAIL "))]
    assert lines == [
        "pass echo!echo: sample pass rate 100.0% [20.7%-100.0%], needs >= 50.0% "
        "(rig-min-pass-rate, point)",
        "FAIL nosuchmodel: no sample pass rate to judge (it never ran), needs >= 99.0% "
        "(rig-min-pass-rate, point)",
    ]
    capsys.readouterr()  # what the in-process run printed
    assert rigging_main(["merge", str(pytester.path / "r.json")]) == 1
    printed = capsys.readouterr().out.splitlines()
    assert sorted(line for line in printed if line.startswith(("pass ", "FAIL "))) == sorted(lines)


CRASH_CONFTEST = """
import asyncio
import time
from pathlib import Path

from pytest_rigging.generator import GeneratedMessage, register_generator
from pytest_rigging.generator.offline import EchoGenerator
from pytest_rigging.message import Message


class Logged(EchoGenerator):
    \"\"\"Writes every call it makes to calls.txt (all workers append to it); cases d and g
    hang, and leave a mark as each of their calls goes out.\"\"\"

    async def generate_message(self, messages, params):
        prompt = messages[-1].content
        with open("calls.txt", "a") as calls:
            calls.write(prompt + "\\n")
        if prompt in ("case d", "case g"):
            Path(f"sent-{prompt[-1]}-{time.monotonic_ns()}").touch()
            await asyncio.sleep(60)
        return GeneratedMessage(message=Message(role="assistant", content=prompt))


register_generator("logged", Logged)


def pytest_runtest_logstart(nodeid, location):
    if "[d-" in nodeid:  # c has reported: the worker goes on to wait for d's samples
        Path("d-started").touch()
"""


def test_a_crashed_workers_finished_samples_are_kept_and_never_called_again(
    pytester: pytest.Pytester,
) -> None:
    """kill -9 while a worker waits for an item's samples (4 slots: a and b, then c and d,
    then e; d's and g's calls hang; f is never sent): the crashed item d is lost with its
    two calls in flight; the worker that takes back e, g and f uses e's finished samples,
    names g's in-flight ones as lost, and calls only f's. Every sample is called once."""
    ini(pytester)
    pytester.makeconftest(CRASH_CONFTEST)
    pytester.makepyfile(
        """
        import os
        import signal
        import threading
        import time
        from pathlib import Path

        import pytest

        @pytest.fixture
        def rig_pipeline(rig_generator, case):
            return rig_generator.chat(f"case {case}")

        from pytest_rigging.plugin.journal import salvage

        def finished(folder, nodeid):
            found = salvage(folder, {nodeid}).get(nodeid)
            return len(found.done) if found else 0

        def kill_when_d_and_g_are_in_flight(folder, e):
            while (
                len(list(Path().glob("sent-*"))) < 4
                or finished(folder, e) < 2
                or not Path("d-started").exists()
            ):
                time.sleep(0.01)
            os.kill(os.getpid(), signal.SIGKILL)

        @pytest.mark.rig(runs=2)
        @pytest.mark.parametrize("case", "abcdegf")
        def test_cases(rig_chats, case, request):
            if case == "c":
                folder = Path(request.config.workerinput["rig_groups_dir"])
                e = request.node.nodeid.replace("[c-", "[e-")
                threading.Thread(
                    target=kill_when_d_and_g_are_in_flight, args=(folder, e), daemon=True
                ).start()
            assert [chat.last.content for chat in rig_chats] == [f"case {case}"] * 2
        """
    )
    result = pytester.runpytest_subprocess(
        "-n",  # one worker: the function is one unit, and the worker replacing it takes it
        "1",
        "--rig-models",
        "logged!m,max_connections=4",
        "--rig-report=r.json",
        "-p",
        "no:randomly",
    )
    calls = (pytester.path / "calls.txt").read_text().splitlines()
    assert sorted(calls) == sorted(f"case {case}" for case in "abcdegf" for _ in range(2))
    result.assert_outcomes(passed=5, errors=2)
    lost_in_flight = (
        r"sample {} lost with xdist worker gw\d, which crashed while its call was in flight"
    )
    assert re.search("infrastructure error: " + lost_in_flight.format(1), result.stdout.str())
    doc = json.loads((pytester.path / "r.json").read_text())
    items = {item["nodeid"].split("[")[1][0]: item for item in doc["items"]}
    assert {case: item["outcome"] for case, item in items.items()} == {
        **dict.fromkeys("abcef", "passed"),
        "d": "error",
        "g": "error",
    }
    assert re.fullmatch(r"lost with xdist worker gw\d, which crashed", items["d"]["lost"])
    for case in "dg":
        assert [chat["error_kind"] for chat in items[case]["chats"]] == ["infrastructure"] * 2
        for sample, chat in enumerate(sorted(items[case]["chats"], key=lambda c: c["sample"]), 1):
            assert re.fullmatch(lost_in_flight.format(sample), chat["error"])
    assert [chat["conversation"][-1]["content"] for chat in items["e"]["chats"]] == ["case e"] * 2
    model = doc["models"][0]
    assert (model["chats"], model["error"], model["items_passed"], model["items_errored"]) == (
        14,
        4,
        5,
        2,
    )
