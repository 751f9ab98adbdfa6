"""`--rig-inspect-log DIR`: the run as inspect_ai eval logs, so that `inspect view DIR` opens
it where its users already look.

One log per test function and cell (model and params): each item (a case) and sample is an
inspect sample, its sample number the epoch; the parse outcome, the test's check and a
judge's verdict (`rig_judge`) are its scores (an unscored verdict scores nothing). Written
from the run's records, whose secrets are already masked, in inspect's JSON log format
(version 2), without importing inspect_ai, which the plugin does not need; the tests read
the logs back with inspect_ai's own reader.
"""

from __future__ import annotations

import hashlib
import typing as t
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from typing_extensions import NotRequired, TypedDict

from pytest_rigging.plugin.records import (
    BUCKETS,
    Bucket,
    CaseRecord,
    ChatRecord,
    ItemRecord,
    MessageRecord,
    ReportDocument,
    ToolCallRecord,
    group_key,
    role,
    write_json,
)
from pytest_rigging.tools.calls import json_object

LOG_VERSION = 2
"""The version of inspect's log format these logs are written in."""

Role = t.Literal["system", "user", "assistant", "tool"]
Value = t.Literal["C", "I"]
"""inspect's own values for correct and incorrect, which its view colours and its metrics
count as 1 and 0."""
ScoreName = t.Literal["parse", "check", "judge"]
SCORES: tuple[ScoreName, ...] = ("parse", "check", "judge")


class ToolCall(TypedDict):
    """A call as inspect writes it: `arguments` an object; `parse_error` when the model's
    text was not one."""

    id: str
    function: str
    arguments: dict[str, t.Any]
    parse_error: str | None
    type: t.Literal["function"]


class ChatMessage(TypedDict):
    role: Role
    content: str
    tool_calls: NotRequired[list[ToolCall]]
    tool_call_id: NotRequired[str]
    function: NotRequired[str]
    """On a tool's reply: the tool it answers for."""


class ModelUsage(TypedDict):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    total_cost: NotRequired[float]


class ChatCompletionChoice(TypedDict):
    message: ChatMessage
    stop_reason: t.Literal["stop", "unknown"]


class ModelOutput(TypedDict):
    model: str
    choices: list[ChatCompletionChoice]
    error: NotRequired[str]


class Score(TypedDict):
    value: Value
    answer: str
    """What was scored: the parse outcome (`first_try`...) or the check's (`passed`...)."""
    explanation: NotRequired[str]


class EvalError(TypedDict):
    message: str
    traceback: str
    traceback_ansi: str


class SampleMetadata(TypedDict):
    nodeid: str
    item_outcome: str
    """The item's outcome (a `rig_chats` test's check judges its samples together)."""
    case: NotRequired[CaseRecord]
    lost: NotRequired[str]
    judge: NotRequired[str]
    """A judged sample's judge (its id), whatever it said (an unscored verdict scores
    nothing)."""


class EvalSample(TypedDict):
    id: str
    epoch: int
    input: str
    target: str
    messages: list[ChatMessage]
    output: ModelOutput
    scores: dict[str, Score]
    metadata: SampleMetadata
    model_usage: dict[str, ModelUsage]
    total_time: float
    error: NotRequired[EvalError]


class EvalDataset(TypedDict):
    name: str
    samples: int
    sample_ids: list[str]
    location: NotRequired[str]


class EvalConfig(TypedDict):
    epochs: int


class SpecMetadata(TypedDict):
    """The cell, as the plugin's table and report name it."""

    label: str
    params: str
    cell: str
    test: str
    """The test function's node id."""


class EvalSpec(TypedDict):
    eval_id: str
    run_id: str
    created: str
    task: str
    task_id: str
    task_file: str
    dataset: EvalDataset
    model: str
    config: EvalConfig
    packages: dict[str, str]
    metadata: SpecMetadata


class EvalPlan(TypedDict):
    """What inspect ran (its solvers): nothing of inspect's here, but its readers need one."""

    name: str
    steps: list[object]


class EvalMetric(TypedDict):
    name: str
    value: float


class EvalScore(TypedDict):
    name: str
    scorer: str
    scored_samples: int
    unscored_samples: int
    metrics: dict[str, EvalMetric]


