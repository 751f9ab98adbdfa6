"""Reports: an item's record and JUnit properties, the terminal table, the JSON document,
and the merge of several JSON reports (CI shards) into one."""

from __future__ import annotations

import functools
import json
import os
import textwrap
import typing as t
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError
from tabulate import tabulate

from pytest_rigging.error import GenerationError, Unscored
from pytest_rigging.plugin.gates import Check, Gate, GateError, GateResult, evaluate, read_gates
from pytest_rigging.plugin.matrix import DEFAULT_MODEL_SECTION, Cell, Settings, params_text
from pytest_rigging.plugin.records import (
    CaseRecord,
    ChatRecord,
    DatasetRecord,
    GateRecord,
    ItemRecord,
    JudgeSummary,
    RateName,
    ReportDocument,
    Row,
    RunSettings,
    item_of,
    rate_of,
    role,
    sample_number,
    with_checks,
    write_json,
)
from pytest_rigging.plugin.stats import tabulate_items

if t.TYPE_CHECKING:
    from pytest_rigging.plugin.state import Run

REPORT_VERSION = 2
"""Version 2 numbers samples from 1, as the terminal does (version 1 counted from 0), and
gives each chat its sample's check. Fields added since (a `rig_cases` item's `case`, the
`datasets`) are optional: a report without them reads as it did."""
READ_VERSIONS = (1, REPORT_VERSION)


def _rate(name: RateName) -> t.Callable[[Row], str]:
    def shown(row: Row) -> str:
        figures = rate_of(row, name)
        value, bounds = figures["value"], figures["interval"]
        if value is None:
            return "-"
        text = f"{value:.1%}"
        if bounds:
            low, high = bounds
            text += f" [{low * 100:.1f}-{high * 100:.1f}]"
        return text

    return shown


def _latency(row: Row) -> str:
    return "-" if row["median_latency"] is None else f"{row['median_latency']:.2f}s"


def _cost(row: Row) -> str:
    cost = row.get("cost")
    return "-" if cost is None else f"${cost:,.4f}"


def _count(
    key: t.Literal["chats", "first_try", "recovered", "exhausted", "error"],
) -> t.Callable[[Row], str]:
    return lambda row: str(row[key])


@dataclass(frozen=True)
class Column:
    """A column of the per-model table after the model (and params) columns."""

    header: str
    wrapped: str
    """The header on two lines, for a table that doesn't fit on one."""
    cell: t.Callable[[Row], str]
    drops: int = 0
    """When the column goes from a table too wide for the terminal: 1 first, then 2...;
    0 never (the rates and their intervals)."""
    quiet: bool = True
    """Shown at -q."""
    needs: t.Literal["verdicts", "tool_calls"] | None = None
    """Shown only when some row has it: a judge gave verdicts (`rig_judge` tests ran), or
    a model called tools."""


def _unstable(row: Row) -> str:
    verdicts, unstable = row.get("verdicts", 0), row.get("unstable", 0)
    return f"{unstable} ({unstable / verdicts:.0%})" if verdicts else "-"


def _unscored(row: Row) -> str:
    return str(rate_of(row, "unscored_rate")["counts"][0]) if row.get("verdicts") else "-"


