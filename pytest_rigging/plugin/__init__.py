"""The pytest plugin's front: options, markers, fixtures, and hooks that hand each job to
the module that owns it (`docs/architecture.md` walks through them).

The run's state is one object (`state.Run`) in one stash key; what differs between the
only process, an xdist controller and a worker lives in role objects (`roles`, `xdist`)
registered at configure. A guest in the suite: nothing heavy is imported, nothing is
printed and xdist's scheduling is left alone until a test asks for a rig fixture or a
rig option is given.
"""

from __future__ import annotations

import inspect
import typing as t

import pytest

from pytest_rigging.plugin.options import (
    MARKERS,
    RIG_FIXTURES,
    add_options,
    has_cases,
    in_matrix,
    judged_outside_matrix,
    mark_async,
)
from pytest_rigging.plugin.state import RUN, RiggingWarning, Run

if t.TYPE_CHECKING:
    from pytest_rigging.chat import Chat, ChatList, ChatPipeline
    from pytest_rigging.generator.base import GenerateParams, Generator
    from pytest_rigging.judge import JudgeVerdict, PairwiseVerdict
    from pytest_rigging.plugin.cases import Case
    from pytest_rigging.plugin.matrix import Cell
    from pytest_rigging.plugin.samples import Verdicts

__all__ = ["RIG_FIXTURES", "RiggingWarning"]


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers and this process's role, which checks every rig setting given
    now, so that a bad value ends the run before it spends a call, in one line."""
    from pytest_rigging.plugin.roles import role_for

    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    role = role_for(config)
    config.stash[RUN] = role.run
    config.pluginmanager.register(role, "rigging-role")


def _run(config: pytest.Config) -> Run:
    return config.stash[RUN]


def _cell(item: pytest.Item) -> Cell | None:
    if not in_matrix(item):
        return None
    from pytest_rigging.plugin.matrix import cell_of

    return cell_of(item)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    """Which models and params this run uses, when the run sets any (else nothing: a suite
    without rig tests sees no trace of the plugin). Whether a rig test runs on the default
    model is known once they are collected."""
    run = _run(config)
    return [run.settings.header()] if run.asked else None


def pytest_report_collectionfinish(
    config: pytest.Config, items: t.Sequence[pytest.Item]
) -> list[str]:
    """Rig tests on the defaults: say so once they are found; that some run on the default
    model; the runs rig marks set where they differ from the header's (unless at -q, which
    hides the header); and what a shard holds. (An xdist controller, which collects
    nothing, says the middle two from what its workers found: `xdist`.)"""
    run = _run(config)
    lines = []
    matrix = [i for i in items if _cell(i) is not None]
    if matrix:
        from pytest_rigging.plugin.matrix import collected

        lines = collected(run, matrix, config.get_verbosity())
    if run.split is not None and run.shard is not None:
        lines.append(run.split.describe(run.shard))
    return lines


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test's cases (`rig_cases`), then its cells (`test[case-cell]`)."""
    fields: list[str] = []
    if "rig_case" in metafunc.fixturenames:
        from pytest_rigging.plugin.cases import generate as cases

        fields = cases(metafunc)
    if not RIG_FIXTURES.isdisjoint(metafunc.fixturenames):
        from pytest_rigging.plugin.matrix import generate

        generate(metafunc, _run(metafunc.config), fields)
    else:
        judged_outside_matrix(metafunc)


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(
    collector: pytest.Collector, name: str, obj: object
) -> t.Generator[None, t.Any, t.Any]:
    """A `rig_cases` test's items are made asking for `rig_case` (`cases.asking_for_case`).
    Mark async rig tests for pytest-asyncio (strict mode needs the mark before it converts
    the items; being the innermost wrapper, this runs first)."""
    if inspect.isfunction(obj) and has_cases(collector, obj):
        from pytest_rigging.plugin.cases import asking_for_case

        with asking_for_case(obj):
            result = yield
    else:
        result = yield
    mark_async(result)
    return result


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Prepare matrix items before `-k`/`-m` select among them."""
    matrix = [(i, c) for i in items if isinstance(i, pytest.Function) and (c := _cell(i))]
    if matrix:
        from pytest_rigging.plugin.samples import prepare

        runs = _run(config).settings.runs
        verdicts: Verdicts = {}
        for item, cell in matrix:
            prepare(item, cell, runs, verdicts)


@pytest.hookimpl(trylast=True, specname="pytest_collection_modifyitems")
def pytest_collection_modifyitems_for_shard(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    """`--rig-shard K/N`: keep the shard's test functions of what `-k`/`-m` selected."""
    run = _run(config)
    if run.shard is not None:
        from pytest_rigging.plugin.shards import select

        run.split = select(config, run.shard, items)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Plan the result groups (before an xdist worker reports its collection)."""
    run = _run(session.config)
    items = [i for i in session.items if _cell(i) is not None]
    if items or run.started is not None:
        from pytest_rigging.plugin.xdist import unit_keys

        run.engine().plan(items, unit_keys(run.place, items))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> t.Generator[None, None, None]:
    engine = _run(item.config).started
    if engine is None or not engine.intercepts or _cell(item) is None:
        return (yield)
    with engine.setting_up(item):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> t.Generator[None, None, None]:
    """Free-form tests run pipelines themselves: record what those runs finish."""
    cell = _cell(item)
    if cell is None:
        return (yield)
    with _run(item.config).engine().free_form(item, cell):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> t.Generator[None, pytest.TestReport, pytest.TestReport]:
    """A rig item's report, finished (`report.made`)."""
    report = yield
    cell = _cell(item)
    if cell is None:
        return report
    from pytest_rigging.plugin.report import made

    return made(_run(item.config), item, cell, call, report)