class EvalResults(TypedDict):
    total_samples: int
    completed_samples: int
    scores: list[EvalScore]


class EvalStats(TypedDict):
    started_at: str
    completed_at: str
    model_usage: dict[str, ModelUsage]


class EvalLog(TypedDict):
    """A log, its fields in inspect's order: its reader streams the header up to the
    samples."""

    version: int
    status: t.Literal["success", "cancelled"]
    eval: EvalSpec
    plan: EvalPlan
    results: EvalResults
    stats: EvalStats
    samples: list[EvalSample]


def write_logs(folder: Path, doc: ReportDocument) -> list[Path]:
    """Each log of the run `doc` reports in `folder`, named as inspect names its own
    (`{created}_{task}_{id}.json`, which its view lists); the paths written. The run began
    when the report says (a report older than that field: now)."""
    ended = datetime.now(timezone.utc)
    started = doc["settings"].get("started")
    began = datetime.fromisoformat(started) if started else ended
    interrupted = bool(doc["settings"].get("interrupted"))
    written = []
    for log in eval_logs(doc["items"], began, ended, interrupted):
        spec = log["eval"]
        name = f"{_clean(spec['created'])}_{_clean(spec['task'])}_{spec['task_id']}.json"
        write_json(folder / name, log)
        written.append(folder / name)
    return written


def eval_logs(
    items: Sequence[ItemRecord], began: datetime, ended: datetime, interrupted: bool
) -> list[EvalLog]:
    """One log per test function and cell, in the order their first items came; an item
    none of whose samples finished (skipped, or stopped before its first) has none."""
    cells: dict[tuple[str, str, str], list[ItemRecord]] = {}
    for item in items:
        if item["chats"]:
            key = (group_key(item["nodeid"]), item["model"], item["params"])
            cells.setdefault(key, []).append(item)
    created = began.astimezone(timezone.utc).isoformat(timespec="seconds")
    run_id = _digest(created, *(f"{k[0]}\0{k[1]}\0{k[2]}" for k in cells))
    status: t.Literal["success", "cancelled"] = "cancelled" if interrupted else "success"
    stats_times = (created, ended.astimezone(timezone.utc).isoformat(timespec="seconds"))
    return [
        _log(key, cell_items, created, run_id, status, stats_times)
        for key, cell_items in cells.items()
    ]


def _log(
    key: tuple[str, str, str],
    items: list[ItemRecord],
    created: str,
    run_id: str,
    status: t.Literal["success", "cancelled"],
    times: tuple[str, str],
) -> EvalLog:
    function, model, params = key
    path, _, name = function.partition("::")
    task = f"{Path(path).name}::{name}"
    task_id = _digest(function, model, params)
    ids = _sample_ids(items)
    samples = sorted(
        (sample for item in items for sample in _samples(item, ids[item["nodeid"]])),
        key=lambda s: (s["id"], s["epoch"]),
    )
    cases = [i["case"] for i in items if "case" in i]
    dataset: EvalDataset = {
        "name": cases[0]["source"] if cases else task,
        "samples": len(items),
        "sample_ids": sorted(set(ids.values())),
    }
    if cases:
        dataset["location"] = cases[0]["source"]
    first = items[0]
    from pytest_rigging import __version__

    return {
        "version": LOG_VERSION,
        "status": status,
        "eval": {
            "eval_id": _digest(run_id, task_id),
            "run_id": run_id,
            "created": created,
            "task": task,
            "task_id": task_id,
            "task_file": path,
            "dataset": dataset,
            "model": model,
            "config": {"epochs": max((s["epoch"] for s in samples), default=1)},
            "packages": {"pytest-rigging": __version__},
            "metadata": {
                "label": first["label"],
                "params": params,
                "cell": first["cell"],
                "test": function,
            },
        },
        "plan": {"name": "plan", "steps": []},
        "results": _results(samples),
        "stats": {
            "started_at": times[0],
            "completed_at": times[1],
            "model_usage": _usage_sum(s["model_usage"] for s in samples),
        },
        "samples": samples,
    }


