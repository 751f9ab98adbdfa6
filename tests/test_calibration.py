"""Judges against people: labels files, kappa, sensitivity and specificity, the corrected
rate, the judges' summaries, table and kappa checks, and the `labels` command."""

from __future__ import annotations

import json
import math
import typing as t
from pathlib import Path

import pytest

from pytest_rigging.plugin.calibration import (
    Confusion,
    LabelExample,
    allocate,
    applies,
    corrected_rate,
    judges_table,
    kappa,
    kappa_checks,
    read_labels,
    summaries,
)
from pytest_rigging.plugin.cli import main as rigging_main
from pytest_rigging.plugin.gates import Check
from pytest_rigging.plugin.records import (
    ChatRecord,
    ItemRecord,
    JudgeRecord,
    JudgeSummary,
    LabelRecord,
    PairwiseRecord,
    VerdictOutcome,
    VerdictRecord,
    item_of,
)
from pytest_rigging.plugin.report import document, write
from pytest_rigging.plugin.stats import wilson
from tests.conftest import chat_record

JUDGE: JudgeRecord = {
    "id": "scripted!judge #1a2b3c4d",
    "model": "scripted!judge",
    "hash": "1a2b3c4d" + "0" * 56,
    "rubric": "Names the capital",
    "template": "rubric",
}
PAIRWISE_JUDGE: JudgeRecord = {**JUDGE, "id": "scripted!judge #99999999", "hash": "9" * 64}


def balanced() -> list[tuple[float, float]]:
    """20 labels, 10 pass and 10 fail; the judge agrees on 9 of each."""
    return [(1.0, 1.0)] * 9 + [(1.0, 0.0)] + [(0.0, 0.0)] * 9 + [(0.0, 1.0)]


def skewed() -> list[tuple[float, float]]:
    """20 labels, 14 pass and 6 fail; the judge agrees on 13 passes and 5 fails."""
    return [(1.0, 1.0)] * 13 + [(1.0, 0.0)] + [(0.0, 0.0)] * 5 + [(0.0, 1.0)]


def test_kappa_sensitivity_and_specificity_of_a_judge_right_on_18_of_20() -> None:
    pairs = balanced()
    # po = 18/20 = 0.9; people say pass on 10/20, the judge on (9 + 1)/20:
    # pe = 0.5 * 0.5 + 0.5 * 0.5 = 0.5; kappa = (0.9 - 0.5) / (1 - 0.5) = 0.8
    assert kappa(pairs, None) == pytest.approx((0.9 - 0.5) / (1 - 0.5))
    confusion = Confusion.of(pairs)
    assert confusion == Confusion(tp=9, fn=1, tn=9, fp=1)
    assert confusion.sensitivity == 9 / 10
    assert confusion.specificity == 9 / 10


def test_kappa_is_not_accuracy_on_a_skewed_set() -> None:
    pairs = skewed()
    # po = 18/20 = 0.9 as before, but people say pass on 14/20 and the judge on (13 + 1)/20:
    # pe = 0.7 * 0.7 + 0.3 * 0.3 = 0.58; kappa = (0.9 - 0.58) / (1 - 0.58) = 0.7619...
    assert kappa(pairs, None) == pytest.approx((0.9 - 0.58) / (1 - 0.58))
    assert kappa(pairs, None) == pytest.approx(0.76190476)
    confusion = Confusion.of(pairs)
    assert (confusion.sensitivity, confusion.specificity) == (13 / 14, 5 / 6)


def test_a_judge_that_passes_everything_agrees_by_chance_only() -> None:
    pairs = [(1.0, 1.0)] * 18 + [(0.0, 1.0)] * 2
    assert kappa(pairs, None) == 0.0  # po = 0.9 = pe
    assert Confusion.of(pairs).specificity == 0.0


def test_kappa_is_undefined_without_pairs_or_when_all_fall_in_one_class() -> None:
    assert kappa([], None) is None
    assert kappa([(1.0, 1.0)] * 5, None) is None
    assert kappa([(3.0, 3.0)] * 5, (1, 5)) is None
    assert kappa([(1.0, 1.0), (2.0, 2.0)], (1, 1.4)) is None  # one category: no scale to agree on
    assert Confusion.of([(1.0, 1.0)]).specificity is None
    assert Confusion.of([(0.0, 0.0)]).sensitivity is None


