"""A `rig_cases` item's fingerprint: its case's id and content hash in the JSON report, JUnit
and the baseline; against a baseline, an edited case is "changed" (never flipped, fixed or a
known failure), a case gone from its dataset "removed" (not one merely deselected or in
another shard), and one new to it "new"; ids that survive an inserted row."""

from __future__ import annotations

import json
import typing as t
from pathlib import Path

import pytest

from tests.conftest import ini, junit_properties

pytestmark = pytest.mark.plugin

SUITE = """
import pytest

@pytest.fixture
def rig_pipeline(rig_generator, question):
    return rig_generator.chat(question)

@pytest.mark.rig_cases("cases.jsonl", id="id")
def test_answer(rig_chat, expected):
    assert rig_chat.last.content == expected
"""

MODEL = 'default = "yes"\n\n[[rules]]\nmatch = "say no"\nreply = "no"\n'
"""Answers "no" to a question holding "say no", else "yes"."""

ROWS = {
    "alpha": {"question": "alpha?", "expected": "yes"},
    "bravo": {"question": "bravo?", "expected": "yes"},
    "charlie": {"question": "charlie?", "expected": "yes"},
    "delta": {"question": "delta, say no", "expected": "yes"},
    "echo": {"question": "echo, say no", "expected": "yes"},
}
"""Cases alpha, bravo and charlie pass; delta and echo fail (known failures once saved)."""

NODE = "test_answer.py::test_answer[{}-model]"


def write_cases(pytester: pytest.Pytester, rows: t.Mapping[str, t.Mapping[str, str]]) -> None:
    lines = [json.dumps({"id": name, **fields}) for name, fields in rows.items()]
    (pytester.path / "cases.jsonl").write_text("\n".join(lines) + "\n")


def suite(pytester: pytest.Pytester, rows: t.Mapping[str, t.Mapping[str, str]] = ROWS) -> None:
    ini(pytester)
    pytester.makepyfile(test_answer=SUITE)
    (pytester.path / "model.toml").write_text(MODEL)
    write_cases(pytester, rows)


ARGS = ("--rig-models", "scripted!model.toml", "-p", "no:cacheprovider")


def against(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*ARGS, "--rig-baseline", "base.json", *args)


def comparison(result: pytest.RunResult) -> list[str]:
    """The lines under "rigging: against the baseline", up to the next section."""
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if "rigging: against the baseline" in line)
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("="))
    return lines[start + 1 : end]


def head(flipped: int = 0, fixed: int = 0, known: int = 0, new: int = 0, missing: int = 0,
         changed: int = 0, removed: int = 0, new_cases: int = 0) -> str:  # fmt: skip
    return (
        f"against base.json: {flipped} flipped to failing, {fixed} fixed, {known} known "
        f"failures, 0 rates moved beyond noise; {new} new items, {missing} of its items not "
        f"run; items of cases: {changed} changed, {removed} removed, {new_cases} new"
    )


@pytest.fixture
def saved(pytester: pytest.Pytester) -> pytest.Pytester:
    """The suite, with a baseline saved from it (delta and echo failed)."""
    suite(pytester)
    result = pytester.runpytest(*ARGS, "--rig-save-baseline", "base.json")
    result.assert_outcomes(passed=3, failed=2)
    return pytester


WORKERS = pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])