def _sample_ids(items: list[ItemRecord]) -> dict[str, str]:
    """Each item's sample id: its parameters' id without the cell's (a `rig_cases` item's
    case id), or the test's name when the cell is all it has; its node id if that would
    not tell two items apart."""
    ids = {}
    for item in items:
        name = item["nodeid"].rpartition("::")[2]
        function, _, bracket = name.partition("[")
        bracket, cell = bracket.removesuffix("]"), item["cell"]
        if bracket == cell:
            ids[item["nodeid"]] = function
        else:
            ids[item["nodeid"]] = bracket.removesuffix(f"-{cell}")
    if len(set(ids.values())) < len(ids):
        return {nodeid: _shown(nodeid) for nodeid in ids}
    return {nodeid: _shown(sample_id) for nodeid, sample_id in ids.items()}


def _samples(item: ItemRecord, sample_id: str) -> list[EvalSample]:
    """The item's samples, each with the chats it made (a free-form test's own chats, which
    no sample number names, are its first)."""
    by_number: dict[int, list[ChatRecord]] = {}
    for chat in item["chats"]:
        by_number.setdefault(chat["sample"] or 1, []).append(chat)
    return [_sample(item, sample_id, n, chats) for n, chats in sorted(by_number.items())]


def _sample(item: ItemRecord, sample_id: str, epoch: int, made: list[ChatRecord]) -> EvalSample:
    # a judge's calls (and a pairwise judge's versus answers) count in usage only
    chats = [c for c in made if role(c) is None] or made
    records = [m for c in chats for m in c["conversation"]]
    messages = [_message(m) for m in records]
    called: dict[str, ToolCall] = {}  # by id, the latest call (ids may repeat across rounds)
    for record, shown in zip(records, messages, strict=True):
        called.update((call["id"], call) for call in shown.get("tool_calls", []))
        answered = called.get(shown.get("tool_call_id", ""))
        if answered is not None:
            shown["function"] = answered["function"]
            if "invalid" in record:  # as the tool-call parse rate counts it
                answered["parse_error"] = _shown(record["invalid"])
    replies = [m for m in messages if m["role"] == "assistant"]
    output: ModelOutput = {
        "model": chats[-1]["model"],
        "choices": [{"message": replies[-1], "stop_reason": "stop"}] if replies else [],
    }
    scores: dict[str, Score] = {}
    errors = []
    worst = _worst([c for c in chats if c["outcome"] is not None])
    if worst is not None and worst["outcome"] == "error":
        errors.append(_shown(worst["error"] or "the call failed"))
        output["error"] = errors[-1]
    elif worst is not None:
        scores["parse"] = _parse_score(worst)
    checked = next((c for c in chats if c.get("check") is not None), None)
    if checked is not None:
        check, message = checked.get("check"), checked.get("check_message")
        if check == "error":
            errors.append(_shown(message or "the test's checks errored"))
        elif check != "unscored":  # its judge gave no verdict: neither correct nor not
            scores["check"] = {"value": "C" if check == "passed" else "I", "answer": str(check)}
            if message:
                scores["check"]["explanation"] = _shown(message)
    verdict = next((c["verdict"] for c in chats if "verdict" in c), None)
    if verdict is not None and verdict["outcome"] != "unscored":
        k, n = verdict["agreement"]
        scores["judge"] = {
            "value": "C" if verdict["outcome"] == "passed" else "I",
            "answer": verdict["outcome"],
            "explanation": _shown(f"{verdict['reasoning']} ({k}/{n} of the judge's runs agree)"),
        }
    metadata: SampleMetadata = {"nodeid": _shown(item["nodeid"]), "item_outcome": item["outcome"]}
    if "case" in item:
        metadata["case"] = item["case"]
    if verdict is not None:
        metadata["judge"] = verdict["judge"]
    if "lost" in item:
        metadata["lost"] = item["lost"]
        errors.append(item["lost"])
    elif item["outcome"] == "interrupted" and "check" not in scores:
        errors.append("interrupted: the run stopped before the test checked this sample")
    sample: EvalSample = {
        "id": sample_id,
        "epoch": epoch,
        "input": next((m["content"] for m in messages if m["role"] == "user"), ""),
        "target": "",
        "messages": messages,
        "output": output,
        "scores": scores,
        "metadata": metadata,
        "model_usage": _usage_sum(
            {c["model"]: _usage(c["input_tokens"], c["output_tokens"], c.get("cost"))} for c in made
        ),
        "total_time": round(sum(c["latency"] for c in made), 6),
    }
    if errors:
        sample["error"] = {"message": "\n".join(errors), "traceback": "", "traceback_ansi": ""}
    return sample


