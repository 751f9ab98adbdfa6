"""`--rig-max-tokens N` and `--rig-max-cost USD`: once the run has spent that much, no new
model call starts. Calls in flight finish and are counted; an item whose samples can't all
start is skipped for budget, and the run fails with a line naming the budget.

Spending is counted as the table counts it (each finished chat's tokens, and its cost at its
model's prices), as chats finish. xdist workers count each other's spending through the
run's folder.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import typing as t
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pytest_rigging.plugin.gates import Check
from pytest_rigging.plugin.options import given
from pytest_rigging.plugin.samples import CallRefused

if t.TYPE_CHECKING:
    from pytest_rigging.plugin.records import ChatRecord, Row
    from pytest_rigging.plugin.state import Place

SKIPPED = "rigging: budget spent"
"""How a skip for budget's reason begins: the controller counts those skips."""


class BudgetSpent(CallRefused):
    """Raised where a model call would start once the budget is spent."""


_SHARE_EVERY = 0.02
"""Seconds between an xdist worker's reports of its spending to the others, and between its
readings of theirs."""


@dataclass
class Budget:
    """What the run may spend, and what was spent (guarded: chats finish on the engine's
    loop, free-form tests report on pytest's thread).

    xdist workers on one machine share the run's budget through the run's folder: each
    writes what it spent there, and counts what the others wrote (as of a few ms ago).
    Without the folder (`--dist each`, where every worker runs every item) each of the
    `workers` holds an even share."""

    max_tokens: int | None
    max_cost: float | None
    workers: int = 1
    folder: Path | None = None
    """The run's folder, under xdist, where each worker says what it spent."""
    worker: str = ""
    tokens: int = 0
    cost: float = 0.0
    _others: tuple[int, float] = (0, 0.0)
    _read_at: float = -1.0
    _written_at: float = -1.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, records: t.Iterable[ChatRecord]) -> None:
        with self._lock:
            for record in records:
                self.tokens += record["input_tokens"] + record["output_tokens"]
                self.cost += record.get("cost") or 0.0
            if self.folder is not None and time.monotonic() - self._written_at >= _SHARE_EVERY:
                self._written_at = time.monotonic()
                spend = self.folder / f"spend-{self.worker}.json"
                temporary = spend.with_name(spend.name + ".tmp")
                with contextlib.suppress(OSError):  # then the others see it a little later
                    temporary.write_text(json.dumps([self.tokens, self.cost]))
                    temporary.replace(spend)

    def names(self) -> str:
        """The budget as its options spell it."""
        parts = [f"--rig-max-tokens {self.max_tokens}"] if self.max_tokens is not None else []
        if self.max_cost is not None:
            parts.append(f"--rig-max-cost {self.max_cost:g}")
        return " and ".join(parts)

    def _run_spent(self) -> tuple[int, float]:
        """What the run spent: this process's, and the other workers' as they last said."""
        if self.folder is not None and time.monotonic() - self._read_at >= _SHARE_EVERY:
            self._read_at = time.monotonic()
            tokens, cost = 0, 0.0
            for spend in self.folder.glob("spend-*.json"):
                if spend.name != f"spend-{self.worker}.json":
                    with contextlib.suppress(OSError, ValueError, TypeError):
                        theirs = json.loads(spend.read_text())
                        tokens, cost = tokens + int(theirs[0]), cost + float(theirs[1])
            self._others = (tokens, cost)
        return self.tokens + self._others[0], self.cost + self._others[1]

    def spent(self) -> str | None:
        """What was spent, once the budget (or this worker's share of it) is gone; None
        while some is left."""
        workers = 1 if self.folder is not None else self.workers
        tokens, cost = self._run_spent()
        share = -(-self.max_tokens // workers) if self.max_tokens is not None else 0
        over_tokens = self.max_tokens is not None and tokens >= share
        over_cost = self.max_cost is not None and cost >= self.max_cost / workers
        if not (over_tokens or over_cost):
            return None
        whose = f", this worker's share of {workers}" if workers > 1 else ""
        used = f"{tokens:,} tokens" + (f", ${cost:,.4f}" if over_cost or cost else "")
        return f"{self.names()}{whose}: {used} used"

    def gate(self) -> None:
        """Called as each model call is about to start."""
        spent = self.spent()
        if spent is not None:
            raise BudgetSpent(f"{SKIPPED} ({spent}): no new model call starts")


def read_budget(config: pytest.Config, place: Place) -> Budget | None:
    """The budget from the command line over the ini file, for this process's `place` in
    the run; None when neither value is set. A bad value is a `ValueError` naming it."""
    max_tokens = _amount(config, "max_tokens", int)
    max_cost = _amount(config, "max_cost", float)
    if max_tokens is None and max_cost is None:
        return None
    return Budget(max_tokens, max_cost, place.processes, place.folder, place.worker)


def spent_line(budget: Budget, rows: t.Sequence[Row], skipped: int) -> str:
    """The line that fails a run whose budget ran out, with what the table counted."""
    return (
        f"FAIL rigging budget {budget.names()} spent: the run used {_spent(rows)}; "
        f"{skipped} item{'s' if skipped != 1 else ''} skipped for budget"
    )


def check(budget: Budget, rows: t.Sequence[Row], skipped: int) -> Check:
    """The budget as one of the run's checks, named after its options: failed when an
    item was skipped for it."""
    limits = (("rig-max-tokens", budget.max_tokens), ("rig-max-cost", budget.max_cost))
    name = "+".join(option for option, limit in limits if limit is not None)
    if skipped:
        return Check(name, False, spent_line(budget, rows, skipped))
    return Check(name, True, f"pass rigging budget {budget.names()}: the run used {_spent(rows)}")


def _spent(rows: t.Sequence[Row]) -> str:
    tokens = sum(r["input_tokens"] + r["output_tokens"] for r in rows)
    costs = [r["cost"] for r in rows if r["cost"] is not None]
    return f"{tokens:,} tokens" + (f", ${sum(costs):,.4f}" if costs else "")


def _amount(config: pytest.Config, name: str, kind: type[int] | type[float]) -> t.Any:
    setting = given(config, name)
    if setting is None:
        return None
    value, where = setting
    try:
        number = kind(value.strip())
    except ValueError:
        number = 0
    if not number > 0 or number != number or number == float("inf"):
        what = "a whole number of tokens" if kind is int else "an amount of USD"
        raise ValueError(f"{where}: expected {what} above 0, got {value!r}")
    return number
