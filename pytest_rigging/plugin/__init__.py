"""The pytest plugin's front: options, markers, fixtures, and the hooks that wire them up.

The work lives in one module per job: `matrix` (settings, cells, ids), `execution`
(running a test's whole matrix at once on one loop), `samples` (k-of-n verdicts),
`stats` (parse buckets and figures, as plain data on test reports), `report` (table,
JSON, step summary), `gates` (thresholds), `progress` (the live status line), `xdist`
(a unit of rig items on one worker), `journal` (what survives an interrupted or crashed
xdist worker) and `cli` (merging CI shards' reports).

A guest in the suite: nothing heavy is imported, nothing is printed and xdist's
scheduling is left alone until a test asks for a rig fixture or a rig option is given.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import typing as t
import warnings

import pytest

from pytest_rigging.plugin.gates import FIGURES, MODES_HELP

if t.TYPE_CHECKING:
    from pytest_rigging.chat import Chat, ChatList, ChatPipeline
    from pytest_rigging.generator.base import GenerateParams, Generator
    from pytest_rigging.plugin.baseline import BaselineDocument, Comparison
    from pytest_rigging.plugin.budget import Budget
    from pytest_rigging.plugin.cassettes import Entry, Tapes
    from pytest_rigging.plugin.execution import Engine
    from pytest_rigging.plugin.matrix import Cell, Checker, Settings, Verdict
    from pytest_rigging.plugin.records import ItemRecord
    from pytest_rigging.plugin.report import Reporter
    from pytest_rigging.plugin.shards import Shard
    from pytest_rigging.plugin.stats import Recorder

RIG_FIXTURES = frozenset(
    {
        "rig_cell",
        "rig_model",
        "rig_params",
        "rig_generator",
        "rig_pipeline",
        "rig_chat",
        "rig_chats",
        "rig_run",
    }
)
_SETTINGS = pytest.StashKey["Settings"]()
_ENGINE = pytest.StashKey["Engine"]()
_RECORDER = pytest.StashKey["Recorder"]()
_REPORTER = pytest.StashKey["Reporter"]()
_CHECKS = pytest.StashKey[dict[str, "str | None"]]()
_SHARD = pytest.StashKey["Shard"]()
_BASELINE = pytest.StashKey["BaselineDocument"]()
_COMPARISON = pytest.StashKey["Comparison"]()
_BUDGET = pytest.StashKey["Budget | None"]()
_TAPES = pytest.StashKey["Tapes | None"]()
_BUDGET_SKIPS = pytest.StashKey[int]()
_SPLIT = pytest.StashKey[tuple[int, int, int, int]]()
"""The shard's (items, of items, test functions, of test functions)."""
_EMPTY_SHARD = "rig_shard_empty"
_WORKERS_EMPTIED = pytest.StashKey[bool]()

MARKERS = (
    "rig_models(*identifiers): run this test on these models instead of --rig-models/ini",
    "rig_params(*params): run this test with these params sets ('k=v,...', dicts or "
    "GenerateParams) instead of --rig-params/ini",
    "rig(runs=1, min_pass=runs): draw `runs` samples per cell; the item passes when "
    "at least `min_pass` samples pass the test's checks",
    "rig_cell(model, params): set by pytest-rigging on every matrix item: its model "
    "(full identifier, or the short label ids show) and params "
    "(select with -m \"rig_cell(model='...')\")",
)

# name (as `--rig-<name>` and ini `rig_<name>`): (metavar, help, appends)
OPTIONS: dict[str, tuple[str, str, bool]] = {
    "models": (
        "IDS",
        "models to run rig tests on: comma-separated identifiers "
        "(`gpt-4o,temperature=0.2,claude-haiku-4-5` is two); repeatable",
        True,
    ),
    "params": (
        "K=V,...",
        "a generation params set (`temperature=0.7,max_tokens=200`); repeat for more sets",
        True,
    ),
    "runs": ("N", "samples per cell (default 1)", False),
    "concurrency": (
        "N",
        "model calls in flight at once, for the whole run (default 64; split across xdist workers)",
        False,
    ),
    **{
        name: ("[MODEL=]RATE", f"{f.help} (0-1 or N%; MODEL= for one model)", True)
        for name, f in FIGURES.items()
    },
    "gate_mode": ("MODE", MODES_HELP, False),
    "record": (
        "MODE",
        "record model calls in cassettes beside each test module and replay them: none "
        "(replay only; a miss fails), once (record a missing cassette, else replay only), "
        "new_episodes (replay, record misses), all (record again)",
        False,
    ),
    "max_tokens": (
        "N",
        "start no model call once the run has used N tokens (in and out; split across xdist "
        "workers): items not yet run are skipped and the run fails",
        False,
    ),
    "max_cost": (
        "USD",
        "start no model call once the run has spent USD at litellm's prices (split across "
        "xdist workers): items not yet run are skipped and the run fails",
        False,
    ),
}
"""Every rig setting that has both a command-line option and an ini key."""


