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
ItemOutcome = t.Literal["passed", "failed", "skipped", "error", "unscored"]
CheckOutcome = t.Literal["passed", "failed", "error", "unscored"]
"""What the test's checks made of one sample: passed, failed, error (the body met an
infrastructure error: never judged), or unscored (its judge gave no verdict it could read:
neither passed nor failed)."""
VerdictOutcome = t.Literal["passed", "failed", "unscored"]


class ToolCallRecord(TypedDict):
    """A call a model made: `arguments` the JSON text it wrote."""

    id: str
    name: str
    arguments: str


class MessageRecord(TypedDict):
    role: str
    content: str
    tool_calls: NotRequired[list[ToolCallRecord]]
    tool_call_id: NotRequired[str]
    """On a tool's reply: the call it answers."""
    invalid: NotRequired[str]
    """On a tool's reply: why its call couldn't run as asked (a tool-call parse failure)."""


class PairwiseRecord(TypedDict):
    """A pairwise verdict: which of this sample's output and the other was better, judged in
    both orders; a verdict that changed with the order is a tie, `flipped`."""

    winner: t.Literal["this", "other", "tie"]
    flipped: bool
    versus: str
    """What the output was compared with: a model's identifier, or `text` (a case's)."""


class VerdictRecord(TypedDict):
    """A judge's verdict on one sample, on the record of the chat it judged."""

    judge: str
    """The judge's id (`JudgeRecord.id`)."""
    outcome: VerdictOutcome
    score: float | None
    reasoning: str
    """The majority's reasoning, cut, secrets removed."""
    agreement: list[int]
    """[verdicts that agree with the majority, verdicts]: [2, 3] with `judge_runs=3`."""
    unstable: bool
    """The judge's runs split (some said pass, some fail)."""
    pairwise: NotRequired[PairwiseRecord]
    reference: NotRequired[str]
    """The reference answer the judge had, as given to it (formatted with the case's
    values)."""
    fields: NotRequired[dict[str, str]]
    """The case values the rubric and reference named, so that a labelling file written
    from the report can be graded again with the same rubric."""


class JudgeRecord(TypedDict):
    """A judge as records name it: its model and a hash of what it was asked (template,
    rubric, reference, scale), so that an edited rubric is another judge."""

    id: str
    """`model #hash8`, as the terminal and gates name it."""
    model: str
    hash: str
    rubric: str
    template: str
    scale: NotRequired[list[float]]
    """A scored judge's [low, high]; absent for a pass/fail judge (its labels and verdicts
    are 1.0 or 0.0)."""


class LabelRecord(TypedDict):
    """A person's label on an example (`--rig-judge-labels`) and what the judge said of it."""

    judge: str
    example: str
    """The example's hash (its input, output and reference), so that shards merge it once."""
    line: int
    label: float
    """1.0 pass, 0.0 fail, or a score on the judge's scale."""
    verdict: float | None
    """The judge's: 1.0, 0.0 or its score; None when it gave none it could read."""
    error: NotRequired[str]
    """Why the example was not graded (a judge call refused or failed): it counts for
    nothing but this."""


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
    verdict: NotRequired[VerdictRecord]
    """The judge's verdict on this chat (a `rig_judge` test's sample)."""
    judge: NotRequired[str]
    """On a judge's own chats: the judge's id."""
    versus: NotRequired[str]
    """On a pairwise judge's versus model's answers: the judge's id."""
    tool_calls: NotRequired[int]
    """The tool calls the chat's model made (absent: none)."""
    tool_calls_invalid: NotRequired[int]
    """Of those, the ones that could not run as asked: arguments that aren't JSON or don't
    fit the tool's schema, or an unknown tool (a tool-call parse failure)."""


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


def role(chat: ChatRecord) -> t.Literal["judge", "versus"] | None:
    """What a chat made for judging is: a judge's own call, or a pairwise judge's versus
    model's answer; None for any other chat."""
    if "judge" in chat:
        return "judge"
    return "versus" if "versus" in chat else None


def with_checks(
    chats: t.Sequence[ChatRecord], checks: t.Mapping[int | None, SampleCheck]
) -> list[ChatRecord]:
    """`chats`, each with its sample's check (by the sample it records, None for a
    free-form test's own chats); a judge's chats judge the sample, they aren't checked."""
    checked = []
    for chat in chats:
        check = checks.get(chat["sample"])
        if check is not None and role(chat) is None:
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
    judge: NotRequired[JudgeRecord]
    """A `rig_judge` test's judge."""
    labels: NotRequired[list[LabelRecord]]
    """On the first item of each judge: the judge's verdicts on the labelled examples."""