@pytest.hookimpl(tryfirst=True)
def pytest_report_teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    """An errored call is an ERROR in the terminal (`E`, counted with errors, "ERROR at
    call of ..."), an unscored one UNSCORED (`U`: its judge gave no verdict); a failed
    gate is counted as such (`gates.status`)."""
    from pytest_rigging.plugin.gates import status
    from pytest_rigging.plugin.records import shown_status

    return shown_status(report) or status(report)


def pytest_runtest_teardown(item: pytest.Item) -> None:
    """The item is done: let go of its chats (its report holds their records)."""
    engine = _run(item.config).started
    if engine is not None:
        from pytest_rigging.plugin.samples import SAMPLES_KEY

        engine.discard(item.nodeid)
        if SAMPLES_KEY in item.stash:
            del item.stash[SAMPLES_KEY]


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Samples that no item will ask for are no longer computed."""
    engine = _run(session.config).started
    if engine is not None:
        engine.settle()


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
    return _run(request.config).engine().generator(rig_cell, request.node.nodeid)


@pytest.fixture
def rig_pipeline(rig_generator: Generator) -> ChatPipeline:
    """The eval's pipeline. Override it in a module or conftest to declare the
    conversation and parsing; see `execution` for what it may depend on."""
    return rig_generator.chat()


@pytest.fixture
def rig_chats(request: pytest.FixtureRequest, rig_pipeline: ChatPipeline) -> ChatList:
    """All of the cell's sample chats (failed ones included, marked), as a `ChatList`:
    `rig_chats.to_json()`, `.to_df()`, `.to_openai()`."""
    from pytest_rigging.plugin.samples import every_chat

    return every_chat(_run(request.config).engine().samples(request, rig_pipeline))


@pytest.fixture
def rig_chat(request: pytest.FixtureRequest, rig_pipeline: ChatPipeline) -> Chat:
    """One sample chat; with `rig(runs=N)` the test body runs once per sample."""
    from pytest_rigging.plugin.samples import first_chat

    return first_chat(request.node, _run(request.config).engine().samples(request, rig_pipeline))


@pytest.fixture
def rig_verdict(request: pytest.FixtureRequest, rig_chat: Chat) -> JudgeVerdict | PairwiseVerdict:
    """This sample's verdict from the test's `@pytest.mark.rig_judge`: `.passed`, `.score`,
    `.reasoning`, `.agreement`, `.unstable` (reading `passed` of an unscored one raises
    `rg.Unscored`: counted apart, never a fail)."""
    from pytest_rigging.plugin.judging import verdict_for

    return verdict_for(request.node, _run(request.config).engine())


@pytest.fixture
def rig_case(request: pytest.FixtureRequest) -> Case[t.Any]:
    """This item's case of its `@pytest.mark.rig_cases` dataset: `rig_case.id`,
    `rig_case.data` (the row, as the case model when `model=` is given), `rig_case["field"]`."""
    return t.cast("Case[t.Any]", request.param)


@pytest.fixture
def rig_run(request: pytest.FixtureRequest) -> t.Callable[[t.Awaitable[t.Any]], t.Any]:
    """Run an awaitable on the plugin's event loop and return its result: how a sync
    free-form test runs `rig_pipeline` itself."""
    return _run(request.config).engine().run
