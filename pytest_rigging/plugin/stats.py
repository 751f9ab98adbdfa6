"""Parse success, sample and item outcomes, tokens and latency, per model and per cell.

Everything here is plain data (dicts, lists, str, int, float), because it rides on test
reports from xdist workers to the controller and into JSON reports. Each chat with a
parse requirement lands in exactly one bucket: parsed on the first reply, parsed after
recovery rounds, parse exhausted, or error (infrastructure, never a quality failure).
"""

from __future__ import annotations

import math
import statistics
import typing as t
from dataclasses import dataclass, field

from pytest_rigging._result import Result
from pytest_rigging._secrets import known_secrets, mask_identifier, redact
from pytest_rigging.generator.base import GenerateParams, Generator
from pytest_rigging.plugin.matrix import Cell, label_of, params_text
from pytest_rigging.plugin.records import (
    BUCKETS,
    Bucket,
    ChatRecord,
    ItemRecord,
    JudgeRecord,
    LabelRecord,
    MessageRecord,
    Row,
    VerdictRecord,
    role,
    sample_number,
    unreported,
)
from pytest_rigging.tools.calls import INVALID_CALL, count_calls

if t.TYPE_CHECKING:
    from pytest_rigging.plugin.budget import Budget
    from pytest_rigging.plugin.journal import Journal

__all__ = ["BUCKETS", "ChatRecord", "ItemRecord", "Recorder", "Row", "tabulate_items", "wilson"]


def bucket(chat: Result, parses: bool) -> Bucket | None:
    """The chat's parse bucket; None when nothing asked it to parse and nothing failed."""
    if chat.failed and chat.error_kind != "parse":
        return "error"
    if not parses:
        return None
    if chat.failed:
        return "exhausted"
    return "first_try" if chat.recovery_rounds == 0 else "recovered"


def chat_record(
    chat: t.Any,
    parses: bool,
    owner: tuple[str, str, str],
    sample: int | None,
    secrets: t.Sequence[str] | None = None,
) -> ChatRecord:
    """One chat (or completion) as plain data, secrets removed; `owner` is the (model,
    label, params) of the row it counts for; `sample` its sample's index (numbered from 1
    in the record); `secrets` as `known_secrets()` gives them. Its check comes when its
    item reports (`records.with_checks`)."""
    secrets = known_secrets() if secrets is None else secrets
    model, label, params = owner
    usage = chat.usage
    messages = chat.all if isinstance(chat.all, list) else [chat.all]  # a completion: text
    prices = chat.generator.prices() if chat.generator is not None else None
    tokens = (usage.input_tokens, usage.output_tokens) if usage else (0, 0)
    record: ChatRecord = {
        "model": mask_identifier(model, secrets),
        "label": label,
        "params": params,
        "sample": None if sample is None else sample_number(sample),
        "outcome": bucket(chat, parses),
        "recovery_rounds": chat.recovery_rounds,
        "error_kind": chat.error_kind,
        "error": redact(str(chat.error), secrets) if chat.failed else None,
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "latency": round(chat.latency, 6),
        "generator_id": mask_identifier(chat.generator_id or "", secrets),
        "conversation": [_message(m, secrets) for m in messages],
        "cost": tokens[0] * prices[0] + tokens[1] * prices[1] if prices else None,
        "check": None,
        "check_message": None,
    }
    judge = chat.metadata.get("judge")  # a judge's own chat (`rg.Judge` marks them)
    if isinstance(judge, str):
        record["judge"] = judge
    versus = chat.metadata.get("versus")  # a pairwise judge's other answer (`judging`)
    if isinstance(versus, str):
        record["versus"] = versus
    if messages and not isinstance(messages[0], str):
        calls = count_calls(messages)
        if calls.total:
            record["tool_calls"], record["tool_calls_invalid"] = calls.total, calls.invalid
    return record


def _message(message: t.Any, secrets: t.Sequence[str]) -> MessageRecord:
    if isinstance(message, str):  # a completion
        return {"role": "text", "content": redact(message, secrets)}
    record: MessageRecord = {"role": message.role, "content": redact(message.content, secrets)}
    if message.tool_calls:
        record["tool_calls"] = [
            {"id": c.id, "name": redact(c.name, secrets), "arguments": redact(c.arguments, secrets)}
            for c in message.tool_calls
        ]
    if message.tool_call_id is not None:
        record["tool_call_id"] = message.tool_call_id
    invalid = message.metadata.get(INVALID_CALL)
    if isinstance(invalid, str):
        record["invalid"] = redact(invalid, secrets)
    return record


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion: honest at small n and at 0 or 1."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - margin), min(1.0, centre + margin))


@dataclass(frozen=True)
class Rate:
    successes: int
    total: int

    @property
    def value(self) -> float | None:
        return self.successes / self.total if self.total else None

    @property
    def interval(self) -> list[float] | None:
        return list(wilson(self.successes, self.total)) if self.total else None

    @property
    def counts(self) -> list[int]:
        return [self.successes, self.total]