def test_weighted_kappa_on_three_categories() -> None:
    pairs = [(1.0, 1.0), (1.0, 2.0), (2.0, 2.0), (3.0, 3.0), (3.0, 1.0)]
    # weights (i - j)^2; observed: (0 + 1 + 0 + 0 + 4) / 5 = 1.0
    # people's shares of 1, 2, 3: 0.4, 0.2, 0.4; the judge's: 0.4, 0.4, 0.2
    # expected: 1*.4*.4 + 4*.4*.2 + 1*.2*.4 + 1*.2*.2 + 4*.4*.4 + 1*.4*.4 = 1.4
    # kappa = 1 - 1.0 / 1.4
    assert kappa(pairs, (1, 3)) == pytest.approx(1 - 1.0 / 1.4)


def test_weighted_kappa_rounds_scores_and_keeps_them_on_the_scale() -> None:
    rounded = [(1.0, 1.0), (1.0, 2.0), (2.0, 2.0), (3.0, 3.0), (3.0, 1.0)]
    raw = [(0.6, 1.2), (1.0, 2.4), (2.0, 1.7), (7.0, 3.0), (3.0, -2.0)]
    assert kappa(raw, (1, 3)) == pytest.approx(kappa(rounded, (1, 3)))


def test_weighted_kappa_on_a_two_point_scale_is_cohens() -> None:
    assert kappa(skewed(), (0, 1)) == pytest.approx(kappa(skewed(), None))


def test_a_near_miss_costs_less_than_a_far_one() -> None:
    right = [(1.0, 1.0), (3.0, 3.0), (5.0, 5.0), (2.0, 2.0), (4.0, 4.0)]
    near = [*right, (3.0, 4.0)]
    far = [*right, (3.0, 1.0)]
    near_kappa, far_kappa = kappa(near, (1, 5)), kappa(far, (1, 5))
    assert near_kappa is not None and far_kappa is not None
    assert near_kappa > far_kappa


def test_rogan_gladen_against_hand_arithmetic() -> None:
    confusion = Confusion(tp=9, fn=1, tn=9, fp=1)
    corrected = corrected_rate(60, 100, confusion)
    assert corrected is not None
    value, (low, high) = corrected
    # (p + sp - 1) / (se + sp - 1) = (0.6 + 0.9 - 1) / (0.9 + 0.9 - 1) = 0.5 / 0.8
    assert value == pytest.approx(0.625)
    # the delta method, each variance of (x + 2) / (n + 4):
    var_p = (62 / 104) * (42 / 104) / 104
    var_se = (11 / 14) * (3 / 14) / 14
    var_sp = var_se
    sd = math.sqrt((var_p + 0.625**2 * var_se + 0.375**2 * var_sp) / 0.8**2)
    assert (low, high) == pytest.approx((0.625 - 1.96 * sd, 0.625 + 1.96 * sd))
    assert low < value < high


def test_the_corrected_interval_carries_the_calibrations_doubt() -> None:
    few = Confusion(tp=5, fn=0, tn=5, fp=0)  # right on all of 10 labels
    corrected = corrected_rate(60, 100, few)
    assert corrected is not None
    value, (low, high) = corrected
    assert value == pytest.approx(0.6)  # a judge right on every label changes nothing...
    wilson_low, wilson_high = wilson(60, 100)
    assert high - low > wilson_high - wilson_low  # ...but ten labels prove little
    many = corrected_rate(60, 100, Confusion(tp=500, fn=0, tn=500, fp=0))
    assert many is not None
    assert many[1][1] - many[1][0] < high - low


def test_the_corrected_rate_stays_within_0_and_1() -> None:
    confusion = Confusion(tp=9, fn=1, tn=9, fp=1)
    for passed in (0, 3, 97, 100):
        corrected = corrected_rate(passed, 100, confusion)
        assert corrected is not None
        value, (low, high) = corrected
        assert 0.0 <= low <= value <= high <= 1.0
    zero = corrected_rate(5, 100, confusion)  # (0.05 + 0.9 - 1) / 0.8 < 0
    assert zero is not None and zero[0] == 0.0
    one = corrected_rate(99, 100, confusion)  # (0.99 + 0.9 - 1) / 0.8 > 1
    assert one is not None and one[0] == 1.0


def test_no_corrected_rate_from_a_judge_no_better_than_a_coin() -> None:
    assert corrected_rate(60, 100, Confusion(tp=5, fn=5, tn=5, fp=5)) is None  # se + sp = 1
    assert corrected_rate(60, 100, Confusion(tp=2, fn=8, tn=5, fp=5)) is None  # se + sp < 1
    assert corrected_rate(60, 100, Confusion(tp=10, fn=0, tn=0, fp=0)) is None  # no fails
    assert corrected_rate(0, 0, Confusion(tp=9, fn=1, tn=9, fp=1)) is None  # no verdicts


# summaries


