"""The records that travel: from xdist workers to the controller on test reports, into the
JSON report, and back out of it for `merge`. Plain data only (xdist drops anything else),
so each is a TypedDict, defined here once. Light to import: the plugin's front and the
xdist roles use it at start-up."""

from __future__ import annotations

import json
import os
import typing as t
from pathlib import Path

from typing_extensions import NotRequired, TypedDict  # pydantic needs these before 3.12

if t.TYPE_CHECKING:
    import pytest

Bucket = t.Literal["first_try", "recovered", "exhausted", "error"]
BUCKETS: tuple[Bucket, ...] = ("first_try", "recovered", "exhausted", "error")
ItemOutcome = t.Literal["passed", "failed", "skipped", "error"]
CheckOutcome = t.Literal["passed", "failed", "error"]
"""What the test's checks made of one sample: passed, failed, or error (the body met an
infrastructure error: never judged)."""


class MessageRecord(TypedDict):
    role: str
    content: str


class ChatRecord(TypedDict):
    """One chat, secrets removed. `model`/`params`/`label` name the row it counts for: the
    cell's, or a judge model's own."""

    model: str
    label: str
    params: str
    sample: int | None
    """Its sample's number, from 1 as the terminal counts them (`sample_number`); None for
    the chats a free-form test runs itself."""
    outcome: Bucket | None
    recovery_rounds: int
    error_kind: str | None
    error: str | None
    input_tokens: int
    output_tokens: int
    latency: float
    generator_id: str
    conversation: list[MessageRecord]
    cost: NotRequired[float | None]
    """USD, from the generator's token prices; None (or absent, in older reports) where
    it has none."""
    check: NotRequired[CheckOutcome | None]
    """The test's checks on its sample; None where nothing judged that sample alone (a
    `rig_chats` test judges them together; a sample whose call failed is never judged);
    absent in older reports."""
    check_message: NotRequired[str | None]
    """Why the checks failed (or errored): the first lines of the failure, secrets
    removed; None when they passed."""


class SampleCheck(t.NamedTuple):
    """The test's checks on one sample, as its chats record them."""

    outcome: CheckOutcome
    message: str | None


def sample_number(index: int) -> int:
    """Samples are numbered from 1 wherever they are shown (the terminal, the JSON report,
    JUnit); the engine, journals and cassettes index them from 0."""
    return index + 1


def sample_index(number: int) -> int:
    """The index of sample `number` (`sample_number`'s inverse)."""
    return number - 1


def with_checks(
    chats: t.Sequence[ChatRecord], checks: t.Mapping[int | None, SampleCheck]
) -> list[ChatRecord]:
    """`chats`, each with its sample's check (by the sample it records, None for a
    free-form test's own chats)."""
    checked = []
    for chat in chats:
        check = checks.get(chat["sample"])
        if check is not None:
            chat = chat.copy()
            chat["check"], chat["check_message"] = check
        checked.append(chat)
    return checked


class CellRecord(TypedDict):
    """A matrix item's cell, as records name it."""

    model: str
    label: str
    params: str
    cell: str


class GroupFacts(TypedDict):
    """What an xdist worker tells the controller of its collection: whether it has rig
    items, the unit of work of each item that must share a worker, each rig item's cell,
    and what a single process would say of it after collection."""

    rig: bool
    scopes: dict[str, str]
    cells: dict[str, CellRecord]
    runs: str | None
    """The line naming the runs rig marks set (`samples.runs_line`), if any."""
    default: bool
    """Whether some rig item runs on the default model (`matrix.DEFAULT_MODEL_HEADER`)."""
    cases: NotRequired[dict[str, list[str]]]
    """With a baseline: each `rig_cases` test function's case ids, all of them whichever
    were selected (`cases.case_ids`), so that the controller tells a case removed from its
    dataset from one that is only not run."""


class CaseRecord(TypedDict):
    """A `rig_cases` item's case: its id, its content's hash, and its dataset (the source
    as shown, and the hash of the rows read)."""

    id: str
    hash: str
    source: str
    dataset: str


class DatasetRecord(TypedDict):
    """A dataset the run's items used, and how many of its cases ran."""

    source: str
    hash: str
    cases: int


class ItemRecord(TypedDict):
    """One matrix item's outcome and chats; `samples` is [passed, judged]; `lost` says that
    the item never made its own report, because its xdist worker crashed or was interrupted
    while running it (its chats are what finished before)."""

    nodeid: str
    model: str
    label: str
    params: str
    cell: str
    outcome: str
    samples: list[int] | None
    duration: float
    chats: list[ChatRecord]
    case: NotRequired[CaseRecord]
    """A `rig_cases` item's case (absent for any other item, and in older reports)."""
    lost: NotRequired[str]
    known: NotRequired[bool]
    """True for a failure the baseline knows (reported as xfail); absent otherwise."""


class RunSettings(TypedDict, total=False):
    started: str
    """When the run started: UTC, ISO 8601, to the second (absent in older reports)."""
    models: list[str]
    params: list[str]
    runs: int
    concurrency: int
    gates: list[GateSetting]
    gate_mode: str
    merged_from: int
    interrupted: bool