@dataclass(frozen=True)
class _RowKey:
    """A row's identity: a cell (by id, never its display text: two cells that print
    alike stay two rows), a model, or a judge model (by identifier and params)."""

    kind: t.Literal["cell", "model", "judge"]
    name: str
    params: str = ""
    role: str | None = None


@dataclass
class _Tally:
    """A row being counted; `row()` adds the rates."""

    model: str
    label: str | None
    params: str | None
    chats: int = 0
    buckets: dict[Bucket, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    samples_passed: int = 0
    samples_total: int = 0
    items_passed: int = 0
    items_failed: int = 0
    items_errored: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float | None = None
    latencies: list[float] = field(default_factory=list)
    role: t.Literal["judge", "versus"] | None = None
    items_unscored: int = 0
    verdicts: dict[str, int] = field(default_factory=dict)
    """Verdicts on the row's samples by outcome."""
    unstable: int = 0
    tool_calls: int = 0
    tool_calls_invalid: int = 0

    def count_item(self, item: ItemRecord) -> None:
        if item["outcome"] == "passed":
            self.items_passed += 1
        elif item["outcome"] == "failed":
            self.items_failed += 1
        elif item["outcome"] == "error":
            self.items_errored += 1
        elif item["outcome"] == "unscored":
            self.items_unscored += 1
        if item["samples"]:
            passed, total = item["samples"]
            self.samples_passed += passed
            self.samples_total += total

    def count_chat(self, chat: ChatRecord) -> None:
        self.chats += 1
        if chat["outcome"]:
            self.buckets[chat["outcome"]] += 1
        self.input_tokens += chat["input_tokens"]
        self.output_tokens += chat["output_tokens"]
        cost = chat.get("cost")
        if cost is not None:
            self.cost = (self.cost or 0.0) + cost
        self.latencies.append(chat["latency"])
        verdict = chat.get("verdict")
        if verdict is not None:
            self.verdicts[verdict["outcome"]] = self.verdicts.get(verdict["outcome"], 0) + 1
            self.unstable += verdict["unstable"]
        self.tool_calls += chat.get("tool_calls", 0)
        self.tool_calls_invalid += chat.get("tool_calls_invalid", 0)

    def row(self) -> Row:
        """The row, with rates and intervals; errors count in neither parse nor pass rates."""
        parsed = self.buckets["first_try"] + self.buckets["recovered"]
        parse = Rate(parsed, parsed + self.buckets["exhausted"])
        passing = Rate(self.samples_passed, self.samples_total)
        errors = Rate(self.buckets["error"], self.chats)
        row: Row = {
            "model": self.model,
            "label": self.label,
            "params": self.params,
            "chats": self.chats,
            "first_try": self.buckets["first_try"],
            "recovered": self.buckets["recovered"],
            "exhausted": self.buckets["exhausted"],
            "error": self.buckets["error"],
            "samples_passed": self.samples_passed,
            "samples_total": self.samples_total,
            "items_passed": self.items_passed,
            "items_failed": self.items_failed,
            "items_errored": self.items_errored,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost": self.cost,
            "parse_rate": parse.value,
            "parse_rate_interval": parse.interval,
            "parse_rate_counts": parse.counts,
            "pass_rate": passing.value,
            "pass_rate_interval": passing.interval,
            "pass_rate_counts": passing.counts,
            "error_rate": errors.value,
            "error_rate_interval": errors.interval,
            "error_rate_counts": errors.counts,
            "median_latency": statistics.median(self.latencies) if self.latencies else None,
        }
        if self.role is not None:
            row["role"] = self.role
        if self.verdicts:  # judged: rows of other tests keep the shape they had
            passed, failed = self.verdicts.get("passed", 0), self.verdicts.get("failed", 0)
            unscored = self.verdicts.get("unscored", 0)
            judged = Rate(passed, passed + failed)
            apart = Rate(unscored, passed + failed + unscored)
            row["items_unscored"] = self.items_unscored
            row["verdicts"] = apart.total
            row["unstable"] = self.unstable
            row["judged_pass_rate"] = judged.value
            row["judged_pass_rate_interval"] = judged.interval
            row["judged_pass_rate_counts"] = judged.counts
            row["unscored_rate"] = apart.value
            row["unscored_rate_interval"] = apart.interval
            row["unscored_rate_counts"] = apart.counts
        if self.tool_calls:  # rows of tests without tools keep the shape they had
            tools = Rate(self.tool_calls - self.tool_calls_invalid, self.tool_calls)
            row["tool_calls"] = self.tool_calls
            row["tool_parse_rate"] = tools.value
            row["tool_parse_rate_interval"] = tools.interval
            row["tool_parse_rate_counts"] = tools.counts
        return row


def tabulate_items(items: t.Iterable[ItemRecord], by_params: bool) -> list[Row]:
    """Rows per model (or per model and params) from item records, in first-seen order;
    a chat from another model than its item's (a judge) counts in that model's row."""
    tallies: dict[_RowKey, _Tally] = {}

    def tally(key: _RowKey, model: str, params: str, label: str | None) -> _Tally:
        if key not in tallies:
            tallies[key] = _Tally(model, label, params if by_params else None)
        tallies[key].label = tallies[key].label or label
        return tallies[key]

    for item in items:
        own_key = _RowKey("cell", item["cell"]) if by_params else _RowKey("model", item["model"])
        tally(own_key, item["model"], item["params"], item["label"]).count_item(item)
        for chat in item["chats"]:
            mine = chat["model"] == item["model"] and chat["params"] == item["params"]
            made_for = role(chat)
            params = chat["params"] if by_params else ""
            key = (
                own_key
                if mine and made_for is None
                else _RowKey("judge", chat["model"], params, made_for)
            )
            label = chat["label"] if made_for is None else f"{chat['label']} ({made_for})"
            counted = tally(key, chat["model"], chat["params"], label)
            counted.role = counted.role or made_for
            counted.count_chat(chat)
    rows = [counted.row() for counted in tallies.values()]
    return [r for r in rows if "role" not in r] + [r for r in rows if "role" in r]


class Recorder:
    """Chat records per item, until the item's report carries them away; on an xdist
    worker, also in its journal as they come, so that they outlive the worker. What they
    spent counts against the `budget`, when there is one."""

    def __init__(self, journal: Journal | None = None, budget: Budget | None = None) -> None:
        self.journal = journal
        self.budget = budget
        self._records: dict[str, list[ChatRecord]] = {}
        self._cells: dict[str, Cell] = {}
        self._judges: dict[str, JudgeRecord] = {}
        self._labels: dict[str, list[LabelRecord]] = {}

    def add(
        self,
        nodeid: str,
        chats: t.Sequence[Result],
        parses: bool,
        cell: Cell,
        generator: Generator,
        sample: int | None,
        body: int | None = None,
    ) -> None:
        """Record `chats` for `nodeid`: sample `sample`'s (by index), or chats the test
        body ran itself (`sample` None), in the body of sample `body` if it ran one body per
        sample (`runs=N`), which their records name. Chats from the cell's own generator
        count for the cell; others (a judge model, say) for their own generator, labelled
        as cells are."""
        added: list[ChatRecord] = []
        secrets = known_secrets()
        shown = body if sample is None else sample
        for chat in chats:
            if chat.generator is generator or chat.generator is None:
                owner = (cell.model, cell.label, cell.params_text)
            else:
                identity = chat.generator.to_identifier(GenerateParams(), with_config=False)
                owner = (identity, label_of(chat.generator), _params(chat))
            added.append(chat_record(chat, parses, owner, shown, secrets))
        self.extend(nodeid, cell, added)
        if self.journal is not None:
            self.journal.done(nodeid, sample, added, chats, generator)

    def extend(self, nodeid: str, cell: Cell, records: list[ChatRecord]) -> None:
        """Record chats already turned into records (another worker's, from its journal)."""
        self._cells[nodeid] = cell
        self._records.setdefault(nodeid, []).extend(records)
        if self.budget is not None:
            self.budget.add(records)

    def judge(self, nodeid: str, judge: JudgeRecord) -> None:
        """The item's judge, for its record (whatever its samples come to)."""
        self._judges[nodeid] = judge

    def judged(self, nodeid: str, cell: Cell, index: int, verdict: VerdictRecord) -> None:
        """Sample `index`'s verdict, on the record of the cell's chat it judged."""
        number = sample_number(index)
        model = mask_identifier(cell.model)
        for record in reversed(self._records.get(nodeid, [])):
            if record["sample"] == number and record["model"] == model and role(record) is None:
                record["verdict"] = verdict
                return

    def calibrated(self, nodeid: str, labels: list[LabelRecord]) -> None:
        """The judge's verdicts on labelled examples, for the item that graded them."""
        self._labels[nodeid] = labels

    def take(self, nodeid: str) -> list[ChatRecord]:
        self._cells.pop(nodeid, None)
        return self._records.pop(nodeid, [])

    def take_judging(self, nodeid: str) -> tuple[JudgeRecord | None, list[LabelRecord]]:
        """The item's judge and the labelled examples it graded, if it has a judge."""
        return self._judges.pop(nodeid, None), self._labels.pop(nodeid, [])

    def leftovers(self) -> list[ItemRecord]:
        """What finished for items that never reported (the run was interrupted while they
        ran): their chats, under the outcome `interrupted`, so that no finished sample is
        lost from the report and the table."""
        return [
            unreported(nodeid, cell.record, "interrupted", self.take(nodeid))  # take: the cell too
            for nodeid, cell in list(self._cells.items())
        ]


def _params(chat: Result) -> str:
    return params_text(chat.params) if chat.params is not None else "{}"
