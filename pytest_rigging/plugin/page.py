"""The HTML report: one self-contained file (`--rig-html`, `merge --html`, `html`) that
shows a run's case x cell grid, every sample's dialog and, against a baseline, what
flipped.

The page is built from the JSON report's records only, so that it masks what the report
masks. They travel as one JSON data block, escaped so that no model output can close
the block or open markup, with long texts cut; plain JavaScript renders the grid from it
lazily, a page of rows at a time, so that a large run opens at once. Nothing on the page
is fetched: the CSS and the script (`templates/`) are inlined.
"""

from __future__ import annotations

import functools
import json
import typing as t
from pathlib import Path

from typing_extensions import NotRequired, TypedDict

from pytest_rigging.plugin.baseline import BaselineDocument, compare, from_report
from pytest_rigging.plugin.records import (
    CaseRecord,
    ChatRecord,
    GateRecord,
    ItemRecord,
    JudgeSummary,
    ReportDocument,
    Row,
    RunSettings,
    write_whole,
)

if t.TYPE_CHECKING:
    import jinja2

CUT = 20_000
"""Characters of one text shown; a longer one is cut, with its full length said."""

Status = t.Literal[
    "passed",
    "failed",
    "exhausted",
    "error",
    "skipped",
    "interrupted",
    "known",
    "unjudged",
    "unscored",
]
"""How a cell (an item) or one of its samples is coloured. `exhausted`: it failed, and a
sample ran out of parse recovery rounds; `known`: a failure the baseline knows;
`unscored`: its judge gave no verdict (neither passed nor failed);
`interrupted`: it never made its own report (Ctrl-C, or its xdist worker was lost);
`unjudged` (a sample only): nothing judged it alone (a `rig_chats` test judges its
samples together)."""

Flip = t.Literal["regressed", "fixed"]

Json: t.TypeAlias = "str | int | float | bool | list[Json] | dict[str, Json] | None"


class Column(TypedDict):
    """One (model, params) cell of the grid."""

    model: str
    label: str
    params: str
    cell: str


class PageItem(TypedDict):
    """One grid cell: an item's record as the page shows it."""

    row: int
    column: int
    nodeid: str
    status: Status
    outcome: str
    samples: list[int] | None
    marks: list[Status]
    """Each sample's status, by sample number."""
    duration: float
    chats: list[ChatRecord]
    case: NotRequired[CaseRecord]
    lost: NotRequired[str]
    baseline: NotRequired[str | None]
    """With a baseline: the item's outcome there (None: not in it)."""
    flip: NotRequired[Flip]


class Totals(TypedDict):
    items: int
    statuses: dict[str, int]
    samples_passed: int
    samples_total: int
    input_tokens: int
    output_tokens: int
    cost: float | None


class BaselineSummary(TypedDict):
    name: str
    regressed: int
    fixed: int
    known: int


class PageRun(TypedDict):
    settings: RunSettings
    totals: Totals
    baseline: BaselineSummary | None


class PageData(TypedDict):
    """The page's one data block."""

    run: PageRun
    models: list[Row]
    judges: list[JudgeSummary]
    gates: list[GateRecord]
    columns: list[Column]
    rows: list[str]
    items: list[PageItem]


def row_key(item: ItemRecord) -> str:
    """The grid's row of an item: its node id without its cell's part (the cell's id is
    the last of its parameter ids)."""
    nodeid, cell = item["nodeid"], item["cell"]
    for tail, kept in ((f"-{cell}]", "]"), (f"[{cell}]", "")):
        if nodeid.endswith(tail):
            return nodeid[: -len(tail)] + kept
    return nodeid


def status_of(item: ItemRecord) -> Status:
    outcome = item["outcome"]
    if "lost" in item or outcome == "interrupted":
        return "interrupted"
    if item.get("known"):
        return "known"
    if outcome == "failed":
        exhausted = any(chat["outcome"] == "exhausted" for chat in item["chats"])
        return "exhausted" if exhausted else "failed"
    if outcome in ("passed", "error", "skipped", "unscored"):
        return t.cast(Status, outcome)
    return "error"


def sample_marks(chats: t.Sequence[ChatRecord]) -> list[Status]:
    """Each numbered sample's status: its check's verdict (a failure whose parse ran out
    is `exhausted`), else its chats' parse buckets."""
    by_sample: dict[int, list[ChatRecord]] = {}
    for chat in chats:
        if chat["sample"] is not None:
            by_sample.setdefault(chat["sample"], []).append(chat)
    marks: list[Status] = []
    for number in sorted(by_sample):
        own = by_sample[number]
        checks = {chat.get("check") for chat in own}
        buckets = {chat["outcome"] for chat in own}
        if "error" in checks or ("error" in buckets and "failed" not in checks):
            marks.append("error")
        elif "exhausted" in buckets and "passed" not in checks:
            marks.append("exhausted")
        elif "failed" in checks:
            marks.append("failed")
        elif "passed" in checks:
            marks.append("passed")
        elif "unscored" in checks:
            marks.append("unscored")
        else:
            marks.append("unjudged")
    return marks


def cut(value: Json) -> Json:
    """`value` with every text longer than `CUT` cut, its full length said after it."""
    if isinstance(value, str):
        if len(value) <= CUT:
            return value
        return f"{value[:CUT]}\n[cut: {len(value):,} characters in all, the first {CUT:,} shown]"
    if isinstance(value, list):
        return [cut(v) for v in value]
    if isinstance(value, dict):
        return {k: cut(v) for k, v in value.items()}
    return value


