"""The pytest plugin: options, markers, fixtures and the hooks that wire them up.

The work lives in one module per job: `matrix` (settings, cells, ids), `execution`
(running a test's whole matrix at once on one loop), `samples` (k-of-n verdicts),
`stats` (parse buckets and figures, as plain data on test reports), `report` (table,
JSON, step summary), `gates` (thresholds), `xdist` (a test's items on one worker) and
`cli` (merging CI shards' reports).
Nothing heavy is imported until a test asks for a rig fixture, so a suite without rig
tests pays almost nothing for the plugin.
"""

from __future__ import annotations

import inspect
import os
import typing as t

import pytest

if t.TYPE_CHECKING:
    from pytest_rigging.chat import Chat, ChatPipeline
    from pytest_rigging.generator.base import GenerateParams, Generator
    from pytest_rigging.plugin.execution import Engine
    from pytest_rigging.plugin.matrix import Cell, Settings
    from pytest_rigging.plugin.report import Reporter
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
_GATE_OPTIONS = ("rig_min_parse_rate", "rig_min_pass_rate", "rig_max_error_rate")

MARKERS = (
    "rig_models(*identifiers): run this test on these models instead of --rig-models/ini",
    "rig_params(*params): run this test with these params sets ('k=v,...', dicts or "
    "GenerateParams) instead of --rig-params/ini",
    "rig(runs=1, min_pass=runs): draw `runs` samples per cell; the item passes when "
    "at least `min_pass` samples pass the test's checks",
    "rig_cell(model, params): set by pytest-rigging on every matrix item: its full model "
    "identifier and params (select with -m \"rig_cell(model='...')\")",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rigging", "pytest-rigging: LLM eval matrix")
    group.addoption(
        "--rig-models",
        action="append",
        metavar="IDS",
        help="models to run rig tests on: comma-separated identifiers "
        "(`gpt-4o,temperature=0.2,claude-3-5-haiku-latest` is two); repeatable",
    )
    group.addoption(
        "--rig-params",
        action="append",
        metavar="K=V,...",
        help="a generation params set (`temperature=0.7,max_tokens=200`); repeat for more sets",
    )
    group.addoption("--rig-runs", type=int, metavar="N", help="samples per cell (default 1)")
    group.addoption(
        "--rig-concurrency",
        type=int,
        metavar="N",
        help="model calls in flight at once, for the whole run "
        "(default 64; split across xdist workers)",
    )
    parser.addini("rig_models", "models for rig tests, comma- or line-separated", type="linelist")
    parser.addini(
        "rig_params", "generation params sets for rig tests, one per line", type="linelist"
    )
    parser.addini("rig_runs", "samples per cell", type="string", default="")
    parser.addini("rig_concurrency", "model calls in flight at once", type="string", default="")
    group.addoption(
        "--rig-report", metavar="PATH", help="write the run's figures and records as JSON"
    )
    gates = {
        "rig_min_parse_rate": "fail the run when a model's parse rate is below RATE",
        "rig_min_pass_rate": "fail the run when a model's sample pass rate is below RATE",
        "rig_max_error_rate": "fail the run when a model's infrastructure error rate is above RATE",
    }
    for name, text in gates.items():
        group.addoption(
            f"--{name.replace('_', '-')}",
            action="append",
            metavar="[MODEL=]RATE",
            help=f"{text} (0-1 or N%%; MODEL= for one model; repeatable)",
        )
        parser.addini(name, f"{text}: [MODEL=]RATE lines", type="linelist")
    group.addoption(
        "--rig-gate-mode",
        choices=("point", "interval", "strict"),
        help="judge gates on the measured rate (point, default), leniently on its 95%% "
        "interval (interval: fail only when clearly below), or strictly (strict)",
    )
    parser.addini("rig_gate_mode", "point, interval or strict", type="string", default="")


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    if _configured(config) or config.getoption("rig_report"):
        _settings(config)  # a bad identifier or value ends the run here, naming it
        if not _is_worker(config):
            _reporter(config)
    if not _is_worker(config):
        config.pluginmanager.register(ReportHooks(config), "rigging-report")
    if config.pluginmanager.hasplugin("xdist"):
        from pytest_rigging.plugin.xdist import XdistHooks

        config.pluginmanager.register(XdistHooks(), "rigging-xdist")


def _configured(config: pytest.Config) -> bool:
    options = ("rig_models", "rig_params", "rig_runs", "rig_concurrency", *_GATE_OPTIONS)
    return any(config.getoption(o) for o in options) or any(config.getini(o) for o in options)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _settings(config: pytest.Config) -> Settings:
    if _SETTINGS not in config.stash:
        from pytest_rigging.plugin.matrix import read_settings

        config.stash[_SETTINGS] = read_settings(config)
    return config.stash[_SETTINGS]


def _engine(config: pytest.Config) -> Engine:
    if _ENGINE not in config.stash:
        from pytest_rigging.plugin.execution import Engine

        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
        recorder = _recorder(config)

        def heard(nodeid: str, cell: Cell, chats: t.Sequence[Chat], parses: bool) -> None:
            generator = config.stash[_ENGINE].generator(cell, nodeid)
            recorder.add(nodeid, chats, parses, (cell.model, cell.params_text, generator), True)

        config.stash[_ENGINE] = Engine(max(1, _settings(config).concurrency // workers), heard)
    return config.stash[_ENGINE]


def _recorder(config: pytest.Config) -> Recorder:
    if _RECORDER not in config.stash:
        from pytest_rigging.plugin.stats import Recorder

        config.stash[_RECORDER] = Recorder()
    return config.stash[_RECORDER]


def _reporter(config: pytest.Config) -> Reporter:
    """The controller's collector of figures (created on first need, never on workers)."""
    if _REPORTER not in config.stash:
        from pytest_rigging._secrets import mask_identifier
        from pytest_rigging.plugin.gates import GateError, read_gates
        from pytest_rigging.plugin.matrix import params_text
        from pytest_rigging.plugin.report import Reporter

        try:
            gates, mode = read_gates(config.getoption, config.getini)
        except GateError as error:
            raise pytest.UsageError(str(error)) from None
        settings = _settings(config)
        described = {
            "models": [mask_identifier(m) for m in settings.models],
            "params": [params_text(p) for p in settings.params],
            "runs": settings.runs,
            "concurrency": settings.concurrency,
        }
        config.stash[_REPORTER] = Reporter(described, gates, mode)
    return config.stash[_REPORTER]


DEFAULT_HEADER = "rigging: models echo!echo (default); params {} (default); runs 1; concurrency 64"


def pytest_report_header(config: pytest.Config) -> str:
    """Which models and params this run uses (the default needs no import to say so)."""
    return _settings(config).header() if _configured(config) else DEFAULT_HEADER


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
        models = models_for(definition.get_closest_marker("rig_models"), settings, where)
        params = params_for(definition.get_closest_marker("rig_params"), settings, where)
        read_verdict(definition.get_closest_marker("rig"), settings.runs, where)
    except InvalidGeneratorError as error:
        raise pytest.Collector.CollectError(str(error)) from None
    cells = build_cells(models, params)
    metafunc.parametrize("rig_cell", cells, ids=[c.id for c in cells], indirect=True)


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
    for item in items:
        cell = getattr(item, "callspec", None) and item.callspec.params.get("rig_cell")
        if cell is not None and isinstance(item, pytest.Function):
            _prepare(item, cell)


def _prepare(item: pytest.Function, cell: Cell) -> None:
    from pytest_rigging.plugin.execution import VERDICT_KEY
    from pytest_rigging.plugin.matrix import read_verdict
    from pytest_rigging.plugin.samples import wrap

    item.add_marker(pytest.mark.rig_cell(model=cell.shown_model, params=cell.params_text))
    item.user_properties.extend([("rig_model", cell.shown_model), ("rig_params", cell.params_text)])
    verdict = read_verdict(item.get_closest_marker("rig"), _settings(item.config).runs, item.nodeid)
    item.stash[VERDICT_KEY] = verdict
    uses_results = "rig_chat" in item.fixturenames or "rig_chats" in item.fixturenames
    if "rig_chat" in item.fixturenames and verdict.runs > 1:
        wrap(item, verdict, per_chat=True)
    elif not uses_results and verdict.runs > 1:
        wrap(item, verdict, per_chat=False)


def pytest_collection_finish(session: pytest.Session) -> None:
    if _ENGINE in session.config.stash or any(
        "rig_cell" in getattr(i, "fixturenames", ()) for i in session.items
    ):
        _engine(session.config).plan(session.items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> t.Generator[None, None, None]:
    """Free-form tests run pipelines themselves: record what those runs finish."""
    cell = _cell_of(item)
    if cell is None:
        return (yield)
    from pytest_rigging._pipeline import observe

    recorder = _recorder(item.config)
    generator = _engine(item.config).generator(cell, item.nodeid)

    def heard(chats: t.Sequence[Chat], parses: bool) -> None:
        recorder.add(item.nodeid, chats, parses, (cell.model, cell.params_text, generator), False)

    with observe(heard):
        return (yield)


def _cell_of(item: pytest.Item) -> Cell | None:
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("rig_cell") if callspec is not None else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> t.Generator[None, pytest.TestReport, pytest.TestReport]:
    """Put the item's figures on its final report, as plain data, so that they reach
    the xdist controller (and survive a worker that crashes later)."""
    report = yield
    cell = _cell_of(item)
    final = call.when == "call" or (call.when == "setup" and report.outcome != "passed")
    if cell is None or not final:
        return report
    from pytest_rigging.plugin.report import item_record

    chats = _recorder(item.config).take(item.nodeid)
    record = item_record(item, cell, report, call.excinfo, chats)
    report.rig = record  # type: ignore[attr-defined]
    # JUnit reads properties from the teardown report, which copies the item's.
    item.user_properties.extend(_junit_properties(record))
    return report


def _junit_properties(record: dict[str, t.Any]) -> list[tuple[str, object]]:
    outcomes = [chat["outcome"] for chat in record["chats"]]
    properties: list[tuple[str, object]] = []
    if record["samples"]:
        properties.append(("rig_samples", "{}/{}".format(*record["samples"])))
    properties.extend(
        (f"rig_{name}", outcomes.count(name))
        for name in ("first_try", "recovered", "exhausted", "error")
    )
    return properties


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _ENGINE in item.config.stash:
        item.config.stash[_ENGINE].discard(item.nodeid)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ENGINE in config.stash:
        config.stash[_ENGINE].stop()


class ReportHooks:
    """The controller's (or only process's) hooks: figures in, table and files out.
    Registered once per run, never on xdist workers."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        record = getattr(report, "rig", None)
        if record is not None:
            _reporter(self.config).add(record)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtestloop(self, session: pytest.Session) -> t.Generator[None, object, object]:
        """After the run, judge the gates: a failed one fails the run like a failed test."""
        outcome = yield
        if _REPORTER in self.config.stash and self.config.stash[_REPORTER].judge():
            session.testsfailed += 1
        return outcome

    def pytest_sessionfinish(self) -> None:
        """Write the JSON report and the step summary, also after Ctrl-C (what finished)."""
        from pathlib import Path

        path = self.config.getoption("rig_report")
        if path:
            from pytest_rigging.plugin.report import write

            write(Path(path), _reporter(self.config).document())
        summary = os.environ.get("GITHUB_STEP_SUMMARY")
        if summary and _REPORTER in self.config.stash and self.config.stash[_REPORTER].items:
            self.config.stash[_REPORTER].step_summary(Path(summary))

    def pytest_terminal_summary(self, terminalreporter: t.Any) -> None:
        if _REPORTER in self.config.stash and self.config.stash[_REPORTER].items:
            self.config.stash[_REPORTER].terminal(terminalreporter, self.config.get_verbosity())


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
def rig_chats(request: pytest.FixtureRequest, rig_pipeline: ChatPipeline) -> list[Chat]:
    """All of the cell's sample chats (failed ones included, marked)."""
    from pytest_rigging.plugin.samples import InfrastructureError

    chats = _engine(request.config).samples(request, rig_pipeline)
    if chats and all(c.error_kind == "infrastructure" for c in chats):
        raise InfrastructureError(
            f"every sample failed with an infrastructure error: {chats[0].error}"
        )
    return chats


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
