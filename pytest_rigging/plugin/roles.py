"""Each process's part in a run, as one plugin object registered at configure.

pytest-cov's model: `Central` is the process that reports (the only one, or the xdist
controller, whose `xdist.DistController` adds the scheduling and what crosses from the
workers); `xdist.DistWorker` runs items and hands what the controller needs over. Each
makes the run's state (`state.Run`) with its `Place`, so that no hook asks where it runs.
"""

from __future__ import annotations

import typing as t
import warnings

import pytest

from pytest_rigging.plugin.state import Place, RiggingWarning, Run, warned

if t.TYPE_CHECKING:
    from pytest_rigging.plugin.cassettes import Entry
    from pytest_rigging.plugin.gates import Check
    from pytest_rigging.plugin.records import ItemRecord, ReportDocument


def role_for(config: pytest.Config) -> Role:
    """This process's role: an xdist worker (xdist gives it `workerinput`), the controller
    of an xdist run, or the only process."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        from pytest_rigging.plugin.xdist import DistWorker

        return DistWorker(config, workerinput)
    if config.pluginmanager.hasplugin("xdist") and config.getoption("dist", "no") != "no":
        from pytest_rigging.plugin.xdist import DistController

        return DistController(config)
    return Central(config)


class Role:
    """What every process does: stop the model calls at Ctrl-C, release them at the end."""

    def __init__(self, config: pytest.Config, place: Place) -> None:
        self.config = config
        self.run = Run.start(config, place)

    @pytest.hookimpl(tryfirst=True)  # before the terminal renders the traceback (0.2 s)
    def pytest_keyboard_interrupt(self) -> None:
        """Ctrl-C (or `pytest.exit`) stops the model calls at once, wherever pytest was (a
        test body, between items, a teardown), not when the plugin unconfigures."""
        if self.run.started is not None:
            self.run.started.interrupt()

    @pytest.hookimpl(tryfirst=True)  # before -k, -m and shards select
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Against a baseline, each `rig_cases` test's case ids, all of them: a case
        deselected, or in another shard, is not one removed from its dataset."""
        if self.run.baseline is not None:
            from pytest_rigging.plugin.cases import case_ids

            self.run.cases = case_ids(self.config, items)

    def pytest_unconfigure(self) -> None:
        if self.run.started is not None:
            self.run.started.stop()

    def write_cassettes(self, recorded: list[dict[str, list[Entry]]]) -> None:
        """New recordings into their cassette files; a problem is a warning."""
        from pytest_rigging.plugin.cassettes import write

        tapes = self.run.tapes
        for problem in write(recorded, tapes.mode if tapes is not None else "none"):
            warnings.warn(RiggingWarning(problem), stacklevel=1)


