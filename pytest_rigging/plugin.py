"""The pytest plugin: options, markers, fixtures and the hooks that wire them up.

The work lives in small modules: `_matrix` (settings, cells, ids), `_execution` (running
a test's whole matrix at once on one loop), `_samples` (k-of-n verdicts) and `_xdist`
(keeping a test's items on one worker). Nothing heavy is imported until a test asks
for a rig fixture, so a suite without rig tests pays almost nothing for the plugin.
"""

from __future__ import annotations

import inspect
import os
import typing as t

import pytest

if t.TYPE_CHECKING:
    from pytest_rigging._execution import Engine
    from pytest_rigging._matrix import Cell, Settings
    from pytest_rigging.chat import Chat, ChatPipeline
    from pytest_rigging.generator.base import GenerateParams, Generator

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


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    if _configured(config):
        _settings(config)  # a bad identifier or value ends the run here, naming it
    if config.pluginmanager.hasplugin("xdist"):
        from pytest_rigging._xdist import XdistHooks

        config.pluginmanager.register(XdistHooks(), "rigging-xdist")


def _configured(config: pytest.Config) -> bool:
    options = ("rig_models", "rig_params", "rig_runs", "rig_concurrency")
    return any(config.getoption(o) for o in options) or any(config.getini(o) for o in options)


def _settings(config: pytest.Config) -> Settings:
    if _SETTINGS not in config.stash:
        from pytest_rigging._matrix import read_settings

        config.stash[_SETTINGS] = read_settings(config)
    return config.stash[_SETTINGS]


def _engine(config: pytest.Config) -> Engine:
    if _ENGINE not in config.stash:
        from pytest_rigging._execution import Engine

        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
        config.stash[_ENGINE] = Engine(max(1, _settings(config).concurrency // workers))
    return config.stash[_ENGINE]


def pytest_report_header(config: pytest.Config) -> str | None:
    return _settings(config).header() if _configured(config) else None


@pytest.hookimpl(trylast=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if RIG_FIXTURES.isdisjoint(metafunc.fixturenames):
        return
    from pytest_rigging._matrix import build_cells, models_for, params_for, read_verdict
    from pytest_rigging.error import InvalidGeneratorError

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
    from pytest_rigging._execution import VERDICT_KEY
    from pytest_rigging._matrix import read_verdict
    from pytest_rigging._samples import wrap

    item.add_marker(pytest.mark.rig_cell(model=cell.model, params=cell.params_text))
    item.user_properties.extend([("rig_model", cell.model), ("rig_params", cell.params_text)])
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
    try:
        return (yield)
    finally:
        from pytest_rigging._samples import OUTCOME_KEY

        if OUTCOME_KEY in item.stash:
            passed, total = item.stash[OUTCOME_KEY]
            item.user_properties.append(("rig_samples", f"{passed}/{total}"))


def pytest_runtest_teardown(item: pytest.Item) -> None:
    if _ENGINE in item.config.stash:
        item.config.stash[_ENGINE].discard(item.nodeid)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _ENGINE in config.stash:
        config.stash[_ENGINE].stop()


@pytest.fixture
def rig_cell(request: pytest.FixtureRequest) -> Cell:
    """This item's (model, params) cell of the matrix."""
    return t.cast("Cell", request.param)


@pytest.fixture
def rig_model(rig_cell: Cell) -> str:
    """This item's full model identifier."""
    return rig_cell.model


@pytest.fixture
def rig_params(rig_cell: Cell) -> GenerateParams:
    """This item's generation params set."""
    return rig_cell.params


@pytest.fixture
def rig_generator(request: pytest.FixtureRequest, rig_cell: Cell) -> Generator:
    """The cell's generator, params applied; one instance per cell for the whole run."""
    return _engine(request.config).generator(rig_cell)


@pytest.fixture
def rig_pipeline(rig_generator: Generator) -> ChatPipeline:
    """The eval's pipeline. Override it in a module or conftest to declare the
    conversation and parsing; see `_execution` for what it may depend on."""
    return rig_generator.chat()


@pytest.fixture
def rig_chats(request: pytest.FixtureRequest, rig_pipeline: ChatPipeline) -> list[Chat]:
    """All of the cell's sample chats (failed ones included, marked)."""
    from pytest_rigging._samples import InfrastructureError

    chats = _engine(request.config).samples(request, rig_pipeline)
    if chats and all(c.error_kind == "infrastructure" for c in chats):
        raise InfrastructureError(
            f"every sample failed with an infrastructure error: {chats[0].error}"
        )
    return chats


@pytest.fixture
def rig_chat(request: pytest.FixtureRequest, rig_pipeline: ChatPipeline) -> Chat:
    """One sample chat; with `rig(runs=N)` the test body runs once per sample."""
    from pytest_rigging._execution import verdict_of
    from pytest_rigging._samples import SAMPLES_KEY, judgeable

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