def verdict(
    outcome: VerdictOutcome,
    unstable: bool = False,
    pairwise: PairwiseRecord | None = None,
    judge: str = JUDGE["id"],
) -> VerdictRecord:
    record: VerdictRecord = {
        "judge": judge,
        "outcome": outcome,
        "score": None,
        "reasoning": "because",
        "agreement": [2, 3] if unstable else [3, 3],
        "unstable": unstable,
    }
    if pairwise is not None:
        record["pairwise"] = pairwise
    return record


def sample_chat(number: int, model: str, label: str, judged: VerdictRecord) -> ChatRecord:
    return chat_record(
        number,
        [("user", "Capital of France?"), ("assistant", "Paris")],
        model,
        label,
        verdict=judged,
    )


def judge_chat(number: int, judge: JudgeRecord) -> ChatRecord:
    """A judge's own chat: it names its judge; given a verdict here, to show that it counts
    as none."""
    return chat_record(
        number,
        [("user", "grade this"), ("assistant", "<verdict>pass</verdict>")],
        judge["model"],
        "judge",
        judge=judge["id"],
        verdict=verdict("passed", judge=judge["id"]),
    )


def item(
    nodeid: str,
    model: str,
    label: str,
    chats: list[ChatRecord],
    judge: JudgeRecord | None = None,
    labels: list[LabelRecord] | None = None,
) -> ItemRecord:
    cell = {"model": model, "label": label, "params": "{}", "cell": f"{label}-{{}}"}
    record = item_of(nodeid, cell, "passed", [len(chats), len(chats)], 0.1, chats)
    if judge is not None:
        record["judge"] = judge
    if labels is not None:
        record["labels"] = labels
    return record


def label_records(
    judge: JudgeRecord, pairs: t.Sequence[tuple[float, float | None]]
) -> list[LabelRecord]:
    return [
        {"judge": judge["id"], "example": f"example-{n}", "line": n, "label": a, "verdict": b}
        for n, (a, b) in enumerate(pairs, 1)
    ]


def judged_items() -> list[ItemRecord]:
    """Two models under test of one judge (one carrying the labels, as each process's first
    item does, the other too, as another shard's), a pairwise judge whose every comparison
    flipped, and an item of no judge."""
    labels = label_records(JUDGE, [*balanced(), (1.0, None)])
    one = [
        sample_chat(1, "echo!one", "one", verdict("passed")),
        sample_chat(2, "echo!one", "one", verdict("passed", unstable=True)),
        sample_chat(3, "echo!one", "one", verdict("failed")),
        judge_chat(1, JUDGE),
    ]
    two = [
        sample_chat(1, "echo!two", "two", verdict("passed")),
        sample_chat(2, "echo!two", "two", verdict("unscored", unstable=True)),
    ]
    flipped: PairwiseRecord = {"winner": "tie", "flipped": True, "versus": "echo!two"}
    pairwise = [
        sample_chat(
            n,
            "echo!one",
            "one",
            verdict("passed", pairwise=flipped, judge="scripted!judge #99999999"),
        )
        for n in (1, 2)
    ]
    return [
        item("tests/test_q.py::test_a[x]", "echo!one", "one", one[:2] + one[3:], JUDGE, labels),
        item("tests/test_q.py::test_a[y]", "echo!one", "one", [one[2]], JUDGE),
        item("tests/test_q.py::test_a[x]", "echo!two", "two", two, JUDGE, labels[:5]),
        item("tests/test_q.py::test_p", "echo!one", "one", pairwise, PAIRWISE_JUDGE),
        item(
            "tests/test_q.py::test_n",
            "echo!one",
            "one",
            [sample_chat(1, "echo!one", "one", verdict("failed"))],
        ),
    ]