COLUMNS = (
    Column("chats", "chats", _count("chats"), drops=5, quiet=False),
    Column("1st try", "1st\ntry", _count("first_try"), drops=4, quiet=False),
    Column("recovered", "recov-\nered", _count("recovered"), drops=4, quiet=False),
    Column("exhausted", "exhaus-\nted", _count("exhausted"), drops=4, quiet=False),
    Column("errors", "errors", _count("error"), drops=6),
    Column("parse rate [95% CI]", "parse rate\n[95% CI]", _rate("parse_rate")),
    Column("pass rate [95% CI]", "pass rate\n[95% CI]", _rate("pass_rate")),
    Column(
        "judged pass [95% CI]",
        "judged pass\n[95% CI]",
        _rate("judged_pass_rate"),
        needs="verdicts",
    ),
    Column("unstable", "unst-\nable", _unstable, drops=4, needs="verdicts"),
    Column("unscored", "unsc-\nored", _unscored, needs="verdicts"),
    Column(
        "tool calls parsed [95% CI]",
        "tool calls\nparsed [95% CI]",
        _rate("tool_parse_rate"),
        needs="tool_calls",
    ),
    Column(
        "items ok/fail/err",
        "items\nok/fail/err",
        lambda r: f"{r['items_passed']}/{r['items_failed']}/{r['items_errored']}",
        drops=7,
    ),
    Column(
        "tokens in/out",
        "tokens\nin/out",
        lambda r: f"{r['input_tokens']}/{r['output_tokens']}",
        drops=3,
    ),
    Column("cost", "cost", _cost, drops=2),
    Column("latency p50", "latency\np50", _latency, drops=1, quiet=False),
)
"""The table's columns: what the parse rate counts (its buckets, and the errors it leaves
out), the rates (with a judge's: its verdicts' pass rate, the unstable ones and the
unscored ones, counted apart from pass and fail), the items' outcomes, what the run spent
and how long calls took. At -q, the buckets, the chats and the latency are left out; the
rates keep their intervals."""


def table(
    rows: t.Sequence[Row],
    *,
    verbosity: int = 0,
    failing: t.Collection[str] = (),
    tablefmt: str = "simple",
    width: int | None = None,
) -> str:
    """The per-model table (per model and params when `verbosity` > 0; without the
    parse buckets, chats and latency at -q); rows named in `failing` (models that failed
    a gate) are marked. Given a `width`, the table fits it: headers on two lines, then
    the columns that matter least left out, said in a line after the table; the model,
    the params and the rates with their intervals always stay, the first two wrapped when
    nothing else is left to give."""
    by_params = any(r["params"] is not None for r in rows)
    names = {(r["model"], r["label"] or r["model"]) for r in rows}
    labels = [label for _, label in names]
    heads = []
    for row in rows:
        label = row["label"] or row["model"]
        shown = label if labels.count(label) == 1 else row["model"]
        name = ("FAIL " if row["model"] in failing else "") + shown
        heads.append([name, row["params"] or ""] if by_params else [name])
    head_names = ["model", "params"] if by_params else ["model"]
    present = {need for need in ("verdicts", "tool_calls") if any(r.get(need) for r in rows)}
    columns = [
        c
        for c in COLUMNS
        if (verbosity >= 0 or c.quiet) and (c.needs is None or c.needs in present)
    ]

    def render(kept: t.Sequence[Column], wrapped: bool, head_width: int | None = None) -> str:
        lines = [
            [*head, *(c.cell(row) for c in kept)] for head, row in zip(heads, rows, strict=True)
        ]
        headers = [*head_names, *(c.wrapped if wrapped else c.header for c in kept)]
        limits = [head_width] * len(head_names) + [None] * len(kept) if head_width else None
        return tabulate(
            lines,
            headers=headers,
            tablefmt=tablefmt,
            disable_numparse=True,
            maxcolwidths=limits,
        )

    if width is None:
        return render(columns, wrapped=False)
    for drops in range(max(c.drops for c in columns) + 1):
        kept = [c for c in columns if not 0 < c.drops <= drops]
        for wrapped in (False, True):
            text = render(kept, wrapped)
            if _fits(text, width):
                return text + _dropped(columns, kept, width)
    # nothing left to leave out: the model (and params) columns wrap, as far as 8 wide
    longest = max((len(cell) for head in heads for cell in head), default=0)
    for head_width in range(longest - 1, 7, -1):
        text = render(kept, wrapped=True, head_width=head_width)
        if _fits(text, width):
            break
    return text + _dropped(columns, kept, width)


def _fits(text: str, width: int) -> bool:
    return max(map(len, text.splitlines()), default=0) <= width


