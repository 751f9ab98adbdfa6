"""`--rig-shard K/N`: the K-th of N slices of the suite, for a CI matrix of N jobs whose
reports `python -m pytest_rigging merge` joins into one verdict.

A slice is a set of test functions (a function's items share a group, a scripted model's
answers, and a row's figures), balanced by item count: the biggest first, each to the slice
with the fewest items so far. A function bigger than a slice's share (the selected items
over N) is first cut by cases into pieces of at most that share, so that a suite that is
mostly one parametrized test still splits evenly. A case (its inputs on every model and
params set of the matrix) is never cut, nor an item with its samples: each runs, and is
judged k of n, in one slice only. It depends only on the selected items' node ids (not
their order: a plugin that shuffles them shuffles them differently in each job), so every
job (and every xdist worker of a job) cuts the suite alike.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass

import pytest

from pytest_rigging.plugin.options import in_matrix
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
    """The shard's test functions, whole or in part."""
    of_functions: int
    """How many test functions were selected in all."""
    in_part: int
    """The shard's test functions cut by cases, whose other cases run in other shards."""

    @property
    def emptied(self) -> bool:
        """Whether the shard holds none of the items selected (and there were some)."""
        return not self.kept and bool(self.dropped)

    def describe(self, shard: Shard) -> str:
        cut = f" ({self.in_part} of them in part, cut by cases)" if self.in_part else ""
        return (
            f"rigging: shard {shard}: {self.functions} of {self.of_functions} test functions"
            f"{cut}, {len(self.kept)} of {len(self.kept) + len(self.dropped)} items"
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
    """The items of the shard's test functions and pieces of functions, in their collection
    order."""
    functions: dict[str, dict[str, list[int]]] = {}
    for index, item in enumerate(items):
        cases = functions.setdefault(group_key(item.nodeid), {})
        cases.setdefault(_case(item), []).append(index)
    share = -(-len(items) // shard.count)
    pieces = [
        (function, number, piece)
        for function, cases in functions.items()
        for number, piece in enumerate(_cut([cases[case] for case in sorted(cases)], share))
    ]
    loads = [0] * shard.count
    owner = [0] * len(items)
    shards_of: dict[str, set[int]] = {}
    for function, _, piece in sorted(pieces, key=lambda p: (-len(p[2]), p[0], p[1])):
        lightest = min(range(shard.count), key=lambda i: (loads[i], i))
        loads[lightest] += len(piece)
        for index in piece:
            owner[index] = lightest
        shards_of.setdefault(function, set()).add(lightest)
    mine = shard.index - 1
    kept = [item for index, item in enumerate(items) if owner[index] == mine]
    dropped = [item for index, item in enumerate(items) if owner[index] != mine]
    held = [shards for shards in shards_of.values() if mine in shards]
    return Split(kept, dropped, len(held), len(functions), sum(len(s) > 1 for s in held))


def _case(item: pytest.Item) -> str:
    """The item's case: its node id without its cell's id, so that the case's cells (the
    same inputs on each model and params set) stay in one shard. The cell's id is one of
    the id's dash-joined parts, last unless a later parametrization (a conftest's
    `trylast` hook) comes after it. An item whose only parameter is its cell (or that is
    no matrix item) is a case of its own. Node ids, not parameter values, so that every
    job cuts alike."""
    if not in_matrix(item):
        return item.nodeid
    from pytest_rigging.plugin.matrix import cell_of

    cell, head = cell_of(item), group_key(item.nodeid)
    if cell is None or head == item.nodeid:
        return item.nodeid
    parts = item.nodeid[len(head) + 1 : -1].split("-")
    cut = len(cell.id.split("-"))
    for start in range(len(parts) - cut, -1, -1):
        rest = parts[:start] + parts[start + cut :]
        if rest and "-".join(parts[start : start + cut]) == cell.id:
            return f"{head}[{'-'.join(rest)}]"
    return item.nodeid


def _cut(cases: list[list[int]], share: int) -> list[list[int]]:
    """A function's items (by case, in node id order) whole when they fit in a shard's
    `share`, else cut between cases into pieces of at most `share` items (a case bigger
    than that is a piece of its own)."""
    if sum(map(len, cases)) <= share:
        return [[index for case in cases for index in case]]
    pieces: list[list[int]] = [[]]
    for case in cases:
        if pieces[-1] and len(pieces[-1]) + len(case) > share:
            pieces.append([])
        pieces[-1].extend(case)
    return pieces