def test_summaries_of_a_judge_over_two_models() -> None:
    first, pairwise = summaries(judged_items())
    se_sp = Confusion(tp=9, fn=1, tn=9, fp=1)
    one = corrected_rate(2, 3, se_sp)
    two = corrected_rate(1, 1, se_sp)
    assert one is not None and two is not None
    assert first == {
        "id": "scripted!judge #1a2b3c4d",
        "model": "scripted!judge",
        "hash": JUDGE["hash"],
        "rubric": "Names the capital",
        "template": "rubric",
        "verdicts": 5,  # the judge's own chat is none
        "unscored": 1,
        "unstable": 2,
        "comparisons": 0,
        "flipped": 0,
        "flip_rate": None,
        "labels": 21,  # counted once, though two items carry the first five
        "labels_unscored": 1,
        "kappa": pytest.approx(0.8),
        "weighted": False,
        "sensitivity": 0.9,
        "specificity": 0.9,
        "models": [
            {
                "model": "echo!one",
                "label": "one",
                "verdicts": 3,
                "passed": 2,
                "unscored": 0,
                "unstable": 1,
                "pass_rate": 2 / 3,
                "pass_rate_interval": list(wilson(2, 3)),
                "corrected": one[0],
                "corrected_interval": list(one[1]),
            },
            {
                "model": "echo!two",
                "label": "two",
                "verdicts": 2,
                "passed": 1,
                "unscored": 1,
                "unstable": 1,
                "pass_rate": 1.0,  # of the one scored
                "pass_rate_interval": list(wilson(1, 1)),
                "corrected": two[0],
                "corrected_interval": list(two[1]),
            },
        ],
    }
    assert (pairwise["comparisons"], pairwise["flipped"], pairwise["flip_rate"]) == (2, 2, 1.0)
    assert (pairwise["labels"], pairwise["kappa"], pairwise["sensitivity"]) == (0, None, None)
    assert pairwise["models"][0]["corrected"] is None  # no labels: nothing to correct by


def test_no_judged_item_no_summaries() -> None:
    assert summaries([]) == []
    assert summaries([judged_items()[-1]]) == []


def test_a_scored_judge_is_weighted_and_has_no_sensitivity() -> None:
    scored: JudgeRecord = {**JUDGE, "scale": [1.0, 3.0]}
    pairs = [(1.0, 1.0), (1.0, 2.0), (2.0, 2.0), (3.0, 3.0), (3.0, 1.0)]
    chats = [sample_chat(1, "echo!one", "one", verdict("passed"))]
    [summary] = summaries(
        [item("t.py::test_s", "echo!one", "one", chats, scored, label_records(scored, pairs))]
    )
    assert summary["weighted"] is True
    assert summary["kappa"] == pytest.approx(1 - 1.0 / 1.4)
    assert (summary["sensitivity"], summary["specificity"]) == (None, None)
    assert summary["models"][0]["corrected"] is None


def test_a_judge_record_without_its_scale_is_scored_when_its_values_are_scores() -> None:
    pairs = [(1.0, 1.0), (1.0, 2.0), (2.0, 2.0), (3.0, 3.0), (3.0, 1.0)]
    [summary] = summaries(
        [item("t.py::test_s", "echo!one", "one", [], JUDGE, label_records(JUDGE, pairs))]
    )
    assert summary["weighted"] is True
    assert summary["kappa"] == pytest.approx(1 - 1.0 / 1.4)
    assert summary["models"] == []


def test_the_judges_table() -> None:
    shown = judges_table(summaries(judged_items()))
    lines = shown.splitlines()
    assert lines[0].split() == [
        "judge", "model", "verdicts", "judged", "pass", "corrected", "unstable", "unscored",
        "flips", "kappa", "sens", "spec", "labels",
    ]  # fmt: skip
    assert lines[1].split() == ["[95%", "CI]", "[95%", "CI]"]
    one = corrected_rate(2, 3, Confusion(tp=9, fn=1, tn=9, fp=1))
    assert one is not None
    low, high = wilson(2, 3)
    corrected = f"{one[0]:.1%} [{one[1][0] * 100:.1f}-{one[1][1] * 100:.1f}]"
    assert lines[3].split() == [
        "scripted!judge", "#1a2b3c4d", "one", "3", "66.7%", f"[{low * 100:.1f}-{high * 100:.1f}]",
        *corrected.split(), "1", "(33.3%)", "0", "-", "0.80", "0.90", "0.90",
        "21", "(1", "unscored)",
    ]  # fmt: skip
    assert lines[4].split() == [
        "two",
        "2",
        "100.0%",
        "[20.7-100.0]",
        "100.0%",
        "[40.0-100.0]",
        "1",
        "(50.0%)",
        "1",
    ]  # fmt: skip; the judge's own figures are on its first row only
    assert lines[5].split() == [
        "scripted!judge", "#99999999", "one", "2", "100.0%", "[34.2-100.0]", "-", "0", "(0.0%)",
        "0", "2/2", "-", "-", "-", "0",
    ]  # fmt: skip


# kappa checks


def summary_of(
    judge: str, labels: int, kappa_value: float | None, unscored: int = 0
) -> JudgeSummary:
    return {
        "id": judge,
        "model": "scripted!judge",
        "hash": "0" * 64,
        "rubric": "r",
        "template": "rubric",
        "verdicts": 0,
        "unscored": 0,
        "unstable": 0,
        "comparisons": 0,
        "flipped": 0,
        "flip_rate": None,
        "labels": labels,
        "labels_unscored": unscored,
        "kappa": kappa_value,
        "weighted": False,
        "sensitivity": None,
        "specificity": None,
        "models": [],
    }


