"""Every use of pytest's and pytest-xdist's private or undocumented API, in one place.

Each entry says why no public API serves and since which version it holds. CI runs the
plugin's tests on the lowest and the newest versions of the range `pyproject.toml`
declares (pytest >=8.4, pytest-xdist >=3.6.1), so a release that breaks one of these
fails there first, not in a user's suite.
"""

from __future__ import annotations

import contextlib
import typing as t

import pytest
from xdist.scheduler import (
    LoadGroupScheduling,
    LoadScheduling,
    LoadScopeScheduling,
    WorkStealingScheduling,
)

if t.TYPE_CHECKING:
    from xdist.workermanage import WorkerController

Fixture = pytest.FixtureDef[t.Any]


def call_params(item: pytest.Item) -> t.Mapping[str, t.Any]:
    """A parametrized item's argument values by name (empty for any other item).

    pytest documents how to parametrize, not how to read an item's values back:
    `Function.callspec` is undocumented. Unchanged since pytest 3.
    """
    callspec = getattr(item, "callspec", None)
    return t.cast("t.Mapping[str, t.Any]", callspec.params) if callspec is not None else {}


def will_skip(item: pytest.Item) -> bool:
    """Whether pytest will skip `item` by its `skip`/`skipif` marks, by pytest's own
    reading of them (a string condition is evaluated in the test module's namespace).

    No public API evaluates the marks before setup; re-implementing the evaluation would
    disagree with pytest on string conditions. `_pytest.skipping.evaluate_skip_marks`
    exists since pytest 6.0 and returns a `Skip` or None since then. A condition that
    can't be evaluated here is left for pytest to report as it runs the item.
    """
    from _pytest.skipping import evaluate_skip_marks

    try:
        return evaluate_skip_marks(item) is not None
    except Exception:
        return False


def fixture_definitions(item: pytest.Item, name: str) -> tuple[Fixture, ...]:
    """The definitions of fixture `name` that `item` sees, innermost last.

    pytest has no public way to ask which fixture function serves a name for an item
    (`FixtureRequest` only gives values, and only during the item's setup), and the
    result fixtures must rebuild other items' pipelines before they are set up.
    `item._fixtureinfo.name2fixturedefs` exists since pytest 3.
    """
    info = getattr(item, "_fixtureinfo", None)
    return tuple(info.name2fixturedefs.get(name) or ()) if info is not None else ()


def fixture_function(definition: Fixture) -> t.Callable[..., t.Any]:
    """The function a fixture definition calls, to be called with another item's values.

    `pytest.FixtureDef` is public for typing since pytest 8.1, but its `func` is not
    documented; present since pytest 3.
    """
    return t.cast("t.Callable[..., t.Any]", definition.func)


def is_direct_parameter(definition: Fixture) -> bool:
    """Whether `definition` is the stand-in pytest makes for a direct `parametrize`
    argument (one no fixture provides), whose value the item's parameters hold.

    pytest only tells them apart by its stand-in's function, named
    `get_direct_param_fixture_func` since pytest 8.0.
    """
    return getattr(definition.func, "__name__", "") == "get_direct_param_fixture_func"


def output_shown(config: pytest.Config) -> t.ContextManager[None]:
    """Output written inside this reaches the terminal even while pytest captures (a
    status line shown during an item's setup).

    The capture manager has no documented API; `global_and_fixture_disabled` is what
    pytest's own live logging uses, since pytest 5.4.
    """
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        return contextlib.nullcontext()
    return t.cast("t.ContextManager[None]", capture.global_and_fixture_disabled())


def restart_line(terminal: pytest.TerminalReporter) -> None:
    """Make the terminal reporter start its next result on a line of its own, naming
    its file again, after a line of ours.

    `TerminalReporter.currentfspath` is undocumented; pytest itself resets it this way
    after writing a section. Since pytest 3.
    """
    terminal.currentfspath = None


def current_column(terminal: pytest.TerminalReporter) -> int:
    """How far along its current line pytest's terminal reporter has written: where its
    next result goes, and where a status line drawn beneath must leave the cursor.

    The reporter keeps count on its terminal writer (`_tw.width_of_current_line`, which
    places its own [%] column) and has no public way to ask. Since pytest 6.0.
    """
    return int(terminal._tw.width_of_current_line)


def write_aside(terminal: pytest.TerminalReporter, text: str) -> None:
    """Write `text` (cursor moves included) to pytest's terminal without the reporter
    counting it towards its current line: a status line that puts the cursor back where
    pytest left it must leave pytest's count, and so its [%] column, as they were.

    `TerminalReporter.write` counts everything; its `write_raw`, which doesn't, only came
    in pytest 9.0, so the writer's file (`_tw._file`, since pytest 6.0) is written directly,
    escaped where the terminal can't encode it, as pytest's writer does.
    """
    file = terminal._tw._file
    try:
        file.write(text)
    except UnicodeEncodeError:
        file.write(text.encode("unicode-escape").decode("ascii"))
    file.flush()


def line_width(config: pytest.Config) -> int:
    """The width pytest draws its own lines at (`COLUMNS` when set, as pytest reads it),
    80 when it writes to no terminal.

    `Config.get_terminal_writer()` is undocumented and its `TerminalWriter` is not
    exported; `fullwidth` is what pytest's own reporter reads. Present in every pytest
    this plugin admits (8.4 and later).
    """
    return int(config.get_terminal_writer().fullwidth)


def mark_known_failure(report: pytest.TestReport, reason: str) -> None:
    """Report a failed call as an expected failure (xfail), after the call.

    pytest marks an xfailed report by its `wasxfail` attribute, which every reporter
    (terminal, JUnit, xdist's transport) reads; there is no public way to turn a report
    into one once the test ran. Since pytest 3.
    """
    report.outcome = "skipped"
    report.wasxfail = reason