@WORKERS
def test_an_edited_case_is_changed_not_flipped(saved: pytest.Pytester, workers: list[str]) -> None:
    """Three cases edited: bravo now fails (it passed), delta still fails and echo now
    passes (both failed). Each is "changed": none is flipped, fixed or a known failure, so
    bravo's and delta's failures fail the run (no xfail); charlie, unchanged, compares as
    usual."""
    rows = {
        **ROWS,
        "bravo": {"question": "bravo, say no", "expected": "yes"},
        "delta": {"question": "delta, say no!", "expected": "yes"},
        "echo": {"question": "echo?", "expected": "yes"},
    }
    write_cases(saved, rows)
    result = against(saved, "-rfEx", *workers)
    result.assert_outcomes(passed=3, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    changed = "  changed (the case's content differs from the baseline's): "
    assert comparison(result) == [
        head(changed=3),
        *(changed + NODE.format(name) for name in ("bravo", "delta", "echo")),
    ]
    failed = [line for line in result.outlines if line.startswith(("FAILED ", "XFAIL "))]
    assert sorted(line.split(" - ")[0] for line in failed) == [
        f"FAILED {NODE.format('bravo')}",
        f"FAILED {NODE.format('delta')}",
    ]


def test_an_unchanged_failure_is_still_known(saved: pytest.Pytester) -> None:
    """Nothing edited: delta and echo are known failures (xfail), as for any other test; no
    case is changed, removed or new."""
    result = against(saved, "-rfEx")
    result.assert_outcomes(passed=3, xfailed=2)
    assert comparison(result) == [
        head(known=2),
        "  known failures (fail in both): " + NODE.format("delta"),
        "  known failures (fail in both): " + NODE.format("echo"),
    ]


@WORKERS
def test_removed_new_and_deselected_cases(saved: pytest.Pytester, workers: list[str]) -> None:
    """Case alpha taken out of the file and foxtrot added at its top: alpha is "removed",
    foxtrot "new"; charlie, deselected with -k, is only not run."""
    rows = {"foxtrot": {"question": "foxtrot?", "expected": "yes"}} | {
        name: fields for name, fields in ROWS.items() if name != "alpha"
    }
    write_cases(saved, rows)
    result = against(saved, "-k", "not charlie", *workers)
    result.assert_outcomes(passed=2, xfailed=2)
    assert comparison(result) == [
        head(known=2, missing=1, removed=1, new_cases=1),
        "  known failures (fail in both): " + NODE.format("delta"),
        "  known failures (fail in both): " + NODE.format("echo"),
        "  removed (no longer among its test's cases): " + NODE.format("alpha"),
        "  new case (not in the baseline): " + NODE.format("foxtrot"),
        "  not run (in the baseline, not here): " + NODE.format("charlie"),
    ]


def test_a_case_named_on_the_command_line_removes_no_other(saved: pytest.Pytester) -> None:
    """One item named by its node id: the test's other cases are not run, not removed."""
    result = against(saved, NODE.format("bravo"))
    result.assert_outcomes(passed=1)
    others = [NODE.format(name) for name in ROWS if name != "bravo"]
    assert comparison(result) == [
        head(missing=4),
        *(f"  not run (in the baseline, not here): {node}" for node in others),
    ]


def test_a_shard_does_not_remove_the_other_shards_cases(saved: pytest.Pytester) -> None:
    """Each shard (1/2 in one process, 2/2 under -n 2, whose controller collects nothing),
    compared with the whole run's baseline, finds the other shard's cases not run (they
    are still in the dataset), none removed."""
    everything: list[str] = []
    for shard, workers in (("1/2", []), ("2/2", ["-n", "2"])):
        result = against(saved, "--rig-shard", shard, "--rig-report", "shard.json", *workers)
        items = json.loads((saved.path / "shard.json").read_text())["items"]
        ran = [item["nodeid"] for item in items]
        everything += ran
        others = [NODE.format(name) for name in sorted(ROWS) if NODE.format(name) not in ran]
        known = [NODE.format(name) for name in ("delta", "echo") if NODE.format(name) in ran]
        assert 0 < len(ran) < len(ROWS)
        assert comparison(result) == [
            head(known=len(known), missing=len(others)),
            *(f"  known failures (fail in both): {node}" for node in known),
            *(f"  not run (in the baseline, not here): {node}" for node in others),
        ]
    assert sorted(everything) == [NODE.format(name) for name in sorted(ROWS)]


def test_the_report_and_junit_hold_each_case(saved: pytest.Pytester) -> None:
    """Each item's record holds its case's id, content hash, source and dataset hash; the
    report sums up the dataset (every case counted once over two models); the baseline
    keeps each item's id and hash; JUnit has the id and hash as properties."""
    from pytest_rigging.plugin.cases import content_hash

    (saved.path / "two.toml").write_text(MODEL)
    result = saved.runpytest(
        "--rig-models", "scripted!model.toml,scripted!two.toml", "-p", "no:cacheprovider",
        "--rig-report", "report.json", "--rig-save-baseline", "two.json",
        "--junitxml", "junit.xml",
    )  # fmt: skip
    result.assert_outcomes(passed=6, failed=4)
    doc = json.loads((saved.path / "report.json").read_text())
    assert doc["version"] == 2
    hashes = {name: content_hash({"id": name, **fields}) for name, fields in ROWS.items()}
    [dataset] = doc["datasets"]
    assert dataset == {"source": "cases.jsonl", "hash": dataset["hash"], "cases": 5}
    assert len(dataset["hash"]) == 64 and dataset["hash"] not in hashes.values()
    cases = {item["nodeid"]: item["case"] for item in doc["items"]}
    assert len(cases) == 10
    for nodeid, case in cases.items():
        name = nodeid.split("[")[1].split("-")[0]
        assert case == {
            "id": name, "hash": hashes[name], "source": "cases.jsonl", "dataset": dataset["hash"]
        }  # fmt: skip
    baseline = json.loads((saved.path / "two.json").read_text())
    assert {nodeid: item["case"] for nodeid, item in baseline["items"].items()} == {
        nodeid: {"id": case["id"], "hash": case["hash"]} for nodeid, case in cases.items()
    }
    properties = junit_properties(saved.path / "junit.xml", "test_answer[bravo-model]")
    assert (properties["rig_case"], properties["rig_case_hash"]) == ("bravo", hashes["bravo"])


def test_merged_shards_sum_up_the_dataset(saved: pytest.Pytester) -> None:
    """Two shards' reports merged: the dataset's summary counts every case, from the
    items' records."""
    from pytest_rigging.plugin.cli import main

    for index in (1, 2):
        saved.runpytest(*ARGS, "--rig-shard", f"{index}/2", "--rig-report", f"{index}.json")
    halves = [json.loads((saved.path / f"{i}.json").read_text())["datasets"] for i in (1, 2)]
    assert sorted(half[0]["cases"] for half in halves) == [2, 3]
    paths = [str(saved.path / name) for name in ("1.json", "2.json")]
    assert main(["merge", *paths, "-o", str(saved.path / "all.json")]) == 0
    [dataset] = json.loads((saved.path / "all.json").read_text())["datasets"]
    assert dataset == {**halves[0][0], "cases": 5}


def test_an_old_baseline_without_fingerprints_still_compares(saved: pytest.Pytester) -> None:
    """A baseline saved before items kept their case compares as before: an edited case
    that now fails is flipped (nothing tells it changed); no case is counted changed."""
    path = saved.path / "base.json"
    baseline = json.loads(path.read_text())
    for item in baseline["items"].values():
        del item["case"]
    path.write_text(json.dumps(baseline))
    write_cases(saved, {**ROWS, "bravo": {"question": "bravo, say no", "expected": "yes"}})
    result = against(saved)
    result.assert_outcomes(passed=2, failed=1, xfailed=2)
    assert comparison(result) == [
        head(flipped=1, known=2),
        "  flipped (passed there, fail here): " + NODE.format("bravo"),
        "  known failures (fail in both): " + NODE.format("delta"),
        "  known failures (fail in both): " + NODE.format("echo"),
    ]


def test_a_case_new_to_an_old_baseline_is_a_new_item(saved: pytest.Pytester) -> None:
    """Against a baseline without fingerprints, a case added to the file is a new item (the
    baseline can't tell which cases its test had), and pairs with nothing: the hint about
    changed ids is for `parametrize` cases, whose ids are made of their values."""
    path = saved.path / "base.json"
    baseline = json.loads(path.read_text())
    for item in baseline["items"].values():
        del item["case"]
    del baseline["items"][NODE.format("alpha")]
    baseline["items"]["test_answer.py::test_answer[gone-model]"] = baseline["items"][
        NODE.format("bravo")
    ]
    path.write_text(json.dumps(baseline))
    result = against(saved)
    assert comparison(result) == [
        head(known=2, new=1, missing=1),
        "  known failures (fail in both): " + NODE.format("delta"),
        "  known failures (fail in both): " + NODE.format("echo"),
        "  new (not in the baseline): " + NODE.format("alpha"),
        "  not run (in the baseline, not here): test_answer.py::test_answer[gone-model]",
    ]


INSERTED = """
import pytest

@pytest.fixture
def rig_pipeline(rig_generator, question):
    return rig_generator.chat(question)

@pytest.mark.rig_cases("cases.jsonl", id="id")
def test_named(rig_chat):
    pass

@pytest.mark.rig_cases("cases.jsonl")
def test_hashed(rig_chat):
    pass
"""


def collected(pytester: pytest.Pytester) -> list[str]:
    result = pytester.runpytest(*ARGS, "--collect-only", "-q")
    return [line for line in result.outlines if "::" in line]


def test_an_inserted_row_renames_nothing_and_shards_run_each_case_once(
    pytester: pytest.Pytester,
) -> None:
    """A row inserted at the top of the file: every item collected before keeps its id
    (named by a field or by the content's hash), and one more item per test is collected.
    Then, under -n 2, shards 1/2 and 2/2 together run every case exactly once."""
    ini(pytester)
    pytester.makepyfile(test_inserted=INSERTED)
    (pytester.path / "model.toml").write_text(MODEL)
    rows = {f"case{i:02}": {"question": f"q{i}?"} for i in range(20)}
    write_cases(pytester, rows)
    before = collected(pytester)
    assert len(before) == 40
    write_cases(pytester, {"first": {"question": "first?"}, **rows})
    after = collected(pytester)
    assert set(before) < set(after) and len(after) == 42
    assert "test_inserted.py::test_named[first-model]" in after
    runs: list[str] = []
    for index in (1, 2):
        report = f"{index}.json"
        result = pytester.runpytest(
            *ARGS, "-n", "2", "--rig-shard", f"{index}/2", "--rig-report", report
        )
        assert result.ret == pytest.ExitCode.OK
        items = json.loads((pytester.path / report).read_text())["items"]
        assert 0 < len(items) < 42
        runs += [item["nodeid"] for item in items]
    assert sorted(runs) == sorted(after)


def test_old_reports_without_cases_still_load(saved: pytest.Pytester, tmp_path: Path) -> None:
    """A report written before items held their case (no `case`, no `datasets`) still
    loads and merges, with no dataset to sum up."""
    from pytest_rigging.plugin.report import load, merge

    saved.runpytest(*ARGS, "--rig-report", "report.json")
    doc = json.loads((saved.path / "report.json").read_text())
    del doc["datasets"]
    for item in doc["items"]:
        del item["case"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    merged = merge([load(old), load(saved.path / "report.json")], None, None)
    assert len(merged["items"]) == 5
    assert [d["cases"] for d in merged["datasets"]] == [5]
