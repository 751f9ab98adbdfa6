"""A committed baseline: `--rig-save-baseline PATH` writes one, `--rig-baseline PATH`
compares a run with it. Items that flipped (passed there, fail here, and the reverse) and
items failing in both (known failures, which then don't fail the run) are listed; so are
models whose parse or pass rate moved beyond noise (95% Wilson intervals that don't
overlap), which `--rig-fail-on-regression` fails the run on when the rate dropped. Items
are matched by node id: new items and those not run are named, and new ones that pair
with ones not run by test function and cell are pointed out as cases whose id changed.
A `rig_cases` item keeps its case's fingerprint (id and content hash), so that an edited
case is "changed" (neither flipped, fixed nor a known failure), a case gone from its
test's dataset "removed" (not merely not run), and one new to it "new"."""

from __future__ import annotations

import json
import typing as t
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typing_extensions import NotRequired, TypedDict

from pytest_rigging.plugin._compat import mark_known_failure
from pytest_rigging.plugin.gates import Check
from pytest_rigging.plugin.records import (
    ItemRecord,
    RateFigures,
    ReportDocument,
    Row,
    group_key,
    rate_of,
    write_json,
)
from pytest_rigging.plugin.state import warned

if t.TYPE_CHECKING:
    from pytest_rigging.plugin.options import FileSetting
    from pytest_rigging.plugin.report import Reporter
    from pytest_rigging.plugin.state import Run

FORMAT = "pytest-rigging-baseline"
VERSION = 1
RATES: tuple[t.Literal["parse_rate", "pass_rate"], ...] = ("parse_rate", "pass_rate")
LISTED = 10
"""Items named per category (new, not run, changed, removed, new cases) at the end of a
run; the rest are counted."""


class CaseFingerprint(TypedDict):
    """A `rig_cases` item's case: its id and its content's hash."""

    id: str
    hash: str


class BaselineItem(TypedDict):
    model: str
    params: str
    cell: str
    outcome: str
    samples: list[int] | None
    case: NotRequired[CaseFingerprint]
    """A `rig_cases` item's case (absent for other items, and in older baselines)."""
    judge: NotRequired[str]
    """A `rig_judge` item's judge: its model and the hash of what it is asked."""


BaselineRate = RateFigures


class BaselineModel(TypedDict):
    label: str | None
    parse_rate: BaselineRate
    pass_rate: BaselineRate


class BaselineDocument(TypedDict):
    format: str
    version: int
    items: dict[str, BaselineItem]
    models: dict[str, BaselineModel]


def from_report(doc: ReportDocument) -> BaselineDocument:
    """What a baseline keeps of a run: each item's outcome and sample counts (by node id,
    which holds the case and the cell) and its case's fingerprint if it has one, and each
    model's rates with their intervals."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "items": {item["nodeid"]: _kept(item) for item in doc["items"]},
        "models": {
            row["model"]: {
                "label": row["label"],
                "parse_rate": rate_of(row, "parse_rate"),
                "pass_rate": rate_of(row, "pass_rate"),
            }
            for row in doc["models"]
        },
    }


def _kept(item: ItemRecord) -> BaselineItem:
    kept: BaselineItem = {
        "model": item["model"],
        "params": item["params"],
        "cell": item["cell"],
        "outcome": item["outcome"],
        "samples": item["samples"],
    }
    case = item.get("case")
    if case is not None:
        kept["case"] = {"id": case["id"], "hash": case["hash"]}
    judge = item.get("judge")
    if judge is not None:
        kept["judge"] = judge["id"]
    return kept


def save(path: Path, baseline: BaselineDocument) -> None:
    """Sorted, so that saving an unchanged run changes nothing in version control."""
    write_json(path, baseline, sort_keys=True)


def load(path: Path) -> BaselineDocument:
    """A baseline `--rig-save-baseline` wrote; a one-line ValueError naming the file for
    anything else (missing, not JSON, another format or version)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    except ValueError:
        raise ValueError(f"{path} is not JSON: not a pytest-rigging baseline") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a pytest-rigging baseline (one written by --rig-save-baseline)"
        )
    if doc.get("version") != VERSION:
        raise ValueError(
            f"{path} is a baseline of version {doc.get('version')!r}; this version of "
            f"pytest-rigging reads version {VERSION}: save it again with --rig-save-baseline"
        )
    items, models = doc.get("items"), doc.get("models")
    if not isinstance(items, dict) or not isinstance(models, dict):
        raise ValueError(f"{path} is not a valid pytest-rigging baseline: no items or models")
    return t.cast(BaselineDocument, doc)


