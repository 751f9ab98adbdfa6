"""Keeping a rig test's items together on xdist workers, and nothing else changed.

A unit's cells and samples are started together by whichever worker runs its first
item; if its other items ran elsewhere, their calls would be made twice. So the items of
one unit must share a worker: a rig test function, or under `-n N` one of N slices of it,
so that a single big function still keeps every worker (and the whole limit) busy.
Everything else stays xdist's: the plugin picks a scheduler only after the workers have
collected, and only when they found rig items; otherwise xdist's own scheduler for the
mode runs, untouched.

The facts travel explicitly: the controller hands each worker a folder
(`pytest_configure_node`), each worker writes there which of its items belong together
before it reports its collection, and the controller reads that when the first
collection arrives. With rig items present, rig functions (or their slices) are the units
of work, `xdist_group` marks group their items under `--dist loadgroup` (as xdist
documents), and every other item is a unit of its own. The same folder holds the workers'
journals (`journal`): what survives a worker that is interrupted or crashes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import typing as t
from pathlib import Path

import pytest

from pytest_rigging.plugin._compat import (
    PosingScheduler,
    UnitScheduling,
    own_scheduler,
    worker_of,
)
from pytest_rigging.plugin.journal import salvage, write_requeued
from pytest_rigging.plugin.options import in_matrix
from pytest_rigging.plugin.records import (
    CellRecord,
    GroupFacts,
    ItemRecord,
    group_key,
    packed,
    unpacked,
    unreported,
)
from pytest_rigging.plugin.roles import Central, Role
from pytest_rigging.plugin.state import Place

if t.TYPE_CHECKING:
    from pytest_rigging.plugin.cassettes import Entry

GROUPED_MODES = ("load", "worksteal", "loadgroup")
_FOLDER = "rig_groups_dir"
_DIST = "rig_dist"
_EMPTY_SHARD = "rig_shard_empty"


def unit_keys(place: Place, items: t.Sequence[pytest.Item]) -> dict[str, str]:
    """Each rig item's unit of work (its node id: a key), given in collection order: its
    test function, or, under the plugin's scheduler with `-n N`, a slice of it
    (`function#k`, N slices at most), so that one big function keeps every worker busy with
    its share of the limit while each item's samples stay together. The same on every
    worker, which collect alike. A function that `xdist_group` marks under `--dist
    loadgroup` stays whole: its group decides where it runs."""
    workers = place.processes if place.dist in GROUPED_MODES else 1
    by_function: dict[str, list[str]] = {}
    whole: set[str] = set()
    for item in items:
        function = group_key(item.nodeid)
        by_function.setdefault(function, []).append(item.nodeid)
        if place.dist == "loadgroup" and _group_names(item):
            whole.add(function)
    keys: dict[str, str] = {}
    for function, nodeids in by_function.items():
        slices = 1 if function in whole else min(workers, len(nodeids))
        for index, nodeid in enumerate(nodeids):
            keys[nodeid] = (
                function if slices == 1 else f"{function}#{index * slices // len(nodeids)}"
            )
    return keys


def _group_names(item: pytest.Item) -> list[str]:
    return sorted({_group_name(m) for m in item.iter_markers("xdist_group")})


def _group_name(mark: pytest.Mark) -> str:
    return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))


class DistWorker(Role):
    """An xdist worker: runs its items and hands the controller what it needs (which
    items must share a worker, the records, its recordings, whether its shard was empty)."""

    def __init__(self, config: pytest.Config, workerinput: dict[str, t.Any]) -> None:
        folder = workerinput.get(_FOLDER)
        place = Place(
            processes=int(workerinput.get("workercount", 1)),  # not the environment's:
            folder=Path(folder) if folder is not None else None,  # an enclosing run's
            worker=str(workerinput.get("workerid", "")),
            dist=workerinput.get(_DIST),
            controls=False,
        )
        super().__init__(config, place)
        self.workeroutput: dict[str, t.Any] = getattr(config, "workeroutput", {})

    @pytest.hookimpl(tryfirst=True)  # before the worker reports its collection
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Which items must share a worker, for the controller's scheduler."""
        folder = self.run.place.folder
        if folder is None:
            return
        rig = {}
        if any(in_matrix(item) for item in session.items):
            from pytest_rigging.plugin.matrix import cell_of

            rig = {item.nodeid: cell for item in session.items if (cell := cell_of(item))}
        loadgroup = self.run.place.dist == "loadgroup"
        scopes: dict[str, str] = {}
        cells: dict[str, CellRecord] = {}
        runs, default = None, False
        if rig:
            from pytest_rigging.plugin.samples import runs_line

            rig_items = [item for item in session.items if item.nodeid in rig]
            units = unit_keys(self.run.place, rig_items)
            runs = runs_line(rig_items, self.run.settings.runs)
            default = any(self.run.settings.on_default_model(i) for i in rig_items)
            for item in session.items:
                # xdist_group marks work where xdist documents them, on rig items too
                names = _group_names(item) if loadgroup else []
                group = "group:" + "_".join(names) if names else None
                if item.nodeid in rig:
                    scopes[item.nodeid] = group or f"rig:{units[item.nodeid]}"
                    cells[item.nodeid] = rig[item.nodeid].record
                elif group:
                    scopes[item.nodeid] = group
        facts: GroupFacts = {
            "rig": bool(rig),
            "scopes": scopes,
            "cells": cells,
            "runs": runs,
            "default": default,
        }
        if self.run.cases is not None:
            facts["cases"] = self.run.cases
        path = folder / f"{self.run.place.worker}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(facts))
        temporary.replace(path)

    @pytest.hookimpl(wrapper=True)
    def pytest_report_to_serializable(
        self,
    ) -> t.Generator[None, dict[str, t.Any] | None, dict[str, t.Any] | None]:
        """A rig item's record crosses to the controller packed (`records.packed`):
        whatever the model wrote arrives as it was."""
        data = yield
        if data is not None and "rig" in data:
            data["rig"] = packed(data["rig"])
        return data

    def pytest_sessionfinish(self) -> None:
        """Tell the controller whether this worker's shard was empty, and hand it the new
        recordings."""
        split = self.run.split
        self.workeroutput[_EMPTY_SHARD] = split is not None and split.emptied
        tapes = self.run.tapes
        if tapes is None or not tapes.recorded():
            return
        if self.run.place.folder is not None:
            from pytest_rigging.plugin.cassettes import dump

            dump(self.run.place.folder, self.run.place.worker, tapes.recorded())
        else:  # --dist each: every worker records the same; each writes it whole
            self.write_cassettes([tapes.recorded()])