def _dropped(columns: t.Sequence[Column], kept: t.Sequence[Column], width: int) -> str:
    """The line after a table that left columns out: which, and where to find them."""
    names = [c.header for c in columns if c not in kept]
    if not names:
        return ""
    line = (
        f"(left out to fit {width} columns: {', '.join(names)}; widen the terminal "
        "or see --rig-report)"
    )
    return "\n" + textwrap.fill(line, width, break_on_hyphens=False)


def document(
    settings: RunSettings,
    items: t.Sequence[ItemRecord],
    gates: t.Sequence[Gate],
    mode: str,
) -> ReportDocument:
    """The JSON report: settings, per-model and per-cell tables, gates, the datasets of
    `rig_cases` tests, the judges of `rig_judge` tests, and every item."""
    models = tabulate_items(items, by_params=False)
    doc: ReportDocument = {
        "version": REPORT_VERSION,
        "settings": {
            **settings,
            "gates": [
                {"option": g.option, "model": g.model, "threshold": g.threshold} for g in gates
            ],
            "gate_mode": mode,
        },
        "models": models,
        "cells": tabulate_items(items, by_params=True),
        "gates": [_gate_json(v) for v in evaluate(gates, models, mode)],
        "datasets": datasets(items),
        "items": list(items),
    }
    judges = judge_summaries(items)
    if judges:
        doc["judges"] = judges
    return doc


UNSCORED_LISTED = 10
"""Unscored items named under the judges' table; the rest are counted."""


def unscored_lines(items: t.Sequence[ItemRecord]) -> list[str]:
    """The unscored items and why (pytest's short summary lists no custom outcome): the
    first unscored sample's reason, escaped (it quotes the judge's reply)."""
    from pytest_rigging.plugin.samples import MESSAGE_EXCERPT, excerpt

    unscored = [item for item in items if item["outcome"] == "unscored"]
    if not unscored:
        return []
    lines = [f"rigging: {len(unscored)} unscored (a judge gave no verdict it could read):"]
    for item in unscored[:UNSCORED_LISTED]:
        why = next(
            (c.get("check_message") for c in item["chats"] if c.get("check") == "unscored"), None
        )
        shown = excerpt(why, MESSAGE_EXCERPT).replace("\n", " ") if why else "no verdict"
        lines.append(f"  {item['nodeid']}: {shown}")
    if len(unscored) > UNSCORED_LISTED:
        lines.append(f"  ... and {len(unscored) - UNSCORED_LISTED} more")
    return lines


def judge_summaries(items: t.Sequence[ItemRecord]) -> list[JudgeSummary]:
    """The judges' figures, when some item had one (nothing is imported otherwise)."""
    if not any("judge" in item for item in items):
        return []
    from pytest_rigging.plugin.calibration import summaries

    return summaries(items)


def datasets(items: t.Iterable[ItemRecord]) -> list[DatasetRecord]:
    """The `rig_cases` datasets the items used, each with how many of its cases ran: from
    the items' own records, so that the figure holds under xdist and after `merge`."""
    ran: dict[tuple[str, str], set[str]] = {}
    for item in items:
        case = item.get("case")
        if case is not None:
            ran.setdefault((case["source"], case["dataset"]), set()).add(case["id"])
    return [
        {"source": source, "hash": digest, "cases": len(ids)}
        for (source, digest), ids in sorted(ran.items())
    ]


def _gate_json(result: GateResult) -> GateRecord:
    return {
        "model": result.model,
        "option": result.gate.option,
        "threshold": result.gate.threshold,
        "value": result.value,
        "interval": list(result.interval) if result.interval else None,
        "mode": result.mode,
        "passed": result.passed,
        "message": result.describe(),
    }


