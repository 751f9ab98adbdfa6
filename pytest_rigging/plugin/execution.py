"""Running a test's whole matrix at once, on one event loop for the whole process.

pytest runs one item at a time; model calls wait seconds. So when the first item of a
test function asks for results, the samples of every selected item of that function (all
cases and cells) are started together, under one process-wide concurrency limit, and each
item then waits for its own samples only. All model calls run on a long-lived loop in a
background thread, so the limit, connection pools and litellm's clients live on one loop
whatever loop (or none) the test itself runs on. The samples of an async free-form test
(`runs=N` on a test that calls the model itself) run there too, together.

A group's pipelines are built by calling each item's `rig_pipeline` fixture function
directly, with that item's values: the rig fixtures, its `parametrize` arguments, and any
fixture that depends on those (rebuilt the same way, so it must return its value, not
yield it). Fixtures that are the same for every case are taken from the item being set up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import functools
import inspect
import threading
import time
import typing as t
from pathlib import Path

import pytest

from pytest_rigging._concurrency import (
    FairLimit,
    bounded_map,
    calls_gated,
    calls_heard,
    in_force,
    shared_limit,
)
from pytest_rigging._pipeline import current_observer, observe
from pytest_rigging.chat import Chat, ChatPipeline, new_chat
from pytest_rigging.error import GenerationError
from pytest_rigging.generator.base import (
    GenerateParams,
    Generator,
    calls_intercepted,
    get_generator,
)
from pytest_rigging.plugin._compat import (
    Fixture,
    call_params,
    fixture_definitions,
    fixture_function,
    is_direct_parameter,
    will_skip,
)
from pytest_rigging.plugin.budget import BudgetSpent
from pytest_rigging.plugin.cassettes import CassetteError, Where, at, current, replays_heard
from pytest_rigging.plugin.journal import Salvage, lost_message, salvage
from pytest_rigging.plugin.matrix import Cell, cell_of
from pytest_rigging.plugin.progress import TTY_INTERVAL, Progress
from pytest_rigging.plugin.records import group_key
from pytest_rigging.plugin.samples import BODY, RESULT_FIXTURES, verdict_of

if t.TYPE_CHECKING:
    from pytest_rigging.plugin.calibration import LabelExample
    from pytest_rigging.plugin.cassettes import Tapes
    from pytest_rigging.plugin.judging import Judges, Judging, Verdict
    from pytest_rigging.plugin.stats import Recorder

CELL_FIXTURES: dict[str, t.Callable[[Engine, Cell, str], t.Any]] = {
    "rig_cell": lambda engine, cell, nodeid: cell,
    "rig_params": lambda engine, cell, nodeid: cell.params,
    "rig_model": lambda engine, cell, nodeid: cell.shown_model,
    "rig_generator": lambda engine, cell, nodeid: engine.generator(cell, nodeid),
}
"""Each cell fixture and what it serves, for rebuilding another item's pipeline: the
fixtures in the plugin's front return the same for the item being set up."""

T = t.TypeVar("T")


@dataclasses.dataclass
class _Span:
    """When an item's samples were at work (its first model call out, its last answer in;
    written on the loop's thread, in time order), and how long the item waited for them."""

    first: float | None = None
    last: float = 0.0
    waited: float | None = None

    def seconds(self) -> float:
        return 0.0 if self.first is None else max(0.0, self.last - self.first)


@dataclasses.dataclass(frozen=True)
class _Job:
    """One item's samples to compute."""

    nodeid: str
    pipeline: ChatPipeline
    runs: int
    cell: Cell
    generator: Generator
    module: Path
    """The test module, beside which its cassette lies."""
    span: _Span = dataclasses.field(default_factory=_Span)
    judging: Judging | None = None
    """Its test's judge (`rig_judge`), which judges each sample as it finishes."""
    calibration: t.Sequence[LabelExample] = ()
    """Labelled examples its judge grades alongside (on the first item of each judge)."""


class LoopThread:
    """An event loop in a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(
                    target=self._loop.run_forever, name="pytest-rigging-loop", daemon=True
                )
                self._thread.start()
            return self._loop

    def is_current(self) -> bool:
        """Whether the caller runs on the loop's own thread, where waiting for the loop
        would wait forever."""
        return self._thread is not None and threading.current_thread() is self._thread

    def cancel_all(self) -> None:
        """Cancel every task on the loop, if it was started: whatever it was computing,
        and the calls it was making or waiting to make."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(_cancel_tasks)

    def stop(self, release: t.Callable[[], t.Awaitable[None]] | None = None) -> None:
        """Run `release` on the loop, cancel what is left, and close the loop."""
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(_shutdown(release), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)
        # What the last iterations started (as asyncio.run does before closing a loop).
        late = asyncio.all_tasks(loop)
        for task in late:
            task.cancel()
        if late:
            loop.run_until_complete(asyncio.wait(late, timeout=5))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