class DistController(Central):
    """The controller of an xdist run: reports as `Central` does, with what crosses from
    the workers (records, recordings, journals of crashed workers) and the scheduling that
    keeps a unit of rig items on one worker."""

    def __init__(self, config: pytest.Config) -> None:
        super().__init__(config)
        self.folder: Path | None = None
        self.facts: GroupFacts | None = None
        self.workers_emptied = False
        self.collection_told = False

    @pytest.hookimpl(tryfirst=True)
    def pytest_report_from_serializable(self, data: dict[str, t.Any]) -> None:
        """A worker's packed record unpacked, before pytest rebuilds the report."""
        if isinstance(data.get("rig"), str):
            data["rig"] = unpacked(data["rig"])

    def read_facts(self, worker: str | None = None) -> GroupFacts:
        """What worker `worker` (or any) wrote of its items (every worker collects the same,
        so the first one read stands for all)."""
        if self.facts is None and self.folder is not None:
            paths = [self.folder / f"{worker}.json"] if worker else self.folder.glob("gw*.json")
            path = next((p for p in paths if p.exists()), None)
            if path is not None:
                self.facts = json.loads(path.read_text())
        return self.facts or {
            "rig": False,
            "scopes": {},
            "cells": {},
            "runs": None,
            "default": False,
        }

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: t.Any) -> None:
        """Once the first worker has collected, that rig items run on the default model and
        the runs rig marks set, as a single process says them after collection (xdist's
        controller collects nothing itself)."""
        if self.collection_told:
            return
        self.collection_told = True
        facts = self.read_facts(node.gateway.id)
        if not (facts["default"] or facts["runs"]):  # nothing to say: no matrix import
            return
        from pytest_rigging.plugin.matrix import after_collection

        lines = after_collection(facts["default"], facts["runs"], self.config.get_verbosity())
        terminal = self.config.pluginmanager.get_plugin("terminalreporter")
        if lines and terminal is not None:
            terminal.ensure_newline()
            for line in lines:
                terminal.write_line(line)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(
        self, crashitem: str, report: pytest.TestReport, sched: t.Any
    ) -> None:
        """A rig item lost with its worker is named as such, with the samples that
        finished before the worker crashed (an error) or was interrupted (Ctrl-C, or a
        KeyboardInterrupt raised in a test, which xdist reports the same way). Only under
        the plugin's scheduler, which drops the item: xdist's own schedulers for the other
        modes run it again."""
        if not isinstance(getattr(sched, "chosen", None), FunctionScheduling):
            return
        node = worker_of(report)
        worker = str(getattr(node, "workerinput", {}).get("workerid", "?"))
        cell = self.read_facts(worker)["cells"].get(crashitem)
        if cell is None or self.folder is None:
            return
        found = salvage(self.folder, {crashitem}).get(crashitem)
        exitstatus = getattr(node, "workeroutput", {}).get("exitstatus")
        interrupted = exitstatus == pytest.ExitCode.INTERRUPTED
        # calls cancelled by an interrupt were not lost: only a crash takes answers with it
        chats = [] if found is None else found.records
        if found is not None and not interrupted:
            chats += found.in_flight(cell)
        how = "was interrupted" if interrupted else "crashed"
        report.rig = unreported(  # type: ignore[attr-defined]  # the record pytest carries
            crashitem,
            cell,
            "interrupted" if interrupted else "error",
            chats,
            lost=f"lost with xdist worker {worker}, which {how}",
        )

    def leftovers(self) -> list[ItemRecord]:
        """After an interrupted run: what finished for items that never reported, the
        workers' journals included."""
        leftovers = super().leftovers()
        if self.folder is None:
            return leftovers
        known = self.run.reported
        reported = {r["nodeid"] for r in known.items} if known is not None else set()
        cells = self.read_facts()["cells"]
        leftovers.extend(
            unreported(nodeid, cells[nodeid], "interrupted", found.records)
            for nodeid, found in salvage(self.folder).items()
            if nodeid not in reported and nodeid in cells and found.records
        )
        return leftovers

    def collected_cases(self) -> dict[str, list[str]] | None:
        """What the workers collected (the controller collects nothing)."""
        return self.read_facts().get("cases")

    def recordings(self) -> list[dict[str, list[Entry]]]:
        if self.folder is None:
            return super().recordings()
        from pytest_rigging.plugin.cassettes import dumped

        return [*super().recordings(), *dumped(self.folder)]

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: t.Any, error: object) -> None:
        """An xdist worker whose shard held nothing says so as it ends."""
        if getattr(node, "workeroutput", {}).get(_EMPTY_SHARD):
            self.workers_emptied = True

    def emptied(self) -> bool:
        return self.workers_emptied or super().emptied()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: t.Any) -> None:
        dist = node.config.getoption("dist")
        if dist != "each":
            if self.folder is None:
                self.folder = Path(tempfile.mkdtemp(prefix="pytest-rigging-"))
            node.workerinput[_FOLDER] = str(self.folder)
            node.workerinput[_DIST] = dist

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: t.Any) -> t.Any:
        dist = config.getoption("dist")
        if dist not in GROUPED_MODES:
            return None
        return DeferredScheduling(config, log, dist, self)

    def pytest_unconfigure(self) -> None:
        super().pytest_unconfigure()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