def item_record(
    item: pytest.Item,
    cell: Cell,
    report: pytest.TestReport,
    call_error: pytest.ExceptionInfo[BaseException] | None,
    chats: list[ChatRecord],
) -> ItemRecord:
    """An item's outcome and its chats as plain data, for its report."""
    from pytest_rigging.plugin.samples import OUTCOME_KEY, UNSCORED_KEY

    outcome: str = report.outcome
    if report.when != "call" and outcome == "failed":
        outcome = "error"  # setup failed: for example too many infrastructure errors
    elif call_error is not None and call_error.errisinstance(GenerationError):
        outcome = "error"  # a free-form test's own call failed for infrastructure reasons
    elif UNSCORED_KEY in item.stash:
        outcome = "unscored"  # its judge gave too few verdicts to tell
    samples = item.stash.get(OUTCOME_KEY, None)
    fixtures: t.Sequence[str] = getattr(item, "fixturenames", ())
    if samples is None and report.when == "call" and "rig_chat" in fixtures:
        samples = (int(report.passed), 1) if outcome != "unscored" else (0, 0)
    judged = list(samples) if samples else None
    duration = round(report.duration, 6)
    return item_of(item.nodeid, cell.record, outcome, judged, duration, chats, case_record(item))


def case_record(item: pytest.Item) -> CaseRecord | None:
    """A `rig_cases` item's case as its record keeps it; None for any other item."""
    if "rig_case" not in getattr(item, "fixturenames", ()):
        return None
    from pytest_rigging.plugin.cases import case_of

    case = case_of(item)
    if case is None:
        return None
    return {
        "id": case.id,
        "hash": case.hash,
        "source": case.dataset.source,
        "dataset": case.dataset.hash,
    }


def made(
    run: Run, item: pytest.Item, cell: Cell, call: pytest.CallInfo[None], report: pytest.TestReport
) -> pytest.TestReport:
    """A rig item's report as pytest made it, finished: its time is its own
    (`Engine.own_duration`), its final report carries its record (`finish_item`), and it
    is given as it may be shown (`samples.showable`)."""
    from pytest_rigging.plugin.samples import showable, unscored

    if run.started is not None:
        report.duration = run.started.own_duration(item.nodeid, report.duration)
    if call.excinfo is not None and call.excinfo.errisinstance(Unscored):
        unscored(item, report, call.excinfo.value)
    if call.when == "call" or (call.when == "setup" and report.outcome != "passed"):
        finish_item(run, item, cell, call, report)
    return showable(item.config, report)


def finish_item(
    run: Run, item: pytest.Item, cell: Cell, call: pytest.CallInfo[None], report: pytest.TestReport
) -> None:
    """Put the item's figures on its final report, as plain data, so that they reach the
    xdist controller (and survive a worker that crashes later); a failure shows the
    dialog, and says that it ran on the default model if it did; a failure the baseline
    knows is reported as known, and JUnit gets the item's properties. Each chat carries its
    sample's check."""
    from pytest_rigging.plugin.samples import checks_of, show_dialog

    chats = with_checks(run.recorder.take(item.nodeid), checks_of(item, call, report))
    record = item_record(item, cell, report, call.excinfo, chats)
    judge, labels = run.recorder.take_judging(item.nodeid)
    if judge is not None:
        record["judge"] = judge
    if labels:
        record["labels"] = labels
    if report.failed and call.when == "call":
        show_dialog(item, report)
    if report.failed and run.settings.on_default_model(item):
        report.sections.append(DEFAULT_MODEL_SECTION)
    report.rig = record  # type: ignore[attr-defined]  # crosses xdist in the report's dict
    if run.baseline is not None and run.baseline_file is not None:
        from pytest_rigging.plugin.baseline import mark_if_known

        if mark_if_known(run.baseline, run.baseline_file.path, record, report):
            record["known"] = True
    # JUnit reads properties from the teardown report, which copies the item's.
    item.user_properties.extend(junit_properties(record))