def test_kappa_checks() -> None:
    checks = kappa_checks(
        [
            summary_of("j #1", 20, 0.78),
            summary_of("j #2", 22, 0.95, unscored=2),
            summary_of("j #3", 0, None),
            summary_of("j #4", 12, None),
            summary_of("j #5", 3, None, unscored=3),
        ],
        0.9,
    )
    needs = "needs >= 0.90 (rig-min-judge-kappa)"
    assert checks == [
        Check(
            "rig-min-judge-kappa[j #1]",
            False,
            f"FAIL judge j #1: kappa 0.78 over 20 labels, {needs}",
        ),
        Check(
            "rig-min-judge-kappa[j #2]",
            True,
            f"pass judge j #2: kappa 0.95 over 20 labels, {needs}",
        ),
        Check(
            "rig-min-judge-kappa[j #3]",
            False,
            "FAIL judge j #3: no kappa to judge (no labelled examples graded; give "
            f"--rig-judge-labels), {needs}",
        ),
        Check(
            "rig-min-judge-kappa[j #4]",
            False,
            "FAIL judge j #4: no kappa to judge (undefined: people's labels and its verdicts "
            f"on 12 examples all fall in one class; label examples of each kind), {needs}",
        ),
        Check(
            "rig-min-judge-kappa[j #5]",
            False,
            "FAIL judge j #5: no kappa to judge (it gave no verdict on any of its 3 labelled "
            f"examples), {needs}",
        ),
    ]


def test_a_kappa_at_the_threshold_passes() -> None:
    [check] = kappa_checks([summary_of("j", 1, 0.9)], 0.9)
    assert check.passed
    assert (
        check.line == "pass judge j: kappa 0.90 over 1 label, needs >= 0.90 (rig-min-judge-kappa)"
    )


# labels files


def labels_file(tmp_path: Path, *rows: object, raw: bytes | None = None) -> Path:
    path = tmp_path / "labels.jsonl"
    if raw is None:
        raw = "".join(r if isinstance(r, str) else json.dumps(r) for r in map(_line, rows)).encode()
    path.write_bytes(raw)
    return path


def _line(row: object) -> str:
    return (row if isinstance(row, str) else json.dumps(row)) + "\n"


def test_read_labels(tmp_path: Path) -> None:
    path = labels_file(
        tmp_path,
        {"output": "Paris", "label": True, "input": "Capital of France?", "model": "echo!one"},
        "",
        {"output": "Lyon", "label": "FAIL", "test": "test_capital", "country": "France", "n": 3},
        {"output": "Nice", "label": None},
        {"output": "Rome", "label": " Yes ", "reference": "Rome", "note": None},
        {"output": "Bern"},
        {"output": "Oslo", "label": "no"},
        {"output": "Kyiv", "label": 0},
        {"output": "Lima", "label": 4.5, "flag": True},
        {"output": "Baku", "label": "pass"},
        {"output": "Riga", "label": "passed"},
        {"output": "Doha", "label": "false"},
    )
    labels = read_labels(path)
    assert labels.unlabelled == 2
    assert [(e.line, e.output, e.label) for e in labels.examples] == [
        (1, "Paris", 1.0),
        (3, "Lyon", 0.0),
        (5, "Rome", 1.0),
        (7, "Oslo", 0.0),
        (8, "Kyiv", 0.0),
        (9, "Lima", 4.5),
        (10, "Baku", 1.0),
        (11, "Riga", 1.0),
        (12, "Doha", 0.0),
    ]
    paris, lyon, rome = labels.examples[:3]
    assert (paris.input, paris.reference, paris.test, paris.fields) == (
        "Capital of France?",
        None,
        None,
        {},
    )
    assert (lyon.test, lyon.fields) == ("test_capital", {"country": "France", "n": "3"})
    assert (rome.reference, rome.fields) == ("Rome", {})  # a null value is no value
    assert labels.examples[5].fields == {"flag": "True"}
    assert all(len(e.hash) == 64 for e in labels.examples)