class RiggingWarning(UserWarning):
    """Something in the rig settings looks wrong but may work (an unknown model, a repeat)."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rigging", "pytest-rigging: LLM eval matrix")
    for name, (metavar, text, appends) in OPTIONS.items():
        group.addoption(
            f"--rig-{name.replace('_', '-')}",
            action="append" if appends else "store",
            metavar=metavar,
            help=text.replace("%", "%%") + ("; repeatable" if appends else ""),
        )
        parser.addini(f"rig_{name}", text, type="linelist" if appends else "string")
    group.addoption(
        "--rig-report", metavar="PATH", help="write the run's figures and records as JSON"
    )
    group.addoption(
        "--rig-save-baseline",
        metavar="PATH",
        help="write this run's item outcomes and model rates as a baseline to commit",
    )
    group.addoption(
        "--rig-baseline",
        metavar="PATH",
        help="compare this run with a saved baseline: list flipped items and rates that moved "
        "beyond noise; items failing in both are known failures (xfail) and don't fail the run",
    )
    group.addoption(
        "--rig-fail-on-regression",
        action="store_true",
        help="with --rig-baseline: also fail the run when a model's parse or pass rate dropped "
        "beyond noise (95%% intervals apart), even if every item passed",
    )
    group.addoption(
        "--rig-shard",
        metavar="K/N",
        help="run the K-th of N slices of the suite (whole test functions, balanced by item "
        "count), for a CI matrix of N jobs whose reports `python -m pytest_rigging merge` joins",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers; when any rig setting is given, check every one of them now,
    so that a bad value ends the run before it spends a call, in one line."""
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    for option in ("rig_report", "rig_save_baseline"):
        path = config.getoption(option)
        if path is not None and (not path.strip() or os.path.isdir(path)):
            flag = "--" + option.replace("_", "-")
            raise pytest.UsageError(f"{flag}: {path!r} is not a file path")
    if config.getoption("rig_baseline") is not None:
        from pathlib import Path

        from pytest_rigging.plugin.baseline import load

        try:
            config.stash[_BASELINE] = load(Path(config.getoption("rig_baseline")))
        except ValueError as error:
            raise pytest.UsageError(f"--rig-baseline: {error}") from None
    elif config.getoption("rig_fail_on_regression"):
        raise pytest.UsageError("--rig-fail-on-regression needs --rig-baseline PATH")
    if config.getoption("rig_shard") is not None:
        from pytest_rigging.plugin.shards import parse_shard

        config.stash[_SHARD] = parse_shard(config.getoption("rig_shard"))
    if _asked(config):
        settings = _settings(config)
        _budget(config)  # checks the budget's values
        _tapes(config)  # checks the recording mode
        if not _is_worker(config):
            _reporter(config)  # reads and checks the gates
            for note in settings.notes:
                config.issue_config_time_warning(RiggingWarning(note), stacklevel=2)
    config.pluginmanager.register(Interrupts(config), "rigging-interrupts")
    if _is_worker(config):
        from pytest_rigging.plugin.xdist import WorkerHooks

        config.pluginmanager.register(WorkerHooks(), "rigging-worker")
    else:
        config.pluginmanager.register(ReportHooks(config), "rigging-report")
        if config.pluginmanager.hasplugin("xdist") and config.getoption("dist", "no") != "no":
            from pytest_rigging.plugin.xdist import XdistHooks

            config.pluginmanager.register(XdistHooks(), "rigging-xdist")


def _asked(config: pytest.Config) -> bool:
    """Whether any rig option or ini key is set (an empty or zero value counts)."""
    names = [f"rig_{name}" for name in OPTIONS]
    return any(config.getoption(n) is not None for n in [*names, "rig_report"]) or any(
        config.getini(n) for n in names
    )


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _checker(config: pytest.Config, on_workers: bool) -> Checker | None:
    """Asks providers whether models can work (the litellm one reads litellm's files),
    once per identifier in the run; None when only collecting, and on xdist workers for
    the run's settings (the controller checked those)."""
    if config.option.collectonly or (_is_worker(config) and not on_workers):
        return None
    if _CHECKS not in config.stash:
        config.stash[_CHECKS] = {}
    notes = config.stash[_CHECKS]

    def check(identifier: str, generator: Generator) -> str | None:
        if identifier not in notes:
            notes[identifier] = generator.check()
        return notes[identifier]

    return check