class DeferredScheduling(PosingScheduler):
    """xdist's scheduling protocol, answered by the scheduler chosen once the first worker
    has collected: xdist's own for the mode when there are no rig items, else one that
    keeps each unit of rig items (a function or a slice of it) on one worker. Until then it
    only remembers the workers."""

    def __init__(
        self, config: pytest.Config, log: t.Any, dist: str, controller: DistController
    ) -> None:
        self.config, self.log, self.dist, self.controller = config, log, dist, controller
        self._waiting: list[t.Any] = []

    def _choose(self, node: t.Any) -> t.Any:
        facts = self.controller.read_facts(node.gateway.id)
        if facts["rig"] and self.controller.folder is not None:
            return FunctionScheduling(self.config, self.log, facts, self.controller.folder)
        return own_scheduler(self.dist, self.config, self.log)

    @property
    def nodes(self) -> list[t.Any]:
        return self.chosen.nodes if self.chosen is not None else list(self._waiting)

    @property
    def collection_is_completed(self) -> bool:
        return self.chosen is not None and bool(self.chosen.collection_is_completed)

    @property
    def tests_finished(self) -> bool:
        return self.chosen is not None and bool(self.chosen.tests_finished)

    @property
    def has_pending(self) -> bool:
        return self.chosen is not None and bool(self.chosen.has_pending)

    def add_node(self, node: t.Any) -> None:
        if self.chosen is None:
            self._waiting.append(node)
        else:
            self.chosen.add_node(node)

    def add_node_collection(self, node: t.Any, collection: t.Sequence[str]) -> None:
        if self.chosen is None:
            self.chosen = self._choose(node)
            for waiting in self._waiting:
                self.chosen.add_node(waiting)
        self.chosen.add_node_collection(node, collection)

    def mark_test_complete(self, node: t.Any, item_index: int, duration: float = 0) -> None:
        self.chosen.mark_test_complete(node, item_index, duration)

    def mark_test_pending(self, item: str) -> None:
        self.chosen.mark_test_pending(item)

    def remove_pending_tests_from_node(self, node: t.Any, indices: t.Sequence[int]) -> None:
        self.chosen.remove_pending_tests_from_node(node, indices)

    def remove_node(self, node: t.Any) -> str | None:
        if self.chosen is None:
            if node not in self._waiting:
                raise KeyError(node)  # what xdist's own schedulers raise for a stranger
            self._waiting.remove(node)
            return None
        return t.cast("str | None", self.chosen.remove_node(node))

    def schedule(self) -> None:
        self.chosen.schedule()


class FunctionScheduling(UnitScheduling):
    """Units of work: a rig test function or a slice of it (`unit_keys`), an `xdist_group`
    (under loadgroup), or a single item; as xdist's loadgroup scheduler does with its
    groups."""

    def __init__(self, config: pytest.Config, log: t.Any, facts: GroupFacts, folder: Path) -> None:
        super().__init__(config, log)
        self.scopes = facts["scopes"]
        self.rig = set(facts["cells"])
        self.folder = folder

    def unit_of(self, nodeid: str) -> str:
        return self.scopes.get(nodeid, nodeid)

    def requeued(self, nodeids: list[str]) -> None:
        """The rig items going back in the queue after their worker crashed are listed for
        the workers, so that whichever takes them uses what finished on the crashed one
        instead of calling again."""
        mine = [nodeid for nodeid in nodeids if nodeid in self.rig]
        if mine:
            write_requeued(self.folder, mine)
