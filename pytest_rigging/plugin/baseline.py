"""A committed baseline: `--rig-save-baseline PATH` writes one, `--rig-baseline PATH`
compares a run with it. Items that flipped (passed there, fail here, and the reverse) and
items failing in both (known failures, which then don't fail the run) are listed; so are
models whose parse or pass rate moved beyond noise (95% Wilson intervals that don't
overlap), which `--rig-fail-on-regression` fails the run on when the rate dropped. Items
are matched by node id: new items and those not run are named, and new ones that pair
with ones not run by test function and cell are pointed out as cases whose id changed."""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typing_extensions import TypedDict

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
"""New and missing items named at the end of a run; the rest are counted."""


class BaselineItem(TypedDict):
    model: str
    params: str
    cell: str
    outcome: str
    samples: list[int] | None


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
    which holds the case and the cell), and each model's rates with their intervals."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "items": {
            item["nodeid"]: {
                "model": item["model"],
                "params": item["params"],
                "cell": item["cell"],
                "outcome": item["outcome"],
                "samples": item["samples"],
            }
            for item in doc["items"]
        },
        "models": {
            row["model"]: {
                "label": row["label"],
                "parse_rate": rate_of(row, "parse_rate"),
                "pass_rate": rate_of(row, "pass_rate"),
            }
            for row in doc["models"]
        },
    }


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


def known_failure(baseline: BaselineDocument, nodeid: str) -> bool:
    """Whether the item failed (a test failure, not an infrastructure error) there."""
    item = baseline["items"].get(nodeid)
    return item is not None and item["outcome"] == "failed"


def mark_if_known(
    baseline: BaselineDocument, path: Path, record: ItemRecord, report: pytest.TestReport
) -> None:
    """An item whose test failed here and in the baseline (read from `path`) is reported
    as a known failure (xfail): it doesn't fail the run."""
    if (
        record["outcome"] == "failed"
        and report.when == "call"
        and known_failure(baseline, record["nodeid"])
    ):
        mark_known_failure(report, f"rigging: known failure (it failed in {path} too)")


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
    """Not in the baseline."""
    missing: list[str] = field(default_factory=list)
    """In the baseline, not in this run (deselected, removed, renamed, or in another shard)."""
    paired: int = 0
    """New items that pair with missing ones by test function and cell: most likely cases
    whose parameter id changed (an edited value), which lost their history."""
    drifts: list[Drift] = field(default_factory=list)
    compared: list[str] = field(default_factory=list)
    """The models whose rates were compared (in both runs)."""

    @property
    def regressions(self) -> list[Drift]:
        return [d for d in self.drifts if d.dropped]


def compare(
    baseline: BaselineDocument, items: t.Sequence[ItemRecord], now: BaselineDocument
) -> Comparison:
    """This run (`items`, and `now`: this run as a baseline) against `baseline`."""
    result = Comparison()
    ran = {item["nodeid"] for item in items}
    result.missing = [nodeid for nodeid in baseline["items"] if nodeid not in ran]
    unmatched: dict[tuple[str, str], int] = {}
    for nodeid in result.missing:
        place = (group_key(nodeid), baseline["items"][nodeid]["cell"])
        unmatched[place] = unmatched.get(place, 0) + 1
    for item in items:
        before = baseline["items"].get(item["nodeid"])
        if before is None:
            result.new.append(item["nodeid"])
            place = (group_key(item["nodeid"]), item["cell"])
            if unmatched.get(place):
                unmatched[place] -= 1
                result.paired += 1
            continue
        failing = item["outcome"] in ("failed", "error")
        if before["outcome"] == "passed" and failing:
            result.flipped.append(item["nodeid"])
        elif before["outcome"] == "failed" and item["outcome"] == "passed":
            result.fixed.append(item["nodeid"])
        elif before["outcome"] == "failed" and item["outcome"] == "failed":
            result.known.append(item["nodeid"])
    result.new.sort()  # xdist reports items in no set order
    for model, row in now["models"].items():
        old = baseline["models"].get(model)
        if old is None:
            continue
        result.compared.append(model)
        for rate in RATES:
            was, is_ = old[rate], row[rate]
            if was["interval"] and is_["interval"] and _apart(was["interval"], is_["interval"]):
                result.drifts.append(Drift(model, rate, was, is_))
    return result


def _apart(one: list[float], other: list[float]) -> bool:
    return one[1] < other[0] or other[1] < one[0]


def lines(comparison: Comparison, path: str, labels: dict[str, str]) -> list[str]:
    """The short table printed at the end of the run."""
    out = [
        f"against {path}: {len(comparison.flipped)} flipped to failing, "
        f"{len(comparison.fixed)} fixed, {len(comparison.known)} known failures, "
        f"{len(comparison.drifts)} rates moved beyond noise; {len(comparison.new)} new items, "
        f"{len(comparison.missing)} of its items not run"
    ]
    for title, nodeids in (
        ("flipped (passed there, fail here)", comparison.flipped),
        ("fixed (failed there, pass here)", comparison.fixed),
        ("known failures (fail in both)", comparison.known),
    ):
        out.extend(f"  {title}: {nodeid}" for nodeid in nodeids)
    for title, nodeids in (
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
            "or ids=... on parametrize"
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