def test_an_examples_hash_is_its_content(tmp_path: Path) -> None:
    row = {"output": "Lyon", "input": "q", "reference": "r", "country": "France", "label": 1}
    first = read_labels(labels_file(tmp_path, row)).examples[0].hash
    # its label, line, test and model are no part of it
    again = {**row, "label": 0, "test": "test_x", "model": "m"}
    assert read_labels(labels_file(tmp_path, "", again)).examples[0].hash == first
    for key, value in (("output", "Nice"), ("input", "q2"), ("reference", "r2"), ("country", "Fr")):
        other = read_labels(labels_file(tmp_path, {**row, key: value})).examples[0].hash
        assert other != first, key
    assert first == read_labels(labels_file(tmp_path, row)).examples[0].hash


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (['{"output": '], ":1: not JSON: Expecting value (column 12)"),
        ([[1, 2]], ":1: expected an object, got a list"),
        (['"text"'], ":1: expected an object, got a string"),
        ([{"label": True}], ':1: no "output" (the text the judge grades)'),
        ([{"output": 3, "label": True}], ':1: "output" must be a string, got a number'),
        ([{"output": None, "label": True}], ':1: "output" must be a string, got null'),
        ([{"output": "a", "input": ["q"], "label": 1}], ':1: "input" must be a string, got a list'),
        (
            [{"output": "a", "reference": 2, "label": 1}],
            ':1: "reference" must be a string, got a number',
        ),
        (
            [{"output": "a", "test": True, "label": 1}],
            ':1: "test" must be a string, got true/false',
        ),
        ([{"output": "a", "model": {}, "label": 1}], ':1: "model" must be a string, got an object'),
        (
            [{"output": "a", "label": 1}, {"output": "b", "label": "maybe"}],
            ':2: "label" must be true/false, "pass"/"fail", "yes"/"no", 1/0, or a number (a '
            "score), got 'maybe'",
        ),
        (
            [{"output": "a", "label": [1]}],
            ':1: "label" must be true/false, "pass"/"fail", "yes"/"no", 1/0, or a number (a '
            "score), got [1]",
        ),
        (
            ['{"output": "a", "label": NaN}'],
            ':1: "label" must be true/false, "pass"/"fail", "yes"/"no", 1/0, or a number (a '
            "score), got nan",
        ),
        (
            [{"output": "a", "label": 1, "country": {"name": "France"}}],
            ':1: "country" is an object: a value for the rubric is text or a number',
        ),
        (
            [{"output": "a", "label": 1, "countries": ["France"]}],
            ':1: "countries" is a list: a value for the rubric is text or a number',
        ),
        (
            [{"output": "a", "label": None}, {"output": "b"}],
            ": no labelled examples (2 rows have no label yet)",
        ),
        ([{"output": "a"}], ": no labelled examples (1 row has no label yet)"),
        (["", "  "], ": no labelled examples (the file has no rows)"),
    ],
)
def test_bad_labels_files(tmp_path: Path, rows: list[object], message: str) -> None:
    path = labels_file(tmp_path, *rows)
    with pytest.raises(ValueError) as raised:
        read_labels(path)
    assert str(raised.value) == f"{path}{message}"


def test_a_labels_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = labels_file(tmp_path, raw=b'{"output": "a", "label": 1}\n{"output": "caf\xe9"}\n')
    with pytest.raises(ValueError) as raised:
        read_labels(path)
    assert str(raised.value) == f"{path}:2: not UTF-8 text (byte 0xe9): save it as UTF-8"


def test_a_labels_file_with_a_bom_reads(tmp_path: Path) -> None:
    path = labels_file(tmp_path, raw=b'\xef\xbb\xbf{"output": "a", "label": 1}\r\n')
    assert [e.output for e in read_labels(path).examples] == ["a"]


def test_a_labels_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as raised:
        read_labels(tmp_path / "missing.jsonl")
    assert (
        str(raised.value)
        == f"{tmp_path / 'missing.jsonl'}: cannot read it: No such file or directory"
    )
    with pytest.raises(ValueError) as raised:
        read_labels(tmp_path)
    assert str(raised.value) == f"{tmp_path}: cannot read it: Is a directory"


def example(test: str | None) -> LabelExample:
    return LabelExample(1, None, "Paris", None, 1.0, test, {}, "0" * 64)


def test_applies() -> None:
    test = "tests/test_x.py::TestC::test_capital"
    assert applies(example(None), test)
    assert applies(example("test_capital"), test)
    assert applies(example(test), test)
    assert not applies(example("test_other"), test)
    assert not applies(example("tests/test_y.py::TestC::test_capital"), test)
    assert not applies(example("TestC::test_capital"), test)


# the labels command


