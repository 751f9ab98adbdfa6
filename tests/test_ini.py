"""Every `--rig-*` option has its ini key, which takes effect as the option does: paths
from the ini file's folder, the command line over the ini file; and the header's runs
beside what rig marks set."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ONE_ITEM, ini
from tests.test_reports import BASELINE_SUITE, answering


def test_every_rig_option_has_an_ini_key(pytester: pytest.Pytester) -> None:
    """As `--help` lists them: every option's ini key, of the kind it needs."""
    ini(pytester)
    text = pytester.runpytest("--help").stdout.str()
    options = set(re.findall(r"^ +--rig-([a-z-]+)", text, re.M))
    keys = dict(re.findall(r"^ +rig_([a-z_]+) \(([a-z]+)\):", text, re.M))
    assert {"models", "report", "baseline", "fail-on-regression", "shard"} <= options
    assert {o.replace("-", "_") for o in options} == set(keys)
    assert keys["fail_on_regression"] == "bool" and keys["report"] == "string"


def test_ini_report_and_baseline_are_written_beside_the_ini_file(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rig_report` and `rig_save_baseline` name files from the ini file's folder, wherever
    pytest runs from; `--rig-report` wins over `rig_report`, from the working directory."""
    ini(
        pytester,
        "rig_models = echo!e\nrig_report = out/report.json\nrig_save_baseline = base.json\n",
    )
    pytester.makepyfile(ONE_ITEM)
    elsewhere = pytester.mkdir("elsewhere")
    monkeypatch.chdir(elsewhere)
    result = pytester.runpytest(str(pytester.path), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    assert [item["outcome"] for item in report["items"]] == ["passed"]
    baseline = json.loads((pytester.path / "base.json").read_text())
    assert baseline["format"] == "pytest-rigging-baseline"
    assert not list(elsewhere.iterdir())
    (pytester.path / "out" / "report.json").unlink()
    parallel = pytester.runpytest_subprocess(
        str(pytester.path), "-p", "no:cacheprovider", "-n", "2"
    )
    parallel.assert_outcomes(passed=1)
    assert (pytester.path / "out" / "report.json").is_file()
    assert not list(elsewhere.iterdir())
    (pytester.path / "out" / "report.json").unlink()
    result = pytester.runpytest(
        str(pytester.path), "-p", "no:cacheprovider", "--rig-report=cli.json"
    )
    result.assert_outcomes(passed=1)
    assert (elsewhere / "cli.json").is_file()
    assert not (pytester.path / "out" / "report.json").exists()


def test_ini_baseline_and_fail_on_regression_judge_the_run(pytester: pytest.Pytester) -> None:
    """`rig_baseline` compares, `rig_fail_on_regression = true` fails a rate that dropped;
    `-o rig_fail_on_regression=false` turns it off and `--rig-baseline` names another."""
    ini(pytester)
    pytester.makepyfile(
        test_cases=BASELINE_SUITE.replace(
            "def test_case", "@pytest.mark.rig(runs=10, min_pass=0)\ndef test_case"
        )
    )
    pytester.runpytest(*answering(pytester, "d"), "--rig-save-baseline", "base.json")
    pytester.runpytest(*answering(pytester, "abcd"), "--rig-save-baseline", "worse.json")
    ini(pytester, "rig_baseline = base.json\nrig_fail_on_regression = true\n")
    worse = answering(pytester, "abcd")
    judged = pytester.runpytest(*worse)
    assert judged.ret == pytest.ExitCode.TESTS_FAILED
    judged.stdout.fnmatch_lines(
        [
            f"against {pytester.path / 'base.json'}: *",
            "FAIL model: pass rate dropped beyond noise since the baseline "
            "(ini rig_fail_on_regression)",
        ]
    )
    parallel = pytester.runpytest_subprocess(*worse, "-n", "2")
    assert parallel.ret == pytest.ExitCode.TESTS_FAILED
    parallel.stdout.fnmatch_lines(
        ["FAIL model: pass rate dropped beyond noise since the baseline*"]
    )
    listed = pytester.runpytest(*worse, "-o", "rig_fail_on_regression=false")
    assert listed.ret == pytest.ExitCode.OK
    listed.stdout.re_match_lines([r"  dropped: model pass rate 75\.0% \[.*\] -> 0\.0%"])
    other = pytester.runpytest(*worse, "--rig-baseline", "worse.json")
    assert other.ret == pytest.ExitCode.OK
    other.stdout.fnmatch_lines(["against worse.json: 0 flipped to failing, 0 fixed, 0 known*"])


def test_ini_shard_selects_and_the_command_line_wins(pytester: pytest.Pytester) -> None:
    ini(pytester, "rig_shard = 2/2\n")
    pytester.makepyfile(test_two="def test_a(rig_model): pass\n\ndef test_b(rig_model): pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["rigging: shard 2/2: 1 of 2 test functions, 1 of 2 items"])
    result = pytester.runpytest("-p", "no:cacheprovider", "--rig-shard", "1/2", "-v")
    result.assert_outcomes(passed=1, deselected=1)
    result.stdout.fnmatch_lines(["rigging: shard 1/2: *"])


@pytest.mark.parametrize(
    ("ini_lines", "message"),
    [
        ("rig_shard = 3/2", "ini rig_shard: expected K/N with 1 <= K <= N (the K-th of N "
         "shards), got '3/2'"),
        ("rig_report = .", "ini rig_report: '.' is not a file path"),
        ("rig_baseline = missing.json", "ini rig_baseline: cannot read "),
        ("rig_fail_on_regression = true", "ini rig_fail_on_regression needs a baseline: "
         "--rig-baseline PATH or ini rig_baseline"),
    ],
    ids=["shard", "report", "baseline", "regression"],
)  # fmt: skip
def test_a_bad_ini_value_is_a_usage_error_naming_its_key(
    pytester: pytest.Pytester, ini_lines: str, message: str
) -> None:
    ini(pytester, ini_lines)
    pytester.makepyfile(ONE_ITEM)
    result = pytester.runpytest()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.stderr.lines if line]
    assert len(lines) == 1 and lines[0].startswith(f"ERROR: {message}"), lines


def test_the_runs_rig_marks_set_are_shown_beside_the_header(pytester: pytest.Pytester) -> None:
    """The header gives the run's runs; rig marks that set others are named after
    collection, serially and under xdist (and nothing more when none differs, nor at -q,
    which hides the header)."""
    ini(pytester, "rig_models = echo!e\n")
    pytester.makepyfile(
        test_runs="""
        import pytest

        @pytest.mark.rig(runs=5)
        def test_five(rig_model): pass

        @pytest.mark.rig(runs=5, min_pass=1)
        @pytest.mark.parametrize("n", [1, 2])
        def test_five_too(rig_model, n): pass

        @pytest.mark.rig(runs=2)
        def test_two(rig_model): pass

        def test_plain(rig_model): pass
        """
    )
    header = "rigging: models echo!e (ini); params {} (default); runs 1; concurrency 64"
    marked = (
        "rigging: runs per test from rig marks: 2 (test_runs.py::test_two), "
        "5 (test_runs.py::test_five, test_runs.py::test_five_too); runs 1 for the other test"
    )
    result = pytester.runpytest("--collect-only")
    result.stdout.fnmatch_lines([header, "collected 5 items", marked])
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines([header, "created: 2/2 workers", marked, "2 workers [5 items]"])
    result = pytester.runpytest("--collect-only", "--rig-runs", "5", "-k", "five")
    assert "runs per test" not in result.stdout.str()
    result = pytester.runpytest("--collect-only", "-q")  # as the header, not at -q
    assert "runs per test" not in result.stdout.str()