def _cancel_tasks() -> None:
    for task in asyncio.all_tasks():
        task.cancel()


async def _shutdown(release: t.Callable[[], t.Awaitable[None]] | None) -> None:
    """Let generators release what they keep on this loop, then cancel whatever is left,
    so that closing the loop leaves no task or socket behind."""
    current = asyncio.current_task()
    for _ in range(3):  # let work just scheduled by finished calls (logging) start
        await asyncio.sleep(0)
    if release is not None:
        await release()
    leftovers = [task for task in asyncio.all_tasks() if task is not current]
    for task in leftovers:
        task.cancel()
    if leftovers:
        await asyncio.wait(leftovers, timeout=5)


class Engine:
    """Computes result groups and hands each item its samples (one per process).

    `recorder` gets every sample as it finishes; `progress` shows the group's. On an
    xdist worker, the recorder's journal also hears of every attempt started and every
    call sent, and says which items were taken back from a crashed worker: those take
    what finished there instead of calling again.
    """

    def __init__(
        self,
        concurrency: int,
        recorder: Recorder,
        progress: Progress,
        tapes: Tapes | None = None,
        judges: t.Callable[[], Judges] | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.recorder = recorder
        self.progress = progress
        self.tapes = tapes
        self.judges = judges
        """The run's judge settings, made when a judged test first needs them."""
        self.journal = recorder.journal
        self.loop = LoopThread()
        self.groups: dict[str, list[pytest.Item]] = {}
        self._results: dict[str, list[Chat] | BaseException] = {}
        self._spent: set[str] = set()
        self._units: dict[str, str] = {}
        self._running: dict[str, concurrent.futures.Future[list[Chat] | BaseException]] = {}
        self._seen: dict[int, Generator] = {}
        self._generators: dict[tuple[str, str, str], Generator] = {}
        """By unit of work, model and params."""
        self._cells: dict[str, int] = {}
        self._limit = FairLimit(concurrency)
        self._spans: dict[str, _Span] = {}
        self._verdicts: dict[str, dict[int, Verdict]] = {}
        self._calibrating: set[str] = set()
        """The items that grade their judge's labelled examples: each judge's first, per
        test function."""

    def run(self, awaitable: t.Awaitable[T]) -> T:
        """Await `awaitable` on the engine's loop, under the process-wide limit, seen by
        the caller's observer (if any)."""
        if self.loop.is_current():
            if inspect.iscoroutine(awaitable):
                awaitable.close()
            raise RuntimeError(
                "rig_run can't wait here: an async test with runs=N runs its samples on the "
                "plugin's loop, which rig_run would wait on; await the pipeline instead"
            )
        return self._wait(self._submit(awaitable), progress=False)

    async def together(self, sample: t.Callable[[int], t.Awaitable[T]], count: int) -> list[T]:
        """`sample(0)` ... `sample(count - 1)` awaited together on the engine's loop (an
        async test's samples), each its own task, under the process-wide limit, the cell's
        share of it and the caller's observer and cassette, whichever loop the caller
        awaits on: their results, in order. The first to raise ends the others (cancelled
        and awaited), as the caller's cancellation (Ctrl-C) does."""

        async def escaping(index: int) -> T:
            try:
                return await sample(index)
            except (KeyboardInterrupt, SystemExit) as error:  # raised in a task, these
                raise _Escaped(error) from None  # would stop the loop: raised by the caller

        future = self._submit(bounded_map(escaping, range(count), count))
        try:
            return await asyncio.wrap_future(future)
        except _Escaped as escaped:
            raise escaped.error from None

    def _submit(self, awaitable: t.Awaitable[T]) -> concurrent.futures.Future[T]:
        return self._submit_all([awaitable])[0]

    def _submit_all(
        self, awaitables: t.Sequence[t.Awaitable[T]]
    ) -> list[concurrent.futures.Future[T]]:
        """Start each awaitable as a task on the engine's loop, under the process-wide
        limit, the caller's observer and the sample whose body it runs in (`BODY`), waking
        the loop once for all of them (a group of thousands of items would otherwise cost a
        wake-up each); cancelling a future cancels its task."""
        observer, where, body, loop = current_observer(), current(), BODY.get(), self.loop.loop
        futures: list[concurrent.futures.Future[T]] = [
            concurrent.futures.Future() for _ in awaitables
        ]

        async def limited(awaitable: t.Awaitable[T]) -> T:
            with (
                shared_limit(self._limit),
                observe(observer),
                in_force(BODY, body),
                self.around_calls(where),
            ):
                return await awaitable

        def start() -> None:
            for awaitable, future in zip(awaitables, futures, strict=True):
                if future.cancelled():  # Ctrl-C before the loop got to it
                    if inspect.iscoroutine(awaitable):
                        awaitable.close()
                    continue
                task = loop.create_task(limited(awaitable))
                task.add_done_callback(functools.partial(_settle, future))
                future.add_done_callback(functools.partial(_cancel_with, loop, task))

        loop.call_soon_threadsafe(start)
        return futures

    def around_calls(self, where: Where | None = None) -> contextlib.AbstractContextManager[None]:
        """Within this block, calls go through the cassettes (as `where`'s, when given), and
        a model call that would start once the budget is spent raises `BudgetSpent`
        instead (with cassettes, only a call made for real: a replay costs nothing)."""
        if not self.intercepts:
            return contextlib.nullcontext()  # every sample passes here: keep it free
        return self._around_calls(where)

    @property
    def intercepts(self) -> bool:
        """Whether model calls meet cassettes or a budget in this run."""
        return self.tapes is not None or self.recorder.budget is not None

    @contextlib.contextmanager
    def _around_calls(self, where: Where | None) -> t.Iterator[None]:
        budget = self.recorder.budget
        with contextlib.ExitStack() as stack:
            if self.tapes is not None:
                self.tapes.gate = budget.gate if budget is not None else None
                stack.enter_context(calls_intercepted(self.tapes))
                if where is not None:
                    stack.enter_context(at(where))
            elif budget is not None:
                stack.enter_context(calls_gated(budget.gate))
            yield

    @contextlib.contextmanager
    def setting_up(self, item: pytest.Item) -> t.Iterator[None]:
        """Calls a rig item's fixtures make (through `rig_run`, say) are the item's too: its
        cassette (whose calls rank from 0 at each run of the item) and its budget."""
        if self.tapes is not None:
            self.tapes.begin(item.nodeid)
        with self.calls_of(item):
            yield

    @contextlib.contextmanager
    def free_form(self, item: pytest.Item, cell: Cell) -> t.Iterator[None]:
        """A test body's own pipeline runs are the item's: recorded as they finish (as the
        sample's whose body ran them, with `runs=N`), through its cassette (keyed as the
        item's, not a sample's: the bodies of an async test's samples run together, in no
        set order), under the budget."""
        generator = self.generator(cell, item.nodeid)
        if self.journal is not None and not any(
            name in _fixturenames(item) for name in RESULT_FIXTURES
        ):
            self.journal.start(item.nodeid)  # a free-form attempt: its chats come now

        def heard(chats: t.Sequence[Chat], parses: bool) -> None:
            self.remember(chats)
            self.recorder.add(item.nodeid, chats, parses, cell, generator, None, BODY.get())

        with observe(heard), self.calls_of(item):
            yield

    @contextlib.contextmanager
    def calls_of(self, item: pytest.Item) -> t.Iterator[None]:
        """Model calls made here are `item`'s own (not a sample's): through its cassette,
        under the budget; a refused call ends it as such (a skip for budget, a failure that
        says which cassette missed)."""
        if not self.intercepts:
            yield
            return
        with self.around_calls(Where(item.nodeid, item.path, None)):
            try:
                yield
            except BudgetSpent as error:
                raise pytest.skip.Exception(str(error)) from None
            except CassetteError as error:  # its message says it all
                raise pytest.fail.Exception(str(error), pytrace=False) from None

    def _wait(self, future: concurrent.futures.Future[T], *, progress: bool) -> T:
        """The future's result; with `progress`, the status line meanwhile. Ctrl-C (or
        `pytest.exit`) cancels every task on the loop at once, this item's samples with the
        others': cancelled alone first, a sample's freed slot could start another's call
        before the interrupt hook cancels the rest. Anything else that ends the wait (a
        timeout plugin's failure) cancels this item's samples only."""
        if future.done():  # the usual case, past a group's first items: nothing to show
            return future.result()
        try:
            while not concurrent.futures.wait([future], TTY_INTERVAL).done:
                if progress:
                    self.progress.show()
            return future.result()
        except BaseException as error:
            if not future.done():  # stop the calls, not just the wait
                if isinstance(error, (KeyboardInterrupt, pytest.exit.Exception)):
                    self.interrupt()  # now, before a freed slot starts another call
                future.cancel()
            raise
        finally:
            if progress:
                self.progress.finish()

    def plan(self, rig: t.Sequence[pytest.Item], units: dict[str, str]) -> None:
        """Remember which selected rig items ask for results, grouped by unit of work
        (`units`: a test function, or under xdist a slice of one, `xdist.unit_keys`)."""
        self.groups.clear()
        self._units = units
        cells: dict[str, set[str]] = {}
        calibrated: set[tuple[str, str]] = set()
        for item in rig:
            unit = self._units[item.nodeid]
            cells.setdefault(unit, set()).add(_cell(item).id)
            if will_skip(item):
                continue  # will never ask for its results: spend no call on it
            if any(name in _fixturenames(item) for name in RESULT_FIXTURES):
                self.groups.setdefault(unit, []).append(item)
                judge = self._judge_of(item)
                if judge is not None and (group_key(item.nodeid), judge) not in calibrated:
                    calibrated.add((group_key(item.nodeid), judge))
                    self._calibrating.add(item.nodeid)
        self._cells = {unit: len(ids) for unit, ids in cells.items()}

    def _judge_of(self, item: pytest.Item) -> str | None:
        """The judge (spec and model) of an item of a `rig_judge` test, as a key; None for
        any other item."""
        if item.get_closest_marker("rig_judge") is None or self.judges is None:
            return None
        from pytest_rigging.plugin.judging import spec_of

        spec = spec_of(item)
        model = self.judges().model_for(spec) if spec is not None else None
        return None if spec is None or model is None else f"{model} {hash(spec)}"

    def unit_of(self, nodeid: str) -> str:
        return self._units.get(nodeid) or group_key(nodeid)

    def generator(self, cell: Cell, nodeid: str) -> Generator:
        """One generator per unit of work and cell, shared by the unit's items.

        Per unit, not per process: a generator with state (the scripted model counts what
        it was asked) then answers the same whichever worker runs the unit. Unless the
        identifier sets `max_connections`, each of the unit's cells gets a fair share of
        the process-wide limit (rounded up), so a hanging or failing model can't hold every
        slot while the others wait; beyond it, a cell borrows the slots others give back
        while they wait out a backoff (`FairLimit`).
        """
        unit = self.unit_of(nodeid)
        key = (unit, cell.model, cell.params.model_dump_json())
        generator = self._generators.get(key)
        if generator is None:
            generator = get_generator(cell.model, params=cell.params)
            if "max_connections=" not in cell.model:
                generator.max_connections = self.concurrency  # the share is the limit's
                share = -(-self.concurrency // self._cells.get(unit, 1))
                self._limit.set_share(id(generator), max(1, share))
            self._generators[key] = generator
        return generator

    def judge_generator(self, model: str, nodeid: str) -> Generator:
        """One generator of a judge (or versus) model per unit of work. It has no share of
        the limit: it may take every slot generation leaves (most of a judged run's calls
        are the judge's, and they come as generation ends), while a waiting generation call
        goes first, holding fewer (`FairLimit`)."""
        key = (self.unit_of(nodeid), model, "judge")
        generator = self._generators.get(key)
        if generator is None:
            generator = get_generator(model)
            if "max_connections=" not in model:
                generator.max_connections = self.concurrency
            self._generators[key] = generator
        return generator

    def verdicts(self, nodeid: str) -> dict[int, Verdict]:
        """An item's verdicts by sample index (once its samples are in)."""
        return self._verdicts.get(nodeid, {})

    def samples(self, request: pytest.FixtureRequest, pipeline: ChatPipeline) -> list[Chat]:
        """This item's chats; the first item of a group starts the whole group's samples,
        and each item waits for its own.

        `pipeline` is the item's own `rig_pipeline`, built by pytest; the other members'
        pipelines are rebuilt from their fixture functions.
        """
        item = request.node
        if item.nodeid not in self._results and item.nodeid not in self._running:
            found: dict[str, Salvage] = {}
            if item.nodeid in self._spent:  # run again (a rerun plugin): fresh samples
                pending = [item]
            else:
                # Items taken back from a crashed worker start with each other only: the
                # rest of their function ran there.
                requeued = self.journal.requeued() if self.journal is not None else frozenset()
                members = self.groups.get(self.unit_of(item.nodeid), [item])
                pending = [
                    m
                    for m in (members if item in members else [*members, item])
                    if m.nodeid not in self._results
                    and m.nodeid not in self._running
                    and m.nodeid not in self._spent
                    and (m.nodeid in requeued) == (item.nodeid in requeued)
                ]
                if item.nodeid in requeued and self.journal is not None:
                    found = salvage(self.journal.folder, {m.nodeid for m in pending})
            self._start(pending, request, {item.nodeid: pipeline}, found)
        if item.nodeid in self._running:  # wait for this item's own samples only
            future = self._running[item.nodeid]
            began = time.perf_counter()
            self._results[item.nodeid] = self._wait(future, progress=True)
            self._spans[item.nodeid].waited = time.perf_counter() - began
            del self._running[item.nodeid]
        outcome = self._results[item.nodeid]  # kept until teardown: rig_chat and rig_chats
        if isinstance(outcome, BudgetSpent):
            raise pytest.skip.Exception(str(outcome))
        if isinstance(outcome, CassetteError):  # its message says it all
            raise pytest.fail.Exception(str(outcome), pytrace=False)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _start(
        self,
        items: list[pytest.Item],
        request: pytest.FixtureRequest,
        known: dict[str, ChatPipeline],
        found: dict[str, Salvage],
    ) -> None:
        """Build every item's pipeline (here, on pytest's thread) and start all their
        samples at once on the engine's loop; each item later waits for its own. A
        sample `found` in a crashed worker's journal is taken from there."""
        jobs: list[_Job] = []
        for item in items:
            try:
                pipeline = _checked(known.get(item.nodeid) or self._pipeline_for(item, request))
                cell = _cell(item)
                generator = self.generator(cell, item.nodeid)
                runs = verdict_of(item).runs
                judging, examples = self._judging(item)
                if judging is not None:
                    self.recorder.judge(item.nodeid, judging.record)
                jobs.append(
                    _Job(
                        item.nodeid,
                        pipeline,
                        runs,
                        cell,
                        generator,
                        item.path,
                        judging=judging,
                        calibration=examples,
                    )
                )
                if self.tapes is not None:
                    self.tapes.begin(item.nodeid)
            except (Exception, pytest.skip.Exception, pytest.fail.Exception) as error:
                # this case alone: a skip or failure building its pipeline is its own outcome
                self._results[item.nodeid] = error

        async def sample(job: _Job, index: int) -> Chat:
            def heard(chats: t.Sequence[Chat], parses: bool) -> None:
                self.remember(chats)
                self.recorder.add(job.nodeid, chats, parses, job.cell, job.generator, index)
                if not any(_judging(c) for c in chats):  # the sample's own, not its judge's
                    errors = any(c.error_kind == "infrastructure" for c in chats)
                    self.progress.sample_done(errors)

            kept = None
            if job.nodeid in found:
                kept = self._salvaged(found[job.nodeid], job, index)
                if kept is not None:
                    self.progress.sample_done(kept.error_kind == "infrastructure")
                    if job.judging is None:
                        return kept
            where = Where(job.nodeid, job.module, index)
            sending = self._sending(job.span, job.nodeid, index)
            try:
                with observe(heard), sending, self.around_calls(where):
                    chat = kept or await job.pipeline.run(on_failed="include")
                    if job.judging is not None and chat.error_kind != "infrastructure":
                        await self._judge(job, job.judging, index, chat)
                    return chat
            finally:
                job.span.last = time.perf_counter()

        async def own(job: _Job) -> list[Chat] | BaseException:
            try:
                if job.runs == 1:  # most items: no gathering
                    return [await sample(job, 0)]
                done = await asyncio.gather(
                    *(sample(job, i) for i in range(job.runs)),
                    return_exceptions=True,  # samples still in flight finish, and are counted
                )
                for outcome in done:
                    if isinstance(outcome, BaseException):
                        raise outcome
                return t.cast(list[Chat], done)
            except Exception as error:  # the item's outcome, raised when it asks
                return error

        async def samples(job: _Job) -> list[Chat] | BaseException:
            """The item's samples, and (its judge's first item) the labelled examples
            graded alongside, which the item waits for; cancelled, it cancels them too."""
            if not job.calibration:
                return await own(job)
            calibrating = asyncio.ensure_future(self._calibrate(job))
            try:
                outcome = await own(job)
            except BaseException:
                calibrating.cancel()
                raise
            await calibrating
            return outcome

        name = group_key(request.node.nodeid).rsplit("::", 1)[-1]
        self.progress.start(request.node.nodeid, name, sum(job.runs for job in jobs))
        if self.journal is not None:
            for job in jobs:
                self.journal.start(job.nodeid)
        futures = self._submit_all([samples(job) for job in jobs])
        for job, future in zip(jobs, futures, strict=True):
            self._running[job.nodeid] = future
            self._spans[job.nodeid] = job.span

    def _judging(self, item: pytest.Item) -> tuple[Judging | None, t.Sequence[LabelExample]]:
        """The item's judge, and the labelled examples it grades besides (each judge's
        first item, per test function, when labels are given)."""
        if item.get_closest_marker("rig_judge") is None or self.judges is None:
            return None, ()
        from pytest_rigging.plugin.judging import judging_for

        judges = self.judges()
        judging = judging_for(item, judges, lambda model: self.judge_generator(model, item.nodeid))
        if judging is None or item.nodeid not in self._calibrating:
            return judging, ()
        return judging, judges.examples(group_key(item.nodeid), judging.spec)

    async def _judge(self, job: _Job, judging: Judging, index: int, chat: Chat) -> None:
        """Sample `index`'s verdict, kept for `rig_verdict` and on its chat's record; a
        judge call that failed for infrastructure reasons fails the sample as such (it was
        never judged: not a quality failure)."""
        from pytest_rigging.judge import JudgeError

        try:
            verdict = await judging.verdict(chat, job.pipeline)
        except JudgeError as error:
            chat.failed, chat.error = True, error
            return
        self._verdicts.setdefault(job.nodeid, {})[index] = verdict
        self.recorder.judged(job.nodeid, job.cell, index, judging.verdict_record(verdict))

    async def _calibrate(self, job: _Job) -> None:
        """The judge's verdicts on the labelled examples, as the item's own calls (recorded
        on it, through its cassette), on the item's record."""
        assert job.judging is not None

        def heard(chats: t.Sequence[Chat], parses: bool) -> None:
            self.remember(chats)
            self.recorder.add(job.nodeid, chats, parses, job.cell, job.generator, None)

        with observe(heard), self.around_calls(Where(job.nodeid, job.module, None)):
            labels = await job.judging.calibrate(job.calibration)
        self.recorder.calibrated(job.nodeid, labels)

    @contextlib.contextmanager
    def _sending(self, span: _Span, nodeid: str, index: int) -> t.Iterator[None]:
        """The sample's first call, as it goes out or a recording answers it, starts its
        item's `span` (if none of the item's started earlier); on an xdist worker the
        journal hears of the first that goes out."""
        journal = self.journal
        sent = False

        def started() -> None:
            if span.first is None:
                span.first = time.perf_counter()

        def first_call() -> None:
            nonlocal sent
            if not sent:
                sent = True
                started()
                if journal is not None:
                    journal.sent(nodeid, index)

        replays = replays_heard(started) if self.tapes is not None else contextlib.nullcontext()
        with calls_heard(first_call), replays:
            yield

    def own_duration(self, nodeid: str, duration: float) -> float:
        """A phase's `duration` as the item's own, for the phase in which it waited for its
        samples: the time it waited replaced by its samples' own wall time, from its first
        model call out (or answered by a recording) to its last answer in. The group's
        samples are started together and run side by side; without this the first item to
        ask would carry the whole group's time (JUnit's `time`, `--durations`) and the
        others none. Time a call waited for a slot before the item's first went out is no
        item's; a replay waits no recorded latency, so its time is its pipeline's own work."""
        span = self._spans.get(nodeid)
        if span is None or span.waited is None:
            return duration
        del self._spans[nodeid]
        return max(0.0, duration - span.waited) + span.seconds()

    def _salvaged(self, found: Salvage, job: _Job, index: int) -> Chat | None:
        """Sample `index` as a crashed worker left it, recorded here: its chat if it
        finished there, a failed chat naming the loss if its call went out but the answer
        died with the worker (or its chats can't be rebuilt here); None if it was never
        sent."""
        done = found.done.get(index)
        if done is not None:
            pairs = t.cast("list[tuple[Chat, bool]]", done.restored())
            if pairs:
                for chat, own in pairs:
                    if own:
                        chat.generator = job.generator
                self.recorder.extend(job.nodeid, job.cell, done.records)
                if self.journal is not None:
                    self.journal.replay(done)
                return pairs[-1][0]
        worker = found.sent.get(index)
        if done is None and worker is None:
            return None
        lost = new_chat(
            list(job.pipeline.messages),
            job.generator,
            job.pipeline.params or GenerateParams(),
            dict(job.pipeline.metadata),
        )
        lost.failed = True
        lost.error = GenerationError(
            lost_message(index, worker or "?", in_flight=done is None), reason="lost"
        )
        self.recorder.add(job.nodeid, [lost], False, job.cell, job.generator, index)
        return lost

    def _pipeline_for(self, item: pytest.Item, request: pytest.FixtureRequest) -> ChatPipeline:
        definitions = fixture_definitions(item, "rig_pipeline")
        if not definitions:
            raise RuntimeError("no rig_pipeline fixture is visible to this test")
        cell = _cell(item)
        return _checked(self._call_fixture(item, definitions, len(definitions) - 1, cell, request))

    def _call_fixture(
        self,
        item: pytest.Item,
        definitions: t.Sequence[Fixture],
        index: int,
        cell: Cell,
        request: pytest.FixtureRequest,
    ) -> t.Any:
        """The value `item` would get from `definitions[index]`, built for `item`: every
        argument that differs between the function's items (the cell, a parametrize
        argument, a fixture built from either) is rebuilt; the rest is shared."""
        definition = definitions[index]
        name = definition.argname
        kwargs: dict[str, t.Any] = {}
        for arg in definition.argnames:
            if arg == name:  # an override asking for what it overrides
                kwargs[arg] = self._call_fixture(item, definitions, index - 1, cell, request)
            else:
                kwargs[arg] = self._argument(item, arg, cell, request)
        value = fixture_function(definition)(**kwargs)
        if inspect.isgenerator(value) or inspect.isasyncgen(value):
            raise TypeError(
                f"{name!r} yields: fixtures that rig_pipeline depends on per case must "
                "return their value for result fixtures to rebuild them"
            )
        if inspect.isawaitable(value):
            value = self.run(value)
        return value

    def _argument(
        self, item: pytest.Item, name: str, cell: Cell, request: pytest.FixtureRequest
    ) -> t.Any:
        if name in CELL_FIXTURES:
            return CELL_FIXTURES[name](self, cell, item.nodeid)
        params = call_params(item)
        if name == "rig_case":  # the case itself, not the fixture's own parameter
            return params[name]
        if name in params:
            return _direct_param(item, name)
        definitions = fixture_definitions(item, name)
        if definitions and _varies(item, name, params, set()):
            return self._call_fixture(item, definitions, len(definitions) - 1, cell, request)
        return request.getfixturevalue(name)

    def settle(self) -> None:
        """No item will ask for its samples any more (the session is finishing): stop
        computing those still running."""
        for future in self._running.values():
            future.cancel()

    def interrupt(self) -> None:
        """Ctrl-C (or `pytest.exit`), wherever it landed: in a test body, between items, in
        a teardown. The calls in flight are cancelled and no other starts: the loop's tasks
        are cancelled, the samples of items not yet run with them: all at once, on the
        loop, first (cancelled one by one from here, a call's freed slot could start a
        sample not yet cancelled)."""
        self.loop.cancel_all()
        self.settle()

    def discard(self, nodeid: str) -> None:
        """The item is done: drop its samples, and never compute it with a group again (an
        item run again, by a rerun plugin, gets fresh samples of its own)."""
        self._results.pop(nodeid, None)
        self._spans.pop(nodeid, None)
        self._verdicts.pop(nodeid, None)
        self._spent.add(nodeid)
        running = self._running.pop(nodeid, None)
        if running is not None:  # it never asked for its samples (skipped, say)
            running.cancel()

    def stop(self) -> None:
        self.loop.stop(self._release)
        if self.journal is not None:
            self.journal.close()

    def remember(self, chats: t.Sequence[Chat]) -> None:
        """Generators seen producing chats on the engine's loop (a judge a pipeline built
        itself, say): they are released with the engine's own."""
        for chat in chats:
            if chat.generator is not None:
                self._seen.setdefault(id(chat.generator), chat.generator)

    async def _release(self) -> None:
        """Each generator made or seen here releases what it holds on the engine's loop."""
        generators = {id(g): g for g in self._generators.values()} | self._seen
        await asyncio.gather(*(g.aclose() for g in generators.values()), return_exceptions=True)


class _Escaped(Exception):
    """A KeyboardInterrupt or SystemExit raised on the engine's loop, carried to the thread
    that waits for it."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


def _cancel_with(
    loop: asyncio.AbstractEventLoop,
    task: asyncio.Task[t.Any],
    done: concurrent.futures.Future[t.Any],
) -> None:
    """A future cancelled from pytest's thread cancels its task on the loop."""
    if done.cancelled():
        loop.call_soon_threadsafe(task.cancel)


def _settle(future: concurrent.futures.Future[T], task: asyncio.Task[T]) -> None:
    """Hand a finished task's outcome to the future pytest's thread waits on."""
    try:
        if task.cancelled():
            future.cancel()
        elif task.exception() is not None:
            future.set_exception(task.exception())
        else:
            future.set_result(task.result())
    except concurrent.futures.InvalidStateError:
        pass  # cancelled from pytest's thread meanwhile


def _varies(node: pytest.Item, name: str, arguments: t.Container[str], seen: set[str]) -> bool:
    """Whether fixture `name` depends, at any depth, on what differs between the items of
    one test function: the cell or a parametrize argument (`arguments`)."""
    if name in CELL_FIXTURES or name in arguments:
        return True
    seen.add(name)
    found = fixture_definitions(node, name)
    return any(
        _varies(node, arg, arguments, seen)
        for arg in (found[-1].argnames if found else ())
        if arg not in seen
    )


def _checked(pipeline: t.Any) -> ChatPipeline:
    if not isinstance(pipeline, ChatPipeline):
        raise TypeError(f"rig_pipeline must return a ChatPipeline, got {type(pipeline).__name__}")
    if not pipeline.messages:
        raise ValueError(
            "rig_pipeline has no messages to send: override the rig_pipeline fixture "
            "(in the test module or a conftest) to declare the eval's conversation"
        )
    return pipeline


def _direct_param(item: pytest.Item, name: str) -> t.Any:
    """The value of a `parametrize` argument of `item`; indirect ones can't be rebuilt."""
    definitions = fixture_definitions(item, name)
    if definitions and not is_direct_parameter(definitions[-1]):
        raise TypeError(
            f"rig_pipeline depends on {name!r}, which is parametrized indirectly; "
            "result fixtures can only rebuild pipelines from direct parametrize arguments"
        )
    return call_params(item)[name]


def _cell(item: pytest.Item) -> Cell:
    cell = cell_of(item)
    if cell is None:
        raise TypeError(f"{item.nodeid} is not an item of the rig matrix")
    return cell


def _judging(chat: Chat) -> bool:
    """A chat run for judging a sample: a judge's call, or a versus model's answer."""
    return "judge" in chat.metadata or "versus" in chat.metadata


def _fixturenames(item: pytest.Item) -> t.Sequence[str]:
    return t.cast("t.Sequence[str]", getattr(item, "fixturenames", ()))


def check_pipeline(definition: pytest.Item, parametrized: dict[str, bool]) -> str | None:
    """Why the result fixtures could not rebuild this test's `rig_pipeline` per case, or
    None: asked at collection, so that the problem is a collection error, not a failure
    in the middle of a run. `parametrized` maps parametrize arguments to `indirect`.

    What a `rig_pipeline` may depend on, per case: the cell fixtures, direct parametrize
    arguments, and function fixtures built from those that return their value; anything
    that is the same for every case is taken as it is.
    """
    pipelines = fixture_definitions(definition, "rig_pipeline")
    if not pipelines:
        return None
    qualname = getattr(fixture_function(pipelines[-1]), "__qualname__", "")
    if "." in qualname and "<locals>" not in qualname:
        return (
            f"rig_pipeline is defined in a class ({qualname}): result fixtures rebuild it per "
            "case, so define it in the test module or a conftest"
        )

    def problem(name: str, seen: set[str]) -> str | None:
        if name in CELL_FIXTURES or parametrized.get(name) is False:
            return None
        if parametrized.get(name):
            return (
                f"rig_pipeline depends on {name!r}, which is parametrized indirectly; result "
                "fixtures can only rebuild pipelines from direct parametrize arguments"
            )
        seen.add(name)
        found = fixture_definitions(definition, name)
        if not found or not _varies(definition, name, parametrized, set()):
            return None
        func = fixture_function(found[-1])
        if name != "rig_pipeline" and (
            inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func)
        ):
            return (
                f"rig_pipeline depends on {name!r}, which differs per case and yields: result "
                "fixtures rebuild such fixtures per case, so it must return its value"
            )
        return next(
            (p for arg in found[-1].argnames if arg not in seen and (p := problem(arg, seen))),
            None,
        )

    return problem("rig_pipeline", set())
