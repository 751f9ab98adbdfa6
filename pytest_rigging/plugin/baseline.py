"""A committed baseline: `--rig-save-baseline PATH` writes one, `--rig-baseline PATH`
compares a run with it. Items that flipped (passed there, fail here, and the reverse) and
items failing in both (known failures, which then don't fail the run) are listed; so are
models whose parse or pass rate moved beyond noise (95% Wilson intervals that don't
overlap), which `--rig-fail-on-regression` fails the run on when the rate dropped."""

from __future__ import annotations

import json
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typing_extensions import TypedDict

from pytest_rigging.plugin._compat import mark_known_failure
from pytest_rigging.plugin.records import (
    ItemRecord,
    RateFigures,
    ReportDocument,
    Row,
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
    missing: int = 0
    """In the baseline, not in this run (deselected, removed, or in another shard)."""
    drifts: list[Drift] = field(default_factory=list)

    @property
    def regressions(self) -> list[Drift]:
        return [d for d in self.drifts if d.dropped]


def compare(
    baseline: BaselineDocument, items: t.Sequence[ItemRecord], now: BaselineDocument
) -> Comparison:
    """This run (`items`, and `now`: this run as a baseline) against `baseline`."""
    result = Comparison()
    ran = {item["nodeid"] for item in items}
    result.missing = sum(1 for nodeid in baseline["items"] if nodeid not in ran)
    for item in items:
        before = baseline["items"].get(item["nodeid"])
        if before is None:
            result.new.append(item["nodeid"])
            continue
        failing = item["outcome"] in ("failed", "error")
        if before["outcome"] == "passed" and failing:
            result.flipped.append(item["nodeid"])
        elif before["outcome"] == "failed" and item["outcome"] == "passed":
            result.fixed.append(item["nodeid"])
        elif before["outcome"] == "failed" and item["outcome"] == "failed":
            result.known.append(item["nodeid"])
    for model, row in now["models"].items():
        old = baseline["models"].get(model)
        if old is None:
            continue
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
        f"{comparison.missing} of its items not run"
    ]
    for title, nodeids in (
        ("flipped (passed there, fail here)", comparison.flipped),
        ("fixed (failed there, pass here)", comparison.fixed),
        ("known failures (fail in both)", comparison.known),
    ):
        out.extend(f"  {title}: {nodeid}" for nodeid in nodeids)
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
    labels = {r["model"]: r["label"] or r["model"] for r in rows}
    terminal.write_sep("=", "rigging: against the baseline")
    against = str(run.baseline_file.path) if run.baseline_file is not None else ""
    for line in lines(comparison, against, labels):
        terminal.write_line(line)
    if run.fail_on_regression is not None:
        for drift in comparison.regressions:
            terminal.write_line(
                f"FAIL {labels.get(drift.model, drift.model)}: "
                f"{drift.rate.replace('_', ' ')} dropped beyond noise since the "
                f"baseline ({run.fail_on_regression})",
                red=True,
                bold=True,
            )
