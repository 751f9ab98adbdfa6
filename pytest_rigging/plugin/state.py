"""The run's state: one typed object per process, made at configure, kept in one stash key.

The settings, budget and cassettes are read at start when a rig option is set; the
recorder of chats, the engine that runs samples and, on the process that reports, the
reporter are made when first needed. A suite that never asks for a rig fixture or option
imports nothing heavy. Where the process stands in an xdist run (`Place`) is told by its
role object (`roles`), which made the run.
"""

from __future__ import annotations

import contextlib
import typing as t
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pytest_rigging.plugin.options import (
    FileSetting,
    asked,
    file_setting,
    flag,
    folder_setting,
    given,
)

if t.TYPE_CHECKING:
    from pytest_rigging.generator.base import Generator
    from pytest_rigging.plugin.baseline import BaselineDocument, Comparison
    from pytest_rigging.plugin.budget import Budget
    from pytest_rigging.plugin.cassettes import Tapes
    from pytest_rigging.plugin.execution import Engine
    from pytest_rigging.plugin.journal import Journal
    from pytest_rigging.plugin.judging import Judges
    from pytest_rigging.plugin.matrix import Checker, Settings
    from pytest_rigging.plugin.report import Reporter
    from pytest_rigging.plugin.shards import Shard, Split
    from pytest_rigging.plugin.stats import Recorder


class RiggingWarning(UserWarning):
    """Something in the rig settings looks wrong but may work (an unknown model, a repeat)."""


@contextlib.contextmanager
def warned(doing: str) -> t.Iterator[None]:
    """A file the run writes at its end that can't be written is a warning saying what it
    was `doing`, not an error hiding the run's results."""
    try:
        yield
    except OSError as error:
        warnings.warn(RiggingWarning(f"cannot {doing}: {error}"), stacklevel=3)


@dataclass(frozen=True)
class Place:
    """Where this process stands in the run, as its role object knows it."""

    processes: int = 1
    """How many processes share the run's concurrency limit and budget."""
    folder: Path | None = None
    """The xdist run's shared folder (journals, spending, recordings), on a worker."""
    worker: str = ""
    """This xdist worker's id."""
    dist: str | None = None
    """The xdist mode the controller runs, as told to this worker."""
    controls: bool = True
    """Whether this process checks the run's settings, shows progress and reports."""

    def journal(self) -> Journal | None:
        """The worker's journal; None in a single process and under `--dist each` (where
        every worker runs every item, so no item is any one worker's)."""
        if self.folder is None:
            return None
        from pytest_rigging.plugin.journal import Journal

        return Journal(self.folder, self.worker)