class GateSetting(TypedDict):
    option: str
    model: str | None
    threshold: float


class Row(TypedDict):
    """One row of the table: a model, or a model and params (a cell)."""

    model: str
    label: str | None
    params: str | None
    chats: int
    first_try: int
    recovered: int
    exhausted: int
    error: int
    samples_passed: int
    samples_total: int
    items_passed: int
    items_failed: int
    items_errored: int
    input_tokens: int
    output_tokens: int
    cost: NotRequired[float | None]
    """USD, the sum over the row's chats that have a price; None when none has."""
    median_latency: float | None
    parse_rate: float | None
    parse_rate_interval: list[float] | None
    parse_rate_counts: list[int]
    pass_rate: float | None
    pass_rate_interval: list[float] | None
    pass_rate_counts: list[int]
    error_rate: float | None
    error_rate_interval: list[float] | None
    error_rate_counts: list[int]


RateName = t.Literal["parse_rate", "pass_rate", "error_rate"]


class RateFigures(TypedDict):
    """One rate of a row: its value, 95% interval and (successes, total)."""

    value: float | None
    interval: list[float] | None
    counts: list[int]


def rate_of(row: Row, name: RateName) -> RateFigures:
    """A row's figures for one rate (the row keeps them flat, as the JSON report has them)."""
    if name == "parse_rate":
        value, interval, counts = (
            row["parse_rate"],
            row["parse_rate_interval"],
            row["parse_rate_counts"],
        )
    elif name == "pass_rate":
        value, interval, counts = (
            row["pass_rate"],
            row["pass_rate_interval"],
            row["pass_rate_counts"],
        )
    else:
        value, interval, counts = (
            row["error_rate"],
            row["error_rate_interval"],
            row["error_rate_counts"],
        )
    return {"value": value, "interval": interval, "counts": counts}


class GateRecord(TypedDict):
    model: str
    option: str
    threshold: float
    value: float | None
    interval: list[float] | None
    mode: str
    passed: bool
    message: str


class ReportDocument(TypedDict):
    version: int
    settings: RunSettings
    models: list[Row]
    cells: list[Row]
    gates: list[GateRecord]
    datasets: NotRequired[list[DatasetRecord]]
    """The `rig_cases` datasets the items used (absent in older reports)."""
    items: list[ItemRecord]


def errored_call(report: pytest.TestReport) -> bool:
    """A rig item's call that ended in an infrastructure error, or an item lost with its
    xdist worker (`when` is "???"): an error, not a failure of the test. Asked of every
    report, so light: nothing is imported for a report that carries no record."""
    record: ItemRecord | None = getattr(report, "rig", None)
    return (
        record is not None
        and report.when in ("call", "???")
        and report.failed
        and (record["outcome"] == "error" or "lost" in record)
    )


def group_key(nodeid: str) -> str:
    """Items of one test function share this key: the node id without the `[...]` part
    of its name (a folder's name may hold "[" too)."""
    path, colons, name = nodeid.rpartition("::")
    return path + colons + name.split("[", 1)[0]


def item_of(
    nodeid: str,
    cell: CellRecord,
    outcome: str,
    samples: list[int] | None,
    duration: float,
    chats: list[ChatRecord],
    case: CaseRecord | None = None,
) -> ItemRecord:
    """An item's record, in the order the JSON report shows its fields."""
    record: ItemRecord = {
        "nodeid": nodeid,
        "model": cell["model"],
        "label": cell["label"],
        "params": cell["params"],
        "cell": cell["cell"],
        "outcome": outcome,
        "samples": samples,
        "duration": duration,
        "chats": chats,
    }
    if case is not None:
        record["case"] = case
    return record


def unreported(
    nodeid: str, cell: CellRecord, outcome: str, chats: list[ChatRecord], lost: str | None = None
) -> ItemRecord:
    """The record of an item that never made its own report: interrupted, or lost with its
    xdist worker (`lost` says how)."""
    record = item_of(nodeid, cell, outcome, None, 0.0, chats)
    if lost is not None:
        record["lost"] = lost
    return record


def packed(record: ItemRecord) -> str:
    """An item's record as it crosses from an xdist worker to the controller: JSON in
    ASCII. execnet sends text as UTF-8 and refuses what UTF-8 can't hold (a lone surrogate
    a model wrote); JSON escapes it, and `unpacked` gives it back as it was."""
    return json.dumps(record)


def unpacked(text: str) -> ItemRecord:
    return t.cast(ItemRecord, json.loads(text))


def write_json(path: Path, value: object, *, sort_keys: bool = False) -> None:
    """`value` as readable JSON in `path`, written whole or not at all (through a temporary
    file of this process's), with LF line ends, whatever text it holds: a lone surrogate,
    which UTF-8 can't hold, is written as its `\\udXXX` escape, which JSON reads back as
    it was."""
    write_whole(path, json.dumps(value, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n")


def write_whole(path: Path, text: str) -> None:
    """`text` in `path` (its folder made), whole or not at all: through a temporary file of
    this process's, so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(text.encode("utf-8", "backslashreplace"))
    temporary.replace(path)
