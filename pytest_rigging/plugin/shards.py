"""`--rig-shard K/N`: the K-th of N slices of the suite, for a CI matrix of N jobs whose
reports `python -m pytest_rigging merge` joins into one verdict.

A slice is a set of whole test functions (a function's items share a group, its samples a
scripted model's answers, and its figures a row), balanced by item count: the biggest
functions first, each to the slice with the fewest items so far. It depends only on the
selected items, so every job (and every xdist worker of a job) cuts the suite alike.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass

import pytest

from pytest_rigging.plugin.records import group_key

_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    index: int
    """1-based, as written."""
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Split:
    """What a shard keeps of the selected items."""

    kept: list[pytest.Item]
    dropped: list[pytest.Item]
    functions: int
    """The shard's test functions."""
    of_functions: int
    """How many test functions were selected in all."""

    @property
    def emptied(self) -> bool:
        """Whether the shard holds none of the items selected (and there were some)."""
        return not self.kept and bool(self.dropped)

    def describe(self, shard: Shard) -> str:
        return (
            f"rigging: shard {shard}: {self.functions} of {self.of_functions} test functions, "
            f"{len(self.kept)} of {len(self.kept) + len(self.dropped)} items"
        )


def select(config: pytest.Config, shard: Shard, items: list[pytest.Item]) -> Split:
    """Keep the shard's test functions of `items` (what `-k`/`-m` selected); the others are
    deselected, as pytest reports deselection."""
    cut = split(items, shard)
    if cut.dropped:
        config.hook.pytest_deselected(items=cut.dropped)
        items[:] = cut.kept
    return cut


def parse_shard(text: str, where: str) -> Shard:
    """`K/N` with 1 <= K <= N; anything else is a usage error naming it and `where` it was
    given."""
    found = _SHARD.fullmatch(text)
    if found is not None:
        index, count = int(found[1]), int(found[2])
        if 1 <= index <= count:
            return Shard(index, count)
    raise pytest.UsageError(
        f"{where}: expected K/N with 1 <= K <= N (the K-th of N shards), got {text!r}"
    )


def split(items: t.Sequence[pytest.Item], shard: Shard) -> Split:
    """The items of the shard's test functions, in their collection order."""
    functions: dict[str, int] = {}
    for item in items:
        key = group_key(item.nodeid)
        functions[key] = functions.get(key, 0) + 1
    loads = [0] * shard.count
    owner: dict[str, int] = {}
    for key in sorted(functions, key=lambda k: (-functions[k], k)):
        lightest = min(range(shard.count), key=lambda i: (loads[i], i))
        owner[key] = lightest
        loads[lightest] += functions[key]
    mine = shard.index - 1
    kept = [i for i in items if owner[group_key(i.nodeid)] == mine]
    dropped = [i for i in items if owner[group_key(i.nodeid)] != mine]
    return Split(kept, dropped, sum(1 for o in owner.values() if o == mine), len(functions))