class RunSettings(TypedDict, total=False):
    started: str
    """When the run started: UTC, ISO 8601, to the second (absent in older reports)."""
    models: list[str]
    params: list[str]
    runs: int
    concurrency: int
    gates: list[GateSetting]
    gate_mode: str
    min_judge_kappa: float
    """`--rig-min-judge-kappa`, for `merge` to judge the merged judges by."""
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
    role: NotRequired[t.Literal["judge", "versus"]]
    """A row of a judge's own calls, or of a pairwise judge's versus model: not a model
    under test (gates don't judge it)."""
    items_unscored: NotRequired[int]
    verdicts: NotRequired[int]
    """Judges' verdicts on the row's samples, unscored ones included (absent: none)."""
    unstable: NotRequired[int]
    """Verdicts whose judge runs split."""
    judged_pass_rate: NotRequired[float | None]
    judged_pass_rate_interval: NotRequired[list[float] | None]
    judged_pass_rate_counts: NotRequired[list[int]]
    unscored_rate: NotRequired[float | None]
    unscored_rate_interval: NotRequired[list[float] | None]
    unscored_rate_counts: NotRequired[list[int]]
    tool_calls: NotRequired[int]
    """The tool calls the row's chats made (absent: none)."""
    tool_parse_rate: NotRequired[float | None]
    tool_parse_rate_interval: NotRequired[list[float] | None]
    tool_parse_rate_counts: NotRequired[list[int]]


RateName = t.Literal[
    "parse_rate",
    "pass_rate",
    "error_rate",
    "judged_pass_rate",
    "unscored_rate",
    "tool_parse_rate",
]


class RateFigures(TypedDict):
    """One rate of a row: its value, 95% interval and (successes, total)."""

    value: float | None
    interval: list[float] | None
    counts: list[int]


def rate_of(row: Row, name: RateName) -> RateFigures:
    """A row's figures for one rate (the row keeps them flat, as the JSON report has them;
    a judged rate is absent from a row no judge saw)."""
    flat = t.cast("t.Mapping[str, t.Any]", row)
    return {
        "value": flat.get(name),
        "interval": flat.get(f"{name}_interval"),
        "counts": flat.get(f"{name}_counts", [0, 0]),
    }


class JudgedRate(TypedDict):
    """One judge's verdicts on one model's samples, and the pass rate they give, corrected
    for the judge's measured error when it was calibrated."""

    model: str
    label: str
    verdicts: int
    passed: int
    unscored: int
    unstable: int
    pass_rate: float | None
    pass_rate_interval: list[float] | None
    corrected: float | None
    """The Rogan-Gladen pass rate: the judged rate corrected by the judge's sensitivity and
    specificity against people's labels; None without labels of both kinds."""
    corrected_interval: list[float] | None
    """95%, carrying the calibration's own uncertainty as well as the sample's."""


class JudgeSummary(TypedDict):
    """A judge over the run: its verdicts, its stability, its order flips, and its agreement
    with people's labels."""

    id: str
    model: str
    hash: str
    rubric: str
    template: str
    verdicts: int
    unscored: int
    unstable: int
    comparisons: int
    """Pairwise comparisons (each judged in both orders)."""
    flipped: int
    flip_rate: float | None
    labels: int
    """Labelled examples it graded (unscored ones included)."""
    labels_failed: NotRequired[int]
    """Labelled examples it could not grade (a call refused or failed): while any is, its
    kappa is not trusted by the gate."""
    labels_unscored: NotRequired[int]
    """Of those, the ones it gave no verdict on: left out of the kappa, the sensitivity and
    the specificity."""
    kappa: float | None
    """Cohen's kappa with people's labels (quadratic-weighted for scores)."""
    weighted: bool
    sensitivity: float | None
    specificity: float | None
    models: list[JudgedRate]


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
    judges: NotRequired[list[JudgeSummary]]
    """The judges of `rig_judge` tests (absent when none judged)."""
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


def shown_status(report: pytest.TestReport) -> tuple[str, str, str] | None:
    """How pytest's terminal counts a rig item's report where it differs from pytest's own:
    an errored call as an ERROR (`errored_call`), an unscored item as UNSCORED (its judge
    gave too few verdicts to tell pass from fail: neither)."""
    if errored_call(report):
        return ("error", "E", "ERROR")
    record: ItemRecord | None = getattr(report, "rig", None)
    if record is not None and record["outcome"] == "unscored":
        return ("unscored", "U", "UNSCORED")
    return None


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