def known_failure(baseline: BaselineDocument, record: ItemRecord) -> bool:
    """Whether the item failed (a test failure, not an infrastructure error) there, on
    the same case: an edited case's failure is not known."""
    item = baseline["items"].get(record["nodeid"])
    return (
        item is not None
        and item["outcome"] == "failed"
        and not changed(item, record)
        and not rejudged(item, record)
    )


def changed(before: BaselineItem, now: ItemRecord) -> bool:
    """Whether the item's case content differs from the baseline's (both fingerprinted)."""
    was, is_ = before.get("case"), now.get("case")
    return was is not None and is_ is not None and was["hash"] != is_["hash"]


def rejudged(before: BaselineItem, now: ItemRecord) -> bool:
    """Whether another judge (model, rubric or template) judged the item here than in the
    baseline: its outcomes can't be compared."""
    judge = now.get("judge")
    return before.get("judge") != (judge["id"] if judge is not None else None)


def mark_if_known(
    baseline: BaselineDocument, path: Path, record: ItemRecord, report: pytest.TestReport
) -> bool:
    """An item whose test failed here and in the baseline (read from `path`) is reported
    as a known failure (xfail): it doesn't fail the run. Whether it was."""
    if record["outcome"] == "failed" and report.when == "call" and known_failure(baseline, record):
        mark_known_failure(report, f"rigging: known failure (it failed in {path} too)")
        return True
    return False


class Drift(t.NamedTuple):
    model: str
    rate: str
    before: BaselineRate
    now: BaselineRate

    @property
    def dropped(self) -> bool:
        return (self.now["value"] or 0.0) < (self.before["value"] or 0.0)


@dataclass
class Comparison:
    flipped: list[str] = field(default_factory=list)
    """Passed in the baseline, fail (or error) here."""
    fixed: list[str] = field(default_factory=list)
    """Failed in the baseline, pass here."""
    known: list[str] = field(default_factory=list)
    """Failed in both."""
    new: list[str] = field(default_factory=list)
    """Not in the baseline (and not on a new case: `new_cases`)."""
    missing: list[str] = field(default_factory=list)
    """In the baseline, not in this run (deselected, removed, renamed, or in another shard)."""
    changed: list[str] = field(default_factory=list)
    """In both, on a case whose content differs: not compared."""
    rejudged: list[str] = field(default_factory=list)
    """In both, judged by another judge (its model, rubric or template): not compared."""
    removed: list[str] = field(default_factory=list)
    """In the baseline, on a case no longer among its test's cases as collected here."""
    new_cases: list[str] = field(default_factory=list)
    """Not in the baseline, on a case new to its test (whose cases the baseline has)."""
    fingerprints: bool = False
    """Whether either run has `rig_cases` items: the comparison then counts their cases."""
    paired: int = 0
    """New items that pair with missing ones by test function and cell: most likely cases
    whose parameter id changed (an edited value), which lost their history. `rig_cases`
    items never pair: their ids don't depend on their content."""
    drifts: list[Drift] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)
    """The models whose rates were compared (in both runs)."""

    @property
    def regressions(self) -> list[Drift]:
        return [d for d in self.drifts if d.dropped]