class Central(Role):
    """The reporting process: figures in from every item's report; the gates, the table,
    the JSON report, cassettes, the baseline and the step summary out."""

    def __init__(self, config: pytest.Config) -> None:
        super().__init__(config, Place())

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record: ItemRecord | None = getattr(report, "rig", None)
        if record is None:
            return
        self.run.reporter().add(record)
        if report.skipped and self.run.budget is not None:
            from pytest_rigging.plugin.budget import SKIPPED

            if SKIPPED in str(report.longrepr):
                self.run.budget_skips += 1

    @pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_runtest_logreport")
    def pytest_runtest_logreport_errored(
        self, report: pytest.TestReport
    ) -> t.Generator[None, None, None]:
        """A call that ended in an infrastructure error is shown to JUnit's writer as a
        setup's, so that it writes an `<error>` (its message then reads "failed on setup
        with ...")."""
        from pytest_rigging.plugin.records import errored_call

        if not errored_call(report):
            return (yield)
        from pytest_rigging.plugin._compat import reported_as_setup

        with reported_as_setup(report):
            return (yield)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> t.Generator[None, object, object]:
        """After the run, the run-level checks (gates, budget, regressions): each that
        fails fails the run as a failed test would, and each is logged as a test's result
        would be (JUnit writes it, the closing line counts it) before any plugin's
        `pytest_sessionfinish` writes its file."""
        outcome = yield
        if self.config.getoption("collectonly"):  # nothing ran: nothing to judge
            return outcome
        checks = self.judge()
        if not checks:
            return outcome
        from pytest_rigging.plugin._compat import fail_run, log_beside_tests, shown_red
        from pytest_rigging.plugin.gates import CHECKS, apart, failed_category

        if not all(check.passed for check in checks):
            fail_run(session)
        category = failed_category(checks)
        shown_red(category)
        for check in apart(checks):
            passed = check.passed
            report = pytest.TestReport(
                f"{CHECKS}::{check.name}",
                (CHECKS, None, check.name),
                {},
                "passed" if passed else "failed",
                None if passed else check.line,
                "call",
                rig_check="" if passed else category,
            )
            log_beside_tests(self.config, report)
        return outcome

    def judge(self) -> list[Check]:
        """Judge the gates, the budget and, with `--rig-fail-on-regression`, the rates
        against the baseline; every check that was judged."""
        run = self.run
        checks: list[Check] = []
        reporter = run.reported
        rows = reporter.judge() if reporter is not None else []
        if reporter is not None:
            checks.extend(result.check() for result in reporter.results)
        if run.budget is not None:
            from pytest_rigging.plugin.budget import check

            checks.append(check(run.budget, rows, run.budget_skips))
        if run.judged is not None and run.judged.min_kappa is not None and reporter is not None:
            from pytest_rigging.plugin.calibration import kappa_checks

            reporter.judge_checks = kappa_checks(reporter.judges(), run.judged.min_kappa)
            checks.extend(reporter.judge_checks)
        if run.baseline is not None and reporter is not None:
            from pytest_rigging.plugin.baseline import checks as regressions
            from pytest_rigging.plugin.baseline import compare, from_report

            now = from_report(reporter.document())
            run.comparison = compare(run.baseline, reporter.items, now, self.collected_cases())
            if run.fail_on_regression is not None:
                checks.extend(regressions(run.comparison, rows, run.fail_on_regression))
        return checks

    def collected_cases(self) -> dict[str, list[str]] | None:
        """Each `rig_cases` test's case ids, when there is a baseline (`Run.cases`)."""
        return self.run.cases

    def emptied(self) -> bool:
        """Whether this run's shard held none of the items selected (and there were some)."""
        return self.run.split is not None and self.run.split.emptied

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """A shard that holds no test function of a suite that has some ran what it had
        to: not pytest's "no tests collected" (exit 5), which would fail its CI job."""
        if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and self.emptied():
            session.exitstatus = pytest.ExitCode.OK

    def leftovers(self) -> list[ItemRecord]:
        """After an interrupted run: what finished for items that never reported."""
        recorder = self.run.recorded
        return recorder.leftovers() if recorder is not None else []

    def recordings(self) -> list[dict[str, list[Entry]]]:
        tapes = self.run.tapes
        return [tapes.recorded()] if tapes is not None else []

    @pytest.hookimpl(wrapper=True, trylast=True, specname="pytest_sessionfinish")
    def pytest_sessionfinish_writers(self, exitstatus: int) -> t.Generator[None, None, None]:
        """Write the JSON report, the HTML page, inspect logs, cassettes, baseline and step
        summary, also after Ctrl-C: with every sample that finished, those of items that
        never reported included. Done once xdist has stopped its workers (its own hook) and
        before the terminal summary (an outer wrapper), so that what the workers' journals
        hold is final."""
        outcome = yield
        run = self.run
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            leftovers = self.leftovers()
            if leftovers or run.reported is not None:
                reporter = run.reporter()
                reporter.interrupted = True
                for record in leftovers:
                    reporter.add(record)
        if run.report is not None or run.inspect_log is not None or run.html is not None:
            self.write_documents(run.reporter().document())
        if run.tapes is not None:
            self.write_cassettes(self.recordings())
        if run.reported is not None:
            from pytest_rigging.plugin.baseline import save_run
            from pytest_rigging.plugin.summary import append_step_summary

            if run.save_baseline is not None:
                save_run(run.save_baseline, run.reported)
            append_step_summary(run.reported)
        return outcome

    def write_documents(self, doc: ReportDocument) -> None:
        """The run as `--rig-report`, `--rig-inspect-log` and `--rig-html` write it (the
        page against the baseline if there is one); one that can't be written is a
        warning."""
        run = self.run
        if run.report is not None:
            from pytest_rigging.plugin.report import write

            with warned(f"write {run.report.where} {run.report.path}"):
                write(run.report.path, doc)
        if run.inspect_log is not None:
            from pytest_rigging.plugin.inspect_log import write_logs

            with warned(f"write {run.inspect_log.where} {run.inspect_log.path}"):
                write_logs(run.inspect_log.path, doc)
        if run.html is not None:
            from pytest_rigging.plugin.page import write as write_page

            name = str(run.baseline_file.path) if run.baseline_file is not None else ""
            with warned(f"write {run.html.where} {run.html.path}"):
                write_page(run.html.path, doc, run.baseline, name)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        run = self.run
        reporter = run.reported
        if reporter is not None and reporter.items:
            reporter.terminal(terminalreporter, self.config.get_verbosity())
        if run.comparison is not None and reporter is not None:
            from pytest_rigging.plugin.baseline import terminal

            terminal(run, run.comparison, reporter.rows(False), terminalreporter)
        if run.budget_skips and run.budget is not None:
            from pytest_rigging.plugin.budget import spent_line

            rows = reporter.rows(False) if reporter is not None else []
            line = spent_line(run.budget, rows, run.budget_skips)
            terminalreporter.write_line(line, red=True, bold=True)