def junit_properties(record: ItemRecord) -> list[tuple[str, object]]:
    """An item's case (a `rig_cases` item's id and content hash), its samples, the numbers
    of those its checks failed, and its own chats' parse buckets (a judge's are its own
    row's), as JUnit properties."""
    outcomes = [chat["outcome"] for chat in record["chats"] if role(chat) is None]
    properties: list[tuple[str, object]] = []
    case = record.get("case")
    if case is not None:
        properties += [("rig_case", case["id"]), ("rig_case_hash", case["hash"])]
    if record["samples"]:
        properties.append(("rig_samples", "{}/{}".format(*record["samples"])))
    failed = sorted(
        {c["sample"] for c in record["chats"] if c.get("check") == "failed" and c["sample"]}
    )
    if failed:
        properties.append(("rig_failed_samples", ",".join(map(str, failed))))
    properties.extend(
        (f"rig_{name}", outcomes.count(name))
        for name in ("first_try", "recovered", "exhausted", "error")
    )
    return properties


def write(path: Path, doc: ReportDocument) -> None:
    """Written whole or not at all; whatever a model said, it stays valid JSON
    (`records.write_json`)."""
    write_json(path, doc)


def load(path: Path) -> ReportDocument:
    """A report written by `--rig-report` (an older version's as this version reads it); a
    clear ValueError for anything else."""
    try:
        doc = json.loads(path.read_text())
    except OSError as error:
        raise ValueError(f"cannot read {path}: {error.strerror}") from None
    except ValueError as error:
        raise ValueError(f"{path} is not JSON: {error}") from None
    if not isinstance(doc, dict) or doc.get("version") not in READ_VERSIONS or "items" not in doc:
        versions = " or ".join(map(str, READ_VERSIONS))
        raise ValueError(f"{path} is not a pytest-rigging report (version {versions})")
    try:
        _document_shape().validate_python(doc)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(map(str, first["loc"]))
        raise ValueError(
            f"{path} is not a valid pytest-rigging report: {where}: {first['msg']}"
        ) from None
    return _upgraded(t.cast(ReportDocument, doc))


def _upgraded(doc: ReportDocument) -> ReportDocument:
    """A version 1 report as version 2: its samples numbered from 1 (its chats have no
    check, which version 2 reads as unknown)."""
    if doc["version"] == 1:
        for item in doc["items"]:
            for chat in item["chats"]:
                if chat["sample"] is not None:
                    chat["sample"] = sample_number(chat["sample"])
        doc["version"] = REPORT_VERSION
    return doc


@functools.cache
def _document_shape() -> TypeAdapter[ReportDocument]:
    """The report's records, checked field by field before `merge` reads them."""
    return TypeAdapter(ReportDocument)


def merge(
    docs: t.Sequence[ReportDocument], gates: t.Sequence[Gate] | None, mode: str | None
) -> ReportDocument:
    """One report from several shards: items combined, figures recomputed from them.

    Gates and mode default to those recorded in the first report."""
    items: dict[tuple[str, str, str], ItemRecord] = {}
    models: list[str] = []
    for doc in docs:
        for item in doc["items"]:
            # shards may run the same test on models whose short ids coincide
            items[(item["nodeid"], item["model"], item["params"])] = item
        models.extend(m for m in doc["settings"].get("models", []) if m not in models)
    first = docs[0]["settings"]
    if gates is None:
        gates = [Gate(g["option"], g["threshold"], g["model"]) for g in first.get("gates", [])]
    settings = t.cast(
        RunSettings, {k: v for k, v in first.items() if k not in ("gates", "gate_mode")}
    )
    settings["models"] = models
    settings["merged_from"] = len(docs)
    started = [doc["settings"]["started"] for doc in docs if "started" in doc["settings"]]
    if started:
        settings["started"] = min(started)
    if any(doc["settings"].get("interrupted") for doc in docs):
        settings["interrupted"] = True
    return document(settings, list(items.values()), gates, mode or first.get("gate_mode", "point"))


def failing_models(doc: ReportDocument) -> list[str]:
    return sorted({g["model"] for g in doc["gates"] if not g["passed"]})