def _worst(chats: list[ChatRecord]) -> ChatRecord | None:
    """The chat whose parse went worst (an error the worst of all); None when none parses."""
    return max(chats, key=lambda c: BUCKETS.index(t.cast(Bucket, c["outcome"])), default=None)


def _parse_score(chat: ChatRecord) -> Score:
    rounds = chat["recovery_rounds"]
    outcome = chat["outcome"]
    if outcome == "first_try":
        return {"value": "C", "answer": outcome, "explanation": "parsed on the first try"}
    if outcome == "recovered":
        explanation = f"parsed after {rounds} recovery round{'s' * (rounds != 1)}"
        return {"value": "C", "answer": outcome, "explanation": explanation}
    explanation = f"not parsed after {rounds} recovery round{'s' * (rounds != 1)}"
    if chat["error"]:
        explanation += f": {_shown(chat['error'])}"
    return {"value": "I", "answer": str(outcome), "explanation": explanation}


def _results(samples: list[EvalSample]) -> EvalResults:
    """Each score's accuracy over the samples it scored (inspect's own metric name)."""
    scores: list[EvalScore] = []
    for name in SCORES:
        values = [s["scores"][name]["value"] for s in samples if name in s["scores"]]
        if name == "judge" and not any("judge" in s["metadata"] for s in samples):
            continue  # no judge in this log
        metrics: dict[str, EvalMetric] = {}
        if values:
            accuracy = values.count("C") / len(values)
            metrics["accuracy"] = {"name": "accuracy", "value": accuracy}
        scores.append(
            {
                "name": name,
                "scorer": name,
                "scored_samples": len(values),
                "unscored_samples": len(samples) - len(values),
                "metrics": metrics,
            }
        )
    completed = sum("error" not in s for s in samples)
    return {"total_samples": len(samples), "completed_samples": completed, "scores": scores}


def _usage(input_tokens: int, output_tokens: int, cost: float | None) -> ModelUsage:
    usage: ModelUsage = {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }
    if cost is not None:
        usage["total_cost"] = cost
    return usage


def _usage_sum(usages: t.Iterable[dict[str, ModelUsage]]) -> dict[str, ModelUsage]:
    total: dict[str, ModelUsage] = {}
    for usage in usages:
        for model, used in usage.items():
            known = total.get(model)
            if known is None:
                total[model] = used.copy()
                continue
            costs = [u["total_cost"] for u in (known, used) if "total_cost" in u]
            total[model] = _usage(
                known["input_tokens"] + used["input_tokens"],
                known["output_tokens"] + used["output_tokens"],
                sum(costs) if costs else None,
            )
    return total


def _message(record: MessageRecord) -> ChatMessage:
    roles: tuple[Role, ...] = ("system", "user", "assistant", "tool")
    shown: Role = next((r for r in roles if r == record["role"]), "user")
    message: ChatMessage = {"role": shown, "content": _shown(record["content"])}
    if "tool_calls" in record:
        message["tool_calls"] = [_call(c) for c in record["tool_calls"]]
    if "tool_call_id" in record:
        message["tool_call_id"] = record["tool_call_id"]
    return message


def _call(call: ToolCallRecord) -> ToolCall:
    """A call as inspect writes it; its `parse_error` comes from the tool's reply."""
    return {
        "id": call["id"],
        "function": call["name"],
        "arguments": json_object(call["arguments"]) or {},
        "parse_error": None,
        "type": "function",
    }


def _shown(text: str) -> str:
    """`text` as inspect's reader takes it: a lone surrogate (which a model may write and
    JSON can escape but inspect's parser refuses) as its `\\udXXX` text, as inspect's own
    writer shows it."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _clean(component: str) -> str:
    """A part of a log's file name as inspect cleans it: `_` separates the parts."""
    for character in "_/:+":
        component = component.replace(character, "-")
    return component


def _digest(*parts: str) -> str:
    """A short id that the same parts always give (inspect's ids are 22 characters)."""
    return hashlib.sha256("\0".join(parts).encode("utf-8", "backslashreplace")).hexdigest()[:22]