def fail_run(session: pytest.Session) -> None:
    """Fail the run as a failed test would, after the test loop (a failed gate, say).

    pytest turns a non-zero `session.testsfailed` into exit status 1 before it calls
    `pytest_sessionfinish`, so every plugin's and conftest's `exitstatus` sees the failure;
    setting `session.exitstatus` later would hide it from them. `testsfailed` is not
    documented; present since pytest 2.
    """
    session.testsfailed += 1


def log_beside_tests(config: pytest.Config, report: pytest.TestReport) -> None:
    """Log a report that stands for no test (a run-level check) to every plugin but those
    that would take a failed one for a test: pytest's session, which counts it towards
    `--maxfail` (`-x` would then read "stopping after 1 failures" once every test ran), the
    last-failed cache (`--lf` would look for it next time) and `--stepwise`.

    pytest has no hook for results beside tests; a plugin's reports reach JUnit, the
    terminal and other reporting plugins only through `pytest_runtest_logreport`.
    `subset_hook_caller` is pluggy's public API; the names those plugins register under
    ("session", "lfplugin", "stepwiseplugin") are not documented, the same since pytest 3.
    """
    manager = config.pluginmanager
    counting = (manager.get_plugin(name) for name in ("session", "lfplugin", "stepwiseplugin"))
    hook = manager.subset_hook_caller(
        "pytest_runtest_logreport", [plugin for plugin in counting if plugin is not None]
    )
    hook(report=report)


def shown_red(category: str) -> None:
    """Count `category` red in pytest's closing summary line (as "failed" is), instead of
    yellow, the colour of a category pytest doesn't know.

    The colours are the module dict `_pytest.terminal._color_for_type`, which no option or
    hook sets; since pytest 6.0.
    """
    from _pytest.terminal import _color_for_type

    _color_for_type.setdefault(category, "red")


@contextlib.contextmanager
def reported_as_setup(report: pytest.TestReport) -> t.Iterator[None]:
    """Within this, a call's report reads as a setup's, so that JUnit's writer, which
    knows errors only in setup and teardown, writes an `<error>` for it.

    `LogXML.pytest_runtest_logreport` decides on `report.when` alone, and has no hook
    or option for a call that errored. Since pytest 3.
    """
    when, report.when = report.when, "setup"
    try:
        yield
    finally:
        report.when = when


def own_scheduler(dist: str, config: pytest.Config, log: t.Any) -> t.Any:
    """The scheduler xdist itself would run for `--dist load|worksteal|loadgroup`.

    xdist documents `pytest_xdist_make_scheduler` (return a scheduler, or None for its
    own), not how to make its own once the choice is deferred past the workers' collection:
    its schedulers take `(config, log)` since xdist 1.19 (loadgroup since 3.0).
    """
    own = {
        "load": LoadScheduling,
        "worksteal": WorkStealingScheduling,
        "loadgroup": LoadGroupScheduling,
    }[dist]
    return own(config, log)


def worker_of(report: pytest.TestReport) -> t.Any | None:
    """The xdist worker a report came from (the controller's node for it, whose
    `workerinput` and `workeroutput` xdist documents), None when unknown.

    xdist sets `report.node` on reports it receives, which it doesn't document. Since
    xdist 1.x.
    """
    return getattr(report, "node", None)


class UnitScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist ships no types
    """xdist's load-scope scheduler, with units of work chosen by `unit_of` instead of
    module or class, and an item that crashed its worker kept from crashing the next.

    xdist documents the scheduler hook, not its schedulers' insides: `_split_scope` is
    how its own `LoadGroupScheduling` chooses units (since xdist 3.0), and the crash
    handling reads `assigned_work` and `workqueue` and calls `_reschedule` as
    `LoadScopeScheduling.remove_node` itself does (since xdist 1.19).
    """

    def unit_of(self, nodeid: str) -> str:
        return nodeid

    def requeued(self, nodeids: list[str]) -> None:
        """Items going back in the queue after their worker crashed."""

    def _split_scope(self, nodeid: str) -> str:
        return self.unit_of(nodeid)

    def remove_node(self, node: WorkerController) -> str | None:
        """As xdist's, but the item that crashed the worker is marked done before its unit
        goes back in the queue (it is reported failed already): put back as it was, it
        would be handed to the next worker and crash that one too."""
        workload: dict[str, dict[str, bool]] = self.assigned_work.pop(node)
        pending = [
            (scope, nodeid)
            for scope, unit in workload.items()
            for nodeid, done in unit.items()
            if not done
        ]
        if not pending:
            return None
        scope, crashed = pending[0]
        workload[scope][crashed] = True
        self.requeued([nodeid for _, nodeid in pending[1:]])
        self.workqueue.update(
            (scope, unit) for scope, unit in workload.items() if not all(unit.values())
        )
        for other in self.assigned_work:
            self._reschedule(other)
        return crashed


class PosingScheduler:
    """A scheduler that, once it has chosen another to delegate to, shows that one's class
    (`chosen`): xdist names the scheduler's class at `-v` ("scheduling tests via
    LoadScheduling"), and a run without rig items should read as one without the plugin.

    xdist reads `sched.__class__.__name__` and offers no way to name a scheduler
    (since xdist 1.19).
    """

    chosen: t.Any = None

    @property  # type: ignore[misc]  # a property standing for the class is the point here
    def __class__(self) -> type:
        return type(self.chosen) if self.chosen is not None else type(self)