def _settings(config: pytest.Config) -> Settings:
    if _SETTINGS not in config.stash:
        from pytest_rigging.plugin.matrix import DEFAULT_SETTINGS, read_settings

        config.stash[_SETTINGS] = (
            read_settings(config, _checker(config, on_workers=False))
            if _asked(config)
            else DEFAULT_SETTINGS
        )
    return config.stash[_SETTINGS]


def _engine(config: pytest.Config) -> Engine:
    if _ENGINE not in config.stash:
        from pytest_rigging.plugin.execution import Engine
        from pytest_rigging.plugin.progress import Progress
        from pytest_rigging.plugin.xdist import worker_count

        recorder = _recorder(config)
        concurrency = max(1, _settings(config).concurrency // worker_count(config))
        config.stash[_ENGINE] = Engine(concurrency, recorder, Progress(config), _tapes(config))
    return config.stash[_ENGINE]


def _recorder(config: pytest.Config) -> Recorder:
    if _RECORDER not in config.stash:
        from pytest_rigging.plugin.stats import Recorder
        from pytest_rigging.plugin.xdist import worker_journal

        config.stash[_RECORDER] = Recorder(worker_journal(config), _budget(config))
    return config.stash[_RECORDER]


def _tapes(config: pytest.Config) -> Tapes | None:
    """`--rig-record MODE`: the run's cassettes; None without it."""
    if _TAPES not in config.stash:
        mode = config.getoption("rig_record") or config.getini("rig_record").strip() or None
        tapes = None
        if mode is not None:
            from pytest_rigging.plugin.cassettes import MODES, Tapes

            if mode not in MODES:
                where = "--rig-record" if config.getoption("rig_record") else "ini rig_record"
                raise pytest.UsageError(
                    f"{where}: expected one of {', '.join(MODES)}, got {mode!r}"
                )
            tapes = Tapes(mode, config.rootpath)
        config.stash[_TAPES] = tapes
    return config.stash[_TAPES]


def _budget(config: pytest.Config) -> Budget | None:
    """`--rig-max-tokens` / `--rig-max-cost`, read once."""
    if _BUDGET not in config.stash:
        from pytest_rigging.plugin.budget import read_budget
        from pytest_rigging.plugin.xdist import worker_count, worker_folder

        try:
            config.stash[_BUDGET] = read_budget(
                (config.getoption("rig_max_tokens"), config.getini("rig_max_tokens")),
                (config.getoption("rig_max_cost"), config.getini("rig_max_cost")),
                worker_count(config),
                worker_folder(config),
            )
        except ValueError as error:
            raise pytest.UsageError(str(error)) from None
    return config.stash[_BUDGET]


def _reporter(config: pytest.Config) -> Reporter:
    """The controller's collector of figures (created on first need, never on workers)."""
    if _REPORTER not in config.stash:
        from pytest_rigging._secrets import mask_identifier
        from pytest_rigging.plugin.gates import GateError, read_gates
        from pytest_rigging.plugin.matrix import params_text
        from pytest_rigging.plugin.records import RunSettings
        from pytest_rigging.plugin.report import Reporter

        try:
            gates, mode = read_gates(config.getoption, config.getini)
        except GateError as error:
            raise pytest.UsageError(str(error)) from None
        settings = _settings(config)
        described = RunSettings(
            models=[mask_identifier(m) for m in settings.models],
            params=[params_text(p) for p in settings.params],
            runs=settings.runs,
            concurrency=settings.concurrency,
        )
        config.stash[_REPORTER] = Reporter(described, gates, mode)
    return config.stash[_REPORTER]


def pytest_report_header(config: pytest.Config) -> str | None:
    """Which models and params this run uses, when the run sets any (else nothing: a suite
    without rig tests sees no trace of the plugin)."""
    return _settings(config).header() if _asked(config) else None


def pytest_report_collectionfinish(
    config: pytest.Config, items: t.Sequence[pytest.Item]
) -> list[str]:
    """Rig tests on the defaults: say so once they are found; and what a shard holds."""
    lines = []
    if not _asked(config) and any(_cell_of(i) is not None for i in items):
        lines.append(_settings(config).header())
    if _SPLIT in config.stash:
        kept, of, functions, of_functions = config.stash[_SPLIT]
        lines.append(
            f"rigging: shard {config.stash[_SHARD]}: {functions} of {of_functions} test "
            f"functions, {kept} of {of} items"
        )
    return lines


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if RIG_FIXTURES.isdisjoint(metafunc.fixturenames):
        return
    from pytest_rigging.error import InvalidGeneratorError
    from pytest_rigging.plugin.matrix import build_cells, models_for, params_for, read_verdict

    settings = _settings(metafunc.config)
    definition = metafunc.definition
    where = definition.nodeid
    try:
        models, notes = models_for(
            definition.get_closest_marker("rig_models"),
            settings,
            where,
            _checker(metafunc.config, on_workers=True),
        )
        params, more = params_for(definition.get_closest_marker("rig_params"), settings, where)
        read_verdict(definition.get_closest_marker("rig"), settings.runs, where)
    except InvalidGeneratorError as error:
        raise pytest.Collector.CollectError(str(error)) from None
    if "rig_chat" in metafunc.fixturenames or "rig_chats" in metafunc.fixturenames:
        from pytest_rigging.plugin.execution import check_pipeline

        problem = check_pipeline(definition, _parametrized(definition))
        if problem:
            raise pytest.Collector.CollectError(f"{where}: {problem}")
    for note in [*notes, *more]:
        definition.warn(RiggingWarning(note))
    cells = build_cells(models, params)
    metafunc.parametrize("rig_cell", cells, ids=[c.id for c in cells], indirect=True)


def _parametrized(definition: pytest.Item) -> dict[str, bool]:
    """The test's `parametrize` arguments, each with whether it is indirect."""
    names: dict[str, bool] = {}
    for mark in definition.iter_markers("parametrize"):
        argnames = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if isinstance(argnames, str):
            argnames = [n.strip() for n in argnames.split(",") if n.strip()]
        indirect = mark.kwargs.get("indirect", False)
        for name in argnames:
            names[name] = indirect is True or (
                isinstance(indirect, list | tuple) and name in indirect
            )
    return names


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> t.Generator[None, t.Any, t.Any]:
    """Mark async rig tests for pytest-asyncio (strict mode needs the mark before it
    converts the items; being the innermost wrapper, this runs first)."""
    result = yield
    for item in result if isinstance(result, list) else [result]:
        if (
            isinstance(item, pytest.Function)
            and inspect.iscoroutinefunction(item.obj)
            and not RIG_FIXTURES.isdisjoint(item.fixturenames)
            and item.get_closest_marker("asyncio") is None
        ):
            item.add_marker(pytest.mark.asyncio)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Prepare matrix items before `-k`/`-m` select among them."""
    verdicts: dict[int, tuple[pytest.Mark | None, Verdict]] = {}
    for item in items:
        cell = _cell_of(item)
        if cell is not None and isinstance(item, pytest.Function):
            _prepare(item, cell, verdicts)


def _prepare(
    item: pytest.Function, cell: Cell, verdicts: dict[int, tuple[pytest.Mark | None, Verdict]]
) -> None:
    from pytest_rigging.plugin.execution import VERDICT_KEY
    from pytest_rigging.plugin.matrix import read_verdict
    from pytest_rigging.plugin.samples import wrap

    for mark in cell.marks:
        item.add_marker(mark)
    item.user_properties.extend([("rig_model", cell.shown_model), ("rig_params", cell.params_text)])
    marker = item.get_closest_marker("rig")
    known = verdicts.get(id(marker))  # a function's items share its mark, and so its verdict
    if known is None or known[0] is not marker:
        known = (marker, read_verdict(marker, _settings(item.config).runs, item.nodeid))
        verdicts[id(marker)] = known
    verdict = item.stash[VERDICT_KEY] = known[1]
    uses_results = "rig_chat" in item.fixturenames or "rig_chats" in item.fixturenames
    if "rig_chat" in item.fixturenames and verdict.runs > 1:
        wrap(item, verdict, per_chat=True)
    elif not uses_results and verdict.runs > 1:
        wrap(item, verdict, per_chat=False)


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
def pytest_collection_modifyitems_for_shard(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """`--rig-shard K/N`: keep the shard's test functions of what `-k`/`-m` selected."""
    if _SHARD not in config.stash:
        return
    from pytest_rigging.plugin.shards import split

    shard: Shard = config.stash[_SHARD]
    cut = split(items, shard)
    if cut.dropped:
        config.hook.pytest_deselected(items=cut.dropped)
        items[:] = cut.kept
    config.stash[_SPLIT] = (len(cut.kept), len(items) + len(cut.dropped), *cut.functions)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Samples that no item will ask for are no longer computed. A shard that holds no
    test function of a suite that has some ran what it had to:
    not pytest's "no tests collected" (exit 5), which would fail its CI job. An xdist
    worker also hands its new recordings to the controller here."""
    config = session.config
    if _ENGINE in config.stash:  # no item asks for samples from now on
        config.stash[_ENGINE].settle()
    split = config.stash.get(_SPLIT, None)
    emptied = split is not None and split[0] == 0 and split[1] > 0
    if _is_worker(config):
        config.workeroutput[_EMPTY_SHARD] = emptied  # type: ignore[attr-defined]
        tapes = config.stash.get(_TAPES, None)
        if tapes is not None and tapes.recorded():
            from pytest_rigging.plugin.cassettes import dump
            from pytest_rigging.plugin.xdist import worker_folder

            found = worker_folder(config)
            if found is not None:
                dump(found[0], found[1], tapes.recorded())
            else:  # --dist each: every worker records the same; each writes it whole
                _write_cassettes(config, [tapes.recorded()])
    elif exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and (
        emptied or config.stash.get(_WORKERS_EMPTIED, False)
    ):
        session.exitstatus = pytest.ExitCode.OK


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Plan the result groups; on an xdist worker, tell the controller which items must
    share a worker (before the worker reports its collection, hence tryfirst)."""
    items = [i for i in session.items if _cell_of(i) is not None]
    rig = {i.nodeid for i in items}
    if rig or _ENGINE in session.config.stash:
        from pytest_rigging.plugin.xdist import unit_keys

        _engine(session.config).plan(items, unit_keys(session.config, items))
    if _is_worker(session.config):
        from pytest_rigging.plugin.xdist import write_groups

        write_groups(session.config, session.items, rig)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> t.Generator[None, None, None]:
    """Free-form tests run pipelines themselves: record what those runs finish."""
    cell = _cell_of(item)
    if cell is None:
        return (yield)
    from pytest_rigging._pipeline import observe
    from pytest_rigging.plugin.execution import RESULT_FIXTURES

    recorder = _recorder(item.config)
    engine = _engine(item.config)
    generator = engine.generator(cell, item.nodeid)
    if recorder.journal is not None and not any(f in item.fixturenames for f in RESULT_FIXTURES):
        recorder.journal.start(item.nodeid)  # a free-form attempt: its chats come now

    def heard(chats: t.Sequence[Chat], parses: bool) -> None:
        engine.remember(chats)
        recorder.add(item.nodeid, chats, parses, cell, generator, None)

    with observe(heard), _calls_of(item, engine) if engine.intercepts else contextlib.nullcontext():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> t.Generator[None, None, None]:
    """Calls a rig item's fixtures make (through `rig_run`, say) are the item's too: its
    cassette and its budget."""
    if _cell_of(item) is None or _ENGINE not in item.config.stash:
        return (yield)
    engine = _engine(item.config)
    if not engine.intercepts:
        return (yield)
    if engine.tapes is not None:
        engine.tapes.begin(item.nodeid)  # the item's calls rank from 0 at each run of it
    with _calls_of(item, engine):
        return (yield)


@contextlib.contextmanager
def _calls_of(item: pytest.Item, engine: Engine) -> t.Iterator[None]:
    """Model calls made here are `item`'s own (not a sample's): through its cassette, under
    the budget; a refused call ends it as such (a skip for budget, a failure that says
    which cassette missed)."""
    from pytest_rigging.plugin.budget import BudgetSpent
    from pytest_rigging.plugin.cassettes import CassetteError, Where

    with engine.around_calls(Where(item.nodeid, item.path, None)):
        try:
            yield
        except BudgetSpent as error:
            raise pytest.skip.Exception(str(error)) from None
        except CassetteError as error:  # its message says it all
            raise pytest.fail.Exception(str(error), pytrace=False) from None


def _cell_of(item: pytest.Item) -> Cell | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("rig_cell") if callspec is not None else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> t.Generator[None, pytest.TestReport, pytest.TestReport]:
    """Put the item's figures on its final report, as plain data, so that they reach
    the xdist controller (and survive a worker that crashes later); and give every report
    of a rig item as it may be shown (`samples.showable`)."""
    report = yield
    cell = _cell_of(item)
    if cell is None:
        return report
    from pytest_rigging.plugin.samples import showable

    final = call.when == "call" or (call.when == "setup" and report.outcome != "passed")
    if not final:
        return showable(item.config, report)
    from pytest_rigging.plugin.report import item_record

    chats = _recorder(item.config).take(item.nodeid)
    record = item_record(item, cell, report, call.excinfo, chats)
    if report.failed and call.when == "call":
        _show_dialog(item, report)
    report.rig = record  # type: ignore[attr-defined]
    baseline: BaselineDocument | None = item.config.stash.get(_BASELINE, None)
    if baseline is not None and record["outcome"] == "failed" and report.when == "call":
        from pytest_rigging.plugin.baseline import known_failure

        if known_failure(baseline, item.nodeid):  # reported as such: it doesn't fail the run
            report.outcome = "skipped"
            report.wasxfail = (  # type: ignore[attr-defined]
                f"rigging: known failure (it failed in {item.config.getoption('rig_baseline')} too)"
            )
    # JUnit reads properties from the teardown report, which copies the item's.
    item.user_properties.extend(_junit_properties(record))
    return showable(item.config, report)


def _show_dialog(item: pytest.Item, report: pytest.TestReport) -> None:
    """A failed one-sample item whose chat needed recovery, or ran out of it, shows the
    whole exchange under its failure (several samples show it in the failure itself)."""
    from pytest_rigging.plugin.samples import SAMPLES_KEY, dialog

    samples = item.stash.get(SAMPLES_KEY, None)
    if samples is None or len(samples) != 1:
        return
    chat = samples[0]
    if chat.recovery_rounds or chat.failed:
        report.sections.append((f"rigging: its conversation ({chat.generator_id})", dialog(chat)))


def _junit_properties(record: ItemRecord) -> list[tuple[str, object]]:
    outcomes = [chat["outcome"] for chat in record["chats"]]
    properties: list[tuple[str, object]] = []
    if record["samples"]:
        properties.append(("rig_samples", "{}/{}".format(*record["samples"])))
    properties.extend(
        (f"rig_{name}", outcomes.count(name))
        for name in ("first_try", "recovered", "exhausted", "error")
    )
    return properties


def _errored_call(report: pytest.TestReport) -> bool:
    """A call that ended in an infrastructure error, or an item lost with its xdist worker
    (`when` is "???"): an error, not a failure of the test."""
    record = getattr(report, "rig", None)
    return (
        report.when in ("call", "???")
        and report.failed
        and bool(record)
        and (record["outcome"] == "error" or "lost" in record)
    )


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    """ERROR in the terminal (`E`, counted with errors, "ERROR at call of ...")."""
    return ("error", "E", "ERROR") if _errored_call(report) else None


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """The item is done: let go of its chats (its report holds their records)."""
    if _ENGINE in item.config.stash:
        from pytest_rigging.plugin.samples import SAMPLES_KEY

        item.config.stash[_ENGINE].discard(item.nodeid)
        if SAMPLES_KEY in item.stash:
            del item.stash[SAMPLES_KEY]


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ENGINE in config.stash:
        config.stash[_ENGINE].stop()


def _write_cassettes(config: pytest.Config, recorded: list[dict[str, list[Entry]]]) -> None:
    from pytest_rigging.plugin.cassettes import write

    tapes = config.stash[_TAPES]
    for problem in write(recorded, tapes.mode if tapes is not None else "none"):
        warnings.warn(RiggingWarning(problem), stacklevel=1)


class Interrupts:
    """Every process's: Ctrl-C (or `pytest.exit`) stops the model calls at once, wherever
    pytest was (a test body, between items, a teardown), not when the plugin unconfigures.
    An object of the run's, since pytest's hook gets no config."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(tryfirst=True)  # before the terminal renders the traceback (0.2 s)
    def pytest_keyboard_interrupt(self) -> None:
        if _ENGINE in self.config.stash:
            self.config.stash[_ENGINE].interrupt()


class ReportHooks:
    """The controller's (or only process's) hooks: figures in, table and files out.
    Registered once per run, never on xdist workers."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "rig", None)
        if record is not None:
            _reporter(self.config).add(record)
        if report.skipped and record is not None and _budget(self.config) is not None:
            from pytest_rigging.plugin.budget import SKIPPED

            if SKIPPED in str(report.longrepr):
                self.config.stash[_BUDGET_SKIPS] = self.config.stash.get(_BUDGET_SKIPS, 0) + 1

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: t.Any, error: object) -> None:
        """An xdist worker whose shard held nothing says so as it ends."""
        if getattr(node, "workeroutput", {}).get(_EMPTY_SHARD):
            self.config.stash[_WORKERS_EMPTIED] = True

    @pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_runtest_logreport")
    def pytest_runtest_logreport_errored(
        self, report: pytest.TestReport
    ) -> t.Generator[None, None, None]:
        """JUnit's writer knows errors only in setup and teardown: a call that ended in an
        infrastructure error is shown to it as a setup, for the length of this hook, so that
        it writes an `<error>` (whose message then reads "failed on setup with ...")."""
        if not _errored_call(report):
            return (yield)
        when, report.when = report.when, "setup"
        try:
            return (yield)
        finally:
            report.when = when

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> t.Generator[None, object, object]:
        """After the run, judge the gates: a failed one fails the run like a failed test."""
        outcome = yield
        if _REPORTER in self.config.stash and self.config.stash[_REPORTER].judge():
            session.testsfailed += 1
        if self.config.stash.get(_BUDGET_SKIPS, 0):
            session.testsfailed += 1
        if _BASELINE in self.config.stash and _REPORTER in self.config.stash:
            from pytest_rigging.plugin.baseline import compare, from_report

            reporter = self.config.stash[_REPORTER]
            now = from_report(reporter.document())
            comparison = compare(self.config.stash[_BASELINE], reporter.items, now)
            self.config.stash[_COMPARISON] = comparison
            if self.config.getoption("rig_fail_on_regression") and comparison.regressions:
                session.testsfailed += 1
        return outcome

    @pytest.hookimpl(wrapper=True, trylast=True)
    def pytest_sessionfinish(self, exitstatus: int) -> t.Generator[None, None, None]:
        """Write the JSON report and the step summary, also after Ctrl-C: with every sample
        that finished, those of items that never reported included. Done once xdist has
        stopped its workers (its own hook) and before the terminal summary (an outer
        wrapper), so that what the workers' journals hold is final."""
        from pathlib import Path

        outcome = yield
        if exitstatus == pytest.ExitCode.INTERRUPTED:
            recorder = self.config.stash.get(_RECORDER, None)
            leftovers = recorder.leftovers() if recorder is not None else []
            xdist_hooks = self.config.pluginmanager.get_plugin("rigging-xdist")
            if xdist_hooks is not None:  # workers' journals: what they never reported
                known = self.config.stash.get(_REPORTER, None)
                reported = {r["nodeid"] for r in known.items} if known is not None else set()
                leftovers.extend(xdist_hooks.leftovers(reported))
            if leftovers or _REPORTER in self.config.stash:
                reporter = _reporter(self.config)
                reporter.interrupted = True
                for record in leftovers:
                    reporter.add(record)

        path = self.config.getoption("rig_report")
        try:
            if path:
                from pytest_rigging.plugin.report import write

                write(Path(path), _reporter(self.config).document())
        except OSError as error:
            warnings.warn(
                RiggingWarning(f"cannot write --rig-report {path}: {error}"), stacklevel=1
            )
        tapes = self.config.stash.get(_TAPES, None)
        if tapes is not None:
            from pytest_rigging.plugin.cassettes import dumped

            recorded = [tapes.recorded()]
            xdist_hooks = self.config.pluginmanager.get_plugin("rigging-xdist")
            if xdist_hooks is not None and xdist_hooks.folder is not None:
                recorded.extend(dumped(xdist_hooks.folder))
            _write_cassettes(self.config, recorded)
        saved = self.config.getoption("rig_save_baseline")
        try:
            if saved and _REPORTER in self.config.stash:
                from pytest_rigging.plugin.baseline import from_report, save

                save(Path(saved), from_report(self.config.stash[_REPORTER].document()))
        except OSError as error:
            warnings.warn(
                RiggingWarning(f"cannot write --rig-save-baseline {saved}: {error}"), stacklevel=1
            )
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary and _REPORTER in self.config.stash and self.config.stash[_REPORTER].items:
            try:
                self.config.stash[_REPORTER].step_summary(Path(summary))
            except OSError as error:
                warnings.warn(
                    RiggingWarning(f"cannot append to GITHUB_STEP_SUMMARY {summary}: {error}"),
                    stacklevel=1,
                )
        return outcome

    def pytest_terminal_summary(self, terminalreporter: t.Any) -> None:
        if _REPORTER in self.config.stash and self.config.stash[_REPORTER].items:
            self.config.stash[_REPORTER].terminal(terminalreporter, self.config.get_verbosity())
        if _COMPARISON in self.config.stash:
            from pytest_rigging.plugin.baseline import lines

            comparison: Comparison = self.config.stash[_COMPARISON]
            rows = self.config.stash[_REPORTER].rows(False)
            labels = {r["model"]: r["label"] or r["model"] for r in rows}
            terminalreporter.write_sep("=", "rigging: against the baseline")
            for line in lines(comparison, self.config.getoption("rig_baseline"), labels):
                terminalreporter.write_line(line)
            if self.config.getoption("rig_fail_on_regression"):
                for drift in comparison.regressions:
                    terminalreporter.write_line(
                        f"FAIL {labels.get(drift.model, drift.model)}: "
                        f"{drift.rate.replace('_', ' ')} dropped beyond noise since the "
                        "baseline (--rig-fail-on-regression)",
                        red=True,
                        bold=True,
                    )
        skipped = self.config.stash.get(_BUDGET_SKIPS, 0)
        if skipped:
            reporter = self.config.stash.get(_REPORTER, None)
            rows = reporter.rows(False) if reporter is not None else []
            tokens = sum(r["input_tokens"] + r["output_tokens"] for r in rows)
            costs = [r["cost"] for r in rows if r.get("cost") is not None]
            spent = f"{tokens:,} tokens" + (f", ${sum(costs):,.4f}" if costs else "")
            budget = _budget(self.config)
            named = budget.names() if budget is not None else ""
            terminalreporter.write_line(
                f"FAIL rigging budget {named} spent: the run used {spent}; "
                f"{skipped} item{'s' if skipped != 1 else ''} skipped for budget",
                red=True,
                bold=True,
            )