def compare(
    baseline: BaselineDocument,
    items: t.Sequence[ItemRecord],
    now: BaselineDocument,
    cases: Mapping[str, Collection[str]] | None = None,
) -> Comparison:
    """This run (`items`, and `now`: this run as a baseline) against `baseline`; `cases`
    holds each `rig_cases` test's case ids as collected (`cases.case_ids`), without which
    no case is found removed."""
    result = Comparison()
    ran = {item["nodeid"] for item in items}
    collected = {function: set(ids) for function, ids in (cases or {}).items()}
    known: dict[str, set[str]] = {}  # the case ids the baseline has, per test function
    unmatched: dict[tuple[str, str], int] = {}
    for nodeid, kept in baseline["items"].items():
        case, function = kept.get("case"), group_key(nodeid)
        if case is not None:
            known.setdefault(function, set()).add(case["id"])
        if nodeid in ran:
            continue
        if case is not None and function in collected and case["id"] not in collected[function]:
            result.removed.append(nodeid)
            continue
        result.missing.append(nodeid)
        if case is None:
            place = (function, kept["cell"])
            unmatched[place] = unmatched.get(place, 0) + 1
    for item in items:
        before = baseline["items"].get(item["nodeid"])
        case, function = item.get("case"), group_key(item["nodeid"])
        if before is None:
            if case is None:
                result.new.append(item["nodeid"])
                place = (function, item["cell"])
                if unmatched.get(place):
                    unmatched[place] -= 1
                    result.paired += 1
            elif function in known and case["id"] not in known[function]:
                result.new_cases.append(item["nodeid"])
            else:  # a known case on a new cell, or a test the baseline has no cases of
                result.new.append(item["nodeid"])
            continue
        if changed(before, item):
            result.changed.append(item["nodeid"])
            continue
        if rejudged(before, item):
            result.rejudged.append(item["nodeid"])
            continue
        failing = item["outcome"] in ("failed", "error")
        if before["outcome"] == "passed" and failing:
            result.flipped.append(item["nodeid"])
        elif before["outcome"] == "failed" and item["outcome"] == "passed":
            result.fixed.append(item["nodeid"])
        elif before["outcome"] == "failed" and item["outcome"] == "failed":
            result.known.append(item["nodeid"])
    for found in (result.flipped, result.fixed, result.known, result.changed, result.rejudged):
        found.sort()  # xdist reports items in no set order
    judged_apart = {item["model"] for item in items if item["nodeid"] in set(result.rejudged)}
    result.new.sort()
    result.new_cases.sort()
    result.fingerprints = bool(known) or any("case" in item for item in items)
    for model, row in now["models"].items():
        old = baseline["models"].get(model)
        if old is None:
            continue
        result.compared.append(model)
        for rate in RATES:
            if rate == "pass_rate" and model in judged_apart:
                continue  # another judge's pass rate is not this one's
            was, is_ = old[rate], row[rate]
            if was["interval"] and is_["interval"] and _apart(was["interval"], is_["interval"]):
                result.drifts.append(Drift(model, rate, was, is_))
    return result


def _apart(one: list[float], other: list[float]) -> bool:
    return one[1] < other[0] or other[1] < one[0]


