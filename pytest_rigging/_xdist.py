"""Keeping each test function's items on one xdist worker.

A test's cells and samples are computed together by whichever worker runs its first
item; if its other items ran elsewhere, their calls would be made twice. xdist's
`--dist loadgroup` does not help on pytest 9 (xdist #1386), so the plugin provides the
scheduler itself: LoadScopeScheduling, with a function (node id up to `[`) as the scope.
"""

from __future__ import annotations

import typing as t

import pytest
from xdist.scheduler import LoadScopeScheduling

from pytest_rigging._execution import group_key


class FunctionScopeScheduling(LoadScopeScheduling):
    """Distributes whole test functions (all their parametrized items) to workers."""

    def _split_scope(self, nodeid: str) -> str:
        return group_key(nodeid)


class XdistHooks:
    """Registered only when pytest-xdist is active."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: t.Any) -> t.Any:
        if config.getoption("dist") in ("load", "worksteal"):
            return FunctionScopeScheduling(config, log)
        return None