def page_data(
    doc: ReportDocument, baseline: BaselineDocument | None = None, baseline_name: str = ""
) -> PageData:
    """What the page shows of a report: its items in node id order (so that a merged
    run's page is an unsharded one's), each with its row, column and status, its texts
    cut; against `baseline` (named `baseline_name`), each item's outcome there, and
    whether it flipped or is a known failure, as the run's comparison counts them."""
    items = sorted(doc["items"], key=lambda i: (i["nodeid"], i["model"], i["params"]))
    models = doc["settings"].get("models", [])
    columns: dict[tuple[str, str], Column] = {}
    for item in items:
        columns.setdefault(
            (item["model"], item["params"]),
            {
                "model": item["model"],
                "label": item["label"],
                "params": item["params"],
                "cell": item["cell"],
            },
        )

    def place(model: str, label: str | None) -> tuple[int, str, str]:
        """Models in the order the run names them (then by label), whatever order xdist
        reported their items in."""
        return (models.index(model) if model in models else len(models), label or "", model)

    ordered = sorted(columns.values(), key=lambda c: (place(c["model"], c["label"]), c["params"]))
    column_of = {(c["model"], c["params"]): n for n, c in enumerate(ordered)}
    rows = sorted({row_key(item) for item in items})
    row_of = {key: n for n, key in enumerate(rows)}
    flips: dict[str, Flip] = {}
    known: set[str] = set()
    summary = None
    if baseline is not None:
        comparison = compare(baseline, items, from_report(doc))
        flips = dict.fromkeys(comparison.flipped, "regressed")
        flips.update(dict.fromkeys(comparison.fixed, "fixed"))
        known = set(comparison.known)
        summary = BaselineSummary(
            name=baseline_name,
            regressed=len(comparison.flipped),
            fixed=len(comparison.fixed),
            known=len(known),
        )
    page_items = []
    for item in items:
        shown = _page_item(item, row_of[row_key(item)], column_of[item["model"], item["params"]])
        if baseline is not None:
            before = baseline["items"].get(item["nodeid"])
            shown["baseline"] = before["outcome"] if before is not None else None
            if item["nodeid"] in flips:
                shown["flip"] = flips[item["nodeid"]]
            if item["nodeid"] in known:
                shown["status"] = "known"
        page_items.append(shown)
    return {
        "run": {
            "settings": doc["settings"],
            "totals": _totals(doc, page_items),
            "baseline": summary,
        },
        "models": sorted(doc["models"], key=lambda row: place(row["model"], row["label"])),
        "judges": doc.get("judges", []),
        "gates": doc["gates"],
        "columns": ordered,
        "rows": rows,
        "items": page_items,
    }


def _page_item(item: ItemRecord, row: int, column: int) -> PageItem:
    shown: PageItem = {
        "row": row,
        "column": column,
        "nodeid": item["nodeid"],
        "status": status_of(item),
        "outcome": item["outcome"],
        "samples": item["samples"],
        "marks": sample_marks(item["chats"]),
        "duration": item["duration"],
        "chats": _cut_chats(item["chats"]),
    }
    if "case" in item:
        shown["case"] = item["case"]
    if "lost" in item:
        shown["lost"] = item["lost"]
    return shown


def _cut_chats(chats: list[ChatRecord]) -> list[ChatRecord]:
    """`chats` with their long texts cut; walked only when their JSON is longer than a
    text may be (no text in them is longer than their JSON), which few items' are."""
    if len(json.dumps(chats)) <= CUT:
        return chats
    return t.cast(list[ChatRecord], cut(t.cast(Json, chats)))


def _totals(doc: ReportDocument, items: t.Sequence[PageItem]) -> Totals:
    statuses: dict[str, int] = {}
    for item in items:
        statuses[item["status"]] = statuses.get(item["status"], 0) + 1
    costs = [row["cost"] for row in doc["models"] if row.get("cost") is not None]
    return {
        "items": len(items),
        "statuses": statuses,
        "samples_passed": sum(row["samples_passed"] for row in doc["models"]),
        "samples_total": sum(row["samples_total"] for row in doc["models"]),
        "input_tokens": sum(row["input_tokens"] for row in doc["models"]),
        "output_tokens": sum(row["output_tokens"] for row in doc["models"]),
        "cost": sum(t.cast(list[float], costs)) if costs else None,
    }


def data_block(data: PageData) -> str:
    """The data as the text of a `<script type="application/json">`: ASCII (a lone
    surrogate is an escape, not a byte UTF-8 can't hold), with `<`, `>` and `&` escaped
    so that no text can end the block (`</script>`) or open a comment (`<!--`)."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


@functools.cache
def _environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("pytest_rigging.plugin", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(data: PageData) -> str:
    from markupsafe import Markup

    template = _environment().get_template("page.html")
    started = data["run"]["settings"].get("started", "")
    return template.render(data=Markup(data_block(data)), started=started)


def write(
    path: Path,
    doc: ReportDocument,
    baseline: BaselineDocument | None = None,
    baseline_name: str = "",
) -> None:
    """The page of `doc` (against `baseline`) in `path`, written whole or not at all."""
    write_whole(path, render(page_data(doc, baseline, baseline_name)))