class Reporter:
    """The controller's side (or the only process's): collects item records from test
    reports, judges the gates, and writes the table, the JSON and the step summary."""

    @classmethod
    def configured(cls, config: pytest.Config, settings: Settings, started: str) -> Reporter:
        """The reporter for the run's settings and gates (`started` when the run did); a
        bad gate is a usage error."""
        from pytest_rigging._secrets import mask_identifier

        try:
            gates, mode = read_gates(config.getoption, config.getini)
        except GateError as error:
            raise pytest.UsageError(str(error)) from None
        described = RunSettings(
            started=started,
            models=[mask_identifier(m) for m in settings.models],
            params=[params_text(p) for p in settings.params],
            runs=settings.runs,
            concurrency=settings.concurrency,
        )
        return cls(described, gates, mode)

    def __init__(self, settings: RunSettings, gates: t.Sequence[Gate], mode: str) -> None:
        self.settings = settings
        self.gates = list(gates)
        self.mode = mode
        self.items: list[ItemRecord] = []
        self.results: list[GateResult] = []
        self._judges: tuple[int, list[JudgeSummary]] | None = None
        self.judge_checks: list[Check] = []
        """`--rig-min-judge-kappa`'s checks, one per judge, once judged."""
        self.interrupted = False

    def add(self, item: ItemRecord) -> None:
        self.items.append(item)

    def judge(self) -> list[Row]:
        """Evaluate the gates on the per-model figures; those figures."""
        rows = self.rows(by_params=False)
        self.results = evaluate(self.gates, rows, self.mode)
        return rows

    @property
    def failing(self) -> set[str]:
        return {r.model for r in self.results if not r.passed}

    def rows(self, by_params: bool) -> list[Row]:
        return tabulate_items(self.items, by_params=by_params)

    def judges(self) -> list[JudgeSummary]:
        """The judges' figures, worked out once for the gates, the terminal and the step
        summary (again only if items came in since: an interrupted run's leftovers)."""
        if self._judges is None or self._judges[0] != len(self.items):
            self._judges = (len(self.items), judge_summaries(self.items))
        return self._judges[1]

    def terminal(self, terminal: pytest.TerminalReporter, verbosity: int) -> None:
        """The table (one row per model; per model and params at -v; compact at -q;
        nothing at -qq), fitted to the terminal's width, then a line per gate: a red FAIL
        line at any verbosity, a short pass line unless at -qq, so that a CI log shows what
        was judged."""
        failed = [r for r in self.results if not r.passed]
        if verbosity > -2 or failed or not all(c.passed for c in self.judge_checks):
            terminal.write_sep("=", "rigging: parse success per model")
        if verbosity > -2:
            from pytest_rigging.plugin._compat import line_width

            rows = self.rows(by_params=verbosity > 0)
            fits = "COLUMNS" in os.environ or bool(terminal.isatty)  # a log has no width
            width = line_width(terminal.config) if fits else None
            shown = table(rows, verbosity=verbosity, failing=self.failing, width=width)
            terminal.write_line(shown)
            judges = self.judges()
            if judges:
                from pytest_rigging.plugin.calibration import judges_table

                terminal.write_line("")
                terminal.write_line(judges_table(judges))
                for line in unscored_lines(self.items):
                    terminal.write_line(line, yellow=True)
            for result in self.results:
                if result.passed:
                    terminal.write_line(result.line(), green=True)
            for check in self.judge_checks:
                if check.passed:
                    terminal.write_line(check.line, green=True)
        for result in failed:
            terminal.write_line(result.line(), red=True, bold=True)
        for check in self.judge_checks:
            if not check.passed:
                terminal.write_line(check.line, red=True, bold=True)
        if self.interrupted:
            terminal.write_line(
                "rigging: the run was interrupted: the figures hold what finished", yellow=True
            )

    def document(self) -> ReportDocument:
        settings = RunSettings(**self.settings)
        if self.interrupted:
            settings["interrupted"] = True
        return document(settings, self.items, self.gates, self.mode)
