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

from pytest_rigging._result import Result
from pytest_rigging._secrets import known_secrets, mask_identifier, redact
from pytest_rigging.generator.base import GenerateParams, Generator
from pytest_rigging.plugin.matrix import Cell, label_of, params_text
from pytest_rigging.plugin.records import (
    BUCKETS,
    Bucket,
    ChatRecord,
    ItemRecord,
    MessageRecord,
    Row,
    unreported,
)

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
    label, params) of the row it counts for; `secrets` as `known_secrets()` gives them."""
    secrets = known_secrets() if secrets is None else secrets
    model, label, params = owner
    usage = chat.usage
    messages = chat.all if isinstance(chat.all, list) else [chat.all]  # a completion: text
    prices = chat.generator.prices() if chat.generator is not None else None
    tokens = (usage.input_tokens, usage.output_tokens) if usage else (0, 0)
    return {
        "model": mask_identifier(model, secrets),
        "label": label,
        "params": params,
        "sample": sample,
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
    }


def _message(message: t.Any, secrets: t.Sequence[str]) -> MessageRecord:
    if isinstance(message, str):  # a completion
        return {"role": "text", "content": redact(message, secrets)}
    return {"role": message.role, "content": redact(message.content, secrets)}


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion: honest at small n and at 0 or 1."""
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    margin = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return (max(0.0, centre - margin), min(1.0, centre + margin))


class Rate(t.NamedTuple):
    successes: int
    total: int

    @property
    def value(self) -> float | None:
        return self.successes / self.total if self.total else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson(self.successes, self.total) if self.total else None


def new_row(model: str, params: str | None, label: str | None) -> dict[str, t.Any]:
    """A row being counted (it becomes a `Row` once `_finish` adds the rates)."""
    return {
        "model": model,
        "label": label,
        "params": params,
        "chats": 0,
        **dict.fromkeys(BUCKETS, 0),
        "samples_passed": 0,
        "samples_total": 0,
        "items_passed": 0,
        "items_failed": 0,
        "items_errored": 0,
        "input_tokens": 0,
        "output_tokens": 0,
        "cost": None,
        "latencies": [],
    }


def tabulate_items(items: t.Iterable[ItemRecord], by_params: bool) -> list[Row]:
    """Rows per model (or per model and params) from item records, in first-seen order.

    A cell's row is keyed by the cell's id, never by its display text (two cells that
    print alike stay two rows); a judge model's, by its identifier and params."""
    rows: dict[tuple[str, ...], dict[str, t.Any]] = {}

    def row(key: tuple[str, ...], model: str, params: str, label: str | None) -> dict[str, t.Any]:
        if key not in rows:
            rows[key] = new_row(model, params if by_params else None, label)
        rows[key]["label"] = rows[key]["label"] or label
        return rows[key]

    for item in items:
        cell_key = ("cell", item["cell"]) if by_params else ("model", item["model"])
        own = row(cell_key, item["model"], item["params"], item["label"])
        outcome = item["outcome"]
        if outcome in ("passed", "failed"):
            own[f"items_{outcome}"] += 1
        elif outcome == "error":
            own["items_errored"] += 1
        if item.get("samples"):
            passed, total = item["samples"]
            own["samples_passed"] += passed
            own["samples_total"] += total
        for chat in item["chats"]:
            mine = chat["model"] == item["model"] and chat["params"] == item["params"]
            key = (
                cell_key if mine else ("judge", chat["model"], chat["params"] if by_params else "")
            )
            target = row(key, chat["model"], chat["params"], chat.get("label"))
            target["chats"] += 1
            if chat["outcome"]:
                target[chat["outcome"]] += 1
            target["input_tokens"] += chat["input_tokens"]
            target["output_tokens"] += chat["output_tokens"]
            if chat.get("cost") is not None:
                target["cost"] = (target["cost"] or 0.0) + chat["cost"]
            target["latencies"].append(chat["latency"])
    return [_finish(r) for r in rows.values()]


def _finish(row: dict[str, t.Any]) -> Row:
    """Add rates and intervals; errors count in neither parse nor pass rates."""
    parsed = row["first_try"] + row["recovered"]
    rates = {
        "parse_rate": Rate(parsed, parsed + row["exhausted"]),
        "pass_rate": Rate(row["samples_passed"], row["samples_total"]),
        "error_rate": Rate(row["error"], row["chats"]),
    }
    for name, rate in rates.items():
        row[name] = rate.value
        row[f"{name}_interval"] = list(rate.interval) if rate.interval else None
        row[f"{name}_counts"] = [rate.successes, rate.total]
    latencies = row.pop("latencies")
    row["median_latency"] = statistics.median(latencies) if latencies else None
    return t.cast(Row, row)


class Recorder:
    """Chat records per item, until the item's report carries them away; on an xdist
    worker, also in its journal as they come, so that they outlive the worker. What they
    spent counts against the `budget`, when there is one."""

    def __init__(self, journal: Journal | None = None, budget: Budget | None = None) -> None:
        self.journal = journal
        self.budget = budget
        self._records: dict[str, list[ChatRecord]] = {}
        self._cells: dict[str, Cell] = {}

    def add(
        self,
        nodeid: str,
        chats: t.Sequence[Result],
        parses: bool,
        cell: Cell,
        generator: Generator,
        sample: int | None,
    ) -> None:
        """Record `chats` for `nodeid`. Chats from the cell's own generator count for the
        cell; others (a judge model, say) for their own generator, labelled as cells are."""
        added: list[ChatRecord] = []
        secrets = known_secrets()
        for chat in chats:
            if chat.generator is generator or chat.generator is None:
                owner = (cell.model, cell.label, cell.params_text)
            else:
                identity = chat.generator.to_identifier(GenerateParams(), with_config=False)
                owner = (identity, label_of(chat.generator), _params(chat))
            added.append(chat_record(chat, parses, owner, sample, secrets))
        self.extend(nodeid, cell, added)
        if self.journal is not None:
            self.journal.done(nodeid, sample, added, chats, generator)

    def extend(self, nodeid: str, cell: Cell, records: list[ChatRecord]) -> None:
        """Record chats already turned into records (another worker's, from its journal)."""
        self._cells[nodeid] = cell
        self._records.setdefault(nodeid, []).extend(records)
        if self.budget is not None:
            self.budget.add(records)

    def take(self, nodeid: str) -> list[ChatRecord]:
        self._cells.pop(nodeid, None)
        return self._records.pop(nodeid, [])

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