def test_allocate() -> None:
    # shares of 10 over 24: 3.33, 0.83, 2.08, 2.08, 1.67; one each first
    assert allocate([8, 2, 5, 5, 4], 10) == [3, 1, 2, 2, 2]
    assert allocate([8, 2, 5, 5, 4], 5) == [1, 1, 1, 1, 1]
    assert allocate([8, 2, 5, 5, 4], 3) == [1, 0, 1, 1, 0]  # the largest strata first
    assert allocate([8, 2, 5, 5, 4], 30) == [8, 2, 5, 5, 4]
    assert allocate([1, 100], 50) == [1, 49]  # never more than a stratum holds
    assert sum(allocate([7, 3, 1, 9, 2], 13)) == 13


STRATA = {
    ("tests/test_q.py::test_a", "echo!one", "passed"): 8,
    ("tests/test_q.py::test_a", "echo!one", "failed"): 2,
    ("tests/test_q.py::test_a", "echo!two", "passed"): 5,
    ("tests/test_q.py::test_a", "echo!two", "failed"): 5,
    ("tests/test_q.py::test_b", "echo!one", "passed"): 4,
}


def judged_report(tmp_path: Path) -> tuple[Path, dict[str, tuple[str, str, str]]]:
    """A report of 24 judged samples in five strata (and a judge's own chats, and an item of
    no judge); the stratum of each sample's output."""
    items, strata = [], {}
    for (test, model, outcome), size in STRATA.items():
        label = model.split("!")[1]
        for n in range(size):
            output = f"{test} {model} {outcome} {n}"
            strata[output] = (test, model, outcome)
            judged = verdict(t.cast(VerdictOutcome, outcome))
            judged["reference"] = f"reference {n}"
            judged["fields"] = {"country": f"country {n}", "input": "not this"}
            chat = chat_record(
                1,
                [
                    ("system", "Be brief."),
                    ("user", f"question {n}"),
                    ("user", "and more"),
                    ("assistant", "draft"),
                    ("user", "again"),
                    ("assistant", output),
                ],
                model,
                label,
                verdict=judged,
            )
            items.append(
                item(f"{test}[c{n}-{outcome}]", model, label, [chat, judge_chat(1, JUDGE)], JUDGE)
            )
    items.append(
        item(
            "tests/test_q.py::test_n",
            "echo!one",
            "one",
            [sample_chat(1, "echo!one", "one", verdict("failed"))],
        )
    )
    path = tmp_path / "report.json"
    write(path, document({"models": ["echo!one", "echo!two"]}, items, [], "point"))
    return path, strata


