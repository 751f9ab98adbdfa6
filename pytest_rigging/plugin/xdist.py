"""Keeping each test function's items on one xdist worker.

A test's cells and samples are computed together by whichever worker runs its first
item; if its other items ran elsewhere, their calls would be made twice. xdist's
`--dist loadgroup` does not help on pytest 9 (xdist #1386), so the plugin provides the
scheduler itself: LoadScopeScheduling, with a function (node id up to `[`) as the scope.
Whole functions go to one worker, free-form rig tests included (as `--dist loadscope`
would keep a class together). It replaces `load`, `worksteal` and `loadgroup` (whose
`xdist_group` marks it does not read); the other modes keep functions together already.
"""

from __future__ import annotations

import typing as t

import pytest


def group_key(nodeid: str) -> str:
    """Items of one test function share this key: the node id without the `[...]` part."""
    return nodeid.split("[", 1)[0]


class XdistHooks:
    """Registered only when pytest-xdist is active; imports its scheduler only when xdist
    actually distributes, so plain runs pay nothing for it."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: t.Any) -> t.Any:
        if config.getoption("dist") not in ("load", "worksteal", "loadgroup"):
            return None
        from xdist.scheduler import LoadScopeScheduling

        class FunctionScopeScheduling(LoadScopeScheduling):
            """Distributes whole test functions (all their parametrized items)."""

            def _split_scope(self, nodeid: str) -> str:
                return group_key(nodeid)

            def remove_node(self, node: t.Any) -> str | None:
                """LoadScopeScheduling puts a crashed worker's whole unit back in the
                queue, the item that crashed it included, which then crashes worker
                after worker; the crashed item is reported failed, so drop it here."""
                crashed: str | None = super().remove_node(node)
                if crashed is not None:
                    for scope, unit in list(self.workqueue.items()):
                        if crashed in unit:
                            unit[crashed] = True
                            if all(unit.values()):
                                del self.workqueue[scope]
                return crashed

        return FunctionScopeScheduling(config, log)