def lines(comparison: Comparison, path: str, labels: dict[str, str]) -> list[str]:
    """The short table printed at the end of the run."""
    head = (
        f"against {path}: {len(comparison.flipped)} flipped to failing, "
        f"{len(comparison.fixed)} fixed, {len(comparison.known)} known failures, "
        f"{len(comparison.drifts)} rates moved beyond noise; {len(comparison.new)} new items, "
        f"{len(comparison.missing)} of its items not run"
    )
    if comparison.fingerprints:
        head += (
            f"; items of cases: {len(comparison.changed)} changed, {len(comparison.removed)} "
            f"removed, {len(comparison.new_cases)} new"
        )
    out = [head]
    if comparison.rejudged:
        out.append(
            f"  {len(comparison.rejudged)} items were judged by another judge than the "
            "baseline's (its model, rubric or template changed): their outcomes and their "
            "models' pass rates are not compared; save a new baseline with this judge"
        )
    for title, nodeids in (
        ("flipped (passed there, fail here)", comparison.flipped),
        ("fixed (failed there, pass here)", comparison.fixed),
        ("known failures (fail in both)", comparison.known),
    ):
        out.extend(f"  {title}: {nodeid}" for nodeid in nodeids)
    for title, nodeids in (
        ("changed (the case's content differs from the baseline's)", comparison.changed),
        ("judged by another judge than the baseline's", comparison.rejudged),
        ("removed (no longer among its test's cases)", comparison.removed),
        ("new case (not in the baseline)", comparison.new_cases),
        ("new (not in the baseline)", comparison.new),
        ("not run (in the baseline, not here)", comparison.missing),
    ):
        out.extend(f"  {title}: {nodeid}" for nodeid in nodeids[:LISTED])
        if len(nodeids) > LISTED:
            out.append(f"  {title}: ... and {len(nodeids) - LISTED} more")
    if comparison.paired:
        out.append(
            f"  {comparison.paired} new items pair with {comparison.paired} not run by test "
            "and cell: most likely their ids changed (a parametrized case's id is made of its "
            "values, so an edited value starts a new history)"
        )
        out.append(
            "  give each case a stable id to keep its history: pytest.param(..., id=...), "
            "ids=... on parametrize, or cases from a file with "
            "@pytest.mark.rig_cases(FILE, id=FIELD)"
        )
    for drift in comparison.drifts:
        name = labels.get(drift.model, drift.model)
        out.append(
            f"  {'dropped' if drift.dropped else 'rose'}: {name} {drift.rate.replace('_', ' ')} "
            f"{_shown(drift.before)} -> {_shown(drift.now)}"
        )
    return out


def _shown(rate: BaselineRate) -> str:
    low, high = rate["interval"] or (0.0, 0.0)
    value = rate["value"] or 0.0
    return f"{value:.1%} [{low:.1%}-{high:.1%}]"


def save_run(saved: FileSetting, reporter: Reporter) -> None:
    """`--rig-save-baseline PATH` (or ini `rig_save_baseline`): this run as a baseline; a
    file that can't be written is a warning."""
    with warned(f"write {saved.where} {saved.path}"):
        save(saved.path, from_report(reporter.document()))


def terminal(
    run: Run,
    comparison: Comparison,
    rows: t.Sequence[Row],
    terminal: pytest.TerminalReporter,
) -> None:
    """The comparison at the end of the run, and, with `--rig-fail-on-regression`, a FAIL
    line per rate that dropped beyond noise."""
    labels = _labels(rows)
    terminal.write_sep("=", "rigging: against the baseline")
    against = str(run.baseline_file.path) if run.baseline_file is not None else ""
    for line in lines(comparison, against, labels):
        terminal.write_line(line)
    if run.fail_on_regression is not None:
        for drift in comparison.regressions:
            terminal.write_line(
                _dropped_line(drift, labels, run.fail_on_regression), red=True, bold=True
            )


def checks(comparison: Comparison, rows: t.Sequence[Row], asked: str) -> list[Check]:
    """`--rig-fail-on-regression` as the run's checks: one per model the baseline has too,
    failed with a FAIL line per rate that dropped beyond noise (naming where the
    failing was `asked` for)."""
    labels = _labels(rows)
    made = []
    for model in comparison.compared:
        name = labels.get(model, model)
        dropped = [
            _dropped_line(d, labels, asked) for d in comparison.regressions if d.model == model
        ]
        line = "\n".join(dropped) or f"pass {name}: no rate dropped beyond noise since the baseline"
        made.append(Check(f"rig-fail-on-regression[{name}]", not dropped, line))
    return made


def _labels(rows: t.Sequence[Row]) -> dict[str, str]:
    return {r["model"]: r["label"] or r["model"] for r in rows}


def _dropped_line(drift: Drift, labels: dict[str, str], asked: str) -> str:
    return (
        f"FAIL {labels.get(drift.model, drift.model)}: {drift.rate.replace('_', ' ')} "
        f"dropped beyond noise since the baseline ({asked})"
    )