@pytest.fixture
def rig_cell(request: pytest.FixtureRequest) -> Cell:
    """This item's (model, params) cell of the matrix."""
    return t.cast("Cell", request.param)


@pytest.fixture
def rig_model(rig_cell: Cell) -> str:
    """This item's model identifier, as it may be shown (any key in it masked)."""
    return rig_cell.shown_model


@pytest.fixture
def rig_params(rig_cell: Cell) -> GenerateParams:
    """This item's generation params set."""
    return rig_cell.params


@pytest.fixture
def rig_generator(request: pytest.FixtureRequest, rig_cell: Cell) -> Generator:
    """The cell's generator, params applied; one instance per test function and cell."""
    return _engine(request.config).generator(rig_cell, request.node.nodeid)


@pytest.fixture
def rig_pipeline(rig_generator: Generator) -> ChatPipeline:
    """The eval's pipeline. Override it in a module or conftest to declare the
    conversation and parsing; see `execution` for what it may depend on."""
    return rig_generator.chat()


@pytest.fixture
def rig_chats(request: pytest.FixtureRequest, rig_pipeline: ChatPipeline) -> ChatList:
    """All of the cell's sample chats (failed ones included, marked), as a `ChatList`:
    `rig_chats.to_json()`, `.to_df()`, `.to_openai()`."""
    from pytest_rigging.chat import ChatList
    from pytest_rigging.plugin.samples import InfrastructureError

    chats = _engine(request.config).samples(request, rig_pipeline)
    if chats and all(c.error_kind == "infrastructure" for c in chats):
        raise InfrastructureError(
            f"every sample failed with an infrastructure error: {chats[0].error}"
        )
    return ChatList(chats)


@pytest.fixture
def rig_chat(request: pytest.FixtureRequest, rig_pipeline: ChatPipeline) -> Chat:
    """One sample chat; with `rig(runs=N)` the test body runs once per sample."""
    from pytest_rigging.plugin.execution import verdict_of
    from pytest_rigging.plugin.samples import SAMPLES_KEY, judgeable

    engine = _engine(request.config)
    chats = judgeable(engine.samples(request, rig_pipeline), verdict_of(request.node))
    request.node.stash[SAMPLES_KEY] = chats
    return chats[0]


@pytest.fixture
def rig_run(request: pytest.FixtureRequest) -> t.Callable[[t.Awaitable[t.Any]], t.Any]:
    """Run an awaitable on the plugin's event loop and return its result: how a sync
    free-form test runs `rig_pipeline` itself."""
    engine = _engine(request.config)

    def run(awaitable: t.Awaitable[t.Any]) -> t.Any:
        return engine.run(awaitable)

    return run
