"""`--rig-max-tokens N` and `--rig-max-cost USD`: once the run has spent that much, no new
model call starts. Calls in flight finish and are counted; an item whose samples can't all
start is skipped for budget, and the run fails with a line naming the budget.

Spending is counted as the table counts it (each finished chat's tokens, and its cost at its
model's prices), as chats finish. Under xdist each worker holds its share of the budget, as
of the concurrency limit: workers can't see each other's spending as it happens.
"""

from __future__ import annotations

import threading
import typing as t
from dataclasses import dataclass, field

from pytest_rigging.plugin.samples import CallRefused

if t.TYPE_CHECKING:
    from pytest_rigging.plugin.records import ChatRecord

SKIPPED = "rigging: budget spent"
"""How a skip for budget's reason begins: the controller counts those skips."""


class BudgetSpent(CallRefused):
    """Raised where a model call would start once the budget is spent."""


@dataclass
class Budget:
    """What the run may spend, this process's share of it (`workers` share it evenly), and
    what this process spent (guarded: chats finish on the engine's loop, free-form tests
    report on pytest's thread)."""

    max_tokens: int | None
    max_cost: float | None
    workers: int = 1
    tokens: int = 0
    cost: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, records: t.Iterable[ChatRecord]) -> None:
        with self._lock:
            for record in records:
                self.tokens += record["input_tokens"] + record["output_tokens"]
                self.cost += record.get("cost") or 0.0

    def names(self) -> str:
        """The budget as its options spell it."""
        parts = [f"--rig-max-tokens {self.max_tokens}"] if self.max_tokens is not None else []
        if self.max_cost is not None:
            parts.append(f"--rig-max-cost {self.max_cost:g}")
        return " and ".join(parts)

    def spent(self) -> str | None:
        """What this process spent, once its share is gone; None while some is left."""
        share = -(-self.max_tokens // self.workers) if self.max_tokens is not None else 0
        tokens = self.max_tokens is not None and self.tokens >= share
        cost = self.max_cost is not None and self.cost >= self.max_cost / self.workers
        if not (tokens or cost):
            return None
        whose = f", this worker's share of {self.workers}" if self.workers > 1 else ""
        used = f"{self.tokens:,} tokens" + (f", ${self.cost:,.4f}" if cost or self.cost else "")
        return f"{self.names()}{whose}: {used} used"

    def gate(self) -> None:
        """Called as each model call is about to start."""
        spent = self.spent()
        if spent is not None:
            raise BudgetSpent(f"{SKIPPED} ({spent}): no new model call starts")


def read_budget(
    tokens: tuple[str | None, str], cost: tuple[str | None, str], workers: int
) -> Budget | None:
    """The budget from (command line, ini) values, shared by `workers` xdist workers; None
    when neither is set. A bad value is a `ValueError` naming it."""
    max_tokens = _amount(*tokens, "max-tokens", int)
    max_cost = _amount(*cost, "max-cost", float)
    if max_tokens is None and max_cost is None:
        return None
    return Budget(max_tokens, max_cost, workers)


def _amount(cli: str | None, ini: str, name: str, kind: type[int] | type[float]) -> t.Any:
    if cli is not None:
        value, where = cli, f"--rig-{name}"
    elif ini.strip():
        value, where = ini, f"ini rig_{name.replace('-', '_')}"
    else:
        return None
    try:
        number = kind(value.strip())
    except ValueError:
        number = 0
    if not number > 0 or number != number or number == float("inf"):
        what = "a whole number of tokens" if kind is int else "an amount of USD"
        raise ValueError(f"{where}: expected {what} above 0, got {value!r}")
    return number