def run_labels(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = rigging_main(["labels", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_labels_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, strata = judged_report(tmp_path)
    out = tmp_path / "out" / "labels.jsonl"
    code, printed, errors = run_labels(capsys, str(report), "-o", str(out), "--count", "10")
    assert (code, errors) == (0, "")
    assert printed == (
        f"wrote 10 examples to {out} (of 24 judged samples; 5 strata); "
        'fill in "label" (true/false or a score)\n'
    )
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    drawn = [strata[row["output"]] for row in rows]
    assert {s: drawn.count(s) for s in STRATA} == dict(zip(STRATA, [3, 1, 2, 2, 2], strict=True))
    for row, (test, model, _) in zip(rows, drawn, strict=True):
        n = row["output"].rsplit(" ", 1)[1]
        assert row == {
            "test": test,
            "model": model,
            "input": f"question {n}\n\nand more",
            "output": row["output"],
            "reference": f"reference {n}",
            "country": f"country {n}",
            "label": None,
        }
        assert list(row)[-1] == "label"


def test_the_labels_command_is_deterministic_per_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, _ = judged_report(tmp_path)
    written = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "7")):
        out = tmp_path / f"{name}.jsonl"
        assert (
            run_labels(capsys, str(report), "-o", str(out), "--count", "10", "--seed", seed)[0] == 0
        )
        written[name] = out.read_bytes()
    assert written["a"] == written["b"]
    assert written["a"] != written["c"]
    default = tmp_path / "default.jsonl"
    assert run_labels(capsys, str(report), "-o", str(default), "--count", "10")[0] == 0
    assert default.read_bytes() == written["a"]


def test_the_labels_command_writes_every_sample_when_asked_for_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, strata = judged_report(tmp_path)
    out = tmp_path / "labels.jsonl"
    code, printed, _ = run_labels(capsys, str(report), "-o", str(out))
    assert code == 0
    assert printed.startswith(f"wrote 24 examples to {out} (of 24 judged samples; 5 strata)")
    outputs = [json.loads(line)["output"] for line in out.read_text().splitlines()]
    assert sorted(outputs) == sorted(strata)
    with pytest.raises(ValueError) as raised:  # as written, nothing is labelled yet
        read_labels(out)
    assert str(raised.value) == f"{out}: no labelled examples (24 rows have no label yet)"


def test_a_labelled_file_reads_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report, _ = judged_report(tmp_path)
    out = tmp_path / "labels.jsonl"
    assert run_labels(capsys, str(report), "-o", str(out), "--count", "3")[0] == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    out.write_text("".join(json.dumps({**row, "label": True}) + "\n" for row in rows))
    examples = read_labels(out).examples
    assert [(e.output, e.test, e.fields, e.label) for e in examples] == [
        (row["output"], row["test"], {"country": row["country"]}, 1.0) for row in rows
    ]


def test_the_labels_command_refuses_what_is_not_a_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "report.json"
    path.write_text("[]")
    code, printed, errors = run_labels(capsys, str(path), "-o", str(tmp_path / "out.jsonl"))
    assert (code, printed) == (2, "")
    assert errors == f"error: {path} is not a pytest-rigging report (version 1 or 2)\n"
    assert not (tmp_path / "out.jsonl").exists()


def test_the_labels_command_needs_judged_samples(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "report.json"
    plain = item(
        "tests/test_q.py::test_n",
        "echo!one",
        "one",
        [sample_chat(1, "echo!one", "one", verdict("failed"))],
    )
    write(path, document({}, [plain], [], "point"))
    code, printed, errors = run_labels(capsys, str(path), "-o", str(tmp_path / "out.jsonl"))
    assert (code, printed) == (2, "")
    assert errors == (
        f"error: {path} has no judged samples (run a rig_judge test with --rig-report)\n"
    )


def test_the_labels_command_needs_a_count_of_at_least_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, _ = judged_report(tmp_path)
    with pytest.raises(SystemExit) as exited:
        rigging_main(["labels", str(report), "-o", str(tmp_path / "o.jsonl"), "--count", "0"])
    assert exited.value.code == 2
    assert (
        "argument --count: expected a whole number of at least 1, got '0'"
        in capsys.readouterr().err
    )


def test_the_labels_command_says_when_it_cannot_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report, _ = judged_report(tmp_path)
    folder = tmp_path / "folder"
    folder.mkdir()
    code, _, errors = run_labels(capsys, str(report), "-o", str(folder))
    assert code == 2
    assert errors == f"error: cannot write {folder}: Is a directory\n"


def test_an_unscored_comparison_is_no_flip_and_no_comparison() -> None:
    """The order-flip rate is of the comparisons the judge decided."""
    flipped: PairwiseRecord = {"winner": "tie", "flipped": True, "versus": "text"}
    undecided: PairwiseRecord = {"winner": "tie", "flipped": False, "versus": "text"}
    chats = [
        sample_chat(1, "echo!one", "one", verdict("passed", pairwise=flipped)),
        sample_chat(2, "echo!one", "one", verdict("unscored", pairwise=undecided)),
    ]
    [judged] = summaries([item("tests/test_q.py::test_p", "echo!one", "one", chats, JUDGE)])
    assert (judged["comparisons"], judged["flipped"], judged["flip_rate"]) == (1, 1, 1.0)


def test_labels_count_once_per_line_whoever_graded_them() -> None:
    """Two lines of one content are two labels (two people may label one text); one line
    graded in two processes is one."""
    twice: list[LabelRecord] = [
        {"judge": JUDGE["id"], "example": "same", "line": line, "label": 1.0, "verdict": 1.0}
        for line in (1, 2)
    ]
    chats = [sample_chat(1, "echo!one", "one", verdict("passed"))]
    items = [
        item("tests/test_q.py::test_a[x]", "echo!one", "one", chats, JUDGE, twice),
        item("tests/test_q.py::test_a[y]", "echo!one", "one", chats, JUDGE, twice[:1]),
    ]
    [judged] = summaries(items)
    assert judged["labels"] == 2


def test_the_labels_command_draws_an_output_given_alike_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two models that gave one answer to one question: one example to label."""
    chats = [
        (model, chat_record(1, [("user", "q"), ("assistant", "Paris")], model, label))
        for model, label in (("echo!one", "one"), ("echo!two", "two"))
    ]
    items = []
    for model, chat in chats:
        chat["verdict"] = verdict("passed")
        label = model.split("!")[1]
        items.append(item(f"tests/test_q.py::test_a[{label}]", model, label, [chat], JUDGE))
    path = tmp_path / "report.json"
    write(path, document({"models": ["echo!one", "echo!two"]}, items, [], "point"))
    out = tmp_path / "labels.jsonl"
    code, printed, _ = run_labels(capsys, str(path), "-o", str(out))
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert (code, len(rows), rows[0]["output"]) == (0, 1, "Paris")
    assert printed.startswith(f"wrote 1 example to {out} (of 2 judged samples; 2 strata)")