@dataclass
class Run:
    """Everything the plugin keeps for one pytest run, in one process."""

    config: pytest.Config
    place: Place
    asked: bool
    """Whether any rig option or ini key is set: a suite that sets none sees no trace of
    the plugin until a test asks for a rig fixture."""
    began: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    """When the run began (configure): UTC, ISO 8601, as reports say it (`started`)."""
    report: FileSetting | None = None
    """`--rig-report PATH` (or ini `rig_report`)."""
    inspect_log: FileSetting | None = None
    """`--rig-inspect-log DIR` (or ini `rig_inspect_log`)."""
    html: FileSetting | None = None
    """`--rig-html PATH` (or ini `rig_html`)."""
    save_baseline: FileSetting | None = None
    """`--rig-save-baseline PATH` (or ini `rig_save_baseline`)."""
    baseline_file: FileSetting | None = None
    """`--rig-baseline PATH` (or ini `rig_baseline`); `baseline` holds what it says."""
    baseline: BaselineDocument | None = None
    cases: dict[str, list[str]] | None = None
    """With a baseline: each `rig_cases` test function's case ids, all of them whichever
    are selected (`cases.case_ids`), as this process collected them."""
    fail_on_regression: str | None = None
    """Where failing on a regression was asked (`--rig-fail-on-regression`, `ini
    rig_fail_on_regression`); None when it wasn't."""
    shard: Shard | None = None
    split: Split | None = None
    """What the shard kept of the selected items, once collected."""
    comparison: Comparison | None = None
    budget: Budget | None = None
    """`--rig-max-tokens` / `--rig-max-cost`; None without them."""
    tapes: Tapes | None = None
    """`--rig-record MODE`: the run's cassettes; None without it."""
    budget_skips: int = 0
    _checks: dict[str, str | None] = field(default_factory=dict)
    _settings: Settings | None = None
    _recorder: Recorder | None = None
    _engine: Engine | None = None
    _reporter: Reporter | None = None
    _judges: Judges | None = None

    @classmethod
    def start(cls, config: pytest.Config, place: Place) -> Run:
        """The run, with every rig setting given checked now, so that a bad value ends the
        run before it spends a call, in one line."""
        run = cls(config, place, asked(config))
        run.report = file_setting(config, "report")
        run.inspect_log = folder_setting(config, "inspect_log")
        run.html = file_setting(config, "html")
        run.save_baseline = file_setting(config, "save_baseline")
        run.baseline_file = file_setting(config, "baseline")
        regressions = flag(config, "fail_on_regression")
        if run.baseline_file is not None:
            from pytest_rigging.plugin.baseline import load

            try:
                run.baseline = load(run.baseline_file.path)
            except ValueError as error:
                raise pytest.UsageError(f"{run.baseline_file.where}: {error}") from None
            run.fail_on_regression = regressions
        elif regressions is not None:
            raise pytest.UsageError(
                f"{regressions} needs a baseline: --rig-baseline PATH or ini rig_baseline"
            )
        shard = given(config, "shard")
        if shard is not None:
            from pytest_rigging.plugin.shards import parse_shard

            run.shard = parse_shard(*shard)
        if run.asked:  # else neither can be set, and nothing is imported
            from pytest_rigging.plugin.budget import read_budget
            from pytest_rigging.plugin.cassettes import read_tapes

            run.settings  # noqa: B018  # read now: checks the models and params
            try:
                run.budget = read_budget(config, place)
            except ValueError as error:
                raise pytest.UsageError(str(error)) from None
            run.tapes = read_tapes(config)
            if any(given(config, name) for name in JUDGE_SETTINGS):
                run.judges()  # reads and checks them
            if place.controls:
                reporter = run.reporter()  # reads and checks the gates
                if run.judged is not None and run.judged.min_kappa is not None:
                    reporter.settings["min_judge_kappa"] = run.judged.min_kappa  # for merge
                for note in run.settings.notes:
                    config.issue_config_time_warning(RiggingWarning(note), stacklevel=2)
        return run

    def checker(self, on_workers: bool) -> Checker | None:
        """Asks providers whether models can work (the litellm one reads litellm's files),
        once per identifier in the run; None when only collecting, and on xdist workers for
        the run's settings (the controller checked those)."""
        if self.config.getoption("collectonly") or not (self.place.controls or on_workers):
            return None
        notes = self._checks

        def check(identifier: str, generator: Generator) -> str | None:
            if identifier not in notes:
                notes[identifier] = generator.check()
            return notes[identifier]

        return check

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from pytest_rigging.plugin.matrix import DEFAULT_SETTINGS, read_settings

            self._settings = (
                read_settings(self.config, self.checker(on_workers=False))
                if self.asked
                else DEFAULT_SETTINGS
            )
        return self._settings

    @property
    def recorder(self) -> Recorder:
        if self._recorder is None:
            from pytest_rigging.plugin.stats import Recorder

            self._recorder = Recorder(self.place.journal(), self.budget)
        return self._recorder

    @property
    def recorded(self) -> Recorder | None:
        """The recorder, if anything was recorded."""
        return self._recorder

    def engine(self) -> Engine:
        if self._engine is None:
            from pytest_rigging.plugin.execution import Engine
            from pytest_rigging.plugin.progress import Progress

            concurrency = max(1, self.settings.concurrency // self.place.processes)
            progress = Progress(self.config, shown=self.place.controls)
            self._engine = Engine(concurrency, self.recorder, progress, self.tapes, self.judges)
        return self._engine

    def judges(self) -> Judges:
        """The run's judge settings (`--rig-judge`, labels, the kappa gate)."""
        if self._judges is None:
            from pytest_rigging.plugin.judging import Judges

            self._judges = Judges(self.config)
        return self._judges

    @property
    def judged(self) -> Judges | None:
        """The judge settings, if anything read them."""
        return self._judges

    @property
    def started(self) -> Engine | None:
        """The engine, if a rig item needed it."""
        return self._engine

    def reporter(self) -> Reporter:
        """The reporting process's collector of figures."""
        if self._reporter is None:
            from pytest_rigging.plugin.report import Reporter

            self._reporter = Reporter.configured(self.config, self.settings, self.began)
        return self._reporter

    @property
    def reported(self) -> Reporter | None:
        """The reporter, if anything made it."""
        return self._reporter


JUDGE_SETTINGS = ("judge", "judge_labels", "min_judge_kappa")
"""Settings read with the judges (`judging.Judges`), when one of them is given."""

RUN = pytest.StashKey[Run]()
"""The run's state, in `config.stash`."""
